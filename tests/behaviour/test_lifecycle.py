"""The activity lifecycle of hosted feed APIs (ids of any kind, foreign ids, get by id,
removal by id or foreign id), run against every backend."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import pytest

from aiostream import (
    Activity,
    ConfigurationError,
    FanoutPriority,
    Love,
    Manager,
    ValidationError,
)
from aiostream.ids import foreign_activity_id
from aiostream.metrics import NoopMetrics
from aiostream.storage.base import FeedStorage
from tests.helpers import (
    Pin,
    TestAggregatedFeed,
    TestFeed,
    TestNotificationFeed,
    TestUserFeed,
    at,
)

pytestmark = pytest.mark.anyio

ALICE = uuid.UUID("3f2a0c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b")


class LifecycleManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": TestFeed,
        "aggregated": TestAggregatedFeed,
        "notification": TestNotificationFeed,
    }
    user_feed_class = TestUserFeed
    fanout_chunk_size = 2

    def get_user_follower_ids(self, user_id: Any) -> dict[str, list[Any]]:
        return {FanoutPriority.HIGH: [10, "11", ALICE]}


@pytest.fixture
def manager(storage: FeedStorage) -> LifecycleManager:
    return LifecycleManager(storage=storage)


async def test_int_str_and_uuid_ids_are_different_and_read_back_exactly(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    activities = [
        Activity(7, Pin, 1, time=at(0)),
        Activity("7", Pin, 1, time=at(0)),
        Activity(ALICE, Pin, "pin:1", target=str(ALICE), time=at(0)),
        Activity(str(ALICE), Pin, "pin:1", target=ALICE, time=at(0)),
    ]
    assert len({a.serialization_id for a in activities}) == 4
    await feed.add_many(activities)
    back = sorted(await feed[:], key=lambda a: a.serialization_id)
    assert back == sorted(activities, key=lambda a: a.serialization_id)
    fields = {(type(a.actor_id), a.actor_id, a.object_id, type(a.target_id)) for a in back}
    assert fields == {
        (int, 7, 1, type(None)),
        (str, "7", 1, type(None)),
        (uuid.UUID, ALICE, "pin:1", str),
        (str, str(ALICE), "pin:1", uuid.UUID),
    }


async def test_notification_groups_tell_str_and_int_objects_apart(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add_many([Activity(1, Love, 7, time=at(0)), Activity(2, Love, "7", time=at(1))])
    newer, older = await feed[:]
    assert (newer.object_ids, older.object_ids) == (["7"], [7])
    assert newer.group != older.group


async def test_7_and_the_str_7_are_one_feed(make_feed: Any) -> None:
    await make_feed(TestFeed, 7).add(Activity(1, Pin, 1, time=at(0)))
    assert await make_feed(TestFeed, "7").count() == 1
    await make_feed(TestFeed, ALICE).add(Activity(1, Pin, 2, time=at(1)))
    assert await make_feed(TestFeed, str(ALICE)).count() == 1


async def test_a_foreign_id_is_stored_and_names_the_activity(make_feed: Any) -> None:
    feed = make_feed(TestAggregatedFeed)
    pin = Activity(1, Pin, 42, time=at(0), foreign_id="pin:42")
    assert pin.serialization_id == foreign_activity_id("pin:42", at(0))
    await feed.add(pin)
    # The same foreign id and time is the same activity, whatever else it says.
    await feed.add(Activity(2, Pin, 43, time=at(0), foreign_id="pin:42"))
    (group,) = await feed[:]
    assert [(a.foreign_id, a.actor_id) for a in group.activities] == [("pin:42", 1)]
    flat = make_feed(TestFeed)
    await flat.add(pin)
    assert [a.foreign_id for a in await flat[:]] == ["pin:42"]


@pytest.mark.parametrize("bad", ["", 42, b"pin", None])
def test_a_foreign_id_must_be_a_non_empty_str(bad: Any) -> None:
    if bad is None:
        assert Activity(1, Pin, 2, time=at(0), foreign_id=None).foreign_id is None
        return
    with pytest.raises(ValidationError, match=r"^foreign_id: "):
        Activity(1, Pin, 2, time=at(0), foreign_id=bad)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("actor", {"actor": ""}),
        ("object", {"object": 1.5}),
        ("target", {"target": True}),
        ("actor", {"actor": "\ud800"}),
    ],
)
def test_bad_ids_are_refused_naming_the_field(field: str, kwargs: dict[str, Any]) -> None:
    values = {"actor": 1, "object": 2, **kwargs}
    with pytest.raises(ValidationError, match=f"^{field}: "):
        Activity(values.pop("actor"), Pin, values.pop("object"), time=at(0), **values)


async def test_get_activities_by_id_and_by_foreign_id(manager: LifecycleManager) -> None:
    pins = [Activity(1, Pin, i, time=at(i), foreign_id=f"pin:{i}") for i in range(3)]
    for pin in pins:
        await manager.add_user_activity(1, pin)
    ids = [pins[2].serialization_id, 12345, pins[0].serialization_id]
    assert await manager.get_activities(ids) == [pins[2], pins[0]]
    by_foreign = await manager.get_activities(
        foreign_ids=[("pin:1", at(1)), ("pin:1", at(2)), ("pin:0", at(0))]
    )
    assert by_foreign == [pins[1], pins[0]]
    assert [a.foreign_id for a in by_foreign] == ["pin:1", "pin:0"]
    assert await manager.get_activities([]) == []


async def test_get_activities_checks_its_arguments(manager: LifecycleManager) -> None:
    with pytest.raises(ValidationError, match=r"^ids\[1\]: "):
        await manager.get_activities([1, "2.0"])  # (a decimal str id is an id; this is none)
    with pytest.raises(ValidationError, match=r"^foreign_ids\[0\]: "):
        await manager.get_activities(foreign_ids=[("", at(0))])
    with pytest.raises(ValidationError, match=r"^ids: "):
        await manager.get_activities()
    with pytest.raises(ValidationError, match=r"^ids: "):
        await manager.get_activities([1], foreign_ids=[])


async def test_remove_by_foreign_id_reaches_every_feed(manager: LifecycleManager) -> None:
    kept = Activity(ALICE, Love, "pin:1", time=at(0), foreign_id="love:1")
    gone = Activity(ALICE, Love, "pin:2", time=at(1), foreign_id="love:2")
    for activity in (kept, gone):
        await manager.add_user_activity(ALICE, activity)
    await manager.remove_user_activity(ALICE, foreign_id="love:2", time=at(1))
    for follower in (10, "11", ALICE):
        feeds = manager.get_feeds(follower)
        assert await feeds["normal"][:] == [kept]
        for name in ("aggregated", "notification"):
            assert [a for g in await feeds[name][:] for a in g.activities] == [kept]
    assert await manager.get_user_feed(ALICE)[:] == [kept]
    await manager.remove_user_activity(ALICE, kept.serialization_id)
    assert await manager.get_feeds(10)["normal"][:] == []


async def test_remove_of_an_unknown_foreign_id_writes_nothing(manager: LifecycleManager) -> None:
    pin = Activity(1, Pin, 1, time=at(0), foreign_id="pin:1")
    await manager.add_user_activity(1, pin)
    with pytest.raises(ValidationError, match=r"^foreign_id: no stored activity"):
        await manager.remove_user_activity(1, foreign_id="pin:1", time=at(5))
    with pytest.raises(ValidationError, match=r"^activity: no stored activity"):
        await manager.remove_user_activity(1, pin.serialization_id + 1)
    with pytest.raises(ValidationError, match=r"^foreign_id: "):
        await manager.remove_user_activity(1, pin, foreign_id="pin:1", time=at(0))
    assert await manager.get_feeds(10)["normal"][:] == [pin]


async def test_follow_copies_up_to_the_limit_asked(manager: LifecycleManager) -> None:
    pins = [Activity(ALICE, Pin, i, time=at(i)) for i in range(3)]
    for pin in pins:
        await manager.add_user_activity(ALICE, pin)
    await manager.follow_user(1, ALICE, activity_copy_limit=2)
    assert await manager.get_feeds(1)["normal"][:] == [pins[2], pins[1]]
    await manager.follow_user(2, str(ALICE), activity_copy_limit=0)
    assert await manager.get_feeds(2)["normal"][:] == []
    await manager.follow_many_users(3, [ALICE])  # the class's follow_activity_limit
    assert await manager.get_feeds(3)["normal"][:] == pins[::-1]


async def test_unfollow_keeps_history_when_asked(manager: LifecycleManager) -> None:
    pin = Activity(ALICE, Pin, 1, time=at(0))
    await manager.add_user_activity(ALICE, pin)
    await manager.follow_user(1, ALICE)
    await manager.unfollow_user(1, ALICE, keep_history=True)
    assert await manager.get_feeds(1)["normal"][:] == [pin]
    await manager.unfollow_many_users(1, [str(ALICE)])  # the same user as the UUID
    feeds = manager.get_feeds(1)
    assert await feeds["normal"][:] == []
    assert await feeds["aggregated"][:] == []


async def test_a_user_cannot_follow_themself(manager: LifecycleManager) -> None:
    await manager.add_user_activity(2, Activity(2, Pin, 1, time=at(0)))
    with pytest.raises(ValidationError, match=r"^target_user_id: .*cannot follow themself"):
        await manager.follow_user(7, "7")
    with pytest.raises(ValidationError, match=r"^target_ids\[1\]: .*cannot follow themself"):
        await manager.follow_many_users(5, [2, "5"])
    assert await manager.get_feeds(5)["normal"][:] == []  # user 2 was not followed either


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"activity_copy_limit": -1}, "activity_copy_limit"),
        ({"activity_copy_limit": True}, "activity_copy_limit"),
        ({"activity_copy_limit": 1.5}, "activity_copy_limit"),
    ],
)
async def test_bad_follow_options_are_refused(
    manager: LifecycleManager, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=rf"^{field}: "):
        await manager.follow_user(1, 2, **kwargs)


async def test_keep_history_must_be_a_bool(manager: LifecycleManager) -> None:
    with pytest.raises(ValidationError, match=r"^keep_history: "):
        await manager.unfollow_user(1, 2, keep_history="yes")  # type: ignore[arg-type]


async def test_to_targets_get_the_activity_and_its_removal_and_updates(
    manager: LifecycleManager,
) -> None:
    pin = Activity(1, Love, 5, time=at(0), extra_context={"v": 1})
    await manager.add_user_activity(1, pin, to=[("notification", 42), ("normal", 43)])
    assert pin.to == (("notification", 42), ("normal", 43))
    (notification,) = await manager.get_feeds(42)["notification"][:]
    assert notification.activities == [pin]
    assert await manager.get_feeds(42)["normal"][:] == []  # only the feed named
    assert await manager.get_feeds(43)["normal"][:] == [pin]
    (stored,) = await manager.get_activities([pin.serialization_id])
    assert stored.to == pin.to

    await manager.update_user_activity(Activity(1, Love, 5, time=at(0), extra_context={"v": 2}))
    (notification,) = await manager.get_feeds(42)["notification"][:]
    assert [a.extra_context for a in notification.activities] == [{"v": 2}]
    assert [a.extra_context for a in await manager.get_feeds(43)["normal"][:]] == [{"v": 2}]

    await manager.remove_user_activity(1, Activity(1, Love, 5, time=at(0)))  # no `to` on it
    assert await manager.get_feeds(42)["notification"][:] == []
    assert await manager.get_feeds(43)["normal"][:] == []
    assert await manager.get_feeds(10)["normal"][:] == []


class FlatOnlyManager(LifecycleManager):
    feed_classes: ClassVar[dict[str, Any]] = {"normal": TestFeed}


async def test_removal_through_a_manager_lacking_a_to_feed_is_refused_before_writing(
    manager: LifecycleManager, storage: FeedStorage
) -> None:
    pin = Activity(1, Love, 5, time=at(0))
    await manager.add_user_activity(1, pin, to=[("notification", 42)])
    other = FlatOnlyManager(storage=storage)
    with pytest.raises(ConfigurationError, match=r"feeds named \['notification'\] \(its `to`\)"):
        await other.remove_user_activity(1, pin.serialization_id)
    assert await manager.get_feeds(10)["normal"][:] == [pin]  # nothing removed anywhere
    assert await manager.get_user_feed(1)[:] == [pin]
    (group,) = await manager.get_feeds(42)["notification"][:]
    assert group.activities == [pin]


@pytest.mark.parametrize(
    ("to", "field"),
    [
        ([("unknown", 1)], r"to\[0\]: no feed named 'unknown'"),
        ([("normal", 1), ("normal",)], r"to\[1\]: expected a \(feed name, user id\) pair"),
        ([("normal", None)], r"to\[0\]: expected an int"),
        ("normal", "to: expected a list"),
        ([("normal", i) for i in range(101)], "to: at most 100 feeds, got 101"),
    ],
)
async def test_bad_to_targets_write_nothing(manager: LifecycleManager, to: Any, field: str) -> None:
    pin = Activity(1, Pin, 1, time=at(0))
    with pytest.raises(ValidationError, match=f"^{field}"):
        await manager.add_user_activity(1, pin, to=to)
    assert await manager.get_user_feed(1)[:] == []
    assert await manager.get_activities([pin.serialization_id]) == []


async def test_add_to_feeds_writes_the_named_feeds_only(manager: LifecycleManager) -> None:
    pin = Activity(1, Pin, 1, time=at(0), foreign_id="pin:1")
    feeds = [("normal", u) for u in range(100, 105)] + [("aggregated", 100), ("normal", 100)]
    await manager.add_to_feeds(pin, feeds)
    for user in range(100, 105):
        assert await manager.get_feeds(user)["normal"][:] == [pin]
    (group,) = await manager.get_feeds(100)["aggregated"][:]
    assert group.activities == [pin]
    assert await manager.get_feeds(10)["normal"][:] == []  # no follower fanout
    assert await manager.get_user_feed(1)[:] == []
    (stored,) = await manager.get_activities(foreign_ids=[("pin:1", at(0))])
    assert stored == pin
    assert stored.to == tuple(dict.fromkeys(feeds))
    with pytest.raises(ValidationError, match=r"^feeds: at most 5000 feeds, got 5001"):
        await manager.add_to_feeds(pin, [("normal", u) for u in range(5001)])
    # The feeds are the activity's: a later call adds to them, a removal reaches them all.
    await manager.add_to_feeds(Activity(1, Pin, 1, time=at(0), foreign_id="pin:1"), [("normal", 7)])
    await manager.remove_user_activity(1, foreign_id="pin:1", time=at(0))
    for user in (*range(100, 105), 7):
        assert await manager.get_feeds(user)["normal"][:] == []
    assert await manager.get_feeds(100)["aggregated"][:] == []


async def test_partial_update_reaches_every_feed_and_keeps_the_groups(
    manager: LifecycleManager,
) -> None:
    extra = {"title": "old", "meta": {"a": 1, "b": 2}, "tags": ["x"]}
    love = Activity(1, Love, 5, time=at(0), extra_context=extra, foreign_id="love:5")
    await manager.add_user_activity(1, love)
    await manager.get_feeds(10)["notification"].mark_all(seen=True)
    changed = await manager.partial_update_activity(
        foreign_id="love:5",
        time=at(0),
        set={"extra_context.title": "new", "meta.c.d": 3},
        unset=["meta.a", "extra_context.missing", "nowhere.at.all"],
    )
    expected = {"title": "new", "meta": {"b": 2, "c": {"d": 3}}, "tags": ["x"]}
    assert changed.extra_context == expected
    assert love.extra_context == extra  # the caller's object is left alone
    assert changed.serialization_id == love.serialization_id
    feeds = manager.get_feeds(10)
    assert [a.extra_context for a in await feeds["normal"][:]] == [expected]
    (group,) = await feeds["aggregated"][:]
    assert [a.extra_context for a in group.activities] == [expected]
    (note,) = await feeds["notification"][:]
    assert [a.extra_context for a in note.activities] == [expected]
    assert (note.activity_count, note.is_seen()) == (1, True)
    again = await manager.partial_update_activity(love.serialization_id, unset=["tags"])
    assert again.extra_context == {"title": "new", "meta": {"b": 2, "c": {"d": 3}}}
    (stored,) = await manager.get_activities([love.serialization_id])
    assert (stored.extra_context, stored.foreign_id) == (again.extra_context, "love:5")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"set": {"actor": 2}}, r"set\['actor'\]: actor cannot change"),
        ({"set": {"time": 2}}, r"set\['time'\]: time cannot change"),
        ({"unset": ["foreign_id"]}, r"unset\[0\]: foreign_id cannot change"),
        ({"set": {"title.x": 1}}, r"set\['title.x'\]: extra_context.title is a str"),
        ({"set": {"a..b": 1}}, r"set\['a..b'\]: 'a..b' has an empty key"),
        ({"set": {"extra_context": {}}}, r"set\['extra_context'\]: name a key"),
        ({"set": {"t": 1}, "unset": ["extra_context.t"]}, "unset: 't' is both set and unset"),
        ({"set": ["title"]}, "set: expected a dict"),
        ({"unset": "title"}, "unset: expected a list"),
        ({"set": {"t": {1, 2}}}, r"extra_context\['t'\]: cannot store a set"),
    ],
)
async def test_bad_partial_updates_change_nothing(
    manager: LifecycleManager, changes: dict[str, Any], field: str
) -> None:
    pin = Activity(1, Pin, 1, time=at(0), extra_context={"title": "old"})
    await manager.add_user_activity(1, pin)
    with pytest.raises(ValidationError, match=f"^{field}"):
        await manager.partial_update_activity(pin.serialization_id, **changes)
    (stored,) = await manager.get_activities([pin.serialization_id])
    assert stored.extra_context == {"title": "old"}


async def test_partial_update_of_an_unknown_activity(manager: LifecycleManager) -> None:
    with pytest.raises(ValidationError, match=r"^foreign_id: no stored activity"):
        await manager.partial_update_activity(foreign_id="x", time=at(0), set={"a": 1})


async def test_a_partial_update_reads_the_stored_activity_once(storage: FeedStorage) -> None:
    class Counting(NoopMetrics):
        def __init__(self) -> None:
            self.operations: list[str] = []

        def on_storage_operation(self, operation: str, seconds: float) -> None:
            self.operations.append(operation)

    metrics = Counting()
    manager = LifecycleManager(storage=storage, metrics=metrics)
    pin = Activity(1, Pin, 1, time=at(0), foreign_id="pin:1")
    await manager.add_user_activity(1, pin)
    metrics.operations.clear()
    await manager.partial_update_activity(foreign_id="pin:1", time=at(0), set={"t": 1})
    # One read names the activity and is the update's check; then the new version is
    # stored (the group update jobs after it read the version stored then, by design).
    assert metrics.operations[:2] == ["load_activities", "store_activities"]
