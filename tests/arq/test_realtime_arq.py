"""Realtime updates through arq: a worker *process* writes the followers' feeds, and
the subscriptions of this (web) process receive the updates."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from aiostream import Activity, FanoutPriority
from aiostream.realtime import FeedUpdate, Subscription
from aiostream.tasks import ArqDispatcher
from tests.arq.app import AppFeed, AppManager, AppNotificationFeed
from tests.arq.test_worker_kill import start_worker
from tests.helpers import Pin, at

pytestmark = pytest.mark.anyio

# A worker process imports aiostream and arq before its first job.
PROCESS_WAIT = 60.0


async def next_update(updates: Subscription) -> FeedUpdate:
    with anyio.fail_after(PROCESS_WAIT):
        return await updates.__anext__()


async def test_updates_written_by_a_worker_process_reach_the_subscribers(
    dispatcher: ArqDispatcher,
    app_storage: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(AppManager, "followers", {1: {FanoutPriority.HIGH: [20, 21]}})
    web = AppManager(dispatcher=dispatcher)
    activity = Activity(1, Pin, 3, time=at(10))
    flat, notifications = AppFeed(20), AppNotificationFeed(21)
    async with flat.subscribe() as flat_updates, notifications.subscribe() as counts:
        await web.add_user_activity(1, activity)  # only enqueued: no follower feed written
        worker = start_worker(app_storage, tmp_path / "worker.log", burst=True)
        try:
            assert await next_update(flat_updates) == FeedUpdate(
                flat.key, "added", (activity.serialization_id,)
            )
            update = await next_update(counts)
        finally:
            assert await anyio.to_thread.run_sync(lambda: worker.wait(PROCESS_WAIT)) == 0
    assert (update.kind, update.activity_ids) == ("added", (activity.serialization_id,))
    assert (update.unseen, update.unread) == (1, 1)
