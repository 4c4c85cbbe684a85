"""Activities, groups, verbs and ids (no storage)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from aiostream import (
    Activity,
    ActivityNotFound,
    AggregatedActivity,
    DehydratedActivity,
    DuplicateActivityError,
    Follow,
    Love,
    NotificationActivity,
    UnknownVerbError,
    ValidationError,
    Verb,
    get_verb_by_id,
    register,
)
from aiostream.ids import MAX_ID, MAX_TIME, MIN_TIME, id_to_key, id_to_time, key_to_id
from aiostream.verbs import VerbRegistry
from tests.helpers import T0, Pin, at


class Thing:
    def __init__(self, ident: int) -> None:
        self.id = ident


def test_fields_and_lazy_objects() -> None:
    actor = Thing(13)
    activity = Activity(actor, Love, 42, target=Thing(9), time=T0)
    assert (activity.actor_id, activity.object_id, activity.target_id) == (13, 42, 9)
    assert activity.actor is actor
    with pytest.raises(AttributeError, match="object_id"):
        _ = activity.object
    assert activity.verb is Love
    assert Activity(1, 3, 2).verb is Love  # verbs by registered id, as in the seed docs


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"actor": None}, "actor"),
        ({"verb": None}, "verb"),
        ({"object": None}, "object"),
        ({"actor": ""}, "actor"),  # a str id is fine, an empty one is not
        ({"actor": True}, "actor"),
        ({"target": 1.5}, "target"),
        ({"time": "2024-01-01"}, "time"),
        ({"extra_context": [1, 2]}, "extra_context"),
        ({"verb": "love"}, "verb"),
    ],
)
def test_bad_fields_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"actor": 1, "verb": Love, "object": 2, **kwargs}
    with pytest.raises(ValidationError, match=f"^{field}"):
        Activity(**args)


def test_unregistered_verb_is_rejected() -> None:
    class Unknown(Verb):
        id = 777

    with pytest.raises(UnknownVerbError, match="777"):
        Activity(1, Unknown, 2)
    with pytest.raises(UnknownVerbError, match="778"):
        Activity(1, 778, 2)


def test_naive_times_are_utc() -> None:
    naive = Activity(1, Love, 2, time=dt.datetime(2024, 5, 1, 12, 0))
    aware = Activity(
        1, Love, 2, time=dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    )
    assert naive.time == T0 == aware.time
    assert naive.time.tzinfo is dt.UTC
    assert naive == aware


def test_ids_unique_ordered_and_stable() -> None:
    a = Activity(1, Love, 42, time=T0)
    b = Activity(2, Love, 42, time=T0)
    c = Activity(1, Love, 42, time=T0 + dt.timedelta(microseconds=1))
    assert a.serialization_id != b.serialization_id
    assert max(a.serialization_id, b.serialization_id) < c.serialization_id
    assert Activity(1, Love, 42, time=T0).serialization_id == a.serialization_id
    assert a.serialization_id > 2**53
    assert a.serialization_id <= MAX_ID
    assert id_to_time(a.serialization_id) == T0
    assert key_to_id(id_to_key(a.serialization_id)) == a.serialization_id
    assert len(id_to_key(a.serialization_id)) == 26
    assert sorted([c, a]) == [a, c]
    assert a < c
    with pytest.raises(ValueError, match="1970"):
        _ = Activity(1, Love, 2, time=dt.datetime(1969, 12, 31)).serialization_id


def test_equality_with_foreign_types_does_not_raise() -> None:
    a = Activity(1, Love, 42, time=T0)
    assert a != "x"
    assert a in ["x", 3, a]
    assert {a: 1}[Activity(1, Love, 42, time=T0)] == 1


def test_dehydration() -> None:
    a = Activity(1, Love, 42, time=T0)
    dehydrated = a.get_dehydrated()
    assert isinstance(dehydrated, DehydratedActivity)
    assert dehydrated.serialization_id == a.serialization_id
    assert dehydrated.get_hydrated({a.serialization_id: a}) is a
    with pytest.raises(ActivityNotFound):
        dehydrated.get_hydrated({})


def test_verb_registry() -> None:
    assert get_verb_by_id(1) is Follow
    assert get_verb_by_id(5) is Pin
    registry = VerbRegistry()
    with pytest.raises(UnknownVerbError, match="5"):
        registry.get(5)

    class Other(Verb):
        id = 5

    with pytest.raises(ValidationError, match="already registered to Pin"):
        register(Other)
    with pytest.raises(ValidationError):
        register(int)  # type: ignore[arg-type]
    assert register(Pin) is Pin  # registering the same class again is fine
    assert str(Love()) == "love"


def test_aggregated_summaries_with_cap() -> None:
    group = AggregatedActivity("g")
    activities = [Activity(i, Love, i, time=at(i)) for i in range(1, 101)]
    for activity in activities:
        group.append(activity)
    assert len(group.activities) == 15
    assert group.minimized_activities == 85
    assert group.activity_count == 100
    assert group.actor_count == 100
    assert group.other_actor_count == 99
    assert group.actor_ids == list(range(86, 101))
    assert group.object_ids == list(range(86, 101))
    assert group.verbs == [Love]
    assert group.verb is Love
    assert group.last_activity == activities[-1]
    assert group.last_activities[0] == activities[-1]
    assert group.created_at == at(1)
    assert group.updated_at == at(100)
    assert not group.is_seen() and not group.is_read()


def test_aggregated_append_contains_remove() -> None:
    a, b, c = (Activity(i, Love, 1, time=at(i)) for i in range(3))
    group = AggregatedActivity("g", [c, a])
    assert group.activities == [a, c]  # kept in time order
    assert group.contains(a) and group.contains(a.serialization_id)
    assert not group.contains(b)
    with pytest.raises(DuplicateActivityError):
        group.append(a)
    with pytest.raises(ValidationError):
        group.contains("x")  # type: ignore[arg-type]
    group.append(b)
    group.remove(c)
    assert group.updated_at == b.time
    with pytest.raises(ActivityNotFound):
        group.remove(c)
    assert group.remove_many([a, c]) == [a]
    with pytest.raises(ValidationError, match="last"):
        group.remove(b)


def test_aggregated_equality_and_copy() -> None:
    activities = [Activity(i, Love, 1, time=at(i)) for i in range(3)]
    one = AggregatedActivity("g", activities)
    two = AggregatedActivity("g", activities)
    assert one == two
    assert one != AggregatedActivity("g", activities[:2])
    assert one != "g"
    clone = one.copy()
    clone.append(Activity(9, Love, 1, time=at(9)))
    assert len(one.activities) == 3
    dehydrated = one.get_dehydrated()
    assert dehydrated.dehydrated and not one.dehydrated
    assert dehydrated.activity_ids == one.activity_ids
    hydrated = dehydrated.get_hydrated({a.serialization_id: a for a in activities})
    assert hydrated == one


def test_seen_and_read_follow_updates() -> None:
    group = AggregatedActivity("g", [Activity(1, Love, 1, time=at(0))])
    group.update_seen_at()
    group.update_read_at()
    assert group.is_seen() and group.is_read()
    group.append(Activity(2, Love, 1, time=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)))
    assert not group.is_seen() and not group.is_read()


def test_notification_activity_markers_override() -> None:
    group = NotificationActivity("g", [Activity(1, Love, 1, time=at(0))])
    assert not group.is_seen()
    group.marked_seen = True
    assert group.is_seen()
    assert group.serialization_id != NotificationActivity("h", group.activities).serialization_id


ONE_US = dt.timedelta(microseconds=1)


def tz(**offset: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(**offset))


@pytest.mark.parametrize(
    "time",
    [
        MIN_TIME,
        MIN_TIME.replace(tzinfo=None),
        MIN_TIME.astimezone(tz(hours=5, minutes=30)),
        MAX_TIME,
        MAX_TIME.astimezone(tz(hours=-13, minutes=-7, seconds=-5, microseconds=-3)),
    ],
    ids=["min", "min-naive", "min-odd-offset", "max", "max-odd-offset"],
)
def test_times_at_the_edges_of_the_range_are_accepted(time: dt.datetime) -> None:
    activity = Activity(1, Love, 2, time=time)
    assert activity.time.utcoffset() == dt.timedelta(0)
    assert id_to_time(activity.serialization_id) == activity.time


@pytest.mark.parametrize(
    "time",
    [
        MIN_TIME - ONE_US,
        dt.datetime(1969, 12, 31, 23, 59, 59, 999_999),
        dt.datetime(1970, 1, 1, 0, 59, tzinfo=tz(hours=1)),
        MAX_TIME + ONE_US,
        dt.datetime(2113, 1, 1),
        dt.datetime(1, 1, 1, tzinfo=tz(hours=1)),  # no UTC datetime: OverflowError before
        dt.datetime(9999, 12, 31, 23, tzinfo=tz(hours=-2)),
        dt.datetime.min,
        dt.datetime.max,
    ],
    ids=[
        "min-1us",
        "1969",
        "1970-at-+01",
        "max+1us",
        "2113",
        "year-1-at-+01",
        "9999-at--02",
        "datetime.min",
        "datetime.max",
    ],
)
def test_times_out_of_range_are_a_validation_error_naming_time(time: dt.datetime) -> None:
    with pytest.raises(ValidationError, match=r"^time: .*1970") as raised:
        Activity(1, Love, 2, time=time)
    assert raised.value.field == "time"


def test_a_time_set_out_of_range_later_fails_as_a_validation_error() -> None:
    activity = Activity(1, Love, 2, time=T0)
    for time in (dt.datetime(1, 1, 1, tzinfo=tz(hours=1)), dt.datetime(1969, 1, 1)):
        activity.time = time
        with pytest.raises(ValidationError, match=r"^time: "):
            _ = activity.serialization_id


def test_group_names_with_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"^group: .*surrogate"):
        AggregatedActivity("g\ud800")
    assert AggregatedActivity("g\U0001f422\u200f\x00").group == "g\U0001f422\u200f\x00"


@pytest.mark.parametrize("field", ["actor", "object", "target"])
def test_ids_too_wide_to_write_as_text_are_refused(field: str) -> None:
    fields: dict[str, Any] = {"actor": 1, "object": 2, "target": None, field: 10**5000}
    with pytest.raises(ValidationError, match=f"^{field}: .*digits"):
        Activity(fields["actor"], Love, fields["object"], fields["target"], time=T0)
    wide = 2**5000  # 1,506 digits: fine
    assert Activity(wide, Love, -wide, time=T0).actor_id == wide


@pytest.mark.parametrize("field", ["created_at", "updated_at"])
def test_group_times_out_of_range_are_a_validation_error_naming_them(field: str) -> None:
    # datetime(1, 1, 1, +01:00) has no UTC form at all: it used to be an OverflowError.
    for time in (dt.datetime(1, 1, 1, tzinfo=tz(hours=1)), dt.datetime(1969, 12, 31)):
        with pytest.raises(ValidationError, match=f"^{field}: .*1970") as raised:
            AggregatedActivity("g", **{field: time})
        assert raised.value.field == field
