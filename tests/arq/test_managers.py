"""One worker for every Manager an application enqueues with: jobs name their Manager,
the worker runs each with the right one (jobs of older versions, naming none, with the
first), and the dispatcher refuses a job the workers of its queue would fail. Also the
idle worker's spaced-out queue reads."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import anyio
import pytest
from arq.constants import job_key_prefix
from arq.worker import Worker, create_worker
from redis.asyncio import Redis

from aiostream import Activity, Manager
from aiostream.exceptions import ConfigurationError
from aiostream.fanout import FanoutChunk
from aiostream.feeds.redis import RedisNotificationFeed
from aiostream.settings import Settings
from aiostream.tasks import DEFAULT_QUEUE, HIGH_QUEUE, ArqDispatcher, worker_settings
from tests.arq.app import AppFeed, AppManager, AppUserFeed
from tests.arq.test_tasks import burst_worker
from tests.helpers import Pin, at, make_activities

pytestmark = pytest.mark.anyio


class NoticeFeed(RedisNotificationFeed):
    key_format = "arqtest:notice:%(user_id)s"


class NoticeManager(Manager):
    """A second Manager, as docs/targeted-notifications.md recommends: a feed name the
    AppManager does not have, and no followers."""

    feed_classes: ClassVar[dict[str, Any]] = {"notice": NoticeFeed}
    user_feed_class = AppUserFeed

    def get_user_follower_ids(self, user_id: Any) -> dict[str, list[int]]:
        return {}


class InstrumentedAppManager(AppManager):
    """A worker-side subclass of the web process's AppManager."""


@pytest.fixture(autouse=True)
def followers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AppManager, "followers", {1: {"other": [30, 31]}})


async def burst(url: str, *managers: Any, queue: str = DEFAULT_QUEUE, **options: Any) -> Worker:
    return await burst_worker(url, *managers, queue=queue, **options)


async def queued(url: str, queue: str = DEFAULT_QUEUE) -> list[dict[str, Any]]:
    client = Redis.from_url(url)
    try:
        ids = await client.zrange(queue, 0, -1)
        return [json.loads(await client.get(job_key_prefix + i.decode())) for i in ids]
    finally:
        await client.aclose()


def like() -> Activity:
    return Activity(1, Pin, 500, time=at(10))


def test_a_managers_name_is_its_class_name_unless_it_sets_one() -> None:
    assert (AppManager.name, NoticeManager.name) == ("AppManager", "NoticeManager")

    class Named(Manager):
        name = "notifications"

    assert Named.name == "notifications"
    with pytest.raises(ConfigurationError, match=r"Blank\.name must be a non-empty str"):

        class Blank(Manager):
            name = ""


def test_worker_settings_needs_a_manager_and_refuses_two_of_one_name() -> None:
    settings = Settings(redis_url="redis://unused.invalid/0")
    with pytest.raises(ConfigurationError, match="needs the Managers"):
        worker_settings(settings=settings)

    class Other(Manager):
        name = "AppManager"

    with pytest.raises(ConfigurationError, match=r"AppManager and .*Other are both named"):
        worker_settings(AppManager, Other, settings=settings)


