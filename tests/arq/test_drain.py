"""ArqDispatcher.drain (and aiostream.testing.drain): wait until the queues hold no job of
aiostream's, for integration tests that run real workers."""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from aiostream import FanoutPriority
from aiostream.tasks import DEFAULT_QUEUE, HIGH_QUEUE, LOW_QUEUE, ArqDispatcher
from aiostream.testing import drain
from tests.arq.app import AppFeed, AppManager, AppNotificationFeed
from tests.arq.test_tasks import queue_lengths, run_all_queues
from tests.helpers import make_activities

pytestmark = pytest.mark.anyio

FOLLOWERS = {FanoutPriority.HIGH: [10, 11], FanoutPriority.LOW: [20]}


@pytest.fixture(autouse=True)
def followers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AppManager, "followers", {1: FOLLOWERS})


async def test_drain_returns_once_workers_ran_every_job(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    manager = AppManager(dispatcher=dispatcher)
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    assert sum((await queue_lengths(app_storage)).values()) > 0
    async with anyio.create_task_group() as workers:
        workers.start_soon(run_all_queues, app_storage)
        with anyio.fail_after(60):
            await drain(manager, max_wait=60)
    assert await queue_lengths(app_storage) == {HIGH_QUEUE: 0, LOW_QUEUE: 0, DEFAULT_QUEUE: 0}
    for follower in (10, 11, 20):
        assert await AppFeed(follower)[:] == [activity]
        assert await AppNotificationFeed(follower).count_unseen() == 1


async def test_drain_without_workers_times_out_naming_the_queues(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    await AppManager(dispatcher=dispatcher).add_user_activity(1, make_activities(1)[0])
    with pytest.raises(TimeoutError, match=HIGH_QUEUE) as raised:
        await dispatcher.drain(0.1, poll_interval=0.02)
    assert LOW_QUEUE in str(raised.value) and "workers" in str(raised.value)


async def test_drain_of_empty_queues_ignores_other_jobs(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    client = Redis.from_url(app_storage)
    try:
        await client.zadd(DEFAULT_QUEUE, {"someone-elses-job": 1})
    finally:
        await client.aclose()
    with anyio.fail_after(5):
        await dispatcher.drain(max_wait=1)
