"""Aggregated adds merged on the server (``MERGE_GROUPS``) store exactly what the
read-modify-write of the other backends stores, and fall back to it when they must; every
storage that merges groups itself builds them as ``AggregatedActivity.append`` does; the
merge is used exactly when the classes involved declare ``server_mergeable``."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
from typing import Any, ClassVar

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiostream import (
    Activity,
    AggregatedActivity,
    AggregatedFeed,
    DuplicateActivityError,
    Love,
    NotificationActivity,
    NotificationFeed,
    RecentVerbAggregator,
)
from aiostream.aggregators import BaseAggregator
from aiostream.ids import datetime_to_us
from aiostream.query import Query
from aiostream.serializers import ActivitySerializer, AggregatedActivitySerializer
from aiostream.storage.base import GroupChange, GroupMerge, GroupMergeStorage, GroupRecord
from aiostream.storage.memory import MemoryStorage
from aiostream.storage.redis import RedisStorage
from tests.conftest import BACKENDS, StorageFactory
from tests.helpers import T0, Pin
from tests.redis.conftest import StorageOpener
from tests.redis.test_scripts import snapshot

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Group names with every character the stored format relies on.
AWKWARD = ',"]]|[2,\x1f\x1e\\'


class Awkward(BaseAggregator):
    def get_group(self, activity: Activity) -> str:
        return f"{activity.verb.id}{AWKWARD}{activity.object_id % 2}"


class SmallNotification(NotificationActivity):
    max_aggregated_activities_length = 3


class SmallGroup(AggregatedActivity):
    max_aggregated_activities_length = 2


class MergedNotifications(NotificationFeed):
    key_format = "merge:notify:%(user_id)s"
    aggregator_class = Awkward
    aggregated_activity_class = SmallNotification
    max_length = 3
    trim_chance: ClassVar[float] = 1.0


class MergedAggregated(AggregatedFeed):
    key_format = "merge:aggregated:%(user_id)s"
    aggregated_activity_class = SmallGroup
    max_length = 100


def activity(actor: int, obj: int, seconds: int, tag: str = "") -> Activity:
    extra = {"note": f"{tag}\x1f]],\x1e"} if tag else None
    verb = Love if actor % 3 else Pin
    return Activity(actor, verb, obj, time=T0 + dt.timedelta(hours=seconds), extra_context=extra)


activities = st.builds(
    activity,
    st.integers(0, 5),
    st.integers(0, 3),
    st.integers(0, 60),
    st.sampled_from(["", "x", 'q"{"$dt":1}']),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(activities, min_size=1, max_size=5)),
        st.tuples(st.just("add_one"), activities),
        st.tuples(st.just("remove"), st.lists(activities, min_size=1, max_size=2)),
        st.tuples(st.just("mark_all"), st.booleans()),
    ),
    min_size=1,
    max_size=10,
)
users = itertools.count()


async def records(storage: Any, key: str) -> list[GroupRecord]:
    return list(await storage.read_groups(key, 0, None, Query(), markers=True))


pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("feed_class", [MergedNotifications, MergedAggregated])
@SETTINGS
@given(ops=operations)
def test_server_merge_stores_what_the_read_modify_write_stores(
    open_storage: StorageOpener, feed_class: type[AggregatedFeed], ops: list[tuple[str, Any]]
) -> None:
    async def run() -> None:
        user = next(users)
        async with open_storage() as storage:
            feed, oracle = (
                feed_class(user, storage=storage),
                feed_class(user, storage=MemoryStorage()),
            )
            for op, arg in ops:
                if op == "add":
                    assert await feed.add_many(arg) == await oracle.add_many(arg)
                elif op == "add_one":
                    await feed.add(arg)
                    await oracle.add(arg)
                elif op == "remove":
                    assert await feed.remove_many(arg) == await oracle.remove_many(arg)
                elif isinstance(feed, NotificationFeed):
                    await feed.mark_all(seen=arg, read=not arg)
                    await oracle.mark_all(seen=arg, read=not arg)  # type: ignore[attr-defined]
                assert await records(storage, feed.key) == await records(oracle.storage, feed.key)
            assert await feed[:] == await oracle[:]

    anyio.run(run)


async def test_adds_are_one_script_call(storage: RedisStorage, monkeypatch: Any) -> None:
    feed = MergedNotifications(1, storage=storage)
    await feed.add(activity(1, 1, 0))

    async def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an aggregated add read or compare-and-set the groups")

    monkeypatch.setattr(storage, "get_groups", forbidden)
    monkeypatch.setattr(storage, "write_groups", forbidden)
    await feed.add(activity(2, 1, 1))
    await feed.add_many([activity(4, 2, 2), activity(5, 1, 3)])
    (group,) = [g for g in await feed[:] if g.group.endswith("1")]
    assert group.actor_ids == [1, 2, 5]


@pytest.mark.parametrize("feed_class", [MergedNotifications, MergedAggregated])
async def test_a_fanout_chunk_is_one_merge_and_stores_what_each_feed_would(
    storage: RedisStorage, monkeypatch: Any, feed_class: type[AggregatedFeed]
) -> None:
    """A fanout of aggregated feeds is one ``merge_groups`` call for the whole chunk (no
    read, no compare-and-set), and leaves each feed exactly as adding to it alone leaves
    the same feed on the reference storage, whatever the feed held before: nothing, the
    same activity, or other groups."""
    oracle = MemoryStorage()
    users = [1, 2, 3, 4]
    before = {2: [activity(1, 1, 0)], 3: [activity(2, 2, 5), activity(4, 1, 1)]}
    for user, held in before.items():
        await feed_class(user, storage=storage).add_many(held)
        await feed_class(user, storage=oracle).add_many(held)
    calls: list[list[str]] = []
    merge_groups = storage.merge_groups

    async def counted(keys: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(list(keys))
        return await merge_groups(keys, *args, **kwargs)

    async def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a fanout chunk read or compare-and-set the groups")

    monkeypatch.setattr(storage, "merge_groups", counted)
    monkeypatch.setattr(storage, "get_groups", forbidden)
    monkeypatch.setattr(storage, "write_groups", forbidden)
    new = [activity(1, 1, 0), activity(5, 1, 2), activity(2, 3, 3)]
    await feed_class.fanout_add(users, new, storage=storage)
    for user in users:
        await feed_class(user, storage=oracle).add_many(new)

    assert calls == [[feed_class(u).key for u in users]]
    for user in users:
        key = feed_class(user).key
        assert await records(storage, key) == await records(oracle, key)


async def test_a_fanout_chunk_merges_the_feeds_it_can_and_adds_to_the_others(
    storage: RedisStorage,
) -> None:
    """A feed holding a group in a format the server cannot merge into is written the
    other way (read, merge, compare-and-set); the chunk's other feeds are merged."""
    oracle = MemoryStorage()
    old = SmallGroup("3-2024-05-01", [activity(1, 1, 0, "x")])
    record = GroupRecord(old.group, old.serialization_id, version_1(old), 1)
    key = MergedAggregated(2).key
    for target in (storage, oracle):
        assert await target.write_groups(
            key, [GroupChange(old.group, None, record)], max_length=None, track_markers=False
        )
    new = [activity(4, 3, 2), activity(7, 2, 1)]
    await MergedAggregated.fanout_add([1, 2, 3], new, storage=storage)
    for user in (1, 2, 3):
        await MergedAggregated(user, storage=oracle).add_many(new)
        key = MergedAggregated(user).key
        assert await records(storage, key) == await records(oracle, key)
    (upgraded,) = [
        r for r in await records(storage, MergedAggregated(2).key) if r.group == old.group
    ]
    assert upgraded.payload.startswith("[2,")


