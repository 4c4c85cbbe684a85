"""Selective materialization at the edges, on every backend: a feed on another storage
than the user feeds, trimmed feeds, unfollows that must not count as reads."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import pytest

from aiostream import Activity, Love, MemoryStorage
from aiostream.storage.base import FeedStorage
from tests.behaviour.test_materialize import SelFlat, SelManager, SelUser, stored

pytestmark = pytest.mark.anyio


def post(manager: SelManager, author: int, n: int) -> Activity:
    manager.clock += 1
    return Activity(author, Love, n, time=dt.datetime.fromtimestamp(manager.clock, dt.UTC))


async def test_a_flat_feed_on_another_storage_keeps_its_own_entries(
    storage: FeedStorage,
) -> None:
    """The flat feeds on the backend under test, the user feeds (and the policy's
    state) in memory: whole-feed and oldest-first reads read the reader's timeline
    where it is."""
    users = MemoryStorage()

    class Flat(SelFlat):
        @classmethod
        def default_storage(cls) -> FeedStorage:
            return storage

    class User(SelUser):
        @classmethod
        def default_storage(cls) -> FeedStorage:
            return users

    class Split(SelManager):
        feed_classes: ClassVar[dict[str, Any]] = {"flat": Flat}
        user_feed_class = User
        pull_threshold = 3
        # 1 is followed by 2, 3 and 4 (pulled); 6 is followed by 2 alone (pushed).
        graph: ClassVar[dict[int, list[int]]] = {1: [], 2: [1, 6], 3: [1], 4: [1], 6: []}

    manager = Split()
    pushed = [post(manager, 6, n) for n in range(2)]
    pulled = [post(manager, 1, n) for n in range(2)]
    for activity in [*pushed, *pulled]:
        await manager.add_user_activity(activity.actor_id, activity)
    assert await stored(manager, 2) == pushed[::-1]
    feed = manager.get_feeds(2)["flat"]
    newest_first = sorted([*pushed, *pulled], reverse=True)
    assert await feed[:] == newest_first
    assert await feed.order_by("activity_id")[:] == newest_first[::-1]
    assert [a async for a in feed] == newest_first


class Short(SelFlat):
    max_length = 4
    trim_chance = 1.0


class Trimmed(SelManager):
    feed_classes: ClassVar[dict[str, Any]] = {"flat": Short}
    pull_threshold = 3
    # 1 is followed by 2, 3 and 4 (pulled); 5 by 2 alone (pushed).
    graph: ClassVar[dict[int, list[int]]] = {1: [], 2: [1, 5], 3: [1], 4: [1], 5: []}


class TrimmedPush(Trimmed):
    pull_threshold = None


async def test_a_selective_feed_shows_what_a_trimmed_pushed_feed_holds(
    storage: FeedStorage,
) -> None:
    """Pushed feeds keep their newest max_length entries; a feed that merges a pulled
    producer shows the same: no window past them, filters and oldest-first reads within
    them."""
    push, selective = TrimmedPush(storage=MemoryStorage()), Trimmed(storage=storage)
    for n in range(9):
        selective.clock += 60  # (a minute apart)
        activity = post(selective, 1 if n % 2 else 5, n)
        push.clock = selective.clock
        for manager in (push, selective):
            await manager.add_user_activity(activity.actor_id, activity)
    mine, theirs = selective.get_feeds(2)["flat"], push.get_feeds(2)["flat"]
    held = await theirs[:]
    assert len(held) == 4
    assert await mine[:] == held
    assert await mine[3:10] == held[3:]
    assert await mine[4:10] == []
    assert await mine.order_by("activity_id")[:2] == held[::-1][:2]
    below = held[1].serialization_id
    assert await mine.filter(activity_id__lt=below)[:] == held[2:]
    assert await mine.filter(activity_id__gte=0)[:10] == held
    assert [a async for a in mine] == held


async def test_an_unfollow_is_not_a_read(storage: FeedStorage) -> None:
    """The library's own reads (an unfollow removing the target's activities) neither
    rebuild a stale feed nor record that its owner read."""

    class Idle(SelManager):
        inactive_after = dt.timedelta(hours=1)

    manager = Idle(storage=storage)
    first = post(manager, 1, 0)
    await manager.add_user_activity(1, first)  # 2 never read: skipped, feed stale
    assert await stored(manager, 2) == []
    await manager.unfollow_user(2, 1)
    assert await stored(manager, 2) == []  # not rebuilt
    assert await storage.load_states(["read:2"]) == {}  # no read recorded
    assert await storage.load_states(["stale:flat:2"]) == {"stale:flat:2": "1"}
