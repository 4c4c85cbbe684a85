"""The JSON view of activities and groups: ``to_dict`` / ``from_dict``.

Ids beyond 2**53 and UUIDs are strings named in ``id_types``; times are ISO 8601 UTC with
a ``Z``; ``extra_context`` is plain JSON. Round trips are exact for ids, times, verbs,
foreign ids, targets and plain-JSON ``extra_context``, and for groups (equal groups, the
same ids and markers), also through JSON text.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiostream import (
    Activity,
    Add,
    AggregatedActivity,
    Comment,
    Follow,
    Love,
    MemoryStorage,
    NotificationActivity,
    RecentVerbAggregator,
    SerializationError,
    UnknownVerbError,
    ValidationError,
)
from aiostream.aggregators import NotificationAggregator
from aiostream.ids import MAX_TIME, MIN_TIME
from tests.helpers import T0, CustomActivity, CustomNotification, TestNotificationFeed, at

BIG = 2**53 + 1
U1 = uuid.UUID("3f2a0c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b")
U2 = uuid.UUID("00000000-0000-0000-0000-000000000005")


def fields(activity: Activity) -> tuple[Any, ...]:
    """Everything an activity holds, with the type of each id (``7 == 7.0``, not here);
    ``extra_context`` by its repr, which tells ``1``, ``1.0`` and ``True`` apart."""
    ids = (activity.actor_id, activity.object_id, activity.target_id)
    return (
        type(activity),
        [(type(i), i) for i in ids],
        activity.verb,
        activity.time,
        repr(activity.extra_context),
        activity.foreign_id,
        [(name, type(user), user) for name, user in activity.to],
    )


def through_json(data: dict[str, Any]) -> Any:
    """``data`` as a client gets it: JSON text read back (``json.dumps`` needs no default)."""
    return json.loads(json.dumps(data))


# -- Activity.to_dict: exact output ------------------------------------------------------


def test_small_int_ids_are_json_numbers_and_nothing_is_typed() -> None:
    activity = Activity(13, Love, 42, time=T0)
    assert activity.to_dict() == {
        "id": str(activity.serialization_id),
        "actor": 13,
        "verb": "love",
        "verb_id": 3,
        "object": 42,
        "target": None,
        "time": "2024-05-01T12:00:00Z",
        "foreign_id": None,
        "to": [],
        "extra_context": {},
    }


def test_big_ints_and_uuids_are_strings_named_in_id_types() -> None:
    activity = Activity(
        BIG,
        Comment,
        "7",
        U1,
        time=dt.datetime(2024, 5, 1, 12, 0, 0, 250),
        foreign_id="comment:9",
    )
    activity.to = (("notification", 2**64), ("timeline", "ann"), ("timeline", 5))
    assert activity.to_dict() == {
        "id": str(activity.serialization_id),
        "actor": "9007199254740993",
        "verb": "comment",
        "verb_id": 2,
        "object": "7",
        "target": "3f2a0c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
        "time": "2024-05-01T12:00:00.000250Z",
        "foreign_id": "comment:9",
        "to": [["notification", "18446744073709551616"], ["timeline", "ann"], ["timeline", 5]],
        "extra_context": {},
        "id_types": {"actor": "int", "target": "uuid", "to.0": "int"},
    }


@pytest.mark.parametrize(
    ("actor", "written", "typed"),
    [
        (2**53, 2**53, False),
        (-(2**53), -(2**53), False),
        (2**53 + 1, "9007199254740993", True),
        (-(2**53) - 1, "-9007199254740993", True),
        (0, 0, False),
        (10**300, "1" + "0" * 300, True),
    ],
)
def test_ints_are_numbers_up_to_2_53(actor: int, written: Any, typed: bool) -> None:
    data = Activity(actor, Love, 1, time=T0).to_dict()
    assert data["actor"] == written and type(data["actor"]) is type(written)
    assert data.get("id_types") == ({"actor": "int"} if typed else None)
    assert Activity.from_dict(data).actor_id == actor


def test_extra_context_rich_values_become_json() -> None:
    zone = dt.timezone(dt.timedelta(hours=2))
    extra = {
        "aware_utc": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        "aware_utc_us": dt.datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=dt.UTC),
        "aware_other": dt.datetime(2024, 5, 1, 14, 0, tzinfo=zone),
        "naive": dt.datetime(2024, 5, 1, 12, 30),
        "day": dt.date(2024, 5, 1),
        "price": Decimal("12.50"),
        "ref": U2,
        "wide": 2**80,
        "nested": {"list": [1, 2.5, None, True, {"when": dt.date(2000, 1, 2)}], "$tag": "x"},
        "text": "Sunset \u202e over \U0001f30a",
    }
    data = Activity(1, Love, 2, time=T0, extra_context=extra).to_dict()
    assert data["extra_context"] == {
        "aware_utc": "2024-05-01T12:00:00Z",
        "aware_utc_us": "2024-05-01T12:00:00.000005Z",
        "aware_other": "2024-05-01T14:00:00+02:00",
        "naive": "2024-05-01T12:30:00",
        "day": "2024-05-01",
        "price": "12.50",
        "ref": "00000000-0000-0000-0000-000000000005",
        "wide": 2**80,
        "nested": {"list": [1, 2.5, None, True, {"when": "2000-01-02"}], "$tag": "x"},
        "text": "Sunset \u202e over \U0001f30a",
    }
    assert "id_types" not in data  # ints of extra_context are data, not ids
    # A view: the rich values come back as their strings.
    back = Activity.from_dict(data)
    assert back.extra_context == data["extra_context"]
    assert back.serialization_id == int(data["id"])


def test_to_dict_is_json_ready_and_new() -> None:
    activity = Activity(U1, Add, BIG, "board", time=T0, extra_context={"when": T0, "tags": ["a"]})
    activity.to = (("notification", 3),)
    data = activity.to_dict()
    text = json.dumps(data)  # no default=
    assert json.loads(text) == data
    data["extra_context"]["tags"].append("b")
    data["to"][0][1] = 4
    assert activity.extra_context["tags"] == ["a"] and activity.to == (("notification", 3),)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"s": {1, 2}}, "extra_context['s']"),
        ({"b": b"x"}, "extra_context['b']"),
        ({"n": [1.0, float("nan")]}, "extra_context['n'][1]"),
        ({"inf": float("inf")}, "extra_context['inf']"),
        ({"d": {1: "x"}}, "extra_context['d'][1]"),
        ({"t": (1, 2)}, "extra_context['t']"),
        ({"o": object()}, "extra_context['o']"),
    ],
)
def test_values_without_a_json_form_are_named(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(SerializationError) as raised:
        Activity(1, Love, 2, time=T0, extra_context=extra).to_dict()
    assert raised.value.field == field


def test_nesting_deeper_than_storage_allows_is_refused() -> None:
    deep: Any = 1
    for _ in range(101):
        deep = [deep]
    with pytest.raises(SerializationError, match="deeper than 100"):
        Activity(1, Love, 2, time=T0, extra_context={"deep": deep}).to_dict()
    ok: Any = 1
    for _ in range(100):
        ok = [ok]
    assert Activity(1, Love, 2, time=T0, extra_context={"ok": ok}).to_dict()["extra_context"] == {
        "ok": ok
    }


# -- Activity round trips ------------------------------------------------------------------


def test_id_types_come_back_as_written() -> None:
    made = [
        Activity(7, Love, 7, 7, time=T0),
        Activity("7", Love, "7", "7", time=T0),
        Activity(U1, Love, U1, U1, time=T0),
        Activity(BIG, Love, -BIG, 2**200, time=T0),
    ]
    assert len({a.serialization_id for a in made}) == 4
    for activity in made:
        back = Activity.from_dict(through_json(activity.to_dict()))
        assert fields(back) == fields(activity)
        assert back.serialization_id == activity.serialization_id


def test_round_trip_keeps_foreign_id_targets_and_time() -> None:
    activity = Activity(1, Love, 2, time=dt.datetime(2031, 2, 3, 4, 5, 6, 789), foreign_id="like:1")
    activity.to = (("notification", BIG), ("flat", "x"))
    back = Activity.from_dict(through_json(activity.to_dict()))
    assert fields(back) == fields(activity)
    assert back.serialization_id == activity.serialization_id


def test_subclasses_build_their_own_class() -> None:
    data = Activity(1, Love, 2, time=T0).to_dict()
    back = CustomActivity.from_dict(data)
    assert type(back) is CustomActivity and back.mymethod() == "custom 2"


def test_from_dict_ignores_other_keys_and_takes_what_may_be_left_out() -> None:
    activity = Activity(1, Follow, 2, time=at(1.5))
    data = {
        "actor": 1,
        "verb_id": 1,
        "object": 2,
        "time": "2024-05-01T12:00:01.500000Z",
        "text": "bob started following you",
    }
    back = Activity.from_dict(data)
    assert fields(back) == fields(activity)
    nulls = dict.fromkeys(("id", "verb", "target", "foreign_id", "to", "extra_context"))
    assert fields(Activity.from_dict({**data, **nulls, "id_types": None})) == fields(activity)
    # a time without an offset is UTC; any offset is converted
    for text in ("2024-05-01T12:00:01.5", "2024-05-01T14:00:01.500+02:00"):
        assert Activity.from_dict({**data, "time": text}).time == activity.time


MIN_NAIVE = MIN_TIME.replace(tzinfo=None)
MAX_NAIVE = MAX_TIME.replace(tzinfo=None)
NO_SURROGATES = st.characters(blacklist_categories=("Cs",))
ITEM_IDS = st.one_of(
    st.integers(min_value=-(2**60), max_value=2**60),
    st.integers(min_value=-(2**400), max_value=2**400),
    st.text(NO_SURROGATES, min_size=1, max_size=12),
    st.uuids(),
)
PLAIN_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(NO_SURROGATES, max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(NO_SURROGATES, max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
TIMES = st.builds(
    lambda naive, offset: naive.replace(tzinfo=dt.UTC).astimezone(
        dt.timezone(dt.timedelta(minutes=offset))
    ),
    st.datetimes(min_value=MIN_NAIVE, max_value=MAX_NAIVE),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
TARGETS = st.lists(
    st.tuples(
        st.text(NO_SURROGATES, min_size=1, max_size=8),
        st.integers(min_value=-(2**70), max_value=2**70) | st.text(NO_SURROGATES, min_size=1),
    ),
    max_size=3,
)


@st.composite
def activities(draw: st.DrawFn) -> Activity:
    activity = Activity(
        draw(ITEM_IDS),
        draw(st.sampled_from([Follow, Comment, Love, Add])),
        draw(ITEM_IDS),
        draw(st.none() | ITEM_IDS),
        time=draw(TIMES),
        extra_context=draw(st.dictionaries(st.text(NO_SURROGATES, max_size=6), PLAIN_JSON)),
        foreign_id=draw(st.none() | st.text(NO_SURROGATES, min_size=1, max_size=12)),
    )
    targets = draw(TARGETS)
    if targets:
        activity.to = tuple(targets)
    return activity


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(activities())
def test_round_trip_property(activity: Activity) -> None:
    data = activity.to_dict()
    for view in (data, through_json(data)):
        back = Activity.from_dict(view)
        assert back == activity
        assert back.serialization_id == activity.serialization_id == int(view["id"])
        assert fields(back) == fields(activity)
    for value in (data["actor"], data["object"], data["target"]):
        # what a browser reads exactly: strings, and ints it holds without rounding
        assert value is None or isinstance(value, str) or abs(value) <= 2**53


# -- Activity.from_dict: errors name the field -------------------------------------------


def _base() -> dict[str, Any]:
    activity = Activity(BIG, Love, U1, "board", time=T0, foreign_id="f:1")
    activity.to = (("notification", 3),)
    return activity.to_dict()


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _setting(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


def _typing(key: str, kind: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["id_types"].__setitem__(key, kind)


ACTIVITY_ERRORS = [
    (_without("actor"), "actor"),
    (_without("object"), "object"),
    (_without("time"), "time"),
    (_without("verb_id"), "verb_id"),
    (_setting("time", "yesterday"), "time"),
    (_setting("time", 1714564800), "time"),
    (_setting("time", "1969-12-31T23:59:59Z"), "time"),
    (_setting("time", "2112-09-18T00:00:00Z"), "time"),
    (_setting("verb", "comment"), "verb"),
    (_setting("verb_id", "3"), "verb_id"),
    (_setting("verb_id", True), "verb_id"),
    (_setting("actor", "12x"), "actor"),
    (_setting("actor", 1.5), "actor"),
    (_setting("target", True), "target"),
    (_setting("target", ""), "target"),
    (_setting("object", "not-a-uuid"), "object"),
    (_setting("object", 5), "object"),
    (_typing("actor", "float"), "id_types.actor"),
    (_typing("target", "int"), "target"),
    (_typing("verb", "int"), "id_types.verb"),
    (_setting("id_types", ["actor"]), "id_types"),
    (_setting("foreign_id", 5), "foreign_id"),
    (_setting("foreign_id", ""), "foreign_id"),
    (_setting("extra_context", [1]), "extra_context"),
    (_setting("to", "notification"), "to"),
    (_setting("to", [["notification"]]), "to.0"),
    (_setting("to", [[5, 3]]), "to.0"),
    (_setting("to", [["notification", 3.0]]), "to.0"),
    (_setting("id", "12"), "id"),
    (_setting("id", 12), "id"),
]


@pytest.mark.parametrize(("change", "field"), ACTIVITY_ERRORS)
def test_bad_activity_views_name_the_field(
    change: Callable[[dict[str, Any]], None], field: str
) -> None:
    data = _base()
    Activity.from_dict(data)  # valid before the change
    change(data)
    with pytest.raises(ValidationError) as raised:
        Activity.from_dict(data)
    assert raised.value.field == field, raised.value


def test_an_id_type_naming_no_id_is_refused() -> None:
    data = Activity(1, Love, 2, time=T0).to_dict()
    with pytest.raises(ValidationError) as raised:
        Activity.from_dict({**data, "id_types": {"target": "uuid"}})
    assert raised.value.field == "id_types.target"


def test_unknown_verb_and_non_dict() -> None:
    data = {**_base(), "verb_id": 999}
    with pytest.raises(UnknownVerbError):
        Activity.from_dict(data)
    with pytest.raises(ValidationError) as raised:
        Activity.from_dict([1, 2])  # type: ignore[arg-type]
    assert raised.value.field == "activity"


def test_a_changed_field_no_longer_matches_the_id() -> None:
    data = Activity(1, Love, 2, time=T0).to_dict()
    with pytest.raises(ValidationError) as raised:
        Activity.from_dict({**data, "object": 3})
    assert raised.value.field == "id"
    moved = Activity.from_dict({**data, "object": 3, "id": None})  # no id: nothing to check
    assert moved.object_id == 3


# -- groups ------------------------------------------------------------------------------


def _group_fields(group: AggregatedActivity) -> tuple[Any, ...]:
    marks = (getattr(group, "marked_seen", None), getattr(group, "marked_read", None))
    return (
        type(group),
        group.serialization_id,
        [fields(a) for a in group.activities],
        group.minimized_activities,
        (group.created_at, group.updated_at, group.seen_at, group.read_at),
        (group.is_seen(), group.is_read()),
        marks,
    )


def test_group_to_dict_exactly() -> None:
    first = Activity(1, Love, 42, time=T0)
    second = Activity(U1, Love, 42, time=at(2.25))
    third = Activity(1, Love, 43, time=at(3))
    (group,) = RecentVerbAggregator().aggregate([third, first, second])
    group.seen_at = at(10)
    assert group.to_dict() == {
        "id": str(group.serialization_id),
        "group": "3-2024-05-01",
        "verb": "love",
        "verb_id": 3,
        "activity_count": 3,
        "actor_count": 2,
        "actor_ids": [1, "3f2a0c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"],
        "created_at": "2024-05-01T12:00:00Z",
        "updated_at": "2024-05-01T12:00:03Z",
        "seen_at": "2024-05-01T12:00:10Z",
        "read_at": None,
        "minimized_activities": 0,
        "activities": [first.to_dict(), second.to_dict(), third.to_dict()],
        "id_types": {"actor_ids.1": "uuid"},
    }
    back = AggregatedActivity.from_dict(through_json(group.to_dict()))
    assert back == group and _group_fields(back) == _group_fields(group)
    assert back.is_seen() and not back.is_read()


def test_minimized_groups_round_trip() -> None:
    made = [Activity(actor, Comment, 9, time=at(actor)) for actor in range(1, 21)]
    made.append(Activity(BIG, Comment, 9, time=at(30)))
    (group,) = RecentVerbAggregator().aggregate(made)
    assert (len(group), group.minimized_activities) == (15, 6)
    group.read_at = at(40)
    data = group.to_dict()
    assert (data["activity_count"], data["actor_count"], data["minimized_activities"]) == (
        21,
        21,
        6,
    )
    assert data["created_at"] == "2024-05-01T12:00:01Z"  # the minimized first one's time
    assert data["id_types"] == {"actor_ids.14": "int"}
    back = AggregatedActivity.from_dict(through_json(data))
    assert back == group and _group_fields(back) == _group_fields(group)


def test_notification_groups_round_trip_with_their_state() -> None:
    made = [Activity(actor, Love, 42, time=at(n)) for n, actor in enumerate((1, "1", U2))]
    made.append(Activity(2, Follow, 1, time=at(9)))
    groups = NotificationAggregator().aggregate(made)
    assert [type(g) for g in groups] == [NotificationActivity, NotificationActivity]
    groups[0].seen_at = at(100)
    for group in groups:
        data = group.to_dict()
        assert (data["is_seen"], data["is_read"]) == (group is groups[0], False)
        back = NotificationActivity.from_dict(through_json(data))
        assert back == group
        assert (back.is_seen(), back.is_read()) == (group.is_seen(), group.is_read())
        assert back.serialization_id == group.serialization_id
        assert [fields(a) for a in back.activities] == [fields(a) for a in group.activities]
    love = groups[1].to_dict()
    assert love["actor_ids"] == [1, "1", str(U2)] and love["id_types"] == {"actor_ids.2": "uuid"}


def test_group_subclasses_and_activity_class() -> None:
    (group,) = NotificationAggregator().aggregate([Activity(1, Love, 2, time=T0)])
    back = CustomNotification.from_dict(group.to_dict(), activity_class=CustomActivity)
    assert type(back) is CustomNotification
    assert [type(a) for a in back.activities] == [CustomActivity]


def test_activities_out_of_order_are_held_in_order() -> None:
    (group,) = RecentVerbAggregator().aggregate(
        [Activity(actor, Love, 1, time=at(actor)) for actor in (1, 2, 3)]
    )
    data = group.to_dict()
    data["activities"].reverse()
    assert AggregatedActivity.from_dict(data) == group


@pytest.mark.anyio
async def test_groups_read_from_a_notification_feed() -> None:
    feed = TestNotificationFeed(1, storage=MemoryStorage())
    await feed.add_many(
        [Activity(actor, Love, 42, time=at(actor), extra_context={"n": actor}) for actor in (2, 3)]
        + [Activity(BIG, Follow, 1, time=at(5), foreign_id="follow:9")]
    )
    follow, love = await feed[:]
    await feed.mark_activity(love, seen=True, read=True)
    await feed.mark_activity(follow, seen=True)
    groups = await feed[:]
    assert [(g.marked_seen, g.marked_read) for g in groups] == [(True, False), (True, True)]
    assert not any(g.activities_built for g in groups)  # read back lazily
    for group in groups:
        data = group.to_dict()
        assert group.activities_built
        back = TestNotificationFeed.aggregated_activity_class.from_dict(through_json(data))
        assert back == group and _group_fields(back) == _group_fields(group)
    assert groups[0].to_dict()["activities"][0]["foreign_id"] == "follow:9"


def _group_view() -> dict[str, Any]:
    made = [Activity(actor, Love, 42, time=at(actor)) for actor in (1, 2)]
    (group,) = NotificationAggregator().aggregate(made)
    return group.to_dict()


def _nested(index: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["activities"][index].__setitem__(key, value)


GROUP_ERRORS = [
    (_without("group"), "group"),
    (_setting("group", 1.5), "group"),
    (_without("activities"), "activities"),
    (_setting("activities", []), "activities"),
    (_setting("activities", {"a": 1}), "activities"),
    (lambda data: data["activities"].append(data["activities"][0]), "activities.2"),
    (lambda data: data["activities"].__setitem__(1, "x"), "activities.1.activity"),
    (_nested(1, "time", "soon"), "activities.1.time"),
    (_nested(0, "verb", "add"), "activities.0.verb"),
    (_setting("created_at", "then"), "created_at"),
    (_setting("updated_at", "1960-01-01T00:00:00Z"), "updated_at"),
    (_setting("seen_at", 5), "seen_at"),
    (_setting("read_at", "x"), "read_at"),
    (_setting("minimized_activities", -1), "minimized_activities"),
    (_setting("minimized_activities", "2"), "minimized_activities"),
    (_setting("updated_at", "2024-05-01T12:00:09Z"), "id"),
    (_setting("id", "1"), "id"),
    (_setting("verb", "comment"), "verb"),
    (_setting("verb_id", 4), "verb_id"),
    (_setting("activity_count", 3), "activity_count"),
    (_setting("activity_count", 2.0), "activity_count"),
    (_setting("actor_count", 1), "actor_count"),
    (_setting("actor_ids", [2, 1]), "actor_ids"),
    (_setting("actor_ids", [1, "2"]), "actor_ids"),
    (_setting("actor_ids", 1), "actor_ids"),
    (_setting("id_types", {"actor_ids.0": "uuid"}), "actor_ids.0"),
    (_setting("id_types", {"actor_ids.5": "int"}), "id_types.actor_ids.5"),
    (_setting("is_seen", "yes"), "is_seen"),
    (_setting("is_read", 0), "is_read"),
]


@pytest.mark.parametrize(("change", "field"), GROUP_ERRORS)
def test_bad_group_views_name_the_field(
    change: Callable[[dict[str, Any]], None], field: str
) -> None:
    data = _group_view()
    NotificationActivity.from_dict(data)  # valid before the change
    change(data)
    with pytest.raises(ValidationError) as raised:
        NotificationActivity.from_dict(data)
    assert raised.value.field == field, raised.value


def test_too_many_activities_for_a_group() -> None:
    made = [Activity(actor, Love, 42, time=at(actor)) for actor in range(16)]
    data = {"group": "g", "activities": [a.to_dict() for a in made]}
    with pytest.raises(ValidationError, match="at most 15") as raised:
        AggregatedActivity.from_dict(data)
    assert raised.value.field == "activities"
    rebuilt = AggregatedActivity.from_dict({**data, "activities": data["activities"][1:]})
    assert (len(rebuilt), rebuilt.created_at, rebuilt.updated_at) == (15, at(1), at(15))


def test_groups_without_activities_have_no_view() -> None:
    (group,) = RecentVerbAggregator().aggregate([Activity(1, Love, 2, time=T0)])
    with pytest.raises(ValidationError) as raised:
        group.get_dehydrated().to_dict()
    assert raised.value.field == "aggregated"
    with pytest.raises(ValidationError) as raised:
        AggregatedActivity("empty").to_dict()
    assert raised.value.field == "activities"


# -- the views' types: TypedDicts that say what to_dict() writes --------------------------


def _keys(typed: Any) -> tuple[frozenset[str], frozenset[str]]:
    return typed.__required_keys__, typed.__optional_keys__


@pytest.mark.parametrize("wide", [False, True], ids=["plain", "with-id_types"])
def test_each_view_has_exactly_the_keys_its_typeddict_names(wide: bool) -> None:
    from aiostream import ActivityDict, AggregatedActivityDict, NotificationActivityDict

    actor = BIG if wide else 1
    made = [Activity(actor, Love, 42, time=T0), Activity(2, Love, 42, time=at(1))]
    (group,) = RecentVerbAggregator().aggregate(made)
    notification = NotificationActivity.from_dict(group.to_dict())
    for typed, data in (
        (ActivityDict, made[0].to_dict()),
        (AggregatedActivityDict, group.to_dict()),
        (NotificationActivityDict, notification.to_dict()),
    ):
        required, optional = _keys(typed)
        assert optional == {"id_types"}
        assert set(data) == required | ({"id_types"} if wide else set()), typed.__name__


def test_views_are_plain_dicts_and_validate_as_their_typeddicts() -> None:
    pydantic = pytest.importorskip("pydantic")
    from aiostream import ActivityDict, NotificationActivityDict

    made = [Activity(U1, Love, BIG, time=T0, foreign_id="f"), Activity(2, Love, BIG, time=at(1))]
    made[0].to = (("timeline", 7),)
    (group,) = NotificationAggregator().aggregate(made)
    notification = NotificationActivity.from_dict({**group.to_dict(), "is_seen": True})
    for typed, data in (
        (ActivityDict, made[0].to_dict()),
        (NotificationActivityDict, notification.to_dict()),
    ):
        assert type(data) is dict
        adapter = pydantic.TypeAdapter(typed)
        assert adapter.validate_python(data) == data
        assert json.loads(adapter.dump_json(data)) == through_json(data)


@pytest.mark.anyio
async def test_a_response_model_shows_the_real_schema() -> None:
    fastapi = pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")

    from aiostream import ActivityDict, NotificationActivityDict

    app = fastapi.FastAPI()
    activity = Activity(13, Love, 42, time=T0)

    @app.get("/activity", response_model=ActivityDict)
    def one() -> ActivityDict:
        return activity.to_dict()

    @app.get("/notifications", response_model=list[NotificationActivityDict])
    def groups() -> list[NotificationActivityDict]:
        return []

    schemas = app.openapi()["components"]["schemas"]
    assert set(schemas["ActivityDict"]["properties"]) == {*ActivityDict.__annotations__}
    assert "id_types" not in schemas["ActivityDict"]["required"]
    notification = schemas["NotificationActivityDict"]
    assert {"is_seen", "is_read", "activities"} <= set(notification["properties"])
    assert notification["properties"]["activities"]["items"] == {
        "$ref": "#/components/schemas/ActivityDict"
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/activity")
    assert response.json() == through_json(activity.to_dict())


def test_a_subclass_adds_keys_with_a_typeddict_subclass() -> None:
    from aiostream import ActivityDict

    class PinDict(ActivityDict):
        title: str

    class PinActivity(Activity):
        def to_dict(self) -> PinDict:
            return {**super().to_dict(), "title": self.extra_context["title"]}

    pin = PinActivity(1, Love, 2, time=T0, extra_context={"title": "a"})
    data = pin.to_dict()
    assert data == {**Activity.to_dict(pin), "title": "a"}
    assert list(data)[-1] == "title"
    assert PinActivity.from_dict(data) == pin  # from_dict ignores the extra key
    (group,) = RecentVerbAggregator().aggregate([pin])
    assert group.to_dict()["activities"] == [data]


def test_feed_update_views_have_the_keys_of_their_typeddict() -> None:
    from aiostream.realtime import FeedUpdate, FeedUpdateDict

    plain = FeedUpdate("f:1", "added", (2**60,), ("g",)).to_dict()
    counted = FeedUpdate("f:1", "marked", unseen=0, unread=None).to_dict()
    assert plain == {"feed": "f:1", "kind": "added", "activity_ids": [str(2**60)], "groups": ["g"]}
    assert list(counted)[-2:] == ["unseen", "unread"]
    assert set(FeedUpdateDict.__annotations__) == set(counted)
    pydantic = pytest.importorskip("pydantic")
    adapter = pydantic.TypeAdapter(FeedUpdateDict)
    assert adapter.validate_python(plain) == plain
    assert adapter.validate_python(counted) == counted