@pytest.mark.redis_cluster
@pytest.mark.parametrize("kind", ["redis_cluster"], indirect=False)
async def test_a_cluster_fanout_chunk_merges_with_one_script_per_node(
    storage: RedisStorage, monkeypatch: Any
) -> None:
    """On a cluster a chunk's feeds sit in about as many slots as feeds; they are merged
    with one script per master (the slots it serves), and each feed ends as adding to
    it alone ends on the reference storage."""
    from aiostream.storage.redis._scripts import Script

    oracle = MemoryStorage()
    users = range(1, 301)
    for user in (5, 6):
        held = [activity(1, 1, 0), activity(3, 2, 4)]
        await MergedNotifications(user, storage=storage).add_many(held)
        await MergedNotifications(user, storage=oracle).add_many(held)
    queued: list[str] = []
    queue = Script.queue

    def recording(self: Script, *args: Any, **kwargs: Any) -> None:
        queued.append(self.name)
        queue(self, *args, **kwargs)

    monkeypatch.setattr(Script, "queue", recording)
    new = [activity(1, 1, 0), activity(5, 1, 2), activity(2, 3, 3)]
    await MergedNotifications.fanout_add(list(users), new, storage=storage)
    assert queued == ["merge_groups_cross_slot"] * 3
    assert storage._cross_slot is True
    for user in users:
        await MergedNotifications(user, storage=oracle).add_many(new)
        key = MergedNotifications(user).key
        assert await records(storage, key) == await records(oracle, key)
        assert await storage.count_markers(key) == await oracle.count_markers(key)


class ByActorMerge(BaseAggregator):
    """Its own merge rules: the storage cannot apply them."""

    def get_group(self, activity: Activity) -> str:
        return str(activity.actor_id)

    def merge(self, aggregated: Any, activities: Any) -> Any:
        new, changed, deleted = super().merge(aggregated, activities)
        return new, changed, deleted


