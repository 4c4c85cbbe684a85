"""Stored formats: exact round trips, clear errors, no separators to break."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiostream import (
    Activity,
    AggregatedActivity,
    Love,
    SerializationError,
    UnknownVerbError,
    serializers,
)
from aiostream.serializers import ActivitySerializer, AggregatedActivitySerializer
from tests.helpers import T0, CustomActivity, CustomAggregated, at


@pytest.fixture(autouse=True, scope="module", params=["orjson", "stdlib"])
def json_reader(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs with each JSON reader: orjson (the ``speedups`` extra, which
    the test environment installs) and the standard library's (a bare install, and the
    fallback for what orjson cannot read)."""
    assert serializers._compiled_loads is not None, "the test environment lacks orjson"
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "stdlib":
            patch.setattr(serializers, "_compiled_loads", None)
        yield request.param


RICH = {
    "s": 'a;b,c;;d\n"}]',
    "i": 2**70,
    "f": 0.1,
    "b": True,
    "n": None,
    "l": [1, "x", [2.5]],
    "d": {"nested": {"deep": [dt.date(2024, 1, 2)]}},
    "dt_naive": dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    "dt_aware": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    "date": dt.date(2024, 2, 29),
    "dec": Decimal("12.3400"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "$dt": "a user key that looks like a tag",
    "tag_like": {"$dec": "not a decimal"},
    "unicode": "żółw 🐢",
}


def test_activity_round_trip_exact() -> None:
    serializer = ActivitySerializer(Activity)
    original = Activity(7, Love, 42, target=9, time=at(0.5), extra_context=RICH)
    payload = serializer.dumps(original)
    json.loads(payload)  # plain JSON
    back = serializer.loads(payload)
    assert back == original
    assert back.time == original.time
    assert back.extra_context == RICH
    assert type(back.extra_context["dt_naive"]) is dt.datetime
    assert back.extra_context["dt_naive"].tzinfo is None
    assert back.extra_context["dt_aware"].utcoffset() == dt.timedelta(hours=-5)
    assert type(back.extra_context["date"]) is dt.date
    assert str(back.extra_context["dec"]) == "12.3400"


def test_compact_format() -> None:
    payload = ActivitySerializer(Activity).dumps(Activity(7, Love, 42, time=T0))
    assert payload == f"[1,7,3,42,null,{int(T0.timestamp()) * 10**6}]"


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"x": {1, 2}}, r"extra_context\['x'\]"),
        ({"x": (1, 2)}, r"extra_context\['x'\]"),
        ({"x": b"raw"}, r"extra_context\['x'\]"),
        ({"x": float("nan")}, r"extra_context\['x'\]"),
        ({"x": Decimal("inf")}, r"extra_context\['x'\]"),
        ({"x": [1, object()]}, r"extra_context\['x'\]\[1\]"),
        ({"x": {2: "int key"}}, r"extra_context\['x'\]\[2\]"),
    ],
)
def test_unstorable_values_name_their_path(extra: dict[str, Any], path: str) -> None:
    with pytest.raises(SerializationError, match=path):
        ActivitySerializer(Activity).dumps(Activity(1, Love, 2, time=T0, extra_context=extra))


def test_wrong_class_and_bad_payloads() -> None:
    with pytest.raises(SerializationError, match="CustomActivity"):
        ActivitySerializer(CustomActivity).dumps(Activity(1, Love, 2, time=T0))
    serializer = ActivitySerializer(Activity)
    for bad in ("not json", "[2,1,3,4,null,0]", "{}", "[1,1]"):
        with pytest.raises(SerializationError):
            serializer.loads(bad)
    with pytest.raises(UnknownVerbError, match="999"):
        serializer.loads("[1,1,999,2,null,0]")


def test_subclass_round_trip() -> None:
    serializer = ActivitySerializer(CustomActivity)
    back = serializer.loads(serializer.dumps(CustomActivity(1, Love, 2, time=T0)))
    assert type(back) is CustomActivity


