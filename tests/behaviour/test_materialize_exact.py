"""Selective materialization at the edges, on every backend: a feed on another storage
than the user feeds, trimmed feeds, unfollows that must not count as reads, follows
with copy limits or ``follow_feeds``, imports without fanout, a reader's removals and
backdated posts of pulled producers."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import pytest

from aiostream import Activity, Love, MemoryStorage
from aiostream.exceptions import ActivityConflictError
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


class Following(SelManager):
    """1 is followed by 3 and 4 (pulled: the threshold is 2); 2 follows 1 later."""

    pull_threshold = 2

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.graph = {1: [], 2: [], 3: [1], 4: [1]}

    async def follow(self, user: int, target: int, limit: int | None = None) -> None:
        self.graph[user].append(target)
        await self.follow_user(user, target, activity_copy_limit=limit)


async def published(manager: SelManager, count: int, *, back: float = 0.0) -> list[Activity]:
    """``count`` posts by user 1, newest first, ``back`` seconds in the past."""
    activities = [post(manager, 1, n) for n in range(count)]
    for activity in activities:
        activity.time -= dt.timedelta(seconds=back)
        await manager.add_user_activity(1, activity)
    return activities[::-1]


@pytest.mark.parametrize("limit", [0, 1, None])
async def test_a_follow_of_a_pulled_producer_shows_the_past_it_copies_and_no_more(
    storage: FeedStorage, limit: int | None
) -> None:
    """A push-all Manager's follow copies the target's ``activity_copy_limit`` newest
    activities and its later fanouts add the rest: the pulled producer's older posts,
    in its fanned timeline, stay below the new follower's floor."""
    manager = Following(storage=storage)
    past = await published(manager, 3)
    await manager.follow(2, 1, limit)
    feed = manager.get_feeds(2)["flat"]
    copied = past if limit is None else past[:limit]
    assert await feed[:] == copied
    later = await published(manager, 2)
    assert await feed[:] == later + copied
    assert await feed[1:3] == (later + copied)[1:3]
    assert await feed.order_by("activity_id")[:2] == (later + copied)[::-1][:2]


async def test_follow_feeds_without_the_flat_feed_copy_no_flat_history(
    storage: FeedStorage,
) -> None:
    class GroupsOnly(Following):
        follow_feeds = ("groups",)

    manager = GroupsOnly(storage=storage)
    past = await published(manager, 2)
    await manager.follow(2, 1)
    feeds = manager.get_feeds(2)
    assert await feeds["flat"][:] == []
    assert sorted(a for g in await feeds["groups"][:] for a in g.activities) == past[::-1]
    later = await published(manager, 1)
    assert await feeds["flat"][:] == later


async def test_an_import_without_fanout_reaches_no_follower_but_a_follow_copies_it(
    storage: FeedStorage,
) -> None:
    manager = Following(storage=storage)
    await manager.follow(2, 1)
    shown = await published(manager, 1)
    imported = [post(manager, 1, 10 + n) for n in range(2)]
    await manager.batch_import(1, imported, fanout=False, progress=False)
    assert await manager.get_feeds(2)["flat"][:] == shown
    assert await manager.get_feeds(3)["flat"][:] == shown
    assert await manager.get_user_feed(1)[:] == imported[::-1] + shown
    manager.graph[5] = []
    await manager.follow(5, 1)  # the follow copies the user feed, imports included
    assert await manager.get_feeds(5)["flat"][:] == imported[::-1] + shown


async def test_an_activity_the_reader_removed_stays_removed_until_delivered_again(
    storage: FeedStorage,
) -> None:
    manager = Following(storage=storage)
    await manager.follow(2, 1)
    newer, older = await published(manager, 2)
    feed = manager.get_feeds(2)["flat"]
    await feed.remove(newer)
    assert await feed[:] == [older]
    assert await manager.get_feeds(3)["flat"][:] == [newer, older]  # other readers keep it
    (latest,) = await published(manager, 1)
    assert await feed[:] == [latest, older]
    # Delivered again (a retry): push-all writes it to the feed once more, and so here.
    await manager.add_user_activity(1, newer)
    assert await feed[:] == [latest, newer, older]


async def test_a_backdated_post_of_a_pulled_producer_reaches_a_follower_past_its_floor(
    storage: FeedStorage,
) -> None:
    """Out of order (older than what its author fanned out before), a post skips
    nobody: it is written to every follower, as push-all writes it."""
    manager = Following(storage=storage)
    await published(manager, 2)
    await manager.follow(2, 1, 0)  # the floor: past both posts
    (backdated,) = await published(manager, 1, back=3600.0)
    assert await stored(manager, 2) == [backdated]
    assert await manager.get_feeds(2)["flat"][:] == [backdated]


async def test_a_follow_again_keeps_what_the_feed_shows(storage: FeedStorage) -> None:
    """A follow request for a pair already followed (a retry, a duplicated job, a
    second click) copies what it copies and hides nothing the feed showed."""
    manager = Following(storage=storage)
    await manager.follow(2, 1)
    shown = await published(manager, 2)
    feed = manager.get_feeds(2)["flat"]
    await manager.follow_user(2, 1, activity_copy_limit=0)
    await manager.follow_many_users(2, [1], activity_copy_limit=1)
    assert await feed[:] == shown


async def test_an_unfollow_keeping_history_of_a_user_not_followed_copies_nothing(
    storage: FeedStorage,
) -> None:
    manager = Following(storage=storage)
    await published(manager, 2)
    await manager.unfollow_user(2, 1, keep_history=True)  # never followed
    assert await manager.get_feeds(2)["flat"][:] == []
    await manager.follow(2, 1, 0)
    manager.graph[2].remove(1)
    await manager.unfollow_user(2, 1)
    await published(manager, 1)
    await manager.unfollow_user(2, 1, keep_history=True)  # unfollowed already
    assert await manager.get_feeds(2)["flat"][:] == []


async def test_trim_and_delete_of_a_managers_feed_reach_what_reads_merge(
    storage: FeedStorage,
) -> None:
    manager = Following(storage=storage)
    await manager.follow(2, 1)
    posts = await published(manager, 3)
    feed = manager.get_feeds(2)["flat"]
    await feed.trim(1)
    assert await feed[:] == posts[:1]
    later = await published(manager, 1)
    assert await feed[:] == later + posts[:1]
    await feed.delete()
    assert await feed[:] == []


async def test_a_refused_add_leaves_nothing_that_a_read_merges(storage: FeedStorage) -> None:
    """An add refused for a conflict with the stored activity writes nothing: the
    producer's fanned timeline does not take the id (a read would merge the stored
    activity, an import that never fanned out)."""
    manager = Following(storage=storage)
    await manager.follow(2, 1)
    imported = post(manager, 1, 10)
    await manager.batch_import(1, [imported], fanout=False, progress=False)
    clash = Activity(1, Love, 10, time=imported.time, extra_context={"other": 1})
    assert clash.serialization_id == imported.serialization_id
    with pytest.raises(ActivityConflictError):
        await manager.add_user_activity(1, clash)
    later = await published(manager, 1)
    assert await manager.get_feeds(2)["flat"][:] == later
