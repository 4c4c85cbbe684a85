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
    RecentVerbAggregator,
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


class EveryKindManager(PinManager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": TestFeed,
        "aggregated": TestAggregatedFeed,
        "notification": TestNotificationFeed,
    }


async def test_update_user_activity_replaces_every_copy_and_adds_nothing(
    storage: FeedStorage,
) -> None:
    dispatcher = RecordingDispatcher()
    manager = EveryKindManager(storage=storage, dispatcher=dispatcher)
    # Two pins of one object by one actor: one group in each aggregated / notification feed.
    activity = Activity(1, Pin, 7, time=at(0), extra_context={"title": "old"})
    other = Activity(1, Pin, 7, time=at(5), extra_context={"title": "other"})
    await manager.add_user_activity(1, activity)
    await manager.add_user_activity(1, other)
    # Follower 10 removes the activity from every feed; 11 has seen (and read) everything.
    for feed in manager.get_feeds(10).values():
        await feed.remove(activity)
    notifications_11 = manager.get_feeds(11)["notification"]
    await notifications_11.mark_all(seen=True, read=True)
    followers = (10, 11, 12, 13, 14)
    markers = {
        f: await manager.get_feeds(f)["notification"].get_notification_data() for f in followers
    }
    assert markers[11] == {"unseen_count": 0, "unread_count": 0}
    assert markers[12] == {"unseen_count": 1, "unread_count": 1}

    updated = Activity(1, Pin, 7, time=at(0), extra_context={"title": "new"})
    dispatcher.chunks.clear()
    await manager.update_user_activity(updated)
    assert {c.operation for c in dispatcher.chunks} == {"update"}
    for chunk in dispatcher.chunks:  # a retried job changes nothing more
        await manager.run(chunk)

    def titles(activities: Any) -> dict[int, Any]:
        return {a.object_id * 100 + a.time.second: a.extra_context["title"] for a in activities}

    new, kept = {700: "new", 705: "other"}, {705: "other"}
    (own,) = [a for a in await manager.get_user_feed(1)[:] if a == activity]
    assert own.extra_context == {"title": "new"}
    for follower in followers:
        feeds = manager.get_feeds(follower)
        expected = kept if follower == 10 else new
        assert titles(await feeds["normal"][:]) == expected, follower
        for name in ("aggregated", "notification"):
            (group,) = await feeds[name][:]
            assert titles(group.activities) == expected, (follower, name)
            assert group.activity_count == len(expected)
            assert await feeds[name].count() == 1
        assert await feeds["notification"].get_notification_data() == markers[follower]
        (note,) = await feeds["notification"][:]
        assert note.is_seen() == note.is_read() == (follower == 11)


async def test_update_of_an_activity_that_was_never_stored_is_refused(
    manager: PinManager,
) -> None:
    activity = Activity(1, Pin, 7, time=at(0), extra_context={"title": "old"})
    await manager.add_user_activity(1, activity)
    # Another time is another activity (the id is made of time, actor, verb, object, target).
    moved = Activity(1, Pin, 7, time=at(1), extra_context={"title": "new"})
    with pytest.raises(ValidationError, match="activity"):
        await manager.update_user_activity(moved)
    assert await manager.get_feeds(10)["normal"][:] == [activity]
    assert await manager.get_user_feed(1).count() == 1


async def test_update_that_would_move_an_activity_to_another_group_is_refused(
    storage: FeedStorage,
) -> None:
    class ByBoard(RecentVerbAggregator):
        def get_group(self, activity: Activity) -> str:
            return str(activity.extra_context.get("board"))

    class BoardFeed(TestAggregatedFeed):
        aggregator_class = ByBoard

    class BoardManager(PinManager):
        feed_classes: ClassVar[dict[str, Any]] = {"normal": TestFeed, "boards": BoardFeed}

    manager = BoardManager(storage=storage)
    activity = Activity(1, Pin, 7, time=at(0), extra_context={"board": "a"})
    await manager.add_user_activity(1, activity)
    with pytest.raises(ValidationError, match="extra_context"):
        await manager.update_user_activity(
            Activity(1, Pin, 7, time=at(0), extra_context={"board": "b"})
        )
    (group,) = await manager.get_feeds(10)["boards"][:]
    assert group.group == "a" and group.activities[0].extra_context == {"board": "a"}
    await manager.update_user_activity(
        Activity(1, Pin, 7, time=at(0), extra_context={"board": "a", "title": "t"})
    )
    (group,) = await manager.get_feeds(10)["boards"][:]
    assert group.activities[0].extra_context == {"board": "a", "title": "t"}


async def test_unfollow_removes_activities_past_deleted_ones(storage: FeedStorage) -> None:
    class SmallPages(TestFeed):
        page_size: ClassVar[int] = 2

    class SmallPagesManager(PinManager):
        feed_classes: ClassVar[dict[str, Any]] = {"normal": SmallPages}

    manager = SmallPagesManager(storage=storage)
    pins = make_activities(6, actor=2)
    await manager.batch_import(2, pins, fanout=False)
    await manager.follow_user(50, 2)
    feed = manager.get_feeds(50)["normal"]
    assert await feed.count() == 6
    # The two newest (the first page) are deleted from the activity storage.
    for activity in pins[4:]:
        await feed.remove_activity(activity)
    await manager.unfollow_user(50, 2)
    assert await feed[:] == []
    assert await feed.count() == 0


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


class BigManager(PinManager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": TestFeed,
        "aggregated": TestAggregatedFeed,
        "notification": TestNotificationFeed,
    }


async def test_activities_with_a_megabyte_of_extra_context_fan_out(storage: FeedStorage) -> None:
    """Big payloads are split into batches a server takes, never refused: a 1 MB
    ``extra_context`` (and a batch of several) reaches every kind of feed intact."""
    manager = BigManager(storage=storage)
    big = [
        Activity(1, Pin, i, time=at(i), extra_context={"blob": chr(97 + i) * 2**20})
        for i in range(3)
    ]
    await manager.add_user_activity(1, big[0])
    await manager.batch_import(1, big[1:], chunk_size=2)
    newest_first = list(reversed(big))
    assert await manager.get_user_feed(1)[:] == newest_first
    for follower in (10, 13):
        feeds = manager.get_feeds(follower)
        read = await feeds["normal"][:]
        assert read == newest_first
        assert [a.extra_context for a in read] == [a.extra_context for a in newest_first]
        for name in ("aggregated", "notification"):
            held = [a for group in await feeds[name][:] for a in group.activities]
            assert sorted(held) == sorted(big)
            assert sorted(a.extra_context["blob"] for a in held) == [
                a.extra_context["blob"] for a in big
            ]
