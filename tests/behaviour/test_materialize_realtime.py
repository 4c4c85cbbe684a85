"""Realtime updates of the flat feeds of a Manager that pulls producers, on every
backend: a subscriber hears the posts of pulled producers (written to no follower's
feed) as well as those of pushed ones, and their removals and updates, on its one
subscription; a Manager that does not pull listens to the feed's own channel only.
Cassandra feeds carry their updates through a Redis notifier (as in test_realtime)."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import anyio
import pytest

from aiostream import Activity, BaseFeed, FanoutPriority, Love, Manager, UserBaseFeed
from aiostream.ids import DIGEST_BITS
from aiostream.materialize import RatePolicy
from aiostream.realtime import FeedUpdate, Subscription
from aiostream.storage.base import FeedStorage
from tests.helpers import T0

pytestmark = pytest.mark.anyio

WAIT = 30.0  # a guard against a hang, not a timing: a loaded CI machine is slow


class LiveFlat(BaseFeed):
    key_format = "rtm:flat:%(user_id)s"


class LiveUser(UserBaseFeed):
    key_format = "rtm:user:%(user_id)s"


class Graph(Manager):
    """No policy: every post is written to every follower's feed."""

    feed_classes: ClassVar[dict[str, Any]] = {"flat": LiveFlat}
    user_feed_class = LiveUser
    # 1 is followed by 2, 3 and 4 (pulled at a threshold of 3); 6 by 2 only (pushed).
    graph: ClassVar[dict[int, list[int]]] = {1: [], 2: [1, 6], 3: [1], 4: [1], 6: []}
    clock = T0.timestamp()

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: [u for u, f in self.graph.items() if user_id in f]}

    def get_user_following_ids(self, user_id: int) -> list[int]:
        return self.graph[user_id]

    def now(self) -> float:
        return self.clock


class Pulling(Graph):
    pull_threshold = 3


class Idle(Graph):
    """A policy that skips inactive readers and pulls nobody."""

    inactive_after = dt.timedelta(days=1)


def post(manager: Graph, actor: int, n: int) -> Activity:
    """Activity ``n`` by ``actor``, a second after the previous one."""
    manager.clock += 1
    return Activity(actor, Love, n, time=dt.datetime.fromtimestamp(manager.clock, dt.UTC))


async def next_update(updates: Subscription) -> FeedUpdate:
    with anyio.fail_after(WAIT):
        return await updates.__anext__()


async def next_updates(updates: Subscription, n: int) -> list[FeedUpdate]:
    return [await next_update(updates) for _ in range(n)]


def hub_of(storage: Any) -> Any:
    carrier = getattr(storage, "notifier", None) or storage
    return carrier._hub if hasattr(carrier, "_hub") else carrier._realtime.hub


def subscribed(storage: Any) -> list[str]:
    """The feeds this process subscribes to, one per subscription."""
    channels = hub_of(storage).channels
    return sorted(s.feed for subs in channels.values() for s in subs.values())


async def stored(manager: Graph, user: int) -> list[Activity]:
    """What the user's flat feed holds in its own timeline (no merging)."""
    feed = manager.get_feeds(user)["flat"]
    return await feed.read_stored(0, None, feed._query)


async def test_a_reader_hears_pulled_and_pushed_posts_and_their_removals_and_updates(
    live: FeedStorage,
) -> None:
    manager = Pulling(storage=live)
    feed = manager.get_feeds(2)["flat"]
    pulled, pushed = post(manager, 1, 1), post(manager, 6, 2)
    key = feed.key

    def update(kind: Any, activity: Activity) -> FeedUpdate:
        return FeedUpdate(key, kind, (activity.serialization_id,))

    async with feed.subscribe() as updates:
        await manager.add_user_activity(1, pulled)
        # Once: written to no follower's feed, announced by 1's user feed.
        assert await next_update(updates) == update("added", pulled)
        assert subscribed(live) == ["rtm:flat:2", "rtm:user:1", "rtm:user:6"]
        assert await stored(manager, 2) == []
        assert await feed[:] == [pulled]
        await manager.add_user_activity(6, pushed)
        # From 6's user feed, and from the reader's feed once the fanout wrote it.
        assert await next_updates(updates, 2) == [update("added", pushed)] * 2
        assert await stored(manager, 2) == [pushed]
        assert await feed[:] == [pushed, pulled]
        await manager.remove_user_activity(1, pulled)
        assert await next_updates(updates, 2) == [update("removed", pulled)] * 2
        assert await feed[:] == [pushed]
        pushed.extra_context["note"] = "edited"
        await manager.update_user_activity(pushed)
        assert await next_updates(updates, 2) == [update("updated", pushed)] * 2
    assert subscribed(live) == []


