"""Fanout through arq: real workers (burst mode, in this event loop) on the real Redis."""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, ClassVar

import anyio
import pytest
from arq.constants import job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from arq.worker import Worker, create_worker
from redis.asyncio import Redis

from aiostream import Activity, FanoutPriority
from aiostream.exceptions import (
    ConfigurationError,
    FanoutError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from aiostream.fanout import FanoutChunk, FollowChunk
from aiostream.metrics import NoopMetrics
from aiostream.settings import Settings
from aiostream.storage.base import FeedStorage
from aiostream.storage.redis import RedisStorage
from aiostream.tasks import (
    DEFAULT_QUEUE,
    HIGH_QUEUE,
    LOW_QUEUE,
    ArqDispatcher,
    Queues,
    json_serializer,
    worker_settings,
)
from tests.arq.app import AppAggregatedFeed, AppFeed, AppManager, AppNotificationFeed
from tests.helpers import Pin, at, make_activities

pytestmark = pytest.mark.anyio

FOLLOWERS = {
    FanoutPriority.HIGH: [10, 11, 12, 13, 14],
    FanoutPriority.LOW: [20, 21],
    "other": [30],
}
ALL_FOLLOWERS = [u for ids in FOLLOWERS.values() for u in ids]


@pytest.fixture(autouse=True)
def followers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AppManager, "followers", {1: FOLLOWERS, 2: {}})
    monkeypatch.setattr(AppManager, "fanout_chunk_size", 2)