class CustomMergeFeed(AggregatedFeed):
    key_format = "merge:custom:%(user_id)s"
    aggregator_class = ByActorMerge


async def test_custom_merge_rules_read_and_write_back(
    storage: RedisStorage, monkeypatch: Any
) -> None:
    async def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("merged on the server with custom merge rules")

    monkeypatch.setattr(storage, "merge_groups", forbidden)
    feed = CustomMergeFeed(1, storage=storage)
    await feed.add(activity(1, 1, 0))
    await feed.add(activity(1, 2, 1))
    assert [len(g) for g in await feed[:]] == [2]


def version_1(group: AggregatedActivity) -> str:
    """``group`` in the first stored format (before activity ids were stored with it)."""

    def us(value: dt.datetime | None) -> int | None:
        return None if value is None else datetime_to_us(value)

    rows = [
        [a.actor_id, a.verb.id, a.object_id, a.target_id, datetime_to_us(a.time)]
        + ([a.extra_context] if a.extra_context else [])
        for a in group.activities
    ]
    data = [1, group.group, us(group.created_at), us(group.updated_at), None, None]
    return json.dumps([*data, group.minimized_activities, rows], separators=(",", ":"))


async def test_groups_in_the_first_format_are_read_and_merged(
    storage: RedisStorage, raw: Any, prefix: str
) -> None:
    feed, oracle = (
        MergedAggregated(1, storage=storage),
        MergedAggregated(1, storage=MemoryStorage()),
    )
    old = SmallGroup("3-2024-05-01", [activity(1, 1, 0, "x"), activity(2, 2, 1)])
    record = GroupRecord(old.group, old.serialization_id, version_1(old), 1)
    for target in (storage, oracle.storage):
        assert await target.write_groups(
            feed.key, [GroupChange(old.group, None, record)], max_length=None, track_markers=False
        )
    assert await feed[:] == await oracle[:] == [old]

    # The script will not touch it, and writes nothing...
    merge = GroupMerge(old.group, '[2,"3-2024-05-01",', record, [])
    before = await snapshot(raw, prefix)
    assert await storage.merge_groups(
        [feed.key], [merge], cap=2, max_length=1, track_markers=True
    ) == [None]
    assert await snapshot(raw, prefix) == before

    # ...so the feed reads it, merges and writes it back, in the current format.
    newer = activity(4, 3, 2)
    assert await feed.add_many([newer]) == await oracle.add_many([newer])
    (stored,) = await records(storage, feed.key)
    assert stored == (await records(oracle.storage, feed.key))[0]
    assert stored.payload.startswith("[2,")
    assert stored.version == 2
    await feed.add(activity(5, 3, 3))
    await oracle.add(activity(5, 3, 3))
    assert await records(storage, feed.key) == await records(oracle.storage, feed.key)


# -- every storage that merges groups itself is held to AggregatedActivity.append --------


# The backends whose storage merges groups itself (GroupMergeStorage); the test below
# keeps this list true.
MERGING_BACKENDS = [
    pytest.param(name, marks=getattr(pytest.mark, name))
    for name in BACKENDS
    if name in ("redis", "redis_cluster")
]


def test_exactly_the_redis_storages_merge_groups_themselves() -> None:
    from aiostream.storage.cassandra import CassandraStorage

    assert issubclass(RedisStorage, GroupMergeStorage)
    assert not issubclass(MemoryStorage, GroupMergeStorage)
    assert not issubclass(CassandraStorage, GroupMergeStorage)


@st.composite
def merge_batches(draw: st.DrawFn) -> list[list[Activity]]:
    """Activities merged batch after batch: several groups (verbs and days), equal
    times, awkward extra_context, repeats within and across batches, sometimes 40 in
    few groups (past any cap)."""
    verbs = draw(st.sampled_from([(Love,), (Love, Pin)]))
    span = draw(st.sampled_from([10**6, 11 * 3600 * 10**6, 2 * 86400 * 10**6]))
    one = st.builds(
        lambda actor, verb, obj, us, tag: Activity(
            actor,
            verb,
            obj,
            time=T0 + dt.timedelta(microseconds=us),
            extra_context={"note": f"{tag}\x1f]],\x1e"} if tag else None,
        ),
        st.integers(0, 40),
        st.sampled_from(verbs),
        st.integers(0, 3),
        st.one_of(st.just(0), st.integers(0, span)),
        st.sampled_from(["", "x", 'q"{"$dt":1}']),
    )
    size = draw(st.sampled_from([3, 12, 40]))
    pool = draw(st.lists(one, min_size=size, max_size=size, unique_by=lambda a: a.serialization_id))
    repeats = draw(st.lists(st.sampled_from(pool), max_size=10))
    stream = draw(st.permutations(pool + repeats))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(stream) - 1), max_size=8))))
    return [stream[a:b] for a, b in itertools.pairwise([0, *cuts, len(stream)])]


