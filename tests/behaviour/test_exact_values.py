"""Values at the edges read back exactly, and bad input is refused before any write, the
same way on every backend: wide ints, times out of range, lone surrogates, deep nesting."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from aiostream import Activity, AggregatedActivity, Love, SerializationError, ValidationError
from aiostream.aggregators import BaseAggregator
from aiostream.serializers import MAX_NESTING
from aiostream.storage.base import FeedStorage
from tests.helpers import TestAggregatedFeed, TestFeed, TestNotificationFeed, at

pytestmark = pytest.mark.anyio

WIDE_INTS = [2**64 + 7, -(2**63) - 1, 10**30]


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def wide(n: int, seconds: float) -> Activity:
    extra = {"n": n, "l": [n, -n, {"n": n}], "s": "x"}
    return Activity(n, Love, n + 1, target=-n, time=at(seconds), extra_context=extra)


def assert_exact(back: Activity, original: Activity) -> None:
    fields = (back.actor_id, back.object_id, back.target_id)
    assert fields == (original.actor_id, original.object_id, original.target_id)
    assert [type(f) for f in fields] == [int, int, int]
    assert repr(back.extra_context) == repr(original.extra_context)  # ints stay ints
    assert back.time == original.time
    assert back.serialization_id == original.serialization_id


async def test_wide_ints_round_trip_and_the_read_back_activity_removes(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    originals = [wide(n, i) for i, n in enumerate(WIDE_INTS)]
    await feed.add_many(originals)
    page = await feed[:]
    assert len(page) == 3
    for back, original in zip(page, reversed(originals), strict=True):
        assert_exact(back, original)
    for i, back in enumerate(page):
        await feed.remove(back)  # the read-back activity has the written one's id
        assert await feed.count() == 2 - i


async def test_wide_ints_round_trip_in_groups(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    originals = [wide(n, i) for i, n in enumerate(WIDE_INTS)]
    await feed.add_many(originals)
    (group,) = await feed[:]
    for back, original in zip(group.activities, originals, strict=True):
        assert_exact(back, original)
    await feed.remove_many(group.activities[:2])
    (group,) = await feed[:]
    assert [a.serialization_id for a in group.activities] == [originals[2].serialization_id]
    assert_exact(group.activities[0], originals[2])


async def test_nesting_at_the_limit_round_trips(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    original = Activity(1, Love, 2, time=at(0), extra_context={"x": nested(MAX_NESTING)})
    await feed.add(original)
    assert (await feed[:])[0].extra_context == original.extra_context


def _out_of_range_later() -> Activity:
    activity = Activity(1, Love, 2, time=at(5))
    activity.time = dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    return activity


BAD: dict[str, tuple[type[Exception], str, Callable[[], Activity]]] = {
    "surrogate": (
        SerializationError,
        r"extra_context\['s'\]",
        lambda: Activity(1, Love, 2, time=at(5), extra_context={"s": "a\ud800"}),
    ),
    "surrogate-in-key": (
        SerializationError,
        r"extra_context\['d'\]\[0\]\['\\udfff'\]",
        lambda: Activity(1, Love, 2, time=at(5), extra_context={"d": [{"\udfff": 1}]}),
    ),
    "deep": (
        SerializationError,
        r"extra_context\['x'\](\[0\]){100}",
        lambda: Activity(1, Love, 2, time=at(5), extra_context={"x": nested(1_200)}),
    ),
    "unwritable-int": (
        SerializationError,
        r"extra_context\['n'\]",
        lambda: Activity(1, Love, 2, time=at(5), extra_context={"n": 10**5000}),
    ),
    "time-set-out-of-range": (ValidationError, "time", _out_of_range_later),
}


@pytest.mark.parametrize("feed_class", [TestFeed, TestAggregatedFeed, TestNotificationFeed])
@pytest.mark.parametrize("case", list(BAD))
async def test_bad_input_in_a_batch_writes_nothing(
    make_feed: Any, storage: FeedStorage, feed_class: type[Any], case: str
) -> None:
    error, field, make_bad = BAD[case]
    feed = make_feed(feed_class)
    good = Activity(7, Love, 8, time=at(1))
    with pytest.raises(error, match=f"^{field}: ") as raised:
        await feed.add_many([good, make_bad()])
    assert isinstance(raised.value, ValidationError)
    assert await feed.count() == 0
    assert await storage.load_activities([good.serialization_id]) == {}
    with pytest.raises(error, match=f"^{field}: "):
        await feed_class.fanout_add([1, 2], [good, make_bad()], storage=storage)
    assert await feed.count() == 0
    assert await make_feed(feed_class, 2).count() == 0


@pytest.mark.parametrize(
    "time",
    [
        dt.datetime(1969, 12, 31, 23, 59, 59),
        dt.datetime(2112, 9, 18),
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    ],
    ids=["1969", "2112-09-18", "year-1-at-+01"],
)
def test_times_out_of_range_are_refused_when_the_activity_is_made(time: dt.datetime) -> None:
    with pytest.raises(ValidationError, match=r"^time: ") as raised:
        Activity(1, Love, 2, time=time)
    assert raised.value.field == "time"


@pytest.mark.parametrize("feed_class", [TestFeed, TestAggregatedFeed, TestNotificationFeed])
async def test_user_ids_with_lone_surrogates_are_refused(
    make_feed: Any, storage: FeedStorage, feed_class: type[Any]
) -> None:
    with pytest.raises(ValidationError, match=r"^user_id: .*surrogate"):
        make_feed(feed_class, "u\ud800")
    good = Activity(7, Love, 8, time=at(1))
    with pytest.raises(ValidationError, match=r"^user_id: .*surrogate"):
        await feed_class.fanout_add([1, "\udc80"], [good], storage=storage)
    assert await make_feed(feed_class, 1).count() == 0
    astral = make_feed(feed_class, "u\U0001f422\u200f")  # any other character is fine
    await astral.add(good)
    assert await astral.count() == 1


class ByContext(BaseAggregator):
    def get_group(self, activity: Activity) -> str:
        return str(activity.extra_context["g"])


class ByContextFeed(TestAggregatedFeed):
    aggregator_class = ByContext


class ByContextNotifications(TestNotificationFeed):
    aggregator_class = ByContext


@pytest.mark.parametrize("feed_class", [ByContextFeed, ByContextNotifications])
async def test_group_names_with_lone_surrogates_are_refused(
    make_feed: Any, storage: FeedStorage, feed_class: type[Any]
) -> None:
    feed = make_feed(feed_class)
    good = Activity(7, Love, 8, time=at(1), extra_context={"g": "ok"})
    bad = Activity(7, Love, 9, time=at(2), extra_context={"g": "g\ud800"})
    with pytest.raises(ValidationError, match=r"^group: .*surrogate"):
        await feed.add_many([good, bad])
    assert await feed.count() == 0
    with pytest.raises(ValidationError, match=r"^group: .*surrogate"):
        await feed.add_many_aggregated([AggregatedActivity("g\ud800", [good])])
    assert await feed.count() == 0
    assert await storage.load_activities([good.serialization_id]) == {}
