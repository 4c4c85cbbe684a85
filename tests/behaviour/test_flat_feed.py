"""Flat feed behaviour, run against every backend."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from aiostream import (
    Activity,
    ActivityNotFoundError,
    InvalidQueryError,
    Love,
    SerializationError,
    ValidationError,
)
from aiostream.ids import format_key
from tests.helpers import (
    CustomActivity,
    CustomFeed,
    Pin,
    TestAggregatedFeed,
    TestFeed,
    TestUserFeed,
    at,
    make_activities,
)

pytestmark = pytest.mark.anyio


class LongFeed(TestFeed):
    max_length: ClassVar[int] = 1000
    trim_chance: ClassVar[float] = 0.0


async def test_key_format_and_escaping(make_feed: Any) -> None:
    assert make_feed(TestFeed, 42).key == "test:flat:42"
    assert format_key("feed_%(user_id)s", 42) == "feed_42"
    assert make_feed(TestFeed, "a:b{c}").key == "test:flat:a%3Ab%7Bc%7D"
    with pytest.raises(ValidationError, match="user_id"):
        make_feed(TestFeed, None)


async def test_add_count_read_delete(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    activities = make_activities(3)
    assert await feed.count() == 0
    assert await feed[:10] == []
    await feed.add(activities[0])
    await feed.add_many(activities[1:])
    assert await feed.count() == 3
    assert await feed[:10] == list(reversed(activities))
    await feed.delete()
    assert await feed.count() == 0


async def test_add_is_idempotent(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    activities = make_activities(5)
    await feed.add_many(activities)
    await feed.add_many(activities)
    await feed.add(activities[2])
    assert await feed.count() == 5


async def test_read_back_equals_written(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    original = Activity(7, Love, 42, target=9, time=at(0), extra_context={"n": 59, "s": ";;,;"})
    await feed.add(original)
    (read,) = await feed[:1]
    assert read == original
    assert (read.actor_id, read.verb, read.object_id, read.target_id) == (7, Love, 42, 9)
    assert read.time == original.time
    assert read.extra_context == {"n": 59, "s": ";;,;"}


async def test_same_object_same_instant_different_actors_do_not_collide(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    first = Activity(1, Love, 42, time=at(0))
    second = Activity(2, Love, 42, time=at(0))
    assert first.serialization_id != second.serialization_id
    await feed.add_many([first, second])
    assert await feed.count() == 2
    assert {a.actor_id for a in await feed[:5]} == {1, 2}


async def test_slicing_windows(make_feed: Any) -> None:
    feed = make_feed(LongFeed)
    activities = make_activities(20)
    await feed.add_many(activities)
    newest_first = list(reversed(activities))
    assert await feed[:5] == newest_first[:5]
    assert await feed[5:10] == newest_first[5:10]
    assert await feed[5:] == newest_first[5:]
    assert await feed[5:6] == newest_first[5:6]
    assert await feed[3] == [newest_first[3]]
    assert await feed[19] == [newest_first[19]]
    assert await feed[25] == []
    assert await feed[7:7] == []
    assert await feed[:] == newest_first
    assert len(await feed[:]) == await feed.count()
    windows = [await feed[i : i + 3] for i in range(0, 21, 3)]
    assert [a for window in windows for a in window] == newest_first


async def test_bad_slices_raise_before_reading(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    for bad in (-1, slice(-1, 3), slice(0, -2), slice(0, 5, 2), "1", 1.5, slice("a", 2)):
        with pytest.raises(InvalidQueryError):
            feed[bad]


async def test_trim_and_max_length(make_feed: Any) -> None:
    feed = make_feed(LongFeed)
    activities = make_activities(50)
    await feed.add_many(activities)
    await feed.trim(10)
    assert await feed.count() == 10
    assert await feed[:] == list(reversed(activities))[:10]
    await feed.trim(20)  # no-op: the feed is shorter
    assert await feed.count() == 10
    empty = make_feed(LongFeed, 2)
    await empty.trim()
    assert await empty.count() == 0


async def test_trim_chance_one_trims_every_write(make_feed: Any) -> None:
    class AlwaysTrim(TestFeed):
        max_length: ClassVar[int] = 5
        trim_chance: ClassVar[float] = 1.0

    feed = make_feed(AlwaysTrim)
    activities = make_activities(8)
    for activity in activities:
        await feed.add(activity)
    assert await feed.count() == 5
    assert await feed[:] == list(reversed(activities))[:5]
    # An older activity added to a full feed is trimmed straight away.
    await feed.add(make_activities(1, start=-10)[0])
    assert await feed[:] == list(reversed(activities))[:5]


async def test_readding_after_trim_keeps_order(make_feed: Any) -> None:
    feed = make_feed(LongFeed)
    activities = make_activities(10)
    await feed.add_many(activities)
    await feed.trim(5)
    await feed.add_many(activities[:5])
    assert await feed[:] == list(reversed(activities))


async def test_remove(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    activities = make_activities(4)
    await feed.add_many(activities)
    await feed.remove(activities[1])
    await feed.remove_many([activities[2].serialization_id, 12345])
    assert await feed[:] == [activities[3], activities[0]]
    await feed.remove(make_activities(1, start=99)[0])  # absent: ignored
    assert await feed.count() == 2


async def test_index_of(make_feed: Any) -> None:
    feed = make_feed(LongFeed)
    activities = make_activities(150)
    await feed.add_many(activities)
    assert await feed.index_of(activities[-1]) == 0
    assert await feed.index_of(activities[110]) == 39
    assert await feed.index_of(activities[0].serialization_id) == 149
    with pytest.raises(ActivityNotFoundError):
        await feed.index_of(make_activities(1, start=500)[0])


async def test_filters_are_exact(make_feed: Any) -> None:
    feed = make_feed(LongFeed)
    # Several activities in the same microsecond: exact id filters must split them.
    same_instant = [Activity(actor, Love, 42, time=at(5)) for actor in range(10)]
    others = make_activities(10)
    await feed.add_many(same_instant + others)
    ids = sorted(a.serialization_id for a in same_instant + others)
    pivot = sorted(a.serialization_id for a in same_instant)[4]
    gte = await feed.filter(activity_id__gte=pivot)[:]
    gt = await feed.filter(activity_id__gt=pivot)[:]
    lte = await feed.filter(activity_id__lte=pivot)[:]
    lt = await feed.filter(activity_id__lt=pivot)[:]
    assert [a.serialization_id for a in gte] == sorted((i for i in ids if i >= pivot), reverse=True)
    assert [a.serialization_id for a in gt] == sorted((i for i in ids if i > pivot), reverse=True)
    assert [a.serialization_id for a in lte] == sorted((i for i in ids if i <= pivot), reverse=True)
    assert [a.serialization_id for a in lt] == sorted((i for i in ids if i < pivot), reverse=True)
    both = await feed.filter(activity_id__gt=ids[2], activity_id__lte=ids[8])[:]
    assert [a.serialization_id for a in both] == list(reversed(ids[3:9]))
    assert await feed.filter(activity_id__gt=ids[-1])[:] == []
    assert await feed.filter(activity_id__lt=0)[:] == []
    assert len(await feed.filter(activity_id__gte=-5)[:]) == 20


async def test_filter_does_not_mutate_original(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    activities = make_activities(10)
    await feed.add_many(activities)
    filtered = feed.filter(activity_id__lte=activities[4].serialization_id)
    assert len(await filtered[:]) == 5
    assert len(await filtered[:]) == 5  # the filter survives a read
    assert len(await feed[:]) == 10


async def test_bad_filters_raise_at_filter_time(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    with pytest.raises(InvalidQueryError, match="activity_id__foo"):
        feed.filter(activity_id__foo=1)
    with pytest.raises(InvalidQueryError, match="activity_id__gt"):
        feed.filter(activity_id__gt="1e5")  # a decimal str id is a bound; this is none
    with pytest.raises(InvalidQueryError, match="order_by"):
        feed.order_by("time")
    with pytest.raises(InvalidQueryError, match="order_by"):
        feed.order_by("activity_id", "-activity_id")


async def test_order_by_and_pagination(make_feed: Any) -> None:
    feed = make_feed(LongFeed)
    activities = make_activities(30)
    await feed.add_many(activities)
    ascending = await feed.order_by("activity_id")[:]
    descending = await feed.order_by("-activity_id")[:]
    assert ascending == activities
    assert descending == list(reversed(activities))
    assert await feed.order_by("activity_id")[5:8] == activities[5:8]
    pages: list[Activity] = []
    cursor = 0
    while page := await feed.filter(activity_id__gt=cursor).order_by("activity_id")[:7]:
        pages.extend(page)
        cursor = page[-1].serialization_id
    assert pages == activities


async def test_async_iteration_pages_through_everything(make_feed: Any) -> None:
    class SmallPages(LongFeed):
        page_size: ClassVar[int] = 7

    feed = make_feed(SmallPages)
    activities = make_activities(30)
    await feed.add_many(activities)
    assert [a async for a in feed] == list(reversed(activities))
    assert [a async for a in feed.order_by("activity_id")] == activities
    limited = feed.filter(activity_id__lte=activities[9].serialization_id)
    assert [a async for a in limited] == list(reversed(activities[:10]))


async def test_custom_activity_class_round_trips(make_feed: Any) -> None:
    feed = make_feed(CustomFeed)
    activity = CustomActivity(1, Pin, 7, time=at(0))
    await feed.add(activity)
    (read,) = await feed[:1]
    assert type(read) is CustomActivity
    assert read.mymethod() == "custom 7"


async def test_wrong_activity_class_is_rejected_before_writing(make_feed: Any) -> None:
    feed = make_feed(CustomFeed)
    with pytest.raises(SerializationError, match="CustomActivity"):
        await feed.add_many(
            [CustomActivity(1, Pin, 1, time=at(0)), Activity(1, Pin, 2, time=at(1))]
        )
    assert await feed.count() == 0


async def test_unserializable_extra_context_writes_nothing(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    good = make_activities(1)[0]
    bad = Activity(1, Pin, 2, time=at(1), extra_context={"tags": {"a", "b"}})
    with pytest.raises(SerializationError, match=r"extra_context\['tags'\]"):
        await feed.add_many([good, bad])
    assert await feed.count() == 0


async def test_activity_storage_hooks(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    activity = make_activities(1)[0]
    await feed.insert_activity(activity)
    assert await feed.storage.load_activities([activity.serialization_id]) != {}
    await feed.remove_activity(activity)
    assert await feed.storage.load_activities([activity.serialization_id]) == {}


async def test_activities_deleted_from_the_activity_storage_are_never_shown(
    make_feed: Any,
) -> None:
    class SmallPages(LongFeed):
        page_size: ClassVar[int] = 2

    feed = make_feed(SmallPages)
    groups = make_feed(TestAggregatedFeed)
    activities = make_activities(10)
    await feed.add_many(activities)
    await groups.add_many(activities)
    # The two newest (a whole first page of `async for`) and three further down.
    deleted = [activities[i] for i in (9, 8, 6, 3, 2)]
    for activity in deleted:
        await feed.remove_activity(activity)
    live = [a for a in reversed(activities) if a not in deleted]  # 7, 5, 4, 1, 0
    # count() counts timeline entries, deleted activities included until a read meets them.
    assert await feed.count() == 10
    # A page of n holds n live activities whenever n exist; offsets count live ones.
    assert await feed[:2] == live[:2]
    assert await feed[1:4] == live[1:4]
    assert await feed[3] == live[3:4]
    assert await feed[4:10] == live[4:]
    assert await feed.order_by("activity_id")[:3] == list(reversed(live))[:3]
    assert await feed.filter(activity_id__lt=activities[7].serialization_id)[:2] == live[1:3]
    # Iteration yields every live activity, and only those.
    assert [a async for a in feed] == live
    assert await feed[:] == live
    # Reads removed the entries they met whose activity was gone.
    assert await feed.count() == len(live)
    # Groups keep the copies they embed: deleting a stored activity leaves them alone.
    (group,) = await groups[:]
    assert group.activities == activities


async def test_a_window_short_of_deleted_activities_at_the_edge_of_a_filter(
    make_feed: Any,
) -> None:
    """The entries a read removes leave the page short, and nothing lies beyond the
    filter's bound to fill it: the page holds the live entries there are."""
    feed = make_feed(TestFeed)
    activities = make_activities(5)
    await feed.add_many(activities)
    await feed.remove_activity(activities[3])
    edge = feed.filter(activity_id__gte=activities[2].serialization_id)
    assert await edge[:3] == [activities[4], activities[2]]
    assert await edge.order_by("activity_id")[:3] == [activities[2], activities[4]]
    assert await feed.count() == 4


