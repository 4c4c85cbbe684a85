"""Adds never replace a stored activity, on every backend: a retried add with the same
content changes nothing, a different activity under a stored id is refused before
anything is written, and no user's feed shows another actor's activity under its id."""

from __future__ import annotations

from typing import Any

import pytest

from aiostream import (
    Activity,
    ActivityConflictError,
    ArgumentTypeError,
    ConfigurationError,
    Love,
    ValidationError,
)
from aiostream.storage.base import FeedStorage
from tests.behaviour.test_lifecycle import LifecycleManager
from tests.helpers import TestAggregatedFeed, TestFeed, TestNotificationFeed, at

pytestmark = pytest.mark.anyio


@pytest.fixture
def manager(storage: FeedStorage) -> LifecycleManager:
    return LifecycleManager(storage=storage)


async def contexts(feed: Any) -> list[Any]:
    return [activity.extra_context for activity in await feed[:]]


async def test_a_retried_add_changes_nothing(manager: LifecycleManager) -> None:
    pin = Activity(1, Love, 5, time=at(0), extra_context={"v": 1})
    await manager.add_user_activity(1, pin)
    await manager.add_user_activity(1, Activity(1, Love, 5, time=at(0), extra_context={"v": 1}))
    assert await contexts(manager.get_feeds(10)["normal"]) == [{"v": 1}]
    (stored,) = await manager.get_activities([pin.serialization_id])
    assert stored.extra_context == {"v": 1}


async def test_another_activity_under_a_stored_id_is_refused(manager: LifecycleManager) -> None:
    await manager.add_user_activity(1, Activity(1, Love, 5, time=at(0), extra_context={"v": 1}))
    other = Activity(1, Love, 5, time=at(0), extra_context={"v": 2})
    with pytest.raises(ActivityConflictError, match=r"^activity: another activity is stored"):
        await manager.add_user_activity(1, other)
    with pytest.raises(ActivityConflictError):
        await manager.get_user_feed(1).add(other)
    with pytest.raises(ActivityConflictError):
        await manager.add_to_feeds(other, [("normal", 99)])
    # Nothing changed anywhere: the payload, the followers' flat feeds and groups.
    (stored,) = await manager.get_activities([other.serialization_id])
    assert stored.extra_context == {"v": 1}
    assert await contexts(manager.get_feeds(10)["normal"]) == [{"v": 1}]
    assert await contexts(manager.get_feeds(99)["normal"]) == []
    (group,) = await manager.get_feeds(10)["aggregated"][:]
    assert [a.extra_context for a in group.activities] == [{"v": 1}]
    assert group.activity_count == 1


async def test_a_foreign_id_names_one_activity_whoever_adds_it(
    manager: LifecycleManager,
) -> None:
    mine = Activity(1, Love, 5, time=at(0), foreign_id="like:5")
    theirs = Activity(2, Love, 6, time=at(0), foreign_id="like:5")
    assert mine.serialization_id == theirs.serialization_id
    await manager.add_user_activity(1, mine)
    with pytest.raises(ActivityConflictError):
        await manager.add_user_activity(2, theirs)
    # Actor 1's feed and its followers' show only actor 1's activity under that id.
    for user in (1, 10):
        feed = manager.get_user_feed(1) if user == 1 else manager.get_feeds(10)["normal"]
        assert [(a.actor_id, a.object_id) for a in await feed[:]] == [(1, 5)]


async def test_an_add_keeps_the_stored_targets(manager: LifecycleManager) -> None:
    pin = Activity(1, Love, 5, time=at(0))
    await manager.add_to_feeds(pin, [("normal", 50)])
    await manager.add_user_activity(1, Activity(1, Love, 5, time=at(0)))  # a retry, no `to`
    (stored,) = await manager.get_activities([pin.serialization_id])
    assert stored.to == (("normal", 50),)


async def test_a_refused_add_leaves_the_callers_activity_unchanged(
    manager: LifecycleManager,
) -> None:
    await manager.add_user_activity(1, Activity(1, Love, 5, time=at(0), extra_context={"v": 1}))
    other = Activity(1, Love, 5, time=at(0), extra_context={"v": 2})
    with pytest.raises(ValidationError):
        await manager.add_user_activity(1, other, to=[("normal", 7)])
    assert other.to == ()
    assert await manager.get_feeds(7)["normal"][:] == []


async def test_insert_activity_never_replaces(storage: FeedStorage) -> None:
    feed = TestFeed(1, storage=storage)
    await feed.insert_activity(Activity(1, Love, 5, time=at(0), extra_context={"v": 1}))
    await feed.insert_activity(Activity(1, Love, 5, time=at(0), extra_context={"v": 1}))
    with pytest.raises(ActivityConflictError):
        await feed.insert_activity(Activity(1, Love, 5, time=at(0), extra_context={"v": 2}))
    await feed.add(Activity(1, Love, 5, time=at(0), extra_context={"v": 1}))
    assert await contexts(feed) == [{"v": 1}]


async def test_an_unlike_keeps_the_groups_seen_and_read_state(storage: FeedStorage) -> None:
    feed = TestNotificationFeed(1, storage=storage)
    likes = [Activity(actor, Love, 5, time=at(actor)) for actor in (1, 2, 3)]
    await feed.add_many(likes)
    await feed.mark_all(seen=True, read=True)
    await feed.remove(likes[2])  # the newest: the group's id changes with its time
    await feed.remove(likes[0])
    (group,) = await feed[:]
    assert (group.is_seen(), group.is_read()) == (True, True)
    assert (await feed.count_unseen(), await feed.count_unread()) == (0, 0)

    await feed.add(likes[0])  # a new activity: unseen and unread again
    await feed.mark_all(seen=True, read=False)
    await feed.remove(likes[0])
    (group,) = await feed[:]
    assert (group.is_seen(), group.is_read()) == (True, False)
    assert (await feed.count_unseen(), await feed.count_unread()) == (0, 1)


