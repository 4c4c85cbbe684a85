"""Workers and servers failing in the middle of a fanout through arq.

A worker process killed with SIGKILL in the middle of a 10,000-follower fanout: a new
worker finishes the work. The queue Redis restarted under two workers: they ride it out.
The feed Redis killed (then restarted) or frozen (for longer than ``job_timeout``) under
two workers: the work is finished by retries. Each ends with every follower feed holding
the activity exactly once and nothing left in the failed jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from arq.worker import Worker, create_worker
from redis.asyncio import Redis

from aiostream import FanoutPriority
from aiostream.fanout import Job
from aiostream.metrics import NoopMetrics
from aiostream.settings import Settings
from aiostream.storage.redis import close_default_storages, configure
from aiostream.tasks import HIGH_QUEUE, ArqDispatcher, worker_settings
from tests.arq.app import AppAggregatedFeed, AppFeed, AppManager, AppNotificationFeed
from tests.helpers import feeds_not_holding_once, make_activities
from tests.servers import RedisServer, start_redis
from tests.servers.arq_workers import jobs_completed

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
FOLLOWERS = list(range(100_000, 110_000))


def start_worker(
    redis_url: str, log: Path, *, burst: bool, queue_url: str | None = None
) -> subprocess.Popen[bytes]:
    """``python -m arq tests.arq.app.WorkerSettings`` as its own process (its queue on
    ``queue_url``, else on the feed Redis)."""
    env = {
        **os.environ,
        "STREAM_REDIS_URL": redis_url,
        "STREAM_ARQ_REDIS_URL": queue_url or redis_url,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "arq", "tests.arq.app.WorkerSettings"]
    with log.open("wb") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [*command, "--burst"] if burst else command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


APP_FEEDS: dict[str, Callable[[Any], Any]] = {
    "flat": AppFeed,
    "aggregated": AppAggregatedFeed,
    "notification": AppNotificationFeed,
}


async def wait_until(predicate: Callable[[], Awaitable[bool]]) -> None:
    # The state lives in another process's Redis writes: polling is the only way.
    while not await predicate():  # noqa: ASYNC110
        await anyio.sleep(0.01)


@pytest.mark.slow
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

    problems = await feeds_not_holding_once(FOLLOWERS, activity, **APP_FEEDS)
    assert problems == [], f"{len(problems)} feeds wrong, e.g. {problems[:3]}"
    print(f"killed with {left} of {total} jobs left, {claimed} claimed by the dead worker")


@pytest.mark.slow
async def test_four_workers_on_a_queue_redis_of_their_own_survive_one_killed(
    app_storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As production runs it: the queue on its own Redis, four worker processes. One is
    killed mid-fanout; the other three finish (its claimed jobs once their lease ends),
    every feed holds the activity once, and the jobs were spread over the workers."""
    followers = FOLLOWERS[:4000]
    monkeypatch.setattr(AppManager, "followers", {1: {FanoutPriority.HIGH: followers}})
    monkeypatch.setattr(AppManager, "fanout_chunk_size", 25)
    (activity,) = make_activities(1)
    with start_redis(tmp_path / "queue") as queue_server:
        async with await ArqDispatcher.connect(queue_server.url, job_size=None) as dispatcher:
            await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)
            queue = Redis.from_url(queue_server.url)
            logs = [tmp_path / f"worker-{n}.log" for n in range(4)]
            workers = [
                start_worker(app_storage, log, burst=False, queue_url=queue_server.url)
                for log in logs
            ]
            try:
                total = await queue.zcard(HIGH_QUEUE)
                assert total == 3 * len(followers) // 25

                async def a_quarter_done() -> bool:
                    return int(await queue.zcard(HIGH_QUEUE)) <= total * 3 // 4

                with anyio.fail_after(180):  # a hang, not a speed check
                    await wait_until(a_quarter_done)
                os.kill(workers[0].pid, signal.SIGKILL)

                async def all_done() -> bool:
                    idle = not await queue.keys("arq:in-progress:*")
                    return idle and not await queue.zcard(HIGH_QUEUE)

                with anyio.fail_after(180):
                    await wait_until(all_done)
            finally:
                for worker in workers:
                    if worker.poll() is None:
                        worker.terminate()
                for worker in workers:
                    worker.wait(timeout=60)
                await queue.aclose()
            assert await dispatcher.failed_jobs() == []
    assert workers[0].returncode == -signal.SIGKILL
    completed = [jobs_completed(log) for log in logs[1:]]
    assert all(done > 0 for done in completed), completed  # the three shared the work
    problems = await feeds_not_holding_once(followers, activity, **APP_FEEDS)
    assert problems == [], f"{len(problems)} feeds wrong, e.g. {problems[:3]}"
    print(f"jobs completed by the three survivors: {completed} of {total}")


