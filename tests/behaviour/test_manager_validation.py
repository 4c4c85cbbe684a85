"""The Manager checks its configuration and every follower id before writing anything."""

from __future__ import annotations

from typing import Any

import pytest

from aiostream import (
    Activity,
    ConfigurationError,
    FanoutPriority,
    InProcessDispatcher,
    Manager,
    RecentVerbAggregator,
    ValidationError,
)
from aiostream.storage.base import FeedStorage
from tests.behaviour.test_manager import PinManager
from tests.helpers import TestAggregatedFeed, make_activities

pytestmark = pytest.mark.anyio


def manager_returning(followers: Any, storage: FeedStorage) -> Manager:
    class Returning(PinManager):
        def get_user_follower_ids(self, user_id: int) -> Any:
            return followers

    return Returning(storage=storage)


@pytest.mark.parametrize(
    ("followers", "field"),
    [
        ({FanoutPriority.HIGH: "23"}, r"\['HIGH'\]: expected a collection"),
        (
            {FanoutPriority.HIGH: [10, None, 11]},
            r"\['HIGH'\]\[1\]: expected an int, a str or a UUID",
        ),
        ({FanoutPriority.HIGH: [10], FanoutPriority.LOW: 7}, r"\['LOW'\]: expected a collection"),
        ({FanoutPriority.HIGH: [10, ""]}, r"\['HIGH'\]\[1\]: must not be empty"),
        ({FanoutPriority.HIGH: [10, True]}, r"\['HIGH'\]\[1\]: expected an int, a str or a UUID"),
        ({FanoutPriority.HIGH: {10: 1}}, r"\['HIGH'\]: expected a collection"),
        ([10, 11], r"must return a mapping"),
    ],
)
async def test_bad_follower_ids_fail_before_any_write(
    storage: FeedStorage, followers: Any, field: str
) -> None:
    manager = manager_returning(followers, storage)
    (activity,) = make_activities(1)
    with pytest.raises(ValidationError, match=field):
        await manager.add_user_activity(1, activity)
    # Not even the user's own feed was written, and no follower got anything.
    assert await manager.get_user_feed(1).count() == 0
    for user_id in (2, 3, 10, 11, 23):
        assert await manager.get_feeds(user_id)["normal"].count() == 0


async def test_bad_follower_ids_fail_removal_before_any_write(storage: FeedStorage) -> None:
    manager = PinManager(storage=storage)
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    broken = manager_returning({FanoutPriority.HIGH: [10, None]}, storage)
    with pytest.raises(ValidationError, match=r"\[1\]"):
        await broken.remove_user_activity(1, activity)
    assert await manager.get_user_feed(1)[:] == [activity]


async def test_follower_hook_is_called_by_keyword(storage: FeedStorage) -> None:
    # Stream Framework calls get_user_follower_ids(user_id=...): a keyword-only hook works.
    class KeywordOnly(PinManager):
        def get_user_follower_ids(self, *, user_id: int) -> dict[str, list[int]]:  # type: ignore[override]
            return {FanoutPriority.HIGH: [user_id + 1]}

    manager = KeywordOnly(storage=storage)
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    assert await manager.get_feeds(2)["normal"][:] == [activity]


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("fanout_chunk_size", 0),
        ("fanout_chunk_size", -5),
        ("fanout_chunk_size", 2.5),
        ("follow_activity_limit", -1),
        ("follow_feeds", ("normal", "missing")),
    ],
)
def test_bad_manager_configuration_is_refused(attribute: str, value: Any) -> None:
    bad = type("Bad", (PinManager,), {attribute: value})
    with pytest.raises(ConfigurationError, match=attribute):
        bad()


def test_dispatcher_concurrency_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        InProcessDispatcher(max_concurrency=0)


async def test_batch_import_refuses_a_zero_chunk_size(storage: FeedStorage) -> None:
    manager = PinManager(storage=storage)
    with pytest.raises(ValidationError, match="chunk_size"):
        await manager.batch_import(1, make_activities(3), chunk_size=0)
    assert await manager.get_user_feed(1).count() == 0


@pytest.mark.parametrize("targets", ["23", [2, None]])
async def test_bad_follow_targets_are_refused(storage: FeedStorage, targets: Any) -> None:
    manager = PinManager(storage=storage)
    await manager.batch_import(2, make_activities(2, actor=2), fanout=False)
    with pytest.raises(ValidationError, match="target_ids"):
        await manager.follow_many_users(50, targets)
    assert await manager.get_feeds(50)["normal"].count() == 0


class IntGroupAggregator(RecentVerbAggregator):
    def get_group(self, activity: Activity) -> int:
        return int(activity.object_id) % 2


class IntGroupFeed(TestAggregatedFeed):
    aggregator_class = IntGroupAggregator


async def test_aggregator_may_return_int_groups(make_feed: Any) -> None:
    # Stream Framework accepts any group value that formats into its key; ints are common.
    feed = make_feed(IntGroupFeed)
    activities = make_activities(4)
    await feed.add_many(activities)
    groups = await feed[:]
    assert sorted(g.group for g in groups) == ["0", "1"]
    assert {g.group: len(g.activities) for g in groups} == {"0": 2, "1": 2}
    assert await feed.contains(activities[1])
    await feed.remove(activities[1])
    assert {g.group: len(g.activities) for g in await feed[:]} == {"0": 2, "1": 1}


def test_merge_ranks_new_groups_as_aggregate_does() -> None:
    aggregator = IntGroupAggregator()
    activities = make_activities(4)
    new, changed, deleted = aggregator.merge([], activities)
    assert [g.group for g in new] == [g.group for g in aggregator.aggregate(activities)]
    assert [g.group for g in new] == ["1", "0"]  # newest update first
    assert (changed, deleted) == ([], [])
