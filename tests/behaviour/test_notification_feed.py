"""Notification feed behaviour, run against every backend."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from aiostream import Activity, Comment, Love, NotificationActivity
from tests.helpers import TestNotificationFeed, at

pytestmark = pytest.mark.anyio

DAY = 86_400


def loves(n: int, obj: int = 1, start: int = 0) -> list[Activity]:
    return [Activity(start + i, Love, obj, time=at(start + i)) for i in range(n)]


async def test_new_groups_are_unseen_and_unread(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add_many(loves(3) + loves(2, obj=2, start=10))
    assert await feed.count_unseen() == 2
    assert await feed.count_unread() == 2
    assert await feed.get_notification_data() == {"unseen_count": 2, "unread_count": 2}
    groups = await feed[:]
    assert all(isinstance(g, NotificationActivity) for g in groups)
    assert not any(g.is_seen() or g.is_read() for g in groups)
    assert groups[1].other_actor_count == 2


async def test_mark_all_seen_only_by_default(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add_many(loves(2) + loves(1, obj=2, start=5))
    await feed.mark_all()
    assert await feed.get_notification_data() == {"unseen_count": 0, "unread_count": 2}
    groups = await feed[:]
    assert all(g.is_seen() and not g.is_read() for g in groups)
    await feed.mark_all(read=True)
    assert await feed.get_notification_data() == {"unseen_count": 0, "unread_count": 0}


async def test_mark_activity_and_activities(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add_many(loves(1, obj=1) + loves(1, obj=2, start=1) + loves(1, obj=3, start=2))
    first, second, third = await feed[:]
    await feed.mark_activity(first)
    await feed.mark_activity(second.serialization_id, seen=False, read=True)
    assert await feed.count_unseen() == 2
    assert await feed.count_unread() == 2
    states = {g.group: (g.is_seen(), g.is_read()) for g in await feed[:]}
    assert states[first.group] == (True, False)
    assert states[second.group] == (False, True)
    assert states[third.group] == (False, False)
    await feed.mark_activities([second, third], seen=True, read=True)
    assert await feed.get_notification_data() == {"unseen_count": 0, "unread_count": 1}


async def test_new_activity_makes_a_marked_group_unseen_again(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add_many(loves(2))
    await feed.mark_all(seen=True, read=True)
    (old,) = await feed[:]
    await feed.add(Activity(99, Love, 1, time=at(50)))
    assert await feed.get_notification_data() == {"unseen_count": 1, "unread_count": 1}
    # Marking the stale id (from before the update) leaves the update unseen.
    await feed.mark_activity(old)
    assert await feed.count_unseen() == 1


async def test_marks_never_double_count(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    for activity in loves(5):
        await feed.add(activity)
    assert await feed.count_unseen() == 1
    await feed.mark_all()
    await feed.mark_all()
    assert await feed.count_unseen() == 0


async def test_remove_resets_counts(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    activities = loves(2)
    await feed.add_many(activities)
    await feed.remove_many(activities)
    assert await feed.get_notification_data() == {"unseen_count": 0, "unread_count": 0}
    await feed.add_many(activities)
    (group,) = await feed[:]
    await feed.remove_many_aggregated([group])
    assert await feed.get_notification_data() == {"unseen_count": 0, "unread_count": 0}


async def test_delete_clears_markers(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add_many(loves(3) + [Activity(1, Comment, 1, time=at(1))])
    await feed.delete()
    assert await feed.count() == 0
    assert await feed.get_notification_data() == {"unseen_count": 0, "unread_count": 0}


async def test_trim_drops_markers_of_trimmed_groups(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add_many([Activity(1, Love, i, time=at(i * DAY)) for i in range(6)])
    await feed.trim(2)
    assert await feed.count() == 2
    assert await feed.get_notification_data() == {"unseen_count": 2, "unread_count": 2}


async def test_untracked_counts_are_none(make_feed: Any) -> None:
    class Quiet(TestNotificationFeed):
        track_unread = False

    feed = make_feed(Quiet)
    await feed.add_many(loves(1))
    assert await feed.count_unread() is None
    assert await feed.get_notification_data() == {"unseen_count": 1, "unread_count": None}


async def test_notification_data_keeps_both_keys_whatever_is_tracked(make_feed: Any) -> None:
    class Unseen(TestNotificationFeed):
        track_unseen = False

    class Neither(TestNotificationFeed):
        track_unseen = False
        track_unread = False

    unseen, neither = make_feed(Unseen, 1), make_feed(Neither, 2)
    await unseen.add_many(loves(2) + loves(1, obj=2, start=10))
    first, _ = await unseen[:]
    await unseen.mark_activity(first, seen=True, read=True)
    await neither.add_many(loves(1))
    assert await unseen.count_unseen() is None
    assert await unseen.get_notification_data() == {"unseen_count": None, "unread_count": 1}
    assert await neither.get_notification_data() == {"unseen_count": None, "unread_count": None}


async def test_concurrent_adds_and_marks_lose_nothing(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    activities = [Activity(i, Love, i % 4, time=at(i)) for i in range(40)]
    async with anyio.create_task_group() as tg:
        for activity in activities:
            tg.start_soon(feed.add, activity)
    groups = await feed[:]
    assert len(groups) == 4
    assert sum(g.activity_count for g in groups) == 40
    assert await feed.count_unseen() == 4