async def burst_worker(url: str, *managers: Any, queue: str, **options: Any) -> Worker:
    """Run a burst worker of ``managers`` on ``queue`` until the queue is empty."""
    settings_cls = worker_settings(
        *managers,
        queue=queue,
        settings=Settings(redis_url=url),
        retry_delay=0.01,
        **{"poll_delay": 0.01, **options},
    )
    worker = create_worker(settings_cls, burst=True, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


async def run_burst(url: str, queue: str, make_manager: Any = AppManager, **options: Any) -> Worker:
    """Run a burst worker of one Manager on ``queue`` until the queue is empty."""
    return await burst_worker(url, make_manager, queue=queue, **options)


async def run_all_queues(url: str, **options: Any) -> None:
    for queue in (HIGH_QUEUE, LOW_QUEUE, DEFAULT_QUEUE):
        await run_burst(url, queue, **options)


async def queue_lengths(url: str) -> dict[str, int]:
    client = Redis.from_url(url)
    try:
        return {q: await client.zcard(q) for q in (HIGH_QUEUE, LOW_QUEUE, DEFAULT_QUEUE)}
    finally:
        await client.aclose()


async def test_chunks_go_to_their_priority_queue_as_json(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    manager = AppManager(dispatcher=dispatcher)
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    # 3 feed classes x (HIGH: 3 chunks, LOW: 1, other: 1)
    assert await queue_lengths(app_storage) == {HIGH_QUEUE: 9, LOW_QUEUE: 3, DEFAULT_QUEUE: 3}
    client = Redis.from_url(app_storage)
    try:
        (job_id,) = await client.zrange(LOW_QUEUE, 0, 0)
        stored = json.loads(await client.get(b"arq:job:" + job_id))
    finally:
        await client.aclose()
    assert stored["f"] == "fanout_operation_low"
    chunk = FanoutChunk.from_dict(stored["a"][0])
    assert chunk.user_ids == (20, 21) and chunk.priority == "LOW"
    assert chunk.job_id == job_id.decode()
    # Nothing reached the followers yet; the user's own feed has it already.
    assert await AppFeed(10).count() == 0
    assert await manager.get_user_feed(1)[:] == [activity]


async def test_enqueueing_the_same_work_twice_queues_it_once(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    manager = AppManager(dispatcher=dispatcher)
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    await manager.add_user_activity(1, activity)
    assert await queue_lengths(app_storage) == {HIGH_QUEUE: 9, LOW_QUEUE: 3, DEFAULT_QUEUE: 3}


async def test_workers_fan_out_to_every_feed(dispatcher: ArqDispatcher, app_storage: str) -> None:
    manager = AppManager(dispatcher=dispatcher)
    first, second = make_activities(2)
    await manager.add_user_activity(1, first)
    await manager.add_user_activity(1, second)
    await run_all_queues(app_storage)
    assert await queue_lengths(app_storage) == {HIGH_QUEUE: 0, LOW_QUEUE: 0, DEFAULT_QUEUE: 0}
    for user in ALL_FOLLOWERS:
        assert await AppFeed(user)[:] == [second, first]
        (group,) = await AppAggregatedFeed(user)[:]
        assert group.activities == [first, second]
        notifications = await AppNotificationFeed(user)[:]
        assert {a for n in notifications for a in n.activities} == {first, second}
        assert await AppNotificationFeed(user).count_unseen() == len(notifications)
    assert await dispatcher.failed_jobs() == []

    await manager.remove_user_activity(1, first)
    await run_all_queues(app_storage)
    for user in ALL_FOLLOWERS:
        assert await AppFeed(user)[:] == [second]
        (group,) = await AppAggregatedFeed(user)[:]
        assert group.activities == [second]


async def test_uuid_ids_and_foreign_ids_travel_through_the_workers(
    dispatcher: ArqDispatcher, app_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    author, follower = uuid.UUID(int=7), uuid.UUID(int=8)
    monkeypatch.setattr(AppManager, "followers", {author: {FanoutPriority.HIGH: [follower]}})
    manager = AppManager(dispatcher=dispatcher)
    kept = Activity(author, Pin, "pin:1", time=at(0), foreign_id="pin:1")
    gone = Activity(author, Pin, "pin:2", time=at(1), foreign_id="pin:2")
    for activity in (kept, gone):
        await manager.add_user_activity(author, activity)
    await run_all_queues(app_storage)
    (_, back) = await AppFeed(follower)[:]
    assert (back.actor_id, back.object_id, back.foreign_id) == (author, "pin:1", "pin:1")
    (group,) = await AppAggregatedFeed(str(follower))[:]  # the same feed as the UUID's
    assert group.activities == [kept, gone]

    await manager.remove_user_activity(author, foreign_id="pin:2", time=at(1))
    await run_all_queues(app_storage)
    assert await AppFeed(follower)[:] == [kept]
    (group,) = await AppAggregatedFeed(follower)[:]
    assert group.activities == [kept]
    assert await dispatcher.failed_jobs() == []


async def test_to_targets_add_to_feeds_and_updates_run_twice_leave_one_effect(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    manager = AppManager(dispatcher=dispatcher)
    pin = Activity(1, Pin, 5, time=at(0), extra_context={"v": 1}, foreign_id="pin:5")
    for _ in range(2):  # each call made twice, its jobs run each time: one effect
        await manager.add_user_activity(1, pin, to=[("notification", 99)])
        await manager.add_to_feeds(pin, [("normal", 98), ("aggregated", 98)])
        await run_all_queues(app_storage)
    assert await AppFeed(98)[:] == [pin]
    (note,) = await AppNotificationFeed(99)[:]
    assert (note.activity_count, note.activities) == (1, [pin])

    for _ in range(2):
        await manager.partial_update_activity(foreign_id="pin:5", time=at(0), set={"v": 2})
        await run_all_queues(app_storage)
    for feed in (AppNotificationFeed(99), AppAggregatedFeed(98), AppAggregatedFeed(10)):
        (group,) = await feed[:]
        assert (group.activity_count, [a.extra_context for a in group.activities]) == (
            1,
            [{"v": 2}],
        )
    assert [a.extra_context for a in await AppFeed(10)[:]] == [{"v": 2}]

    await manager.remove_user_activity(1, foreign_id="pin:5", time=at(0))
    await run_all_queues(app_storage)
    assert await AppNotificationFeed(99)[:] == []
    assert await AppFeed(10)[:] == []
    assert await AppFeed(98)[:] == []  # add_to_feeds feeds too
    assert await AppAggregatedFeed(98)[:] == []
    assert await dispatcher.failed_jobs() == []


async def test_a_job_run_twice_changes_nothing_more(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    manager = AppManager(dispatcher=dispatcher)
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    await run_all_queues(app_storage)
    await AppNotificationFeed(10).mark_all(seen=True, read=True)

    # The same jobs again (results are not kept, so the same ids enqueue again), as
    # after a retry or a duplicate delivery.
    await manager.add_user_activity(1, activity)
    assert sum((await queue_lengths(app_storage)).values()) == 15
    await run_all_queues(app_storage)

    assert await AppFeed(10)[:] == [activity]
    (group,) = await AppAggregatedFeed(10)[:]
    assert group.activity_count == 1 and group.activities == [activity]
    notifications = AppNotificationFeed(10)
    assert await notifications.get_notification_data() == {
        "unseen_count": 0,
        "unread_count": 0,
    }
    (note,) = await notifications[:]
    assert note.activity_count == 1 and note.is_seen() and note.is_read()
    assert await AppNotificationFeed(11).count_unseen() == 1


async def test_follow_and_unfollow_run_as_jobs(dispatcher: ArqDispatcher, app_storage: str) -> None:
    manager = AppManager(dispatcher=dispatcher)
    activities = make_activities(3, actor=2)
    for activity in activities:
        await manager.add_user_activity(2, activity)  # user 2 has no followers yet
    await manager.follow_user(99, 2)
    assert await AppFeed(99).count() == 0
    assert await queue_lengths(app_storage) == {HIGH_QUEUE: 0, LOW_QUEUE: 0, DEFAULT_QUEUE: 1}
    await run_burst(app_storage, DEFAULT_QUEUE)
    assert await AppFeed(99)[:] == activities[::-1]

    await manager.unfollow_user(99, 2)
    await run_burst(app_storage, DEFAULT_QUEUE)
    assert await AppFeed(99).count() == 0
    assert await AppAggregatedFeed(99).count() == 0


async def test_follow_options_travel_with_the_jobs(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    manager = AppManager(dispatcher=dispatcher)
    activities = make_activities(3, actor=2)
    for activity in activities:
        await manager.add_user_activity(2, activity)
    for _ in range(2):  # run twice: one effect
        await manager.follow_user(98, 2, activity_copy_limit=2)
        await run_burst(app_storage, DEFAULT_QUEUE)
    assert await AppFeed(98)[:] == activities[:0:-1]
    await manager.unfollow_user(98, 2, keep_history=True)
    assert await queue_lengths(app_storage) == {HIGH_QUEUE: 0, LOW_QUEUE: 0, DEFAULT_QUEUE: 0}
    assert await AppFeed(98)[:] == activities[:0:-1]


async def test_a_follow_job_run_after_a_newer_unfollow_does_nothing(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    """A follow job held back (as by a worker killed mid-job, until its claim expires)
    runs after the unfollow the user asked for later: the feeds stay unfollowed. Its
    version travels after the copy limit, then its Manager's name; jobs without them keep
    their old arguments."""
    manager = AppManager(dispatcher=dispatcher)
    activities = make_activities(3, actor=2)
    for activity in activities:
        await manager.add_user_activity(2, activity)
    await manager.follow_user(97, 2, activity_copy_limit=2)
    client = Redis.from_url(app_storage)
    try:
        (job_id,) = await client.zrange(DEFAULT_QUEUE, 0, -1)
        held = await client.get(job_key_prefix + job_id.decode())
        await client.zrem(DEFAULT_QUEUE, job_id)
        await manager.unfollow_user(97, 2)
        await run_burst(app_storage, DEFAULT_QUEUE)
        assert await AppFeed(97).count() == 0
        await client.zadd(DEFAULT_QUEUE, {job_id: timestamp_ms()})  # the follow, late
        assert await client.get(job_key_prefix + job_id.decode()) == held
        worker = await run_burst(app_storage, DEFAULT_QUEUE)
        assert worker.jobs_complete == 1 and worker.jobs_failed == 0
    finally:
        await client.aclose()
    for feed in (AppFeed, AppAggregatedFeed, AppNotificationFeed):
        assert await feed(97).count() == 0
    assert await dispatcher.failed_jobs() == []
    function, args = json.loads(held)["f"], json.loads(held)["a"]
    assert function == "follow_many"
    assert args[:3] == [97, [2], 2] and isinstance(args[3], int)
    assert args[4:] == ["AppManager"]
    old_jobs = [FollowChunk("follow", 1, (2,)), FollowChunk("unfollow", 1, (2, 3))]
    assert [Queues().route(job)[2] for job in old_jobs] == [(1, [2]), (1, [2, 3])]
    # ids as they were
    assert all(not {"version", "manager"} & job.to_dict().keys() for job in old_jobs)


class RecordingMetrics(NoopMetrics):
    def __init__(self) -> None:
        self.retries: list[tuple[str, int, str]] = []
        self.errors: list[tuple[str, str]] = []

    def on_job_retry(self, job: str, attempt: int, error: BaseException) -> None:
        self.retries.append((job, attempt, type(error).__name__))

    def on_error(self, where: str, error: BaseException) -> None:
        self.errors.append((where, type(error).__name__))


class FlakyStorage:
    """The real Redis storage, except that the first ``failures`` writes (timeline
    writes, group merges and group writes) raise the error a stopped server would, and
    that while ``hanging`` is set they never return, as on a frozen server."""

    WRITES = ("add_to_timelines", "merge_groups", "write_groups")

    def __init__(self, inner: FeedStorage, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.hanging = False
        self.hung = anyio.Event()  # set when a write hangs

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in self.WRITES:
            return attribute

        async def write(*args: Any, **kwargs: Any) -> Any:
            if self.hanging:
                self.hung.set()
                await anyio.sleep_forever()
            if self.failures > 0:
                self.failures -= 1
                raise StorageUnavailableError("redis://flaky: connection refused")
            return await attribute(*args, **kwargs)

        return write


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as opened:
        yield opened


class FlakyManager(AppManager):
    feed_classes: ClassVar[dict[str, Any]] = {"normal": AppFeed}


@dataclass
class FlakyFanout:
    """A fanout chunk waiting on the default queue, for workers whose storage fails."""

    storage: FlakyStorage
    metrics: RecordingMetrics
    activity: Activity
    chunk: FanoutChunk

    def make_manager(self) -> AppManager:
        return FlakyManager(storage=self.storage, metrics=self.metrics)  # type: ignore[arg-type]


async def enqueue_flaky_fanout(
    dispatcher: ArqDispatcher,
    app_storage: str,
    stack: AsyncExitStack,
    failures: int,
    user_ids: tuple[int, ...],
) -> FlakyFanout:
    inner = await stack.enter_async_context(RedisStorage.from_url(app_storage))
    (activity,) = make_activities(1)
    await FlakyManager(dispatcher=dispatcher).add_user_activity(2, activity)  # stores it
    payload = AppFeed.serialize_activities([activity])[0][1]
    chunk = FanoutChunk("add", "normal", user_ids, (payload,))
    await dispatcher.dispatch([chunk], run=AppManager().run)
    return FlakyFanout(FlakyStorage(inner, failures), RecordingMetrics(), activity, chunk)


async def test_storage_errors_are_retried_with_backoff(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 2, (40, 41))
    metrics, activity = flaky.metrics, flaky.activity
    worker = await run_burst(app_storage, DEFAULT_QUEUE, flaky.make_manager)
    assert metrics.retries == [("fanout_operation", 1, "StorageUnavailableError")] + [
        ("fanout_operation", 2, "StorageUnavailableError")
    ]
    assert worker.jobs_retried == 2 and worker.jobs_complete == 1 and worker.jobs_failed == 0
    assert await AppFeed(40)[:] == [activity]
    assert await AppFeed(41)[:] == [activity]
    assert await dispatcher.failed_jobs() == []


async def test_a_job_that_keeps_failing_is_recorded_and_can_be_requeued(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 100, (50,))
    storage, metrics, activity, chunk = flaky.storage, flaky.metrics, flaky.activity, flaky.chunk
    make_manager = flaky.make_manager
    worker = await run_burst(app_storage, DEFAULT_QUEUE, make_manager, max_tries=3)
    assert worker.jobs_failed == 1 and worker.jobs_retried == 2

    (failed,) = await dispatcher.failed_jobs()
    assert failed.job_id == chunk.job_id
    assert failed.function == "fanout_operation" and failed.queue == DEFAULT_QUEUE
    assert failed.error_type == "StorageUnavailableError" and "connection refused" in failed.error
    assert failed.tries == 3 and failed.reason == "tries exhausted"
    assert FanoutChunk.from_dict(failed.args[0]) == chunk
    assert [a for _, a, _ in metrics.retries] == [1, 2]
    # Each try: the storage call fails, then the job does.
    assert (
        metrics.errors
        == [
            ("storage.add_to_timelines", "StorageUnavailableError"),
            ("fanout.add", "StorageUnavailableError"),
        ]
        * 3
    )
    assert await AppFeed(50).count() == 0

    # The storage recovers; the operator puts the job back.
    storage.failures = 0
    assert await dispatcher.requeue_failed() == 1
    assert await dispatcher.failed_jobs() == []
    await run_burst(app_storage, DEFAULT_QUEUE, make_manager, max_tries=3)
    assert await AppFeed(50)[:] == [activity]


class GroupFeedsManager(AppManager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "aggregated": AppAggregatedFeed,
        "notification": AppNotificationFeed,
    }


async def test_aggregated_and_notification_storage_errors_are_retried(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    inner = await stack.enter_async_context(RedisStorage.from_url(app_storage))
    (activity,) = make_activities(1)
    await GroupFeedsManager(dispatcher=dispatcher).add_user_activity(2, activity)  # stores it
    users = (40, 41, 42)
    chunks = [
        FanoutChunk("add", name, users, (feed.serialize_activities([activity])[0][1],))
        for name, feed in GroupFeedsManager.feed_classes.items()
    ]
    await dispatcher.dispatch(chunks, run=AppManager().run)
    storage, metrics = FlakyStorage(inner, failures=4), RecordingMetrics()

    def make_manager() -> AppManager:
        return GroupFeedsManager(storage=storage, metrics=metrics)  # type: ignore[arg-type]

    worker = await run_burst(app_storage, DEFAULT_QUEUE, make_manager)
    assert worker.jobs_failed == 0 and worker.jobs_complete == 2 and worker.jobs_retried >= 2
    assert {kind for _, _, kind in metrics.retries} <= {"StorageUnavailableError", "FanoutError"}
    assert await dispatcher.failed_jobs() == []
    for user in users:
        (group,) = await AppAggregatedFeed(user)[:]
        assert group.activities == [activity]
        assert await AppNotificationFeed(user).count_unseen() == 1


class RaisingManager(FlakyManager):
    """Raises ``errors`` (one per try, in order) before applying a chunk."""

    def __init__(self, errors: list[BaseException], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.errors = errors

    async def run_chunk(self, chunk: FanoutChunk) -> None:
        if self.errors:
            raise self.errors.pop(0)
        await super().run_chunk(chunk)


async def test_a_fanout_error_of_transient_errors_is_retried(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 0, (43,))
    several = FanoutError([(1, StorageUnavailableError("a")), (2, StorageTimeoutError("b"))])
    nested = FanoutError([(3, several), (4, StorageUnavailableError("c"))])
    manager = RaisingManager([several, nested], metrics=flaky.metrics)
    worker = await run_burst(app_storage, DEFAULT_QUEUE, lambda: manager)
    assert worker.jobs_retried == 2 and worker.jobs_complete == 1 and worker.jobs_failed == 0
    assert [kind for _, _, kind in flaky.metrics.retries] == ["FanoutError", "FanoutError"]
    assert await AppFeed(43)[:] == [flaky.activity]
    assert await dispatcher.failed_jobs() == []


async def test_a_fanout_error_holding_a_lasting_error_fails_at_once(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 0, (44,))
    mixed = FanoutError([(1, StorageUnavailableError("a")), (2, ConfigurationError("bad"))])
    worker = await run_burst(app_storage, DEFAULT_QUEUE, lambda: RaisingManager([mixed]))
    assert worker.jobs_failed == 1 and worker.jobs_retried == 0
    (failed,) = await dispatcher.failed_jobs()
    assert failed.job_id == flaky.chunk.job_id and failed.tries == 1
    assert failed.error_type == "FanoutError" and failed.reason == "error"


async def test_a_job_whose_last_try_outlasts_job_timeout_is_recorded_and_can_be_requeued(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 0, (45,))
    flaky.storage.hanging = True  # the storage never answers: only job_timeout ends the job
    worker = await run_burst(
        app_storage, DEFAULT_QUEUE, flaky.make_manager, job_timeout=0.2, max_tries=2
    )
    assert worker.jobs_failed == 1 and worker.jobs_retried == 1
    (failed,) = await dispatcher.failed_jobs()
    assert failed.job_id == flaky.chunk.job_id and failed.reason == "timeout"
    assert failed.error_type == "TimeoutError" and "job_timeout" in failed.error
    assert failed.tries == 2 and failed.queue == DEFAULT_QUEUE
    assert await AppFeed(45).count() == 0

    flaky.storage.hanging = False
    assert await dispatcher.requeue_failed() == 1
    await run_burst(app_storage, DEFAULT_QUEUE, flaky.make_manager, job_timeout=0.2)
    assert await AppFeed(45)[:] == [flaky.activity]
    assert await dispatcher.failed_jobs() == []


async def test_a_try_that_outlasts_job_timeout_is_retried(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 0, (47,))
    flaky.storage.hanging = True

    class Recovering(RecordingMetrics):
        def on_job_retry(self, job: str, attempt: int, error: BaseException) -> None:
            super().on_job_retry(job, attempt, error)
            flaky.storage.hanging = False  # the server is back for the next try

    flaky.metrics = Recovering()
    worker = await run_burst(app_storage, DEFAULT_QUEUE, flaky.make_manager, job_timeout=0.2)
    assert flaky.metrics.retries == [("fanout_operation", 1, "TimeoutError")]
    assert worker.jobs_retried == 1 and worker.jobs_complete == 1 and worker.jobs_failed == 0
    assert await AppFeed(47)[:] == [flaky.activity]
    assert await dispatcher.failed_jobs() == []


async def test_a_job_cancelled_by_a_stopping_worker_is_recorded_until_it_runs_again(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 0, (46,))
    flaky.storage.hanging = True
    settings_cls = worker_settings(
        flaky.make_manager, settings=Settings(redis_url=app_storage), poll_delay=0.01
    )
    worker = create_worker(settings_cls, burst=True, handle_signals=False)
    running = asyncio.ensure_future(worker.async_run())
    try:
        with anyio.fail_after(30):  # a hang, not a speed check
            await flaky.storage.hung.wait()
        worker.handle_sig(signal.SIGTERM)  # what arq does on SIGTERM: cancel running jobs
        with pytest.raises(asyncio.CancelledError):
            await running
    finally:
        await worker.close()
    (failed,) = await dispatcher.failed_jobs()
    assert failed.job_id == flaky.chunk.job_id and failed.reason == "cancelled"
    assert failed.error_type == "CancelledError" and failed.tries == 1
    assert (await queue_lengths(app_storage))[DEFAULT_QUEUE] == 1  # arq runs it again

    flaky.storage.hanging = False
    worker = await run_burst(app_storage, DEFAULT_QUEUE, flaky.make_manager)
    assert worker.jobs_complete == 1
    assert await AppFeed(46)[:] == [flaky.activity]
    assert await dispatcher.failed_jobs() == []  # its effect is there: the record is gone


async def test_a_job_whose_tries_all_ended_unfinished_is_recorded_not_dropped(
    dispatcher: ArqDispatcher, app_storage: str, stack: AsyncExitStack
) -> None:
    flaky = await enqueue_flaky_fanout(dispatcher, app_storage, stack, 0, (47,))
    # As arq finds a job whose 3 tries each lost their worker (killed, or stopped):
    # arq itself would drop it, "max 3 retries exceeded", without running anything.
    client = Redis.from_url(app_storage)
    try:
        await client.set(retry_key_prefix + flaky.chunk.job_id, 3)
    finally:
        await client.aclose()
    worker = await run_burst(app_storage, DEFAULT_QUEUE, flaky.make_manager, max_tries=3)
    assert worker.jobs_failed == 1
    (failed,) = await dispatcher.failed_jobs()
    assert failed.job_id == flaky.chunk.job_id and failed.reason == "tries exhausted"
    assert failed.tries == 3 and "max 3 tries" in failed.error
    assert await AppFeed(47).count() == 0

    assert await dispatcher.requeue_failed() == 1
    await run_burst(app_storage, DEFAULT_QUEUE, flaky.make_manager, max_tries=3)
    assert await AppFeed(47)[:] == [flaky.activity]
    assert await dispatcher.failed_jobs() == []


async def test_a_job_for_an_unknown_feed_fails_at_once(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    chunk = FanoutChunk("add", "no-such-feed", (60,), ("{}",), priority="LOW")
    await dispatcher.dispatch([chunk], run=AppManager().run)
    worker = await run_burst(app_storage, LOW_QUEUE)
    assert worker.jobs_failed == 1 and worker.jobs_retried == 0
    (failed,) = await dispatcher.failed_jobs()
    assert failed.tries == 1 and failed.queue == LOW_QUEUE and failed.reason == "error"
    assert failed.error_type == ConfigurationError.__name__
    assert "no-such-feed" in failed.error


async def test_custom_queue_names(app_storage: str) -> None:
    queues = Queues(high="app:hi", low="app:lo", default="app:def", failed="app:failed")
    async with await ArqDispatcher.connect(app_storage, queues=queues, job_size=None) as dispatcher:
        (activity,) = make_activities(1)
        await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)
        client = Redis.from_url(app_storage)
        try:
            assert [await client.zcard(q) for q in ("app:hi", "app:lo", "app:def")] == [9, 3, 3]
        finally:
            await client.aclose()
        for queue in ("app:hi", "app:lo", "app:def"):
            await run_burst(app_storage, queue, queues=queues)
    assert await AppFeed(30)[:] == [activity]


async def test_chunks_of_the_same_work_are_joined_into_bigger_jobs(app_storage: str) -> None:
    """By default the dispatcher joins the Manager's chunks (2 followers here) into jobs
    of up to ``job_size`` followers, per feed class and priority; every feed still gets
    the activity."""
    async with await ArqDispatcher.connect(app_storage, job_size=4) as dispatcher:
        (activity,) = make_activities(1)
        await AppManager(dispatcher=dispatcher).add_user_activity(1, activity)
        client = Redis.from_url(app_storage)
        try:
            # HIGH: 5 followers in chunks of 2, 2, 1 -> jobs of 4 and 1, for 3 feed classes.
            lengths = [await client.zcard(q) for q in (HIGH_QUEUE, LOW_QUEUE, DEFAULT_QUEUE)]
            assert lengths == [6, 3, 3]
        finally:
            await client.aclose()
        for queue in (HIGH_QUEUE, LOW_QUEUE, DEFAULT_QUEUE):
            await run_burst(app_storage, queue)
    for follower in ALL_FOLLOWERS:
        assert await AppFeed(follower)[:] == [activity]
        (group,) = await AppNotificationFeed(follower)[:]
        assert group.activities == [activity]


def test_payloads_are_plain_json() -> None:
    (activity,) = make_activities(1)
    chunk = FanoutChunk("add", "normal", (1, "u2"), ("{}",), "HIGH")
    raw = json_serializer({"a": [chunk.to_dict()], "r": ValueError("x")})
    assert json.loads(raw) == {"a": [chunk.to_dict()], "r": "ValueError('x')"}
    assert activity  # the activity itself travels serialized, as a string in the chunk


def test_worker_settings_reject_bad_max_tries() -> None:
    with pytest.raises(ConfigurationError, match="max_tries"):
        worker_settings(AppManager, max_tries=0)


async def test_the_per_queue_worker_example(
    dispatcher: ArqDispatcher, app_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example reads STREAM_REDIS_URL when its worker classes are built, as `arq` would.
    monkeypatch.setenv("STREAM_REDIS_URL", app_storage)
    example = importlib.reload(importlib.import_module("examples.fanout_workers"))
    monkeypatch.setattr(example, "FOLLOWER_COUNT", 300)
    manager = example.FollowerManager(dispatcher=dispatcher)
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    assert await queue_lengths(app_storage) == {HIGH_QUEUE: 2, LOW_QUEUE: 6, DEFAULT_QUEUE: 0}
    for settings_cls in (example.HighWorker, example.LowWorker, example.DefaultWorker):
        worker = create_worker(settings_cls, burst=True, handle_signals=False, poll_delay=0.01)
        try:
            await worker.main()
        finally:
            await worker.close()
    assert await queue_lengths(app_storage) == {HIGH_QUEUE: 0, LOW_QUEUE: 0, DEFAULT_QUEUE: 0}
    followers = manager.get_user_follower_ids(1)
    assert len(followers[FanoutPriority.HIGH]) == 30 and len(followers[FanoutPriority.LOW]) == 270
    for user in (*followers[FanoutPriority.HIGH], *followers[FanoutPriority.LOW]):
        assert await example.PinFeed(user)[:] == [activity]
    (group,) = await example.PinAggregatedFeed(1_000_300)[:]
    assert group.activities == [activity]


async def test_bulk_enqueue_matches_arq_enqueue_job(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    first = FanoutChunk("add", "normal", (70,), ("{}",), priority="HIGH")
    second = FanoutChunk("add", "normal", (71,), ("{}",), priority="HIGH")
    # A job arq itself enqueued under the same id is left alone (same dedupe rule).
    function, queue, args = dispatcher.queues.route(first)
    assert await dispatcher.pool.enqueue_job(
        function, *args, _job_id=first.job_id, _queue_name=queue
    )
    await dispatcher.dispatch([first, second], run=AppManager().run)
    client = Redis.from_url(app_storage)
    try:
        assert sorted(await client.zrange(HIGH_QUEUE, 0, -1)) == sorted(
            [first.job_id.encode(), second.job_id.encode()]
        )
        ours = json.loads(await client.get(f"arq:job:{second.job_id}"))
        arqs = json.loads(await client.get(f"arq:job:{first.job_id}"))
        assert ours.keys() == arqs.keys() and ours["f"] == arqs["f"] == "fanout_operation_high"
        # Expiry as arq's: a day from now.
        ttl = await client.pttl(f"arq:job:{second.job_id}")
        assert 86_000_000 < ttl <= 86_400_000
    finally:
        await client.aclose()
