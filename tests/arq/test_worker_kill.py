"""A worker process killed with SIGKILL in the middle of a 10,000-follower fanout: a new
worker finishes the work and every follower feed holds the activity exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis

from aiostream import FanoutPriority
from aiostream.tasks import HIGH_QUEUE, ArqDispatcher
from tests.arq.app import AppAggregatedFeed, AppFeed, AppManager, AppNotificationFeed
from tests.helpers import make_activities

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FOLLOWERS = list(range(100_000, 110_000))


def start_worker(redis_url: str, log: Path, *, burst: bool) -> subprocess.Popen[bytes]:
    """``python -m arq tests.arq.app.WorkerSettings`` as its own process."""
    env = {**os.environ, "STREAM_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "arq", "tests.arq.app.WorkerSettings"]
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [*command, "--burst"] if burst else command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def wait_until(predicate: Callable[[], Awaitable[bool]]) -> None:
    # The state lives in another process's Redis writes: polling is the only way.
    while not await predicate():  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def test_sigkill_mid_fanout_then_a_new_worker_finishes(
    dispatcher: ArqDispatcher,
    app_storage: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(AppManager, "followers", {1: {FanoutPriority.HIGH: FOLLOWERS}})
    monkeypatch.setattr(AppManager, "fanout_chunk_size", 50)
    (activity,) = make_activities(1)
    await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)

    queue = Redis.from_url(app_storage)
    try:
        total = await queue.zcard(HIGH_QUEUE)
        assert total == 3 * len(FOLLOWERS) // 50

        first = start_worker(app_storage, tmp_path / "worker-1.log", burst=False)
        try:

            async def a_quarter_done() -> bool:
                assert first.poll() is None, (tmp_path / "worker-1.log").read_text()
                return int(await queue.zcard(HIGH_QUEUE)) <= total * 3 // 4

            with anyio.fail_after(120):  # a hang, not a speed check
                await wait_until(a_quarter_done)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        assert first.returncode == -signal.SIGKILL
        left = await queue.zcard(HIGH_QUEUE)
        assert 0 < left < total, "the kill must land in the middle of the fanout"
        # Jobs the dead worker had started stay claimed until their lease runs out.
        claimed = len(await queue.keys("arq:in-progress:*"))
        assert claimed > 0

        second = start_worker(app_storage, tmp_path / "worker-2.log", burst=True)
        try:
            second.wait(timeout=180)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        assert second.returncode == 0, (tmp_path / "worker-2.log").read_text()
        assert await queue.zcard(HIGH_QUEUE) == 0
    finally:
        await queue.aclose()
    assert await dispatcher.failed_jobs() == []

    problems: list[str] = []
    limiter = anyio.CapacityLimiter(32)

    async def check(user: int) -> None:
        async with limiter:
            flat = await AppFeed(user)[:]
            groups = await AppAggregatedFeed(user)[:]
            notifications = AppNotificationFeed(user)
            notes = await notifications[:]
            unseen = await notifications.count_unseen()
        if flat != [activity]:
            problems.append(f"flat feed of {user}: {flat}")
        if [(g.activities, g.activity_count) for g in groups] != [([activity], 1)]:
            problems.append(f"aggregated feed of {user}: {groups}")
        if [(n.activities, n.activity_count) for n in notes] != [([activity], 1)] or unseen != 1:
            problems.append(f"notification feed of {user}: {notes}, unseen {unseen}")

    async with anyio.create_task_group() as tg:
        for user in FOLLOWERS:
            tg.start_soon(check, user)
    assert problems == [], f"{len(problems)} feeds wrong, e.g. {problems[:3]}"
    print(f"killed with {left} of {total} jobs left, {claimed} claimed by the dead worker")
