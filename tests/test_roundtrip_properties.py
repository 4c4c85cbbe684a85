"""Property tests: hostile activities through real feeds, on every backend, with each
JSON reader.

Activities have ids of any size and sign, times at the edges of the range ids can encode
(naive and aware, odd offsets), and ``extra_context`` with NUL, RTL marks, astral
characters, lone surrogates, nesting around :data:`~aiostream.serializers.MAX_NESTING`,
strings and ``$`` keys that look like the serializer's own tags and separators, floats,
Decimals, UUIDs, dates and datetimes. Each is checked against an oracle written here,
independently of aiostream: whether it can be stored, and what it reads back as.

The property: every call whose input the oracle accepts succeeds and the feed then reads
back exactly the model (values and types); every call with refused input raises the
``ValidationError`` of one of its problems and leaves the feed (and the activity storage)
as it was.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar

import anyio
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aiostream import (
    Activity,
    AggregatedFeed,
    AiostreamError,
    BaseFeed,
    Comment,
    Love,
    SerializationError,
    ValidationError,
    serializers,
)
from aiostream.aggregators import BaseAggregator
from aiostream.serializers import MAX_NESTING
from aiostream.verbs import Verb
from tests.conftest import StorageFactory

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@pytest.fixture(autouse=True, scope="module", params=["orjson", "stdlib"])
def json_reader(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test runs with orjson reading stored JSON and with the standard library."""
    assert serializers._compiled_loads is not None, "the test environment lacks orjson"
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "stdlib":
            patch.setattr(serializers, "_compiled_loads", None)
        yield request.param


# -- the oracle ------------------------------------------------------------------------------

EPOCH_NAIVE = dt.datetime(1970, 1, 1)
LAST_US = 2**52 - 1  # the last microsecond ids can encode (2112-09-17)
ONE_US = dt.timedelta(microseconds=1)


def expected_us(time: dt.datetime) -> int:
    """Microseconds since the epoch, in UTC, by naive arithmetic (which cannot overflow)."""
    offset = time.utcoffset() or dt.timedelta(0)
    return (time.replace(tzinfo=None) - EPOCH_NAIVE - offset) // ONE_US


def storable_time(time: dt.datetime) -> bool:
    return 0 <= expected_us(time) <= LAST_US


def storable_value(value: Any, depth: int = 0) -> bool:
    """Whether ``extra_context`` (at ``depth`` 0) can be stored: no surrogate in any string
    or key, lists and dicts nested at most MAX_NESTING deep."""
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list | dict):
        if depth > MAX_NESTING:
            return False
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return all(
            (not isinstance(k, str) or storable_value(k)) and storable_value(v, depth + 1)
            for k, v in items
        )
    return True


def problems(spec: Spec) -> set[str]:
    found = set()
    if not storable_time(spec.time):
        found.add("time")
    if not storable_value(spec.extra):
        found.add("extra_context")
    return found


def exact(value: Any) -> Any:
    """A comparable form that tells apart what ``==`` does not (1 / True / 1.0, 0.0 / -0.0,
    Decimal("1.0") / Decimal("1"), datetime offsets and fold, dict key order)."""
    if isinstance(value, bool | int | str) or value is None:
        return (type(value).__name__, value)
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, dt.datetime):
        return ("datetime", value.isoformat(), value.fold)
    if isinstance(value, dt.date | Decimal | uuid.UUID):
        return (type(value).__name__, str(value))
    if isinstance(value, list):
        return ("list", tuple(exact(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, exact(v)) for k, v in value.items()))
    raise AssertionError(f"unexpected {type(value).__name__} read back: {value!r}")


def shape_of(activity: Activity) -> Any:
    """What a read-back activity is, exactly."""
    time = activity.time
    assert time.utcoffset() == dt.timedelta(0), time
    return (
        exact(activity.actor_id),
        activity.verb.id,
        exact(activity.object_id),
        exact(activity.target_id),
        expected_us(time),
        exact(activity.extra_context),
    )