@pytest.mark.parametrize("backend_name", MERGING_BACKENDS)
@SETTINGS
@given(
    batches=merge_batches(),
    aggregator_class=st.sampled_from([RecentVerbAggregator, Awkward]),
    group_class=st.sampled_from([AggregatedActivity, SmallGroup]),
    track_markers=st.booleans(),
)
def test_merge_groups_builds_groups_as_append_does(
    storage_factory: StorageFactory,
    batches: list[list[Activity]],
    aggregator_class: type[BaseAggregator],
    group_class: type[AggregatedActivity],
    track_markers: bool,
) -> None:
    """``merge_groups`` of each batch, as an aggregated add sends it, writes exactly the
    groups (payload, id, version) that appending the batch's activities to the group
    built so far in Python gives, and only the groups that changed."""
    aggregator = aggregator_class(group_class)
    serializer = AggregatedActivitySerializer(group_class, ActivitySerializer(Activity))
    cap = group_class.max_aggregated_activities_length

    def record(group: AggregatedActivity, version: int) -> GroupRecord:
        return GroupRecord(group.group, group.serialization_id, serializer.dumps(group), version)

    async def run() -> None:
        # Two feeds in each call: a fanout chunk's merge writes each as a lone add would.
        keys = [f"merge:append:{next(users)}", f"merge:append:{next(users)}"]
        expected: dict[str, tuple[AggregatedActivity, int]] = {}
        async with storage_factory() as storage:
            assert isinstance(storage, GroupMergeStorage)
            for batch in batches:
                grouped = aggregator.group_activities(batch)
                merges = []
                for name, incoming in grouped.items():
                    parts = serializer.merge_parts(incoming)
                    new = GroupRecord(name, incoming.serialization_id, parts.payload)
                    merges.append(GroupMerge(name, parts.header, new, parts.items))
                written = await storage.merge_groups(
                    keys, merges, cap=cap, max_length=None, track_markers=track_markers
                )

                changed: list[tuple[bool, GroupRecord]] = []
                for name, incoming in grouped.items():
                    if name not in expected:
                        expected[name] = (incoming, 1)
                        changed.append((True, record(incoming, 1)))
                        continue
                    before, version = expected[name]
                    after = before.copy()
                    for activity in incoming.activities:
                        with contextlib.suppress(DuplicateActivityError):
                            after.append(activity)
                    if (after.activity_ids, after.minimized_activities) != (
                        before.activity_ids,
                        before.minimized_activities,
                    ):
                        expected[name] = (after, version + 1)
                        changed.append((False, record(after, version + 1)))
                assert written == [changed, changed]

            markers = len(expected) if track_markers else 0
            for key in keys:
                stored = await storage.get_groups(key, sorted(expected))
                assert stored == {name: record(*expected[name]) for name in expected}
                for name, (group, _) in expected.items():
                    assert serializer.loads(stored[name].payload) == group
                assert await storage.count_markers(key) == (markers, markers)

    anyio.run(run)


# -- the server merge is used exactly when every class involved declares it -------------


class DeclaredMerge(RecentVerbAggregator):
    """Overrides merge, and declares that it keeps the stock rule."""

    server_mergeable = True

    def merge(self, aggregated: Any, activities: Any) -> Any:
        return super().merge(aggregated, activities)


class DeclaredMergeFeed(AggregatedFeed):
    key_format = "merge:declared:%(user_id)s"
    aggregator_class = DeclaredMerge


class LooseSerializer(ActivitySerializer[Activity]):
    """Changes what the stored rows are made of, without a thought for the server."""

    def to_data(self, activity: Activity) -> list[Any]:
        return super().to_data(activity)


class LooseSerializerFeed(AggregatedFeed):
    key_format = "merge:loose:%(user_id)s"

    @classmethod
    def get_activity_serializer(cls) -> Any:
        return LooseSerializer(cls.activity_class)


async def merge_calls(storage: RedisStorage, monkeypatch: Any, feed: AggregatedFeed) -> int:
    calls = 0
    merge_groups = storage.merge_groups

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await merge_groups(*args, **kwargs)

    monkeypatch.setattr(storage, "merge_groups", counted)
    await feed.add(activity(1, 1, 0))
    await feed.add(activity(2, 1, 1))
    assert [len(g) for g in await feed[:]] == [2]
    return calls


async def test_declared_overrides_merge_on_the_server_undeclared_ones_do_not(
    storage: RedisStorage, monkeypatch: Any
) -> None:
    assert await merge_calls(storage, monkeypatch, DeclaredMergeFeed(1, storage=storage)) == 2
    assert await merge_calls(storage, monkeypatch, LooseSerializerFeed(2, storage=storage)) == 0
