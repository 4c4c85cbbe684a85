"""Updates of a published activity through arq workers."""

from __future__ import annotations

import pytest

from aiostream import Activity, FanoutPriority
from aiostream.tasks import DEFAULT_QUEUE, HIGH_QUEUE, LOW_QUEUE, ArqDispatcher
from tests.arq.app import AppAggregatedFeed, AppFeed, AppManager, AppNotificationFeed
from tests.arq.test_tasks import queue_lengths, run_all_queues
from tests.helpers import Pin, at

pytestmark = pytest.mark.anyio

FOLLOWERS = {FanoutPriority.HIGH: [10, 11], FanoutPriority.LOW: [20]}


@pytest.fixture(autouse=True)
def followers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AppManager, "followers", {1: FOLLOWERS})
    monkeypatch.setattr(AppManager, "fanout_chunk_size", 2)


async def test_update_runs_as_jobs_and_replaces_every_copy(
    dispatcher: ArqDispatcher, app_storage: str
) -> None:
    manager = AppManager(dispatcher=dispatcher)
    activity = Activity(1, Pin, 7, time=at(0), extra_context={"title": "old"})
    await manager.add_user_activity(1, activity)
    await run_all_queues(app_storage)
    await AppFeed(11).remove(activity)
    await AppAggregatedFeed(11).remove(activity)
    await AppNotificationFeed(11).remove(activity)
    await AppNotificationFeed(20).mark_all(seen=True)

    updated = Activity(1, Pin, 7, time=at(0), extra_context={"title": "new"})
    await manager.update_user_activity(updated)
    # The aggregated and notification feeds x (HIGH: one chunk of 2, LOW: one of 1); flat
    # feeds read the stored payload and need no job.
    assert await queue_lengths(app_storage) == {HIGH_QUEUE: 2, LOW_QUEUE: 2, DEFAULT_QUEUE: 0}
    await run_all_queues(app_storage)
    assert await dispatcher.failed_jobs() == []

    for user in (10, 20):
        (flat,) = await AppFeed(user)[:]
        assert flat.extra_context == {"title": "new"}
        for feed in (AppAggregatedFeed(user), AppNotificationFeed(user)):
            (group,) = await feed[:]
            assert [a.extra_context for a in group.activities] == [{"title": "new"}]
    assert await AppNotificationFeed(10).get_notification_data() == {
        "unseen_count": 1,
        "unread_count": 1,
    }
    assert await AppNotificationFeed(20).get_notification_data() == {
        "unseen_count": 0,
        "unread_count": 1,
    }
    assert await AppFeed(11).count() == 0
    assert await AppAggregatedFeed(11).count() == 0
    assert await AppNotificationFeed(11).count() == 0