class Spec:
    """The input of one activity, and what it must read back as (from the oracle)."""

    def __init__(
        self,
        actor: int,
        verb: type[Verb],
        obj: int,
        target: int | None,
        time: dt.datetime,
        extra: dict[str, Any],
    ) -> None:
        self.actor, self.verb, self.obj, self.target = actor, verb, obj, target
        self.time, self.extra = time, extra

    def shape(self) -> Any:
        return (
            exact(self.actor),
            self.verb.id,
            exact(self.obj),
            exact(self.target),
            expected_us(self.time),
            exact(self.extra),
        )

    def __repr__(self) -> str:
        return (
            f"Spec({self.actor!r}, {self.verb.__name__}, {self.obj!r}, {self.target!r}, "
            f"{self.time!r}, {self.extra!r})"
        )


# -- strategies ------------------------------------------------------------------------------


def mostly(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], percent: int) -> Any:
    """``rare`` in about ``percent`` % of the draws, ``common`` otherwise."""
    return st.integers(0, 99).flatmap(lambda r: rare if r < percent else common)


EDGE_INTS = [
    0,
    -1,
    2**53 + 1,
    10**18,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64 - 1,
    2**64,
    2**64 + 7,
    -(2**64),
    10**19,
    10**30,
    -(10**30),
    10**100,
    -(2**200),
]
ints = st.integers() | st.sampled_from(EDGE_INTS)

MAX_OFFSET = dt.timedelta(hours=24) - ONE_US
offsets = st.sampled_from(
    [
        dt.timedelta(hours=5, minutes=30),
        dt.timedelta(hours=-9, minutes=-30),
        MAX_OFFSET,
        -MAX_OFFSET,
    ]
) | st.timedeltas(min_value=-MAX_OFFSET, max_value=MAX_OFFSET)
zones = st.none() | st.just(dt.UTC) | st.builds(dt.timezone, offsets)

MIN_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_UTC = MIN_UTC + LAST_US * ONE_US


def near(edge: dt.datetime, delta_us: int, zone: dt.tzinfo | None) -> dt.datetime:
    """``edge`` moved by ``delta_us``, on the wall clock of ``zone`` (naive: UTC)."""
    utc = edge + delta_us * ONE_US
    return utc.replace(tzinfo=None) if zone is None else utc.astimezone(zone)


in_range_times = st.datetimes(
    min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2112, 9, 16), timezones=zones
)
edge_times = st.builds(near, st.just(MIN_UTC), st.integers(0, 3), zones) | st.builds(
    near, st.just(MAX_UTC), st.integers(-3, 0), zones
)
out_of_range_times = (
    st.builds(near, st.just(MIN_UTC), st.integers(-3, -1) | st.integers(-(10**16), -1), zones)
    | st.builds(near, st.just(MAX_UTC), st.integers(1, 3) | st.integers(1, 10**17), zones)
    | st.sampled_from(
        [
            dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),  # no UTC datetime
            dt.datetime.max.replace(tzinfo=dt.timezone(-MAX_OFFSET)),
            dt.datetime.min,
            dt.datetime(1969, 12, 31, 23, 59, 59, 999_999),
        ]
    )
)
times = mostly(mostly(in_range_times, edge_times, 30), out_of_range_times, 5)

SPECIAL_CHARS = [
    "\x00",
    "\x1f",
    "\x1e",
    "\u200f",
    "\u202e",
    "\u2067",
    "\ufeff",
    "\U0001f422",
    "\U0010ffff",
    "\ud7ff",
    "\ue000",
    "$",
    '"',
    "\\",
    "{",
    "}",
    "[",
    ",",
    ";",
    ":",
    "\n",
    "\x7f",
]
safe_chars = st.characters(exclude_categories=["Cs"]) | st.sampled_from(SPECIAL_CHARS)
TAG_LIKE = [
    '{"$dt":"2024-01-01T00:00:00"}',
    '{"$map":[["a",1]]}',
    "$dt",
    "$map",
    '[2,"g",',
    "\x1e" + "0" * 26,
    "\x1f[1,1,3,2,null,0]",
    "9" * 30,
    "-" + "1" * 19,
]
safe_text = st.text(safe_chars, max_size=8) | st.sampled_from(TAG_LIKE)
surrogate_text = st.builds(
    lambda a, s, b: a + s + b, safe_text, st.characters(categories=["Cs"]), safe_text
)
texts = mostly(safe_text, surrogate_text, 2)
TAG_KEYS = ["$dt", "$dt1", "$date", "$dec", "$uuid", "$map", "$", "$$", "$int"]
keys = mostly(safe_text | st.sampled_from(TAG_KEYS), surrogate_text, 1)

scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
    | st.builds(
        lambda d, fold: d.replace(fold=fold), st.datetimes(timezones=zones), st.integers(0, 1)
    )
    | st.dates()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.uuids()
)
tag_dicts = st.builds(lambda key, value: {key: value}, st.sampled_from(TAG_KEYS), scalars)
values = st.recursive(
    scalars | tag_dicts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=8,
)


def nest(depth: int, dollar: bool, leaf: Any) -> Any:
    """``depth`` nested lists (or one-key dicts with ``$`` keys) around ``leaf``."""
    value = leaf
    for i in range(depth):
        value = {f"${i}": value} if dollar else [value]
    return value


# The value of a top-level key is at depth 1: MAX_NESTING containers fit, one more does not.
deep_values = st.builds(nest, st.integers(MAX_NESTING - 2, MAX_NESTING + 1), st.booleans(), scalars)
extras = st.dictionaries(keys, mostly(values, deep_values, 6), max_size=4)

specs = st.builds(
    Spec,
    ints,
    st.sampled_from([Love, Comment]),
    ints,
    st.none() | ints,
    times,
    extras,
)

# -- driving feeds ---------------------------------------------------------------------------

SAFE_TIME = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def build(spec: Spec, canonical: dict[int, dict[str, Any]]) -> Activity:
    """The activity of ``spec``. Activity() itself must refuse a time out of range; such a
    time is then set on the made activity, as code may do, for the feed to refuse.

    An id already written keeps its first extra_context (re-adding an activity with other
    data is an update, not what is tested here): ``spec.extra`` is changed to it."""
    if "time" in problems(spec):
        with pytest.raises(ValidationError, match=r"^time: ") as raised:
            Activity(spec.actor, spec.verb, spec.obj, spec.target, time=spec.time)
        assert raised.value.field == "time"
        activity = Activity(spec.actor, spec.verb, spec.obj, spec.target, time=SAFE_TIME)
        activity.time = spec.time
        activity.extra_context = spec.extra
        return activity
    activity = Activity(
        spec.actor, spec.verb, spec.obj, spec.target, time=spec.time, extra_context=spec.extra
    )
    first = canonical.setdefault(activity.serialization_id, spec.extra)
    spec.extra = activity.extra_context = first
    return activity


def kind(error: ValidationError) -> str:
    return "extra_context" if error.field.startswith("extra_context") else error.field


EXPECTED_ERROR = {"time": ValidationError, "extra_context": SerializationError}


def check_refusal(error: BaseException, found: set[str]) -> None:
    event(f"refused ({', '.join(sorted(found))})")
    assert isinstance(error, ValidationError) and isinstance(error, AiostreamError), error
    assert kind(error) in found, (error, found)
    assert type(error) is EXPECTED_ERROR[kind(error)], error


async def write(feed: BaseFeed, op: str, activities: list[Activity]) -> None:
    if op == "add":
        await feed.add(activities[0])
    else:
        await feed.add_many(activities)


class PropertyFeed(BaseFeed):
    key_format = "roundtrip:flat:%(user_id)s"
    max_length = 1000
    trim_chance = 0.0


flat_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), specs),
        st.tuples(st.just("add_many"), st.lists(specs, min_size=1, max_size=3)),
        st.tuples(st.just("remove"), st.integers(0, 50)),
        st.tuples(st.just("read"), st.tuples(st.integers(0, 4), st.none() | st.integers(0, 6))),
    ),
    min_size=1,
    max_size=10,
)