# -- two Worker objects in this event loop, servers failing under them ---------------------

SMALL_FANOUT = list(range(200_000, 202_000))  # 2,000 followers, chunks of 100: 60 jobs


@pytest.fixture
async def feeds_on_private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A feed Redis of this test only (AOF on), the default storage of the Redis feeds."""
    server = start_redis(tmp_path / "feeds", persistent=True)
    configure(Settings(redis_url=server.url))
    try:
        yield server
    finally:
        await close_default_storages()
        configure(None)
        server.stop()


@pytest.fixture
async def queue_dispatcher(redis_url: str) -> AsyncIterator[ArqDispatcher]:
    """A dispatcher on this test's database of the session's Redis (the queue Redis)."""
    async with await ArqDispatcher.connect(redis_url, job_size=None) as opened:
        yield opened


async def enqueue_small_fanout(dispatcher: ArqDispatcher, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(AppManager, "followers", {1: {FanoutPriority.HIGH: SMALL_FANOUT}})
    monkeypatch.setattr(AppManager, "fanout_chunk_size", 100)
    (activity,) = make_activities(1)
    await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)
    return activity


async def run_two_workers(
    make_manager: Callable[[], AppManager],
    *,
    feed_url: str,
    queue_url: str,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
    **options: Any,
) -> list[Worker]:
    """Two burst workers on the HIGH queue until it is empty, ``meanwhile`` beside them."""
    settings_cls = worker_settings(
        make_manager,
        queue=HIGH_QUEUE,
        settings=Settings(redis_url=feed_url, arq_redis_url=queue_url),
        **{"poll_delay": 0.01, "retry_delay": 0.01, **options},
    )
    workers = [create_worker(settings_cls, burst=True, handle_signals=False) for _ in range(2)]
    try:
        with anyio.fail_after(240):  # a hang, not a speed check
            async with anyio.create_task_group() as tg:
                for worker in workers:
                    tg.start_soon(worker.main)
                if meanwhile is not None:
                    await meanwhile()
    finally:
        for worker in workers:
            await worker.close()
    return workers


class Gate:
    """Holds the first ``hold`` jobs until ``opened`` is set; ``returned`` is set when
    they have all done their work."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.held = 0
        self.done = 0
        self.full = anyio.Event()
        self.opened = anyio.Event()
        self.returned = anyio.Event()

    async def run(self, job: Job, run: Callable[[Job], Awaitable[None]]) -> None:
        if self.held >= self.hold:
            await run(job)
            return
        self.held += 1
        if self.held == self.hold:
            self.full.set()
        await self.opened.wait()
        await run(job)
        self.done += 1
        if self.done == self.hold:
            self.returned.set()