@pytest.mark.parametrize("manager_class", [Graph, Idle], ids=["no policy", "inactive only"])
async def test_a_manager_that_pulls_nobody_listens_to_the_feed_alone(
    live: FeedStorage, manager_class: type[Graph]
) -> None:
    manager = manager_class(storage=live)
    for user in (2, 3, 4):  # readers: none is skipped as inactive
        await manager.get_feeds(user)["flat"][:]
    feed = manager.get_feeds(2)["flat"]
    first, second = post(manager, 1, 1), post(manager, 6, 2)
    async with feed.subscribe() as updates:
        assert subscribed(live) == ["rtm:flat:2"]
        await manager.add_user_activity(1, first)
        await manager.add_user_activity(6, second)
        await manager.remove_user_activity(1, first)
        assert await next_updates(updates, 3) == [
            FeedUpdate(feed.key, "added", (first.serialization_id,)),
            FeedUpdate(feed.key, "added", (second.serialization_id,)),
            FeedUpdate(feed.key, "removed", (first.serialization_id,)),
        ]
    assert subscribed(live) == []


async def test_a_gap_or_an_overflow_on_any_channel_is_a_gap_of_the_subscription(
    live: FeedStorage,
) -> None:
    manager = Pulling(storage=live)
    feed = manager.get_feeds(2)["flat"]
    activities = [post(manager, 1, n) for n in range(5)]
    async with feed.subscribe(buffer=2) as updates:
        hub = hub_of(live)
        (channel,) = [
            c
            for c, subs in hub.channels.items()
            if any(s.feed == "rtm:user:1" for s in subs.values())
        ]
        hub.gap(channel)  # as a reconnection of 1's channel gives
        assert await next_update(updates) == FeedUpdate(feed.key, "gap")
        # Five posts of 1 as its channel hands them over (delivered here, not over the
        # network, so that nothing else a server may send falls in between): the third
        # overflows the buffer of two into a gap, the last two follow it.
        for activity in activities:
            hub.deliver(channel, FeedUpdate("rtm:user:1", "added", (activity.serialization_id,)))
        assert updates.gaps == 2
        assert await next_update(updates) == FeedUpdate(feed.key, "gap")
        tail = await next_updates(updates, 2)
    assert tail == [FeedUpdate(feed.key, "added", (a.serialization_id,)) for a in activities[3:]]


async def test_a_reader_a_rate_skips_is_told_on_its_own_feed_once_reads_merge_the_post(
    live: FeedStorage,
) -> None:
    manager = Graph(storage=live, policy=RatePolicy(cost_ratio=1.0))
    feed = manager.get_feeds(3)["flat"]  # 3 never reads: pulled
    activity = post(manager, 1, 1)
    async with live.subscribe(feed.key) as own, feed.subscribe() as merged:
        await manager.add_user_activity(1, activity)
        # The feed's own channel: the fanout that skipped it announces the post once
        # the author's maximum lets reads merge it in.
        assert await next_update(own) == FeedUpdate(feed.key, "added", (activity.serialization_id,))
        maxima = await live.load_maxima("posted", ["rtm:user:1"])
        assert maxima["rtm:user:1"] >= activity.serialization_id >> DIGEST_BITS
        assert (
            await next_updates(merged, 2)
            == [FeedUpdate(feed.key, "added", (activity.serialization_id,))] * 2
        )
    assert await stored(manager, 3) == []
    assert await feed[:] == [activity]


async def test_leaving_or_cancelling_closes_every_channel(live: FeedStorage) -> None:
    manager = Pulling(storage=live)
    feed = manager.get_feeds(2)["flat"]
    received: list[FeedUpdate] = []

    async def listen() -> None:
        async with feed.subscribe() as updates:
            async for update in updates:
                received.append(update)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(listen)
        with anyio.fail_after(WAIT):
            n = 0
            while not received:
                n += 1
                await manager.add_user_activity(1, post(manager, 1, n))
                await anyio.sleep(0.05)
        tasks.cancel_scope.cancel()
    assert received[0].feed == feed.key
    assert subscribed(live) == []
