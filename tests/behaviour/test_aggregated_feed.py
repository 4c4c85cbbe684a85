"""Aggregated feed behaviour, run against every backend."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import anyio
import pytest

from aiostream import (
    Activity,
    AggregatedActivity,
    Comment,
    Love,
    RecentVerbAggregator,
    SerializationError,
)
from tests.helpers import (
    CustomActivity,
    CustomAggregated,
    CustomAggregatedFeed,
    Pin,
    TestAggregatedFeed,
    TestNotificationFeed,
    at,
    make_activities,
)

pytestmark = pytest.mark.anyio

DAY = 86_400


async def test_add_groups_by_verb_and_day(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    pins = make_activities(3)
    loves = make_activities(2, verb=Love, start=10)
    result = await feed.add_many(pins + loves)
    assert {a.group for a in result} == {"5-2024-05-01", "3-2024-05-01"}
    groups = await feed[:10]
    assert [g.group for g in groups] == ["3-2024-05-01", "5-2024-05-01"]  # newest update first
    assert groups[1].activities == pins
    assert groups[0].activity_count == 2
    assert await feed.count() == 2
    direct = RecentVerbAggregator().aggregate(pins + loves)
    assert [g.actor_ids for g in groups] == [g.actor_ids for g in direct]


async def test_merging_into_existing_group_never_duplicates_it(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    # 30 days of pins: the first day's group ends up far below merge_max_length (20).
    days = [Activity(1, Pin, i, time=at(i * DAY)) for i in range(30)]
    await feed.add_many(days)
    assert await feed.count() == 30
    late = Activity(2, Pin, 999, time=at(0) + dt.timedelta(hours=1))
    changed = await feed.add_many([late])
    assert len(changed) == 1
    groups = await feed[:]
    assert len(groups) == 30
    assert len({g.group for g in groups}) == 30
    (first_day,) = [g for g in groups if g.group == "5-2024-05-01"]
    assert first_day.actor_ids == [1, 2]


async def test_duplicates_are_ignored(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    activities = make_activities(4)
    await feed.add_many(activities)
    assert await feed.add_many(activities[:2]) == []
    (group,) = await feed[:]
    assert group.activity_count == 4


async def test_group_is_capped_with_minimized_count(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    activities = [Activity(i, Love, 1, time=at(i)) for i in range(20)]
    await feed.add_many(activities)
    (group,) = await feed[:]
    assert len(group.activities) == 15
    assert group.minimized_activities == 5
    assert group.activity_count == 20
    assert group.actor_count == 20
    assert group.last_activity == activities[-1]


async def test_contains(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    activities = make_activities(3)
    await feed.add_many(activities[:2])
    assert await feed.contains(activities[0])
    assert not await feed.contains(activities[2])


async def test_remove_only_activity_removes_group(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    (activity,) = make_activities(1)
    await feed.add(activity)
    await feed.remove(activity)
    assert await feed.count() == 0
    assert await feed[:] == []


async def test_partial_remove_keeps_group(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    activities = make_activities(3)
    await feed.add_many(activities)
    changed = await feed.remove_many(activities[1:])
    assert [g.activities for g in changed] == [[activities[0]]]
    (group,) = await feed[:]
    assert group.activities == [activities[0]]
    assert group.updated_at == activities[0].time


async def test_remove_by_id_scans_the_feed(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    activities = make_activities(3) + make_activities(2, verb=Comment, start=5)
    await feed.add_many(activities)
    await feed.remove_many([activities[0].serialization_id, activities[3].serialization_id])
    groups = await feed[:]
    assert sorted(len(g.activities) for g in groups) == [1, 2]


def groups_by_day(activities: list[Activity]) -> list[tuple[str, list[Activity]]]:
    """What RecentVerbAggregator makes of loves: one group a day, newest group first,
    each holding its activities oldest first."""
    days: dict[str, list[Activity]] = {}
    for activity in sorted(activities, key=lambda a: a.time):
        days.setdefault(f"{Love.id}-{activity.time.date()}", []).append(activity)
    return list(reversed(days.items()))


async def test_large_remove(make_feed: Any) -> None:
    # 600 loves by 50 actors, two hours apart: 51 groups (one a day; six on the first
    # day, from noon, then twelve a day, under the 15 a group keeps, so none is let go).
    feed = make_feed(TestAggregatedFeed)
    activities = [Activity(i % 50, Love, i, time=at(i * 7200)) for i in range(600)]
    await feed.add_many(activities)
    before = groups_by_day(activities)
    assert len(before) == 51
    assert [(g.group, g.activities) for g in await feed[:]] == before

    removed, kept = activities[:100], activities[100:]
    await feed.remove_many(removed)
    # Eight days are emptied and gone, the ninth keeps its last two, the 42 newest are
    # untouched: exactly the kept activities, in their groups, in order.
    after = groups_by_day(kept)
    assert [(name, len(group)) for name, group in after[-2:]] == [
        (before[-10][0], 12),
        (before[-9][0], 2),
    ]
    groups = await feed[:]
    assert [(g.group, g.activities) for g in groups] == after
    assert all(g.minimized_activities == 0 for g in groups)
    assert await feed.count() == len(after) == 43


async def test_trim_keeps_newest_groups(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    days = [Activity(1, Pin, i, time=at(i * DAY)) for i in range(10)]
    await feed.add_many(days)
    await feed.trim(3)
    groups = await feed[:]
    assert [g.activities[0] for g in groups] == list(reversed(days))[:3]


async def test_add_many_aggregated_and_remove_many_aggregated(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    one = AggregatedActivity("g1", make_activities(2))
    two = AggregatedActivity("g2", make_activities(2, start=5))
    await feed.add_many_aggregated([one, two])
    assert [g.group for g in await feed[:]] == ["g2", "g1"]
    await feed.remove_many_aggregated([one])
    assert [g.group for g in await feed[:]] == ["g2"]
    with pytest.raises(SerializationError):
        await feed.add_many_aggregated(["not a group"])  # type: ignore[list-item]


async def test_group_ids_are_unique_within_the_same_second(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    same_time = at(0)
    a = Activity(1, Pin, 1, time=same_time)
    b = Activity(1, Love, 2, time=same_time)
    await feed.add_many([a, b])
    groups = await feed[:]
    assert len({g.serialization_id for g in groups}) == 2


async def test_filter_and_order_on_groups(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    days = [Activity(1, Pin, i, time=at(i * DAY)) for i in range(6)]
    await feed.add_many(days)
    groups = await feed[:]
    pivot = groups[2].serialization_id
    older = await feed.filter(activity_id__lt=pivot)[:]
    assert older == groups[3:]
    assert await feed.order_by("activity_id")[:] == list(reversed(groups))
    assert await feed.index_of(groups[4]) == 4
    assert [g async for g in feed] == groups


async def test_custom_classes_round_trip(make_feed: Any) -> None:
    feed = make_feed(CustomAggregatedFeed)
    await feed.add_many([CustomActivity(1, Pin, i, time=at(i)) for i in range(2)])
    (group,) = await feed[:]
    assert type(group) is CustomAggregated
    assert all(type(a) is CustomActivity for a in group.activities)


async def test_concurrent_add_many_loses_nothing(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    activities = [Activity(i, Love, 1, time=at(i)) for i in range(40)]

    async with anyio.create_task_group() as tg:
        for activity in activities:
            tg.start_soon(feed.add, activity)
    (group,) = await feed[:]
    assert group.activity_count == 40
    assert sorted(a.actor_id for a in group.activities) == list(range(25, 40))


async def test_fanout_add_to_many_aggregated_feeds(make_feed: Any, storage: Any) -> None:
    activities = make_activities(2)
    await TestAggregatedFeed.fanout_add(list(range(10)), activities, storage=storage)
    for user_id in range(10):
        (group,) = await make_feed(TestAggregatedFeed, user_id)[:]
        assert group.activities == activities


class ShortAggregated(TestAggregatedFeed):
    max_length: ClassVar[int] = 2
    trim_chance: ClassVar[float] = 1.0


async def test_trim_on_write(make_feed: Any) -> None:
    feed = make_feed(ShortAggregated)
    for i in range(5):
        await feed.add(Activity(1, Pin, i, time=at(i * DAY)))
    assert await feed.count() == 2


async def test_unserializable_activity_writes_no_group(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    good = Activity(1, Pin, 1, time=at(0))
    bad = Activity(2, Love, 2, time=at(0), extra_context={"tags": {"a"}})
    with pytest.raises(SerializationError, match=r"extra_context\['tags'\]"):
        await feed.add_many([good, bad])
    assert await feed.count() == 0


async def test_update_groups_rewrites_held_groups_in_place(storage: Any) -> None:
    feed = TestNotificationFeed(1, storage=storage)
    pins = [Activity(i, Pin, 1, time=at(i)) for i in range(3)]
    loves = [Activity(9, Love, 2, time=at(10), extra_context={"n": 1})]
    await feed.add_many(pins + loves)
    before = await feed[:]
    await feed.mark_activity(before[1], seen=True, read=True)
    names = [g.group for g in before]
    stored = await storage.get_groups(feed.key, names)
    serializer = TestNotificationFeed.get_aggregated_serializer()
    seen: list[tuple[str, str]] = []

    def rewrite(key: str, record: Any) -> str | None:
        seen.append((key, record.group))
        if record.group != before[1].group:
            return None  # leave it
        group = serializer.loads(record.payload)
        group.activities[0] = Activity(0, Pin, 1, time=at(0), extra_context={"n": 2})
        return serializer.dumps(group)

    absent = TestNotificationFeed(2, storage=storage)
    args = ([feed.key, absent.key], [*names, "nothing-here"], rewrite)
    await storage.update_groups(*args, max_attempts=5)
    assert sorted(seen) == sorted((feed.key, name) for name in names)
    after = await feed[:]
    assert [(g.group, g.serialization_id) for g in after] == [
        (g.group, g.serialization_id) for g in before
    ]
    assert [a.extra_context for a in after[1].activities] == [{"n": 2}, {}, {}]
    assert after[0].activities[0].extra_context == {"n": 1}
    assert [g.is_seen() for g in after] == [False, True]
    assert await feed.get_notification_data() == {"unseen_count": 1, "unread_count": 1}
    assert await feed.count() == 2
    assert await absent.count() == 0
    versions = {n: r.version for n, r in (await storage.get_groups(feed.key, names)).items()}
    assert versions == {
        before[0].group: stored[before[0].group].version,
        before[1].group: stored[before[1].group].version + 1,
    }
    # The same rewrite again writes nothing (the payload is already the new one).
    await storage.update_groups(*args, max_attempts=5)
    again = await storage.get_groups(feed.key, names)
    assert {n: r.version for n, r in again.items()} == versions


async def test_groups_read_back_build_their_activities_when_first_touched(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    activities = [
        Activity(i % 2 + 1, Love, 7, time=at(i), extra_context={"n": i}) for i in range(4)
    ]
    await feed.add_many(activities)
    (group,) = await feed[:]
    assert not group.activities_built
    assert (group.actor_ids, group.object_ids, group.verb, group.activity_count) == (
        [1, 2],
        [7],
        Love,
        4,
    )
    assert (group.is_seen(), group.is_read()) == (False, False)
    assert group.last_activity.extra_context == {"n": 3}
    assert not group.activities_built
    assert group.activities == activities
    assert [a.extra_context for a in group.activities] == [{"n": i} for i in range(4)]