def test_aggregated_round_trip() -> None:
    serializer = AggregatedActivitySerializer(CustomAggregated, ActivitySerializer(CustomActivity))
    group = CustomAggregated("3-2024-05-01")
    for i in range(20):
        group.append(CustomActivity(i, Love, 1, time=at(i), extra_context={"n": 59, "s": ";"}))
    group.update_seen_at()
    back = serializer.loads(serializer.dumps(group))
    assert type(back) is CustomAggregated
    assert back == group
    assert back.minimized_activities == 5
    assert back.serialization_id == group.serialization_id
    assert not group.dehydrated  # dumping never mutates the caller's object
    with pytest.raises(SerializationError):
        serializer.dumps(AggregatedActivity("x", [CustomActivity(1, Love, 1, time=T0)]))
    with pytest.raises(SerializationError, match="hydrated"):
        serializer.dumps(CustomAggregated("empty"))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.datetimes()
    | st.dates()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.uuids(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_any_supported_extra_context_round_trips(extra: dict[str, Any]) -> None:
    serializer = ActivitySerializer(Activity)
    back = serializer.loads(serializer.dumps(Activity(1, Love, 2, time=T0, extra_context=extra)))
    assert back.extra_context == extra
    assert repr(back.extra_context) == repr(extra)  # same types, same precision


@given(st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=3), max_size=6))
def test_a_page_decodes_as_each_payload_does(extras: list[dict[str, Any]]) -> None:
    serializer = ActivitySerializer(Activity)
    originals = [Activity(i, Love, 2, time=at(i), extra_context=e) for i, e in enumerate(extras)]
    payloads = [serializer.dumps(a) for a in originals]
    page = serializer.loads_many(payloads)
    assert page == [serializer.loads(p) for p in payloads] == originals
    assert [repr(a.extra_context) for a in page] == [repr(e) for e in extras]
    assert [a.time for a in page] == [a.time for a in originals]
    assert serializer.loads_many([p.encode() for p in payloads]) == originals


def test_a_bad_payload_in_a_page_gets_its_own_error() -> None:
    serializer = ActivitySerializer(Activity)
    good = serializer.dumps(Activity(1, Love, 2, time=T0))
    for bad, error in (
        ("[2,1,3,4,null,0]", SerializationError),
        ("[1,1,999,2,null,0]", UnknownVerbError),
        ("[1,1,3", SerializationError),
        ("[1,1,3,2,null,0],[1,1,3,2,null,0]", SerializationError),
        ('"x', SerializationError),
    ):
        with pytest.raises(error) as alone:
            serializer.loads(bad)
        with pytest.raises(error) as in_page:
            serializer.loads_many([good, bad, good])
        assert str(in_page.value) == str(alone.value)


class Tagged(Activity):
    """Keeps state of its own, rebuilt by its from_storage."""

    @classmethod
    def from_storage(cls, *args: Any) -> Tagged:
        activity = super().from_storage(*args)
        activity.rebuilt = True  # type: ignore[attr-defined]
        return activity


def test_an_overridden_from_storage_is_called() -> None:
    serializer = ActivitySerializer(Tagged)
    original = Tagged(1, Love, 2, time=T0)
    payloads = [serializer.dumps(original)] * 3
    assert all(a.rebuilt for a in serializer.loads_many(payloads))  # type: ignore[attr-defined]
    assert serializer.loads(payloads[0]).rebuilt  # type: ignore[attr-defined]
    groups = AggregatedActivitySerializer(AggregatedActivity, serializer)
    group = groups.loads(groups.dumps(AggregatedActivity("g", [original])))
    assert group.activities[0].rebuilt  # type: ignore[attr-defined]


