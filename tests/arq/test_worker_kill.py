"""Workers and servers failing in the middle of a fanout through arq.

A worker process killed with SIGKILL in the middle of a 10,000-follower fanout: a new
worker finishes the work. The queue Redis restarted under two workers, once or again and
again in the middle of their job claims: they ride it out. The feed Redis killed (then
restarted) or frozen (for longer than ``job_timeout``) under two workers: the work is
finished by retries. Each ends with every follower feed holding the activity exactly
once and nothing left in the failed jobs. A worker killed in the middle of a follow,
then an unfollow: the follow's retry leaves the feeds unfollowed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from arq import create_pool
from arq.constants import in_progress_key_prefix
from arq.worker import Worker, create_worker
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from aiostream import FanoutPriority
from aiostream._arq_worker import _claims_ride_out_outages
from aiostream.fanout import Job
from aiostream.metrics import NoopMetrics
from aiostream.settings import Settings
from aiostream.storage.registry import close_default_storages, configure
from aiostream.tasks import HIGH_QUEUE, ArqDispatcher, worker_settings
from tests.arq.app import AppAggregatedFeed, AppFeed, AppManager, AppNotificationFeed
from tests.helpers import feeds_not_holding_once, make_activities
from tests.servers import RedisServer, start_redis
from tests.servers.arq_workers import jobs_completed

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
FOLLOWERS = list(range(100_000, 110_000))


def start_worker(
    redis_url: str,
    log: Path,
    *,
    burst: bool,
    queue_url: str | None = None,
    settings: str = "WorkerSettings",
) -> subprocess.Popen[bytes]:
    """``python -m arq tests.arq.app.WorkerSettings`` (or another ``settings`` class of
    that module) as its own process (its queue on ``queue_url``, else on the feed Redis)."""
    env = {
        **os.environ,
        "STREAM_REDIS_URL": redis_url,
        "STREAM_ARQ_REDIS_URL": queue_url or redis_url,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "arq", f"tests.arq.app.{settings}"]
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


@pytest.mark.slow
async def test_a_follow_killed_mid_job_does_not_undo_the_unfollow_after_it(
    dispatcher: ArqDispatcher, app_storage: str, tmp_path: Path
) -> None:
    """A worker SIGKILLed in the middle of a follow job (the feeds written, the job not
    finished); the user unfollows; a new worker runs the unfollow, then the follow's
    retry once its claim expires (job_timeout + 12 s): the feeds stay unfollowed."""
    manager = AppManager(dispatcher=dispatcher)
    pins = make_activities(3, actor=2)
    await manager.batch_import(2, pins, fanout=False)
    await manager.follow_user(300, 2)
    logs = [tmp_path / "stalling.log", tmp_path / "follow.log"]
    first = start_worker(app_storage, logs[0], burst=False, settings="StallingFollowWorker")
    try:

        async def followed() -> bool:
            assert first.poll() is None, logs[0].read_text()
            counts = [await feed(300).count() for feed in APP_FEEDS.values()]
            return counts == [3, 1, 3]  # the flat, aggregated, notification feeds

        with anyio.fail_after(60):  # a hang, not a speed check
            await wait_until(followed)
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    await manager.unfollow_user(300, 2)
    second = start_worker(app_storage, logs[1], burst=True, settings="FollowWorker")
    try:
        second.wait(timeout=90)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    assert second.returncode == 0, logs[1].read_text()
    # The unfollow, then the follow's retry (burst workers log no arq shutdown line).
    assert "jobs done 2, retried 0, failed 0" in logs[1].read_text()
    assert [await feed(300).count() for feed in APP_FEEDS.values()] == [0, 0, 0]
    assert await dispatcher.failed_jobs() == []


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


@pytest.mark.slow
async def test_workers_ride_out_queue_redis_restarts_in_the_middle_of_job_claims(
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The queue Redis SIGKILLed, then restarted on its port (AOF on), several times
    under two busy workers: every other time while a worker claims a job, after arq's
    WATCH of the job's in-progress key and before its reads (where redis-py turns the
    lost connection into a WatchError), the others at any moment. No worker exits,
    every job runs once and every feed holds the activity once."""
    restarts = 6
    followers = SMALL_FANOUT
    caplog.set_level(logging.INFO, "aiostream.tasks")
    queue_server = start_redis(tmp_path / "queue", persistent=True)
    configure(Settings(redis_url=redis_url))
    runs: Counter[str] = Counter()
    restarted = anyio.Event()
    aim = {"armed": False, "watched": anyio.Event()}

    class PacedManager(AppManager):
        """Counts the runs of each job; paces them while the restarts go on, so that
        the workers keep claiming jobs until the last one."""

        async def run(self, job: Job) -> None:
            runs[job.job_id] += 1
            if not restarted.is_set():
                await anyio.sleep(0.2)
            await super().run(job)

    watch = Pipeline.watch

    async def watch_then_wait(self: Pipeline, *names: Any) -> Any:
        result = await watch(self, *names)
        claim = any(str(name).startswith(in_progress_key_prefix) for name in names)
        if claim and aim["armed"]:
            aim["armed"] = False
            aim["watched"].set()  # type: ignore[attr-defined]
            await anyio.sleep(0.2)  # the server goes down meanwhile
        return result

    monkeypatch.setattr(Pipeline, "watch", watch_then_wait)

    async def restart_in_the_middle_of_claims() -> None:
        for restart in range(restarts):
            if restart % 2 == 0:
                aim["watched"], aim["armed"] = anyio.Event(), True
                with anyio.fail_after(30):
                    await aim["watched"].wait()  # type: ignore[attr-defined]
            queue_server.kill()
            await anyio.sleep(0.3)
            queue_server.restart()  # same port; the AOF brings the queue back
            await anyio.sleep(0.3)
        restarted.set()

    try:
        monkeypatch.setattr(AppManager, "followers", {1: {FanoutPriority.HIGH: followers}})
        monkeypatch.setattr(AppManager, "fanout_chunk_size", 10)
        (activity,) = make_activities(1)
        async with await ArqDispatcher.connect(queue_server.url, job_size=None) as dispatcher:
            await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)
        total = 3 * len(followers) // 10
        workers = await run_two_workers(
            PacedManager,
            feed_url=redis_url,
            queue_url=queue_server.url,
            meanwhile=restart_in_the_middle_of_claims,
            max_jobs=4,
            # A claim whose reply the restart lost holds its job this long (+ 12 s).
            job_timeout=5,
        )
        assert restarted.is_set()
        lost = [r for r in caplog.records if "dropped while claiming" in r.getMessage()]
        assert len(lost) >= restarts // 2  # each aimed restart hit a claim after its WATCH
        assert len(runs) == total and set(runs.values()) == {1}, runs.most_common(3)
        assert sum(w.jobs_complete for w in workers) == total
        assert all(w.jobs_failed == 0 for w in workers)
        async with await ArqDispatcher.connect(queue_server.url, job_size=None) as dispatcher:
            assert await dispatcher.failed_jobs() == []
        problems = await feeds_not_holding_once(followers, activity, **APP_FEEDS)
        assert problems == [], f"{len(problems)} feeds wrong, e.g. {problems[:3]}"
    finally:
        await close_default_storages()
        configure(None)
        queue_server.stop()