async def test_a_removal_reaches_every_stored_target(manager: LifecycleManager) -> None:
    pin = Activity(1, Love, 5, time=at(0))
    await manager.add_user_activity(1, pin, to=[("normal", 42)])
    await manager.add_to_feeds(Activity(1, Love, 5, time=at(0)), [("normal", 43)])
    assert pin.to == (("normal", 42),)  # the caller's object knows only its own targets
    await manager.remove_user_activity(1, pin)
    for user in (42, 43, 10):
        assert await manager.get_feeds(user)["normal"][:] == []


# -- groups count each activity once ---------------------------------------------------


LIKES = [Activity(actor, Love, 5, time=at(actor)) for actor in range(1, 21)]


@pytest.mark.parametrize("feed_class", [TestAggregatedFeed, TestNotificationFeed])
async def test_a_group_counts_each_activity_once(storage: FeedStorage, feed_class: Any) -> None:
    """20 likes in a group that keeps 15: delivered again, one by one, all at once, or
    oldest and newest together, none is counted twice, and nothing becomes unseen."""
    feed = feed_class(1, storage=storage)
    for like in LIKES:
        await feed.add(like)
    if feed_class is TestNotificationFeed:
        await feed.mark_all(seen=True, read=True)
    (before,) = await feed[:]
    assert (before.activity_count, before.minimized_activities) == (20, 5)
    for like in LIKES:
        await feed.add(like)
    await feed.add_many(LIKES)
    await feed.add_many([LIKES[0], LIKES[-1]])
    (after,) = await feed[:]
    assert after == before
    assert after.activity_count == 20
    assert after.minimized_ids == [like.serialization_id for like in LIKES[:5]]
    if feed_class is TestNotificationFeed:
        assert (after.is_seen(), after.is_read()) == (True, True)
        assert (await feed.count_unseen(), await feed.count_unread()) == (0, 0)


async def test_redelivered_fanouts_and_follows_count_once(manager: LifecycleManager) -> None:
    for like in LIKES:
        await manager.add_user_activity(like.actor_id, like)
    await manager.get_feeds(10)["notification"].mark_all(seen=True, read=True)
    for like in LIKES[:6]:  # retried deliveries, as an arq retry or a duplicate job makes
        await manager.add_user_activity(like.actor_id, like)
    await manager.follow_user(10, 1)  # a follow copies what the follower already holds
    await manager.follow_user(10, 3)
    for name in ("aggregated", "notification"):
        (group,) = await manager.get_feeds(10)[name][:]
        assert group.activity_count == 20, name
    (group,) = await manager.get_feeds(10)["notification"][:]
    assert (group.is_seen(), group.is_read()) == (True, True)


# -- every argument is checked before the first write ------------------------------------


async def nothing_written(manager: LifecycleManager) -> None:
    for user in (1, 10):
        assert await manager.get_user_feed(user)[:] == []
        assert await manager.get_feeds(user)["normal"][:] == []


async def test_an_import_checks_every_chunk_before_the_first(manager: LifecycleManager) -> None:
    good = [Activity(1, Love, n, time=at(n)) for n in range(6)]
    bad = Activity(1, Love, 99, time=at(99), extra_context={"x": object()})
    with pytest.raises(ValidationError, match=r"extra_context"):
        await manager.batch_import(1, [*good, bad], chunk_size=2)
    await nothing_written(manager)
    stored = Activity(1, Love, 3, time=at(3), extra_context={"v": 1})
    await manager.get_user_feed(7).insert_activity(stored)  # another activity under an id
    with pytest.raises(ActivityConflictError):
        await manager.batch_import(1, good, chunk_size=2)
    await nothing_written(manager)


async def test_an_import_takes_any_iterable(manager: LifecycleManager) -> None:
    await manager.batch_import(1, (Activity(1, Love, n, time=at(n)) for n in range(3)))
    assert len(await manager.get_feeds(10)["normal"][:]) == 3


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m: m.batch_import(1, [], progress="yes"), "progress"),
        (lambda m: m.batch_import(1, Activity(1, Love, 1, time=at(1))), "activities"),
        (lambda m: m.batch_import(1, [], fanout="no"), "fanout"),
        (lambda m: m.update_user_activities(Activity(1, Love, 1, time=at(1))), "activities"),
        (lambda m: m.get_feeds(1)["notification"].mark_activities(5), "activities"),
        (lambda m: m.get_feeds(1)["notification"].mark_all(seen="no"), "seen"),
        (lambda m: m.get_feeds(1)["notification"].mark_activity(1, read="yes"), "read"),
        (lambda m: m.get_feeds(1)["normal"].remove_many(5), "activities"),
    ],
)
async def test_wrong_argument_types_name_the_argument(
    manager: LifecycleManager, call: Any, field: str
) -> None:
    with pytest.raises(ArgumentTypeError, match=rf"^{field}: ") as caught:
        await call(manager)
    assert isinstance(caught.value, ValidationError) and isinstance(caught.value, TypeError)


async def test_a_page_size_below_one_is_refused(storage: FeedStorage) -> None:
    class Pageless(TestFeed):
        page_size = 0

    feed = Pageless(1, storage=storage)
    await feed.add(Activity(1, Love, 1, time=at(1)))
    with pytest.raises(ConfigurationError, match="page_size"):
        async for _ in feed:
            pass