def test_group_format() -> None:
    """Version 2: JSON but for the activity separators, then the activity ids."""
    serializer = AggregatedActivitySerializer(AggregatedActivity, ActivitySerializer(Activity))
    name = 'a,"]]\x1f\x1e|[2,'
    extra = {"s": "\x1f\x1e,]]", "d": dt.date(2024, 1, 2)}
    group = AggregatedActivity(
        name, [Activity(i, Love, 3, time=at(i), extra_context=extra) for i in range(3)]
    )
    payload = serializer.dumps(group)
    body, separator, ids = payload.partition("\x1e")
    assert separator and body.startswith('[2,"a,\\"]]\\u001f\\u001e|[2,",')
    assert body.count("\x1f") == 2
    assert ids == "".join(f"{a.serialization_id:026x}" for a in group.activities)
    data = json.loads(body.replace("\x1f", ","))
    assert data[:7] == [
        2,
        name,
        *(int(t.timestamp()) * 10**6 for t in (at(0), at(2))),
        None,
        None,
        0,
    ]
    assert serializer.loads(payload) == group
    assert serializer.loads(payload).activities[0].extra_context == extra


def test_group_format_1_is_still_read() -> None:
    serializer = AggregatedActivitySerializer(AggregatedActivity, ActivitySerializer(Activity))
    t0, t1 = (int(at(i).timestamp()) * 10**6 for i in (0, 1))
    payload = (
        f'[1,"3-2024-05-01",{t0},{t1},null,{t1},4,'
        f'[[7,3,42,null,{t0}],[8,3,42,9,{t1},{{"k":{{"$date":"2024-01-02"}}}}]]]'
    )
    group = serializer.loads(payload)
    assert group.group == "3-2024-05-01"
    assert (group.created_at, group.updated_at, group.seen_at, group.read_at) == (
        at(0),
        at(1),
        None,
        at(1),
    )
    assert group.minimized_activities == 4
    assert [(a.actor_id, a.target_id, a.extra_context) for a in group.activities] == [
        (7, None, {}),
        (8, 9, {"k": dt.date(2024, 1, 2)}),
    ]
    for bad in ("[2,1]", '[2,"g",0,0,null,null,0,[[1,3,2,null,0]]]\x1e' + "0" * 25):
        with pytest.raises(SerializationError):
            serializer.loads(bad)


def test_a_page_of_groups_decodes_as_each_payload_does() -> None:
    serializer = AggregatedActivitySerializer(CustomAggregated, ActivitySerializer(CustomActivity))
    groups = []
    for g in range(4):
        group = CustomAggregated(f"g,{g}\x1f")
        for i in range(g * 7):
            extra = {"n": i, "when": at(i)} if i % 2 else {}
            group.append(CustomActivity(i, Love, g, time=at(i), extra_context=extra))
        group.update_seen_at()
        if group.activities:
            groups.append(group)
    payloads = [serializer.dumps(g) for g in groups]
    page = serializer.loads_many(payloads)
    assert page == [serializer.loads(p) for p in payloads] == groups
    assert all(type(g) is CustomAggregated for g in page)
    assert [g.seen_at for g in page] == [g.seen_at for g in groups]
    assert [[a.extra_context for a in g.activities] for g in page] == [
        [a.extra_context for a in g.activities] for g in groups
    ]
    # Format 1 among them, bytes, and a broken one with its own error.
    legacy = '[1,"old",0,0,null,null,0,[[1,3,2,null,0,{"k":1}]]]'
    mixed = serializer.loads_many([payloads[0], legacy, payloads[1].encode()])
    assert mixed[0] == groups[0] and mixed[2] == groups[1]
    assert mixed[1].group == "old" and mixed[1].activities[0].extra_context == {"k": 1}
    broken = payloads[1][:-1]  # one id digit short
    with pytest.raises(SerializationError, match="malformed") as alone:
        serializer.loads(broken)
    with pytest.raises(SerializationError) as in_page:
        serializer.loads_many([payloads[0], broken])
    assert str(in_page.value) == str(alone.value)


WIDE_INTS = [2**64 + 7, -(2**63) - 1, 10**30]