async def test_only_a_claim_that_lost_its_connection_is_given_up_by_exec(tmp_path: Path) -> None:
    """What the worker's queue pool changes in arq's WATCH transactions, and what not."""
    server = start_redis(tmp_path / "queue")
    settings_cls = worker_settings(AppManager, settings=Settings(redis_url=server.url))
    pool = await create_pool(settings_cls.redis_settings)
    other = Redis.from_url(server.url)
    _claims_ride_out_outages(pool)
    try:
        # A claim that loses the race to another worker: EXEC's WatchError, as before.
        raced = in_progress_key_prefix + "raced"
        async with pool.pipeline(transaction=True) as pipe:
            await pipe.watch(raced)
            assert not await pipe.exists(raced)
            await other.set(raced, b"theirs")
            pipe.multi()
            pipe.psetex(raced, 10_000, b"ours")
            with pytest.raises(WatchError, match="Watched variable changed"):
                await pipe.execute()
        assert await other.get(raced) == b"theirs"

        # A claim whose connection drops after its WATCH: its reads go on once the
        # server is back, and EXEC is refused without being sent.
        lost = in_progress_key_prefix + "lost"
        async with pool.pipeline(transaction=True) as pipe:
            await pipe.watch(lost)
            server.kill()
            server.restart()
            assert not await pipe.exists(lost)
            assert await pipe.zscore(HIGH_QUEUE, "lost") is None
            pipe.multi()
            pipe.psetex(lost, 10_000, b"ours")
            with pytest.raises(WatchError, match="lost with its connection"):
                await pipe.execute()
        await other.aclose()
        other = Redis.from_url(server.url)
        assert not await other.exists(lost)

        # Any other WATCH (enqueue_job's) fails on a dropped connection as redis-py makes it.
        async with pool.pipeline(transaction=True) as pipe:
            await pipe.watch("arq:job:enqueued")
            server.kill()
            server.restart()
            with pytest.raises(WatchError, match="ConnectionError"):
                await pipe.exists("arq:job:enqueued")
        assert await pool.ping()
    finally:
        await other.aclose()
        await pool.aclose()
        server.stop()


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