async def test_on_update_feed_hook(make_feed: Any) -> None:
    calls: list[tuple[int, int]] = []

    class Hooked(TestFeed):
        async def on_update_feed(self, new: Any, deleted: Any) -> None:
            calls.append((len(new), len(deleted)))

    feed = make_feed(Hooked)
    activities = make_activities(3)
    await feed.add_many(activities)
    await feed.remove(activities[0])
    assert calls == [(3, 0), (0, 1)]


async def test_user_feed_is_long(make_feed: Any) -> None:
    feed = make_feed(TestUserFeed)
    assert feed.max_length == 10**6
    await feed.add_many(make_activities(120))
    await feed.trim()
    assert await feed.count() == 120


async def test_feeds_are_isolated(make_feed: Any) -> None:
    one, two = make_feed(TestFeed, 1), make_feed(TestFeed, "1:x")
    await one.add_many(make_activities(2))
    assert await two.count() == 0
    await two.delete()
    assert await one.count() == 2


async def test_plain_iteration_and_membership_are_refused(make_feed: Any) -> None:
    # Without __iter__, `for` falls back to __getitem__(0), (1), ... and never ends.
    feed = make_feed(TestFeed)
    (activity,) = make_activities(1)
    await feed.add(activity)
    with pytest.raises(TypeError, match="async for"):
        iter(feed)
    with pytest.raises(TypeError, match="index_of"):
        _ = activity in feed
    assert [a async for a in feed] == [activity]