def test_ints_beyond_64_bits_round_trip_exactly(json_reader: str) -> None:
    """orjson reads ints outside -2**63 .. 2**64 - 1 as floats: those go to the stdlib."""
    serializer = ActivitySerializer(Activity)
    originals = [
        Activity(
            n,
            Love,
            n + 1,
            target=-n,
            time=at(i),
            extra_context={"n": n, "l": [n, {"deep": n}], "s": "plain"},
        )
        for i, n in enumerate(WIDE_INTS)
    ]
    payloads = [serializer.dumps(a) for a in originals]
    groups = AggregatedActivitySerializer(AggregatedActivity, serializer)
    group_payloads = [
        groups.dumps(AggregatedActivity(f"g{n}", [a]))
        for n, a in zip(WIDE_INTS, originals, strict=True)
    ]
    read_back = [
        [serializer.loads(p) for p in payloads],
        serializer.loads_many(payloads),
        [g.activities[0] for g in groups.loads_many(group_payloads)],
        [groups.loads(p).activities[0] for p in group_payloads],
    ]
    for activities in read_back:
        for n, back, original in zip(WIDE_INTS, activities, originals, strict=True):
            fields = (back.actor_id, back.object_id, back.target_id)
            assert fields == (n, n + 1, -n)
            assert [type(f) for f in fields] == [int, int, int]
            assert repr(back.extra_context) == repr(original.extra_context)
            assert back.serialization_id == original.serialization_id


def test_a_run_of_digits_in_a_string_still_reads_exactly(json_reader: str) -> None:
    serializer = ActivitySerializer(Activity)
    extra = {"phone": "0" * 40, "n": 12, "f": 0.5}
    original = Activity(1, Love, 2, time=T0, extra_context=extra)
    back = serializer.loads_many([serializer.dumps(original)] * 2)
    assert [repr(a.extra_context) for a in back] == [repr(extra)] * 2


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"x": "\ud800"}, r"extra_context\['x'\]"),
        ({"x": ["ok", "a\udfffb"]}, r"extra_context\['x'\]\[1\]"),
        ({"x": {"k": {"\udc80": 1}}}, r"extra_context\['x'\]\['k'\]\['\\udc80'\]"),
        ({"\ud83d": 1}, r"extra_context\['\\ud83d'\]"),
        ({"x": {"$dt": "\ud800"}}, r"extra_context\['x'\]\['\$dt'\]"),
    ],
)
def test_lone_surrogates_are_refused_naming_their_path(extra: dict[str, Any], path: str) -> None:
    with pytest.raises(SerializationError, match=f"^{path}: .*surrogate"):
        ActivitySerializer(Activity).dumps(Activity(1, Love, 2, time=T0, extra_context=extra))


def test_astral_characters_and_paired_surrogates_are_fine(json_reader: str) -> None:
    serializer = ActivitySerializer(Activity)
    extra = {
        "🐢": "a\U0001f422b\u200f\x00",
        "paired": "\ud83d\udc22".encode("utf-16", "surrogatepass").decode("utf-16"),
    }
    back = serializer.loads(serializer.dumps(Activity(1, Love, 2, time=T0, extra_context=extra)))
    assert back.extra_context == extra


def nested(depth: int, *, dollar: bool = False) -> Any:
    """``depth`` nested containers: lists, or one-key dicts whose key starts with ``$``."""
    value: Any = "leaf"
    for i in range(depth):
        value = {f"${i}": value} if dollar else [value]
    return value


@pytest.mark.parametrize("dollar", [False, True], ids=["lists", "dollar-dicts"])
def test_nesting_up_to_the_limit_round_trips(json_reader: str, dollar: bool) -> None:
    serializer = ActivitySerializer(Activity)
    extra = {"x": nested(serializers.MAX_NESTING, dollar=dollar)}
    payload = serializer.dumps(Activity(1, Love, 2, time=T0, extra_context=extra))
    assert serializer.loads(payload).extra_context == extra
    assert [a.extra_context for a in serializer.loads_many([payload] * 2)] == [extra] * 2
    groups = AggregatedActivitySerializer(AggregatedActivity, serializer)
    group = AggregatedActivity("g", [serializer.loads(payload)])
    assert groups.loads(groups.dumps(group)).activities[0].extra_context == extra