@SETTINGS
@given(ops=flat_ops)
def test_flat_feed_reads_back_exactly_or_refuses_writing_nothing(
    storage_factory: StorageFactory, ops: list[tuple[str, Any]]
) -> None:
    async def run() -> None:
        async with storage_factory() as storage:
            feed = PropertyFeed(1, storage=storage)
            model: dict[int, Any] = {}  # id -> shape, of what the feed holds
            stored: set[int] = set()  # ids in the activity storage
            canonical: dict[int, dict[str, Any]] = {}

            def expected() -> list[Any]:
                return [model[k] for k in sorted(model, reverse=True)]

            async def assert_feed_is_model() -> None:
                assert [shape_of(a) for a in await feed[:]] == expected()
                assert await feed.count() == len(model)

            for op, arg in ops:
                if op == "read":
                    start, stop = arg
                    assert [shape_of(a) for a in await feed[start:stop]] == expected()[start:stop]
                    continue
                if op == "remove":
                    page = await feed[:]
                    if page:
                        target = page[arg % len(page)]  # an activity as read back
                        await feed.remove(target)
                        del model[target.serialization_id]
                    await assert_feed_is_model()
                    continue
                batch = [arg] if op == "add" else arg
                trial = dict(canonical)
                activities = [build(spec, trial) for spec in batch]
                found = set().union(*(problems(spec) for spec in batch))
                if not found:
                    await write(feed, op, activities)
                    event("written")
                    canonical = trial
                    for activity, spec in zip(activities, batch, strict=True):
                        model[activity.serialization_id] = spec.shape()
                        stored.add(activity.serialization_id)
                else:
                    with pytest.raises(AiostreamError) as raised:
                        await write(feed, op, activities)
                    check_refusal(raised.value, found)
                    ids = [
                        a.serialization_id
                        for a, spec in zip(activities, batch, strict=True)
                        if "time" not in problems(spec)
                    ]
                    if ids:
                        held = await storage.load_activities(ids)
                        assert set(held) == {i for i in ids if i in stored}
                await assert_feed_is_model()

    anyio.run(run)


class ByObject(BaseAggregator):
    def get_group(self, activity: Activity) -> str:
        return f"object-{activity.object_id % 4}"


class PropertyAggregatedFeed(AggregatedFeed):
    key_format = "roundtrip:aggregated:%(user_id)s"
    aggregator_class = ByObject
    max_length: ClassVar[int] = 1000
    trim_chance: ClassVar[float] = 0.0


group_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add_many"), st.lists(specs, min_size=1, max_size=3)),
        st.tuples(st.just("remove"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=5,  # at most 15 activities: no group minimizes any
)


@SETTINGS
@given(ops=group_ops)
def test_aggregated_feed_reads_back_exactly_or_refuses_writing_nothing(
    storage_factory: StorageFactory, ops: list[tuple[str, Any]]
) -> None:
    async def run() -> None:
        async with storage_factory() as storage:
            feed = PropertyAggregatedFeed(1, storage=storage)
            model: dict[str, dict[int, Any]] = {}  # group -> {id: shape}
            canonical: dict[int, dict[str, Any]] = {}

            async def assert_feed_is_model() -> None:
                groups = await feed[:]
                got = {
                    g.group: {a.serialization_id: shape_of(a) for a in g.activities} for g in groups
                }
                assert got == {name: held for name, held in model.items() if held}
                for group in groups:
                    assert group.activity_ids == sorted(model[group.group])
                assert await feed.count() == len(got)

            for op, arg in ops:
                if op == "remove":
                    activities = [a for g in await feed[:] for a in g.activities]
                    if activities:
                        target = activities[arg % len(activities)]
                        await feed.remove_many([target])
                        del model[f"object-{target.object_id % 4}"][target.serialization_id]
                    await assert_feed_is_model()
                    continue
                trial = dict(canonical)
                activities = [build(spec, trial) for spec in arg]
                found = set().union(*(problems(spec) for spec in arg))
                if not found:
                    await feed.add_many(activities)
                    event("written")
                    canonical = trial
                    for activity, spec in zip(activities, arg, strict=True):
                        held = model.setdefault(f"object-{spec.obj % 4}", {})
                        held[activity.serialization_id] = spec.shape()
                else:
                    with pytest.raises(AiostreamError) as raised:
                        await feed.add_many(activities)
                    check_refusal(raised.value, found)
                await assert_feed_is_model()

    anyio.run(run)
