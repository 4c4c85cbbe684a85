"""Manager behaviour (fanout, follow, unfollow, batch import), run against every backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from aiostream import (
    Activity,
    FanoutError,
    FanoutPriority,
    InProcessDispatcher,
    Manager,
    ValidationError,
)
from aiostream.fanout import FanoutChunk
from aiostream.storage.base import FeedStorage
from tests.helpers import (
    Pin,
    TestAggregatedFeed,
    TestFeed,
    TestNotificationFeed,
    TestUserFeed,
    at,
    make_activities,
)

pytestmark = pytest.mark.anyio

FOLLOWERS: dict[int, dict[str, list[int]]] = {
    1: {FanoutPriority.HIGH: [10, 11, 12], FanoutPriority.LOW: [13, 14]},
    2: {FanoutPriority.HIGH: [10]},
}


class PinManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": TestFeed,
        "aggregated": TestAggregatedFeed,
    }
    user_feed_class = TestUserFeed
    fanout_chunk_size = 2

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return FOLLOWERS.get(user_id, {})


class AsyncPinManager(PinManager):
    async def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:  # type: ignore[override]
        return FOLLOWERS.get(user_id, {})


class RecordingDispatcher(InProcessDispatcher):
    def __init__(self) -> None:
        super().__init__(max_concurrency=2)
        self.chunks: list[FanoutChunk] = []

    async def dispatch(self, chunks: Sequence[FanoutChunk], run: Any) -> None:
        self.chunks.extend(chunks)
        await super().dispatch(chunks, run)


@pytest.fixture(params=[PinManager, AsyncPinManager], ids=["sync-followers", "async-followers"])
def manager(request: pytest.FixtureRequest, storage: FeedStorage) -> PinManager:
    return request.param(storage=storage, dispatcher=RecordingDispatcher())  # type: ignore[no-any-return]


async def test_add_user_activity_fans_out(manager: PinManager) -> None:
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    assert await manager.get_user_feed(1)[:] == [activity]
    for follower in (10, 11, 12, 13, 14):
        feeds = manager.get_feeds(follower)
        assert await feeds["normal"][:] == [activity]
        (group,) = await feeds["aggregated"][:]
        assert group.activities == [activity]
        # Followers' own user feeds stay empty.
        assert await manager.get_user_feed(follower).count() == 0
    assert await manager.get_feeds(99)["normal"].count() == 0


async def test_chunks_by_priority_and_feed(manager: PinManager) -> None:
    dispatcher = manager.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    await manager.add_user_activity(1, make_activities(1)[0])
    shape = sorted((c.feed, c.priority, c.user_ids) for c in dispatcher.chunks)
    assert shape == [
        ("aggregated", "HIGH", (10, 11)),
        ("aggregated", "HIGH", (12,)),
        ("aggregated", "LOW", (13, 14)),
        ("normal", "HIGH", (10, 11)),
        ("normal", "HIGH", (12,)),
        ("normal", "LOW", (13, 14)),
    ]
    assert all(FanoutChunk.from_dict(c.to_dict()) == c for c in dispatcher.chunks)
    assert len({c.job_id for c in dispatcher.chunks}) == 6


async def test_fanout_twice_is_idempotent(manager: PinManager) -> None:
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    await manager.add_user_activity(1, activity)
    assert await manager.get_feeds(10)["normal"].count() == 1
    (group,) = await manager.get_feeds(10)["aggregated"][:]
    assert group.activity_count == 1


async def test_remove_user_activity(manager: PinManager) -> None:
    first, second = make_activities(2)
    await manager.add_user_activity(1, first)
    await manager.add_user_activity(1, second)
    await manager.remove_user_activity(1, first)
    assert await manager.get_user_feed(1)[:] == [second]
    assert await manager.get_feeds(13)["normal"][:] == [second]
    (group,) = await manager.get_feeds(13)["aggregated"][:]
    assert group.activities == [second]


async def test_update_user_activity_overwrites_payload(manager: PinManager) -> None:
    activity = Activity(1, Pin, 7, time=at(0), extra_context={"title": "old"})
    await manager.add_user_activity(1, activity)
    updated = Activity(1, Pin, 7, time=at(0), extra_context={"title": "new"})
    await manager.update_user_activity(updated)
    (read,) = await manager.get_feeds(10)["normal"][:]
    assert read == activity
    if read.extra_context != {"title": "new"}:
        # Backends that denormalize activities into each feed keep each feed's copy.
        assert read.extra_context == {"title": "old"}
    (own,) = await manager.get_user_feed(1)[:]
    assert own.extra_context in ({"title": "new"}, {"title": "old"})


async def test_follow_and_unfollow(manager: PinManager) -> None:
    pins_of_2 = make_activities(2, actor=2)
    pins_of_3 = make_activities(3, actor=3, start=10)
    for activity in pins_of_2:
        await manager.add_user_activity(2, activity)
    await manager.batch_import(3, pins_of_3, fanout=False)
    await manager.follow_user(50, 2)
    assert await manager.get_feeds(50)["normal"].count() == 2
    await manager.follow_many_users(50, [3])
    feeds = manager.get_feeds(50)
    assert await feeds["normal"][:] == list(reversed(pins_of_2 + pins_of_3))
    await manager.unfollow_user(50, 2)
    assert await feeds["normal"][:] == list(reversed(pins_of_3))
    groups = await feeds["aggregated"][:]
    assert sorted(a.actor_id for g in groups for a in g.activities) == [3, 3, 3]
    await manager.unfollow_many_users(50, [3])
    assert await feeds["normal"].count() == 0
    assert await feeds["aggregated"].count() == 0


async def test_follow_respects_limit(manager: PinManager, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PinManager, "follow_activity_limit", 3)
    await manager.batch_import(2, make_activities(5, actor=2), fanout=False)
    await manager.follow_user(60, 2)
    assert await manager.get_feeds(60)["normal"].count() == 3


async def test_follow_feeds_chooses_the_feeds_followed_into(
    manager: PinManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PinManager, "follow_feeds", ("normal",))
    await manager.batch_import(2, make_activities(2, actor=2), fanout=False)
    await manager.follow_user(61, 2)
    feeds = manager.get_feeds(61)
    assert await feeds["normal"].count() == 2
    assert await feeds["aggregated"].count() == 0


async def test_batch_import(manager: PinManager) -> None:
    activities = make_activities(7)
    await manager.batch_import(1, activities, chunk_size=3)
    assert await manager.get_user_feed(1).count() == 7
    assert await manager.get_feeds(14)["normal"].count() == 7
    await manager.batch_import(1, [])


async def test_batch_import_rejects_other_actors_before_writing(manager: PinManager) -> None:
    activities = make_activities(3) + make_activities(1, actor=2, start=9)
    with pytest.raises(ValidationError, match=r"activities\[3\]\.actor_id"):
        await manager.batch_import(1, activities)
    assert await manager.get_user_feed(1).count() == 0


async def test_bad_follower_ids_are_a_clear_error(storage: FeedStorage) -> None:
    class Broken(PinManager):
        def get_user_follower_ids(self, user_id: int) -> Any:
            return [1, 2]

    with pytest.raises(ValidationError, match="get_user_follower_ids"):
        await Broken(storage=storage).add_user_activity(1, make_activities(1)[0])


async def test_failed_chunks_are_reported_and_others_written(storage: FeedStorage) -> None:
    class Flaky(TestFeed):
        @classmethod
        async def fanout_add(cls, user_ids: Any, activities: Any, **kwargs: Any) -> None:
            if 11 in user_ids:
                raise RuntimeError("boom")
            await super().fanout_add(user_ids, activities, **kwargs)

    class FlakyManager(PinManager):
        feed_classes: ClassVar[dict[str, Any]] = {"normal": Flaky}

    manager = FlakyManager(storage=storage)
    with pytest.raises(FanoutError) as info:
        await manager.add_user_activity(1, make_activities(1)[0])
    assert [c.user_ids for c, _ in info.value.failures] == [(10, 11)]
    assert await manager.get_feeds(12)["normal"].count() == 1
    assert await manager.get_feeds(13)["normal"].count() == 1
    assert await manager.get_feeds(10)["normal"].count() == 0


async def test_notification_feed_through_manager(storage: FeedStorage) -> None:
    class NotifyManager(PinManager):
        feed_classes: ClassVar[dict[str, Any]] = {"notification": TestNotificationFeed}

    manager = NotifyManager(storage=storage)
    for activity in make_activities(3):
        await manager.add_user_activity(1, activity)
    feed = manager.get_feeds(10)["notification"]
    assert await feed.count_unseen() == 3
