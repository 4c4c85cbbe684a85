"""Ids as ``to_dict()`` sends them (decimal strs) are taken back by every call that takes
ids, with the same result as the int, on every backend; strs that are not an id's
decimal form are refused with a ValidationError naming the field, before any write."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from aiostream import Activity, Comment, InvalidQueryError, Love, Manager, ValidationError
from aiostream.ids import MAX_ID, parse_id
from aiostream.storage.base import FeedStorage
from tests.helpers import TestFeed, TestNotificationFeed, TestUserFeed, at, make_activities

pytestmark = pytest.mark.anyio

# Each a str a careless parser (int(), float(), a regex without anchors) would take.
BAD_STRS = [
    "abc",
    "-1",
    " 12",
    "12 ",
    "12\n",
    "+12",
    "1e5",
    "0x10",
    "1_000",
    "012",
    "",
    "1.0",
    "١٢",  # Arabic-Indic digits: int() reads them
    str(MAX_ID + 1),
]
BAD_VALUES: list[Any] = [*BAD_STRS, True, False, 1.0, -1, MAX_ID + 1, None, b"12"]


class StringIdManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": TestFeed,
        "notification": TestNotificationFeed,
    }
    user_feed_class = TestUserFeed

    def get_user_follower_ids(self, user_id: Any) -> dict[str, list[int]]:
        return {"HIGH": [10]} if user_id == 1 else {}


# -- the one parser -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 7, MAX_ID, "0", "7", str(MAX_ID)])
def test_parse_id_takes_ids_and_their_decimal_strs(value: int | str) -> None:
    assert parse_id(value) == int(value)


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_parse_id_refuses_anything_else_naming_the_field(value: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_id(value, "ids[3]")
    assert raised.value.field == "ids[3]"


def test_to_dict_ids_parse_back() -> None:
    activity = Activity(1, Love, 2, time=at(0))
    assert parse_id(activity.to_dict()["id"]) == activity.serialization_id


# -- feeds --------------------------------------------------------------------------------


async def test_filter_takes_str_bounds(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    activities = make_activities(5)
    await feed.add_many(activities)
    ids = [a.serialization_id for a in activities]
    for keyword in ("activity_id__lt", "activity_id__lte", "activity_id__gt", "activity_id__gte"):
        as_int = await feed.filter(**{keyword: ids[2]})[:]
        as_str = await feed.filter(**{keyword: str(ids[2])})[:]
        assert as_str == as_int and as_int


@pytest.mark.parametrize("value", BAD_STRS, ids=repr)
async def test_filter_refuses_bad_strs_naming_the_keyword(make_feed: Any, value: str) -> None:
    feed = make_feed(TestFeed)
    with pytest.raises(InvalidQueryError) as raised:
        await feed.filter(activity_id__lt=value)[:]
    assert raised.value.field == "activity_id__lt"


async def test_remove_and_remove_many_take_str_ids(make_feed: Any) -> None:
    feed = make_feed(TestFeed)
    first, second, third = make_activities(3)
    await feed.add_many([first, second, third])
    await feed.remove(first.to_dict()["id"])
    assert await feed[:] == [third, second]
    await feed.remove_many([str(second.serialization_id), third.serialization_id])
    assert await feed.count() == 0


@pytest.mark.parametrize("value", BAD_STRS, ids=repr)
async def test_remove_refuses_bad_strs_before_writing(make_feed: Any, value: str) -> None:
    feed = make_feed(TestFeed)
    (activity,) = make_activities(1)
    await feed.add(activity)
    with pytest.raises(ValidationError) as raised:
        await feed.remove_many([activity.serialization_id, value])
    assert raised.value.field == "activities"
    assert await feed[:] == [activity]  # the good id in the same call was not removed


async def test_mark_activities_takes_the_str_ids_groups_send(make_feed: Any) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add_many([Activity(1, Love, 1, time=at(0)), Activity(2, Comment, 2, time=at(1))])
    comments, loves = await feed[:]
    await feed.mark_activity(loves.to_dict()["id"], read=True)
    await feed.mark_activities([comments.to_dict()["id"]])
    assert await feed.get_notification_data() == {"unseen_count": 0, "unread_count": 1}
    states = {g.group: (g.is_seen(), g.is_read()) for g in await feed[:]}
    assert states == {loves.group: (True, True), comments.group: (True, False)}


@pytest.mark.parametrize("value", BAD_STRS, ids=repr)
async def test_mark_activities_refuses_bad_strs_before_writing(make_feed: Any, value: str) -> None:
    feed = make_feed(TestNotificationFeed)
    await feed.add(Activity(1, Love, 1, time=at(0)))
    (group,) = await feed[:]
    with pytest.raises(ValidationError) as raised:
        await feed.mark_activities([group.serialization_id, value])
    assert raised.value.field == "activities"
    assert await feed.count_unseen() == 1


# -- the Manager ----------------------------------------------------------------------------


async def test_get_activities_takes_str_ids(storage: FeedStorage) -> None:
    manager = StringIdManager(storage=storage)
    first, second = make_activities(2)
    await manager.add_user_activity(1, first)
    await manager.add_user_activity(1, second)
    wanted = [second.to_dict()["id"], first.serialization_id, "12345"]
    assert await manager.get_activities(wanted) == [second, first]
    assert await manager.get_activities([str(first.serialization_id)]) == (
        await manager.get_activities([first.serialization_id])
    )


@pytest.mark.parametrize("value", BAD_STRS, ids=repr)
async def test_get_activities_refuses_bad_strs_naming_the_element(
    storage: FeedStorage, value: str
) -> None:
    manager = StringIdManager(storage=storage)
    with pytest.raises(ValidationError) as raised:
        await manager.get_activities([1, value])
    assert raised.value.field == "ids[1]"


async def test_remove_user_activity_takes_a_str_id(storage: FeedStorage) -> None:
    manager = StringIdManager(storage=storage)
    first, second = make_activities(2)
    await manager.add_user_activity(1, first)
    await manager.add_user_activity(1, second)
    await manager.remove_user_activity(1, first.to_dict()["id"])
    assert await manager.get_user_feed(1)[:] == [second]
    assert await manager.get_feeds(10)["normal"][:] == [second]


@pytest.mark.parametrize("value", BAD_STRS, ids=repr)
async def test_remove_user_activity_refuses_bad_strs_before_writing(
    storage: FeedStorage, value: str
) -> None:
    manager = StringIdManager(storage=storage)
    (activity,) = make_activities(1)
    await manager.add_user_activity(1, activity)
    with pytest.raises(ValidationError) as raised:
        await manager.remove_user_activity(1, value)
    assert raised.value.field == "activity"
    assert await manager.get_feeds(10)["normal"][:] == [activity]
