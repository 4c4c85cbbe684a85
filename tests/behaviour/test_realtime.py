"""Realtime updates (``feed.subscribe()``) on every backend: what each write announces,
to whom, the counts of notification feeds, slow subscribers, and closing. Cassandra
feeds carry their updates through a Redis notifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, ClassVar

import anyio
import pytest

from aiostream import FanoutPriority, Manager
from aiostream.realtime import FeedUpdate, Subscription
from aiostream.storage.base import FeedStorage
from tests.helpers import (
    TestAggregatedFeed,
    TestFeed,
    TestNotificationFeed,
    TestUserFeed,
    make_activities,
)

pytestmark = pytest.mark.anyio

WAIT = 5.0  # seconds an expected update may take (across processes: a pub/sub hop)


class LiveManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "flat": TestFeed,
        "aggregated": TestAggregatedFeed,
        "notification": TestNotificationFeed,
    }
    user_feed_class = TestUserFeed

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: [2, 3]} if user_id == 1 else {}


async def next_update(updates: Subscription) -> FeedUpdate:
    with anyio.fail_after(WAIT):
        return await updates.__anext__()


@asynccontextmanager
async def watching(*feeds: Any) -> AsyncIterator[list[Subscription]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(feed.subscribe()) for feed in feeds]


async def test_a_flat_feed_announces_adds_and_removals(live: FeedStorage) -> None:
    feed = TestFeed(7, storage=live)
    first, second = make_activities(2)
    async with feed.subscribe() as updates:
        await feed.add_many([first, second])
        added = await next_update(updates)
        await feed.remove(first)
        removed = await next_update(updates)
    assert added == FeedUpdate(feed.key, "added", (first.serialization_id, second.serialization_id))
    assert removed == FeedUpdate(feed.key, "removed", (first.serialization_id,))
    assert added.to_dict()["activity_ids"] == [
        str(first.serialization_id),
        str(second.serialization_id),
    ]


async def test_a_fanout_reaches_the_subscribers_of_every_feed_kind(live: FeedStorage) -> None:
    manager = LiveManager(storage=live)
    feeds = manager.get_feeds(2)
    other = manager.get_feeds(3)["flat"]
    (activity,) = make_activities(1, actor=1)
    activity_id = activity.serialization_id
    async with watching(feeds["flat"], feeds["aggregated"], feeds["notification"], other) as (
        flat,
        aggregated,
        notification,
        third,
    ):
        await manager.add_user_activity(1, activity)
        assert await next_update(flat) == FeedUpdate(feeds["flat"].key, "added", (activity_id,))
        assert await next_update(third) == FeedUpdate(other.key, "added", (activity_id,))
        group = TestAggregatedFeed(2).get_aggregator().group_of(activity)
        assert await next_update(aggregated) == FeedUpdate(
            feeds["aggregated"].key, "added", (activity_id,), (group,)
        )
        notified = TestNotificationFeed(2).get_aggregator().group_of(activity)
        assert await next_update(notification) == FeedUpdate(
            feeds["notification"].key, "added", (activity_id,), (notified,), unseen=1, unread=1
        )
        await feeds["notification"].mark_all(seen=True)
        assert await next_update(notification) == FeedUpdate(
            feeds["notification"].key, "marked", unseen=0, unread=1
        )
        activity.extra_context["note"] = "edited"
        await manager.update_user_activity(activity)
        assert await next_update(flat) == FeedUpdate(feeds["flat"].key, "updated", (activity_id,))
        assert await next_update(aggregated) == FeedUpdate(
            feeds["aggregated"].key, "updated", (activity_id,), (group,)
        )
        await manager.remove_user_activity(1, activity)
        assert await next_update(flat) == FeedUpdate(feeds["flat"].key, "removed", (activity_id,))
        assert await next_update(aggregated) == FeedUpdate(
            feeds["aggregated"].key, "removed", (activity_id,), (group,)
        )


async def test_a_follow_announces_the_copies(live: FeedStorage) -> None:
    manager = LiveManager(storage=live)
    activities = make_activities(3, actor=5)
    await manager.get_user_feed(5).add_many(activities)
    flat = manager.get_feeds(9)["flat"]
    async with flat.subscribe() as updates:
        await manager.follow_user(9, 5)
        update = await next_update(updates)
    assert update.kind == "added"
    assert sorted(update.activity_ids) == sorted(a.serialization_id for a in activities)


async def test_a_slow_subscriber_gets_a_gap_instead_of_what_overflowed(live: FeedStorage) -> None:
    feed = TestFeed(8, storage=live)
    activities = make_activities(5)
    async with feed.subscribe(buffer=2) as updates:
        for activity in activities:
            await feed.add(activity)
        with anyio.fail_after(WAIT):  # the last three arrive; the third overflows
            while updates.gaps == 0 or len(updates._queue) < 3:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert await next_update(updates) == FeedUpdate(feed.key, "gap")
        tail = [await next_update(updates), await next_update(updates)]
    assert [u.activity_ids for u in tail] == [(a.serialization_id,) for a in activities[3:]]


async def test_leaving_the_context_or_cancelling_unsubscribes(live: FeedStorage) -> None:
    feed = TestFeed(9, storage=live)
    async with feed.subscribe() as updates:
        pass
    assert updates.closed
    assert [u async for u in updates] == []

    received: list[FeedUpdate] = []

    async def listen() -> None:
        async with feed.subscribe() as live_updates:
            async for update in live_updates:
                received.append(update)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(listen)
        with anyio.fail_after(WAIT):
            while not received:
                await feed.add(make_activities(1)[0])
                await anyio.sleep(0.05)
        tasks.cancel_scope.cancel()
    hub = _hub_of(live)
    assert feed.key not in {s.feed for subs in hub.channels.values() for s in subs.values()}


def _hub_of(storage: Any) -> Any:
    carrier = getattr(storage, "notifier", None) or storage
    return carrier._hub if hasattr(carrier, "_hub") else carrier._realtime.hub