async def test_workers_ride_out_a_restart_of_the_queue_redis(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_server = start_redis(tmp_path / "queue", persistent=True)
    configure(Settings(redis_url=redis_url))
    try:
        async with await ArqDispatcher.connect(queue_server.url, job_size=None) as dispatcher:
            activity = await enqueue_small_fanout(dispatcher, monkeypatch)
        # Each worker holds one job (max_jobs=1) while the queue Redis goes down; the jobs
        # then do their work, and arq finishes them (finish_job) against the stopped
        # server, then the restarted one; the workers go on with the rest of the queue.
        gate = Gate(hold=2)

        class GatedManager(AppManager):
            async def run(self, job: Job) -> None:
                await gate.run(job, super().run)

        async def restart_queue_redis() -> None:
            await gate.full.wait()
            queue_server.stop()
            gate.opened.set()
            await gate.returned.wait()
            await anyio.sleep(0.5)  # the outage lasts; its length decides nothing
            queue_server.restart()  # same port; the AOF brings the queue back

        workers = await run_two_workers(
            GatedManager,
            feed_url=redis_url,
            queue_url=queue_server.url,
            meanwhile=restart_queue_redis,
            max_jobs=1,
        )
        assert sum(w.jobs_complete for w in workers) == 60
        assert all(w.jobs_failed == 0 for w in workers)
        async with await ArqDispatcher.connect(queue_server.url, job_size=None) as dispatcher:
            assert await dispatcher.failed_jobs() == []
        problems = await feeds_not_holding_once(SMALL_FANOUT, activity, **APP_FEEDS)
        assert problems == [], f"{len(problems)} feeds wrong, e.g. {problems[:3]}"
    finally:
        await close_default_storages()
        configure(None)
        queue_server.stop()


class FailFeedRedisOnce(NoopMetrics):
    """Does ``fail`` to the feed Redis once one fanout chunk was written; notes retries
    and failed group writes (aggregated and notification feeds)."""

    def __init__(self, fail: Callable[[], None]) -> None:
        self.fail = fail
        self.failed = False
        self.retried = anyio.Event()
        self.group_write_failed = anyio.Event()

    def on_error(self, where: str, error: BaseException) -> None:
        if where == "storage.merge_groups":
            self.group_write_failed.set()

    def on_fanout(self, feed: str, operation: str, feeds: int, seconds: float) -> None:
        if not self.failed:
            self.failed = True
            self.fail()

    def on_job_retry(self, job: str, attempt: int, error: BaseException) -> None:
        self.retried.set()


async def test_feed_redis_killed_mid_fanout_two_workers_finish_by_retries(
    feeds_on_private_redis: RedisServer,
    queue_dispatcher: ArqDispatcher,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feeds, dispatcher = feeds_on_private_redis, queue_dispatcher
    activity = await enqueue_small_fanout(dispatcher, monkeypatch)
    metrics = FailFeedRedisOnce(feeds.kill)

    async def restart_after_a_retry() -> None:
        # Jobs failed on the dead server, aggregated / notification ones among them.
        await metrics.retried.wait()
        await metrics.group_write_failed.wait()
        feeds.restart()  # same port; the AOF keeps every acknowledged write

    workers = await run_two_workers(
        lambda: AppManager(metrics=metrics),
        feed_url=feeds.url,
        queue_url=redis_url,
        meanwhile=restart_after_a_retry,
        max_jobs=4,
        # Retries outlast any restart; exhausting them is not the case tested here.
        max_tries=1_000,
        max_retry_delay=0.05,
    )
    assert metrics.failed and sum(w.jobs_retried for w in workers) > 0
    assert sum(w.jobs_complete for w in workers) == 60
    assert sum(w.jobs_failed for w in workers) == 0
    assert await dispatcher.failed_jobs() == []
    problems = await feeds_not_holding_once(SMALL_FANOUT, activity, **APP_FEEDS)
    assert problems == [], f"{len(problems)} feeds wrong, e.g. {problems[:3]}"


async def test_feed_redis_frozen_past_job_timeout_two_workers_finish_by_retries(
    feeds_on_private_redis: RedisServer,
    queue_dispatcher: ArqDispatcher,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feeds, dispatcher = feeds_on_private_redis, queue_dispatcher
    activity = await enqueue_small_fanout(dispatcher, monkeypatch)
    metrics = FailFeedRedisOnce(lambda: os.kill(feeds.pid, signal.SIGSTOP))
    # No socket timeout to speak of: on the frozen server only job_timeout ends a try.
    frozen_url = f"{feeds.url}?socket_timeout=3600"

    async def thaw_after_a_timed_out_try() -> None:
        await metrics.retried.wait()  # a try outlasted job_timeout and was retried
        os.kill(feeds.pid, signal.SIGCONT)

    try:
        workers = await run_two_workers(
            lambda: AppManager(metrics=metrics),
            feed_url=frozen_url,
            queue_url=redis_url,
            meanwhile=thaw_after_a_timed_out_try,
            max_jobs=4,
            job_timeout=0.5,
            # Retries outlast the freeze; exhausting them is tested in tests/arq/test_tasks.py.
            max_tries=1_000,
            max_retry_delay=0.05,
        )
    finally:
        os.kill(feeds.pid, signal.SIGCONT)
    assert metrics.failed and sum(w.jobs_retried for w in workers) > 0
    assert sum(w.jobs_complete for w in workers) == 60
    assert sum(w.jobs_failed for w in workers) == 0
    assert await dispatcher.failed_jobs() == []
    problems = await feeds_not_holding_once(SMALL_FANOUT, activity, **APP_FEEDS)
    assert problems == [], f"{len(problems)} feeds wrong, e.g. {problems[:3]}"
