"""Every backend answers the same at the edges: bounds of any size are clamped, not
overflowed, and an activity larger than the one documented limit is refused by all of
them before anything is written."""

from __future__ import annotations

import datetime as dt

import pytest

from aiostream import Activity, Love, SerializationError
from aiostream.serializers import MAX_ACTIVITY_BYTES
from aiostream.storage.base import FeedStorage
from tests.behaviour.test_lifecycle import LifecycleManager
from tests.helpers import TestAggregatedFeed, TestFeed, at, make_activities

pytestmark = pytest.mark.anyio

HUGE = [10**17, 2**53 + 1, 2**63, 2**64, 2**70]


async def test_flat_bounds_of_any_size(storage: FeedStorage) -> None:
    feed = TestFeed(1, storage=storage)
    activities = make_activities(5)
    await feed.add_many(activities)
    newest_first = sorted(activities, reverse=True)
    for huge in HUGE:
        assert await feed[0:huge] == newest_first
        assert await feed[2:huge] == newest_first[2:]
        assert await feed[huge:] == []
        assert await feed[huge : huge + 5] == []
        assert await feed.order_by("activity_id")[1:huge] == sorted(activities)[1:]
    await feed.trim(2**70)
    assert await feed.count() == 5


async def test_group_bounds_of_any_size(storage: FeedStorage) -> None:
    feed = TestAggregatedFeed(1, storage=storage)
    await feed.add_many(make_activities(3, step=86400))  # three days: three groups
    groups = await feed[:]
    assert len(groups) == 3
    for huge in HUGE:
        assert await feed[0:huge] == groups
        assert await feed[huge:] == []
        assert await feed[1 : huge + 1] == groups[1:]
    await feed.trim(2**70)
    assert await feed.count() == 3


async def test_a_follow_copies_with_a_limit_of_any_size(storage: FeedStorage) -> None:
    manager = LifecycleManager(storage=storage)
    for activity in make_activities(4, actor=2):
        await manager.add_user_activity(2, activity)
    await manager.follow_user(7, 2, activity_copy_limit=2**70)
    assert len(await manager.get_feeds(7)["normal"][:]) == 4


async def test_an_activity_over_the_size_limit_is_refused_everywhere(
    storage: FeedStorage,
) -> None:
    manager = LifecycleManager(storage=storage)
    fits = Activity(1, Love, 1, time=at(1), extra_context={"x": "a" * (MAX_ACTIVITY_BYTES - 200)})
    await manager.add_user_activity(1, fits)  # just under: every backend stores it
    assert [a.extra_context for a in await manager.get_feeds(10)["normal"][:]] == [
        fits.extra_context
    ]
    # Over it (in bytes: two-byte characters), whatever the backend: nothing written.
    big = Activity(1, Love, 2, time=at(2), extra_context={"x": "é" * (MAX_ACTIVITY_BYTES // 2)})
    with pytest.raises(SerializationError, match=r"^extra_context: .*MAX_ACTIVITY_BYTES"):
        await manager.add_user_activity(1, big)
    with pytest.raises(SerializationError):
        await manager.batch_import(1, [big])
    with pytest.raises(SerializationError):
        await TestFeed(3, storage=storage).add(big)
    assert [a.object_id for a in await manager.get_feeds(10)["normal"][:]] == [1]
    (group,) = await manager.get_feeds(10)["aggregated"][:]
    assert group.activity_count == 1
    assert await manager.get_activities([big.serialization_id]) == []


async def test_a_time_with_fold_reads_back_as_it_went_in(storage: FeedStorage) -> None:
    """``fold=1`` (the second of a repeated local hour) on a naive or a UTC time names
    the same instant as ``fold=0``: it is normalised on the way in, so what is read back
    equals what was written, field by field."""
    feed = TestFeed(1, storage=storage)
    naive = dt.datetime(2024, 5, 1, 12, 0, fold=1)
    utc = dt.datetime(2024, 5, 1, 13, 0, fold=1, tzinfo=dt.UTC)
    written = [Activity(1, Love, 1, time=naive), Activity(1, Love, 2, time=utc)]
    assert [a.time.fold for a in written] == [0, 0]
    await feed.add_many(written)
    back = await feed[:]
    assert [(a.object_id, a.time, a.time.fold) for a in back] == [
        (2, utc.replace(fold=0), 0),
        (1, naive.replace(tzinfo=dt.UTC, fold=0), 0),
    ]