async def test_one_worker_runs_the_jobs_of_both_managers(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    (pin,) = make_activities(1)
    await AppManager(dispatcher=dispatcher).add_user_activity(1, pin)
    await NoticeManager(dispatcher=dispatcher).add_user_activity(1, like(), to=[("notice", 42)])
    jobs = await queued(app_storage)
    names = sorted({job["a"][0]["manager"] for job in jobs})
    assert names == ["AppManager", "NoticeManager"]

    worker = await burst(app_storage, AppManager, NoticeManager)
    assert worker.jobs_failed == 0 and worker.jobs_complete == len(jobs)
    assert await AppFeed(30)[:] == [pin]
    (group,) = await NoticeFeed(42)[:]
    assert group.activities == [like()]
    assert await dispatcher.failed_jobs() == []


async def test_a_worker_side_subclass_runs_the_web_managers_jobs(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    (pin,) = make_activities(1)
    await AppManager(dispatcher=dispatcher).add_user_activity(1, pin)
    worker = await burst(app_storage, NoticeManager, InstrumentedAppManager)
    assert worker.jobs_failed == 0
    assert await AppFeed(31)[:] == [pin]


async def test_the_dispatcher_refuses_a_job_the_workers_of_its_queue_would_fail(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    notices = NoticeManager(dispatcher=dispatcher)
    # No worker has started on the queue yet: any job is taken (its workers may come later).
    await notices.add_to_feeds(like(), [("notice", 42)])
    assert len(await queued(app_storage)) == 1

    # A worker of the queue that runs only the AppManager fails that job at once...
    worker = await burst(app_storage, AppManager)
    assert worker.jobs_failed == 1 and worker.jobs_retried == 0
    (failed,) = await dispatcher.failed_jobs()
    assert failed.reason == "error" and failed.error_type == "ConfigurationError"
    assert "'NoticeManager'" in failed.error and "'AppManager'" in failed.error

    # ... and, having started, says which Managers it runs: the next such job is refused
    # where the caller sees it, naming both, and nothing is enqueued.
    with pytest.raises(ConfigurationError) as refused:
        await notices.add_user_activity(1, like(), to=[("notice", 43)])
    message = str(refused.value)
    assert "'NoticeManager' enqueues jobs on aiostream:default" in message
    assert "whose workers run 'AppManager'" in message
    assert "worker_settings(AppManager, NoticeManager, ...)" in message
    assert await queued(app_storage) == []
    # Jobs of a Manager it runs are enqueued as before; other queues are not concerned.
    await AppManager(dispatcher=dispatcher).add_user_activity(1, like())
    assert len(await queued(app_storage)) == 3

    # Once the workers run both (read again at once, not after the cache's 30 s), the
    # job is taken, and the failed one runs when requeued.
    await burst(app_storage, AppManager, NoticeManager)
    await notices.add_user_activity(1, like(), to=[("notice", 43)])
    assert await dispatcher.requeue_failed() == 1
    worker = await burst(app_storage, AppManager, NoticeManager)
    assert worker.jobs_failed == 0 and worker.jobs_complete == 2
    for owner in (42, 43):
        (group,) = await NoticeFeed(owner)[:]
        assert group.activities == [like()]


async def test_a_queue_whose_workers_run_other_managers_does_not_concern_other_queues(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    await burst(app_storage, NoticeManager, queue=HIGH_QUEUE)  # records NoticeManager only
    await NoticeManager(dispatcher=dispatcher).add_to_feeds(like(), [("notice", 42)])
    assert len(await queued(app_storage)) == 1  # the default queue: no record there


async def test_jobs_without_a_manager_name_run_on_the_first_manager(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    """Jobs enqueued by an earlier version name no Manager: the worker's first runs them."""
    (pin,) = make_activities(1)
    await AppManager().add_user_activity(2, pin)  # stored (nobody follows user 2)
    payload = AppFeed.serialize_activities([pin])[0][1]
    chunk = FanoutChunk("add", "normal", (60, 61), (payload,))
    assert "manager" not in chunk.to_dict()  # the data (and id) of an older version's job
    await dispatcher.dispatch([chunk], run=AppManager().run)
    # A follow job as an earlier version enqueued it: the user and the targets only.
    await dispatcher.pool.enqueue_job("follow_many", 62, [2], _queue_name=DEFAULT_QUEUE)
    (fanout_job, follow_job) = sorted(await queued(app_storage), key=lambda j: j["f"])
    assert "manager" not in fanout_job["a"][0] and follow_job["a"] == [62, [2]]

    worker = await burst(app_storage, AppManager, NoticeManager)
    assert worker.jobs_failed == 0 and worker.jobs_complete == 2
    for user in (60, 61, 62):
        assert await AppFeed(user)[:] == [pin]


async def test_an_idle_worker_reads_its_queue_rarely_and_a_busy_one_often(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    reads: list[float] = []

    async def count_reads(ctx: dict[str, Any]) -> None:
        pool = ctx["redis"]
        read = pool.zrangebyscore  # aiostream's, spacing the reads out when idle

        async def counted(name: Any, *args: Any, **kwargs: Any) -> Any:
            if name == DEFAULT_QUEUE:
                reads.append(anyio.current_time())
            return await read(name, *args, **kwargs)

        pool.zrangebyscore = counted

    settings_cls = worker_settings(
        AppManager,
        settings=Settings(redis_url=app_storage),
        on_startup=count_reads,
        idle_poll_delay=0.2,
    )
    assert (settings_cls.poll_delay, settings_cls.max_jobs) == (0.01, 32)
    worker = create_worker(settings_cls, handle_signals=False)
    running = asyncio.ensure_future(worker.main())
    try:
        await anyio.sleep(2)
        # At 10 ms throughout: about 200 reads. Doubling to 0.2 s: 10, 20, ... 160 ms,
        # then 0.2 s apart, about 13.
        idle_reads = len(reads)
        assert 5 <= idle_reads <= 20, reads
        (pin,) = make_activities(1)
        started = anyio.current_time()
        await AppManager(dispatcher=dispatcher).add_user_activity(1, pin)
        with anyio.fail_after(5):
            # All three jobs (one per feed class) done, their ends recorded: the stop
            # below cuts nothing off.
            def busy() -> bool:
                return worker.jobs_complete < 3 or not all(t.done() for t in worker.tasks.values())

            while busy():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert anyio.current_time() - started < 1.0  # at most idle_poll_delay late
        assert await AppFeed(31)[:] == [pin]
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await worker.close()


def test_idle_poll_delay_must_not_be_below_poll_delay() -> None:
    with pytest.raises(ConfigurationError, match="idle_poll_delay at least poll_delay"):
        worker_settings(
            AppManager,
            settings=Settings(redis_url="redis://unused.invalid/0"),
            poll_delay=0.5,
            idle_poll_delay=0.1,
        )