@pytest.mark.parametrize("depth", [serializers.MAX_NESTING + 1, 1_200, 50_000])
def test_deeper_nesting_is_a_serialization_error(depth: int) -> None:
    extra = {"x": nested(depth)}
    with pytest.raises(
        SerializationError, match=r"^extra_context\['x'\](\[0\])*: .*deeper than 100"
    ):
        ActivitySerializer(Activity).dumps(Activity(1, Love, 2, time=T0, extra_context=extra))


def test_reading_deeply_nested_json_never_recurses_out(json_reader: str) -> None:
    """Payloads nested past any limit (written by hand, or by another writer)."""
    serializer = ActivitySerializer(Activity)
    deep = "[" * 100_000 + "]" * 100_000
    payload = f'[1,1,{Love.id},2,null,0,{{"x":{deep}}}]'
    with pytest.raises(SerializationError, match="not JSON"):
        serializer.loads(payload)
    with pytest.raises(SerializationError, match="not JSON"):
        serializer.loads_many([payload, payload])
    groups = AggregatedActivitySerializer(AggregatedActivity, serializer)
    with pytest.raises(SerializationError, match="not JSON"):
        groups.loads(f'[2,"g",0,0,null,null,0,[{payload[3:]}]]\x1e' + "0" * 26)


def test_ints_python_cannot_write_as_text_are_refused() -> None:
    with pytest.raises(SerializationError, match=r"^extra_context\['x'\]\[0\]: .*digits"):
        ActivitySerializer(Activity).dumps(
            Activity(1, Love, 2, time=T0, extra_context={"x": [10**5000]})
        )


def test_a_group_read_back_builds_its_activities_when_first_touched() -> None:
    serializer = AggregatedActivitySerializer(CustomAggregated, ActivitySerializer(CustomActivity))
    activities = [
        CustomActivity(i % 3 + 1, Love, 40 + i % 2, time=at(i), extra_context={"n": i})
        for i in range(6)
    ]
    back = serializer.loads(serializer.dumps(CustomAggregated("g", activities)))
    copy = back.copy()
    assert not back.activities_built
    assert back.activity_ids == [a.serialization_id for a in activities]
    assert (back.actor_ids, back.object_ids, back.verbs, back.verb) == (
        [1, 2, 3],
        [40, 41],
        [Love],
        Love,
    )
    assert (len(back), back.activity_count, back.actor_count) == (6, 6, 3)
    assert back.contains(activities[2]) and not back.contains(activities[2].serialization_id + 1)
    last = back.last_activity
    assert (type(last), last, last.extra_context) == (CustomActivity, activities[-1], {"n": 5})
    assert not back.activities_built  # the last one was built alone
    assert back.activities == activities
    assert back.activities_built and back.activities[-1] is last
    assert [a.extra_context for a in back.activities] == [{"n": i} for i in range(6)]
    # A copy taken before builds the same objects.
    assert all(a is b for a, b in zip(copy.activities, back.activities, strict=True))


def test_a_stored_group_with_a_broken_activity_fails_when_read() -> None:
    serializer = AggregatedActivitySerializer(AggregatedActivity, ActivitySerializer(Activity))
    group = AggregatedActivity("g", [Activity(1, Love, 2, time=at(0))])
    payload = serializer.dumps(group)
    unknown_verb = payload.replace(f"[1,{Love.id},2,", "[1,999,2,")
    with pytest.raises(UnknownVerbError, match="999"):
        serializer.loads(unknown_verb)
    with pytest.raises(UnknownVerbError, match="999"):
        serializer.loads_many([payload, unknown_verb])
    short_row = payload.replace(f"[1,{Love.id},2,null,", f"[1,{Love.id},")
    with pytest.raises(SerializationError, match="malformed"):
        serializer.loads(short_row)
