"""Stored formats: exact round trips, clear errors, no separators to break."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiostream import Activity, AggregatedActivity, Love, SerializationError, UnknownVerbError
from aiostream.serializers import ActivitySerializer, AggregatedActivitySerializer
from tests.helpers import T0, CustomActivity, CustomAggregated, at

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
