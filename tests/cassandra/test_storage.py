"""CassandraStorage against the memory storage (the oracle), on the real node."""

from __future__ import annotations

import itertools
import random
from typing import Any, ClassVar

import anyio
import pytest

from aiostream import (
    Activity,
    Love,
    NotificationFeed,
    SchemaError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from aiostream.ids import MAX_ID
from aiostream.query import Query
from aiostream.storage.base import GroupChange, GroupRecord
from aiostream.storage.cassandra import CassandraStorage
from aiostream.storage.memory import MemoryStorage
from tests.backends.cassandra import CassandraHandle
from tests.helpers import TestAggregatedFeed, at, make_activities
from tests.servers import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.cassandra]


def entries(ids: list[int]) -> list[tuple[int, str]]:
    return [(i, f"payload-{i}") for i in ids]


async def test_trim_exactly_at_max_length(cstorage: CassandraStorage) -> None:
    ids = list(range(10, 30))
    # Written newest first: trimming must not depend on write order (Stream Framework's
    # trim used write timestamps and deleted one row too many at exactly max_length).
    for i in reversed(ids):
        await cstorage.add_to_timelines(["f"], entries([i]), max_length=None, store=False)
    await cstorage.trim_timeline("f", 20)
    assert await cstorage.count_timeline("f") == 20
    await cstorage.add_to_timelines(["f"], entries([5]), max_length=20, store=False)
    assert await cstorage.count_timeline("f") == 20  # the older entry is trimmed at once
    await cstorage.add_to_timelines(["f"], entries([40]), max_length=20, store=False)
    read = await cstorage.read_timeline("f", 0, None, Query())
    assert [i for i, _ in read] == sorted([*ids[1:], 40], reverse=True)
    await cstorage.trim_timeline("f", 1)
    assert [i for i, _ in await cstorage.read_timeline("f", 0, None, Query())] == [40]
    await cstorage.trim_timeline("f", 0)
    assert await cstorage.count_timeline("f") == 0
    await cstorage.trim_timeline("never-written", 0)


async def test_huge_ids_and_hostile_keys(cstorage: CassandraStorage) -> None:
    key = "feed:'; DROP TABLE timeline; --\"{}%"
    ids = [0, 1, 2**52, MAX_ID - 1, MAX_ID]
    await cstorage.add_to_timelines([key], entries(ids), max_length=None, store=True)
    assert [i for i, _ in await cstorage.read_timeline(key, 0, None, Query())] == ids[::-1]
    assert await cstorage.timeline_index_of(key, MAX_ID - 1) == 1
    assert await cstorage.load_activities([MAX_ID, 3]) == {MAX_ID: f"payload-{MAX_ID}"}
    query = Query().filter(activity_id__gt=2**52)
    assert [i for i, _ in await cstorage.read_timeline(key, 0, 9, query)] == [MAX_ID, MAX_ID - 1]


class LowThreshold(CassandraStorage):
    """Skips ahead by ids from the first offset on, to test that path as well."""

    offset_scan_threshold: ClassVar[int] = 0


def window_storage(cassandra: CassandraHandle, namespace: str, threshold: int) -> CassandraStorage:
    """A storage whose deep windows skip ahead by ids from offset ``threshold`` on."""
    storage_class = LowThreshold if threshold == 0 else CassandraStorage
    return storage_class(
        hosts=[cassandra.host],
        port=cassandra.port,
        keyspace=cassandra.keyspace,
        namespace=namespace,
        session=cassandra.session,
    )


@pytest.mark.parametrize("threshold", [0, 100])
async def test_windows_filters_and_order_match_memory(
    cassandra: CassandraHandle, namespace: str, threshold: int
) -> None:
    rng = random.Random(threshold)
    ids = rng.sample(range(1, 10**6), 300)
    memory = MemoryStorage()
    async with window_storage(cassandra, namespace, threshold) as storage:
        for target in (memory, storage):
            await target.add_to_timelines(["f"], entries(ids), max_length=None, store=True)
            records = [GroupChange(f"g{i}", None, GroupRecord(f"g{i}", i, f"p{i}")) for i in ids]
            assert await target.write_groups("g", records, max_length=None, track_markers=True)
        cuts = sorted(ids)
        for _ in range(60):
            query = Query()
            if rng.random() < 0.5:
                query = query.filter(activity_id__gte=rng.choice(cuts))
            if rng.random() < 0.5:
                query = query.filter(activity_id__lt=rng.choice(cuts))
            if rng.random() < 0.5:
                query = query.order_by("activity_id")
            start = rng.choice([0, 1, 5, 99, 100, 101, 150, 299, 300, 400])
            stop = rng.choice([None, start, start + 1, start + 7, start + 120, 10**12])
            expected = await memory.read_timeline("f", start, stop, query)
            assert await storage.read_timeline("f", start, stop, query) == expected
            expected_groups = await memory.read_groups("g", start, stop, query, markers=True)
            assert (
                await storage.read_groups("g", start, stop, query, markers=True) == expected_groups
            )


@pytest.mark.parametrize("threshold", [0, 100])
async def test_windows_over_deleted_activities_match_memory(
    cassandra: CassandraHandle, namespace: str, threshold: int
) -> None:
    rng = random.Random(threshold + 1)
    ids = rng.sample(range(1, 10**6), 300)
    deleted = rng.sample(ids, 90) + sorted(ids)[-12:]  # scattered, and the 12 newest
    memory = MemoryStorage()
    async with window_storage(cassandra, namespace, threshold) as storage:
        for target in (memory, storage):
            await target.add_to_timelines(["f"], entries(ids), max_length=None, store=True)
            await target.delete_activities(deleted)
            assert await target.load_activities(deleted) == {}
        assert await storage.count_timeline("f") == 300
        cuts = sorted(ids)
        for _ in range(40):
            query = Query()
            if rng.random() < 0.4:
                query = query.filter(activity_id__lt=rng.choice(cuts))
            if rng.random() < 0.4:
                query = query.order_by("activity_id")
            start = rng.choice([0, 1, 5, 99, 101, 150, 250])
            stop = rng.choice([None, start + 1, start + 7, start + 120])
            expected = await memory.read_timeline("f", start, stop, query)
            assert await storage.read_timeline("f", start, stop, query) == expected
            # Both removed exactly the entries they passed over.
            assert await storage.count_timeline("f") == await memory.count_timeline("f")
        await memory.read_timeline("f", 0, None, Query())
        assert [i for i, _ in await storage.read_timeline("f", 0, None, Query())] == sorted(
            set(ids) - set(deleted), reverse=True
        )
        assert await storage.count_timeline("f") == await memory.count_timeline("f")


async def test_group_markers_trim_and_delete_match_memory(cstorage: CassandraStorage) -> None:
    memory = MemoryStorage()
    rng = random.Random(7)
    for step in range(40):
        group = f"g{rng.randrange(8)}"
        current = (await memory.get_groups("n", [group])).get(group)
        version = None if current is None else current.version
        if current is not None and rng.random() < 0.2:
            change = GroupChange(group, version, None)
        else:
            new_id = current.id if current is not None and rng.random() < 0.3 else 1000 + step
            change = GroupChange(
                group, version, GroupRecord(group, new_id, f"p{step}", (version or 0) + 1)
            )
        max_length = rng.choice([None, None, 3, 6])
        for target in (memory, cstorage):
            assert await target.write_groups(
                "n", [change], max_length=max_length, track_markers=True
            )
            # A stale writer loses, and writes nothing.
            assert not await target.write_groups(
                "n", [GroupChange(group, -1, None)], max_length=None, track_markers=True
            )
        if rng.random() < 0.3:
            ids = [r.id for r in await memory.read_groups("n", 0, 2, Query(), markers=False)]
            seen, read = rng.choice([(True, False), (False, True), (True, True)])
            every = rng.random() < 0.3
            for target in (memory, cstorage):
                await target.mark_groups("n", None if every else ids, seen=seen, read=read)
        if rng.random() < 0.1:
            for target in (memory, cstorage):
                await target.trim_groups("n", 2)
        assert await cstorage.read_groups("n", 0, None, Query(), markers=True) == (
            await memory.read_groups("n", 0, None, Query(), markers=True)
        )
        assert await cstorage.count_markers("n") == await memory.count_markers("n")
        assert await cstorage.count_groups("n") == await memory.count_groups("n")
    names = [f"g{i}" for i in range(8)]
    assert await cstorage.get_groups("n", names) == await memory.get_groups("n", names)
    for target in (memory, cstorage):
        await target.delete_feeds(["n"])
        assert await target.count_groups("n") == 0
        assert await target.count_markers("n") == (0, 0)
        await target.mark_groups("never", None, seen=True, read=True)
        await target.delete_feeds(["never"])


class Notifications(NotificationFeed):
    key_format = "c:notification:%(user_id)s"
    max_write_attempts = 200


class Aggregated(TestAggregatedFeed):
    max_write_attempts = 200


@pytest.mark.parametrize("feed_class", [Notifications, Aggregated])
async def test_concurrent_add_many_on_one_feed_loses_nothing(
    cassandra: CassandraHandle, namespace: str, feed_class: type[Any]
) -> None:
    """Many tasks, each with its own storage and cluster connection, add to one feed."""
    tasks, per_task = 12, 4
    # Every task writes the same groups (same verb, objects and day), so writers race
    # on the same rows: a lost update would show as a missing activity.
    batches = [
        [Activity(actor, Love, i, time=at(i)) for i in range(per_task)] for actor in range(tasks)
    ]
    storages = [
        CassandraStorage(
            hosts=[cassandra.host],
            port=cassandra.port,
            keyspace=cassandra.keyspace,
            namespace=namespace,
        )
        for _ in range(3)
    ]
    try:
        async with anyio.create_task_group() as tg:
            for n, batch in enumerate(batches):
                feed = feed_class(1, storage=storages[n % len(storages)])
                tg.start_soon(feed.add_many, batch)
        oracle = feed_class(1, storage=MemoryStorage())
        for batch in batches:
            await oracle.add_many(batch)
        feed = feed_class(1, storage=storages[0])
        got, expected = await feed[:], await oracle[:]
        assert [sorted(a.activity_ids) for a in got] == [sorted(a.activity_ids) for a in expected]
        assert [g.group for g in got] == [g.group for g in expected]
        assert await feed.count() == await oracle.count()
        if feed_class is Notifications:
            assert await feed.get_notification_data() == await oracle.get_notification_data()
    finally:
        for storage in storages:
            await storage.aclose()


async def test_node_down_is_unavailable_and_names_the_host() -> None:
    port = free_port()  # nothing listens here
    storage = CassandraStorage(
        hosts=["127.0.0.1"],
        port=port,
        keyspace="whatever",
        driver_kwargs={"connect_timeout": 1.0},
    )
    async with storage:
        with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{port}") as caught:
            await storage.count_timeline("f")
    assert type(caught.value.__cause__).__name__ == "NoHostAvailable"


async def test_client_timeout_is_a_storage_timeout(
    cassandra: CassandraHandle, namespace: str
) -> None:
    async with cassandra.storage(namespace) as warm:
        await warm.count_timeline("f")  # schema checked, statements prepared
    async with cassandra.storage(namespace, request_timeout=1e-6) as storage:
        storage._schema_checked = True  # the check itself would time out first
        with pytest.raises(StorageTimeoutError, match=cassandra.host) as caught:
            await storage.count_timeline("f")
    assert type(caught.value.__cause__).__name__ == "OperationTimedOut"


@pytest.mark.slow
async def test_fanout_does_not_block_the_event_loop(
    cstorage: CassandraStorage, record_property: Any
) -> None:
    """A ticker sleeping 1 ms keeps running through a 10,000-feed fanout.

    The longest gap between its ticks is reported (``record_property``, and printed),
    never asserted: timing belongs to ``benchmarks/``.
    """
    keys = [f"fan:{i}" for i in range(10_000)]
    (activity,) = make_activities(1)
    entry = (activity.serialization_id, "x" * 200)
    ticks: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(anyio.current_time())
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.01)
        started = anyio.current_time()
        await cstorage.add_to_timelines(keys, [entry], max_length=None, store=True)
        elapsed = anyio.current_time() - started
        done.set()
    during = [t for t in ticks if t >= started]
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    longest = max(gaps)
    record_property("fanout_10k_seconds", round(elapsed, 3))
    record_property("longest_loop_stall_ms", round(longest * 1000, 2))
    print(f"\n10,000-feed fanout: {elapsed:.2f}s, longest loop stall {longest * 1000:.1f} ms")
    assert len(during) > 10  # the loop kept running the ticker during the fanout
    assert await cstorage.count_timeline("fan:9999") == 1
    assert await cstorage.load_activities([activity.serialization_id]) == {entry[0]: entry[1]}


async def test_default_feeds_use_settings(cassandra: CassandraHandle, namespace: str) -> None:
    from aiostream import Settings
    from aiostream.feeds.cassandra import CassandraFeed
    from aiostream.storage import registry
    from aiostream.storage.registry import close_default_storages

    class PinFeed(CassandraFeed):
        key_format = f"{namespace}:pin:%(user_id)s"

    registry.configure(
        Settings(
            cassandra_hosts=(cassandra.host,),
            cassandra_port=cassandra.port,
            cassandra_keyspace=cassandra.keyspace,
        )
    )
    try:
        feed = PinFeed(13)
        assert feed.storage is registry.default_storage("cassandra")
        activity = Activity(1, Love, 1, time=at(0))
        await feed.add(activity)
        assert await PinFeed(13)[:] == [activity]
        await feed.delete()
    finally:
        await close_default_storages()
        registry.configure(None)


def test_feeds_made_outside_a_loop_find_the_loops_storage(
    cassandra: CassandraHandle, namespace: str
) -> None:
    from aiostream import Settings
    from aiostream.feeds.cassandra import CassandraNotificationFeed
    from aiostream.storage import registry
    from aiostream.storage.registry import close_default_storages

    class Notes(CassandraNotificationFeed):
        key_format = f"{namespace}:note:%(user_id)s"

    registry.configure(
        Settings(
            cassandra_hosts=(cassandra.host,),
            cassandra_port=cassandra.port,
            cassandra_keyspace=cassandra.keyspace,
        )
    )
    feed = Notes(5)  # no loop running: it finds its storage at each call
    used = []

    async def use() -> tuple[int, dict[str, int]]:
        try:
            used.append(feed.storage)
            assert feed.storage is registry.default_storage("cassandra")
            await feed.add(Activity(1, Love, 1, time=at(0)))
            return await feed.count(), await feed.get_notification_data()
        finally:
            await close_default_storages()

    try:
        for _ in range(2):  # a second loop gets its own storage
            count, data = anyio.run(use)
            assert count == 1
            assert data == {"unseen_count": 1, "unread_count": 1}
        assert used[0] is not used[1]
    finally:
        registry.configure(None)


async def test_a_batch_bigger_than_a_mutation_is_split(cstorage: CassandraStorage) -> None:
    """One feed write of 17 MB (over the 16 MB a single mutation may hold with the default
    commit log segment) goes in several batches instead of failing."""
    payloads = [(i, '"' + chr(97 + i) * 2**20 + '"') for i in range(1, 18)]
    await cstorage.add_to_timelines(["big:feed"], payloads, max_length=None, store=True)
    page = await cstorage.read_timeline("big:feed", 0, None, Query())
    assert page == sorted(payloads, reverse=True)


async def test_ping_answers_and_checks_the_schema(
    cstorage: CassandraStorage, cassandra: CassandraHandle
) -> None:
    await cstorage.ping()
    missing = CassandraStorage(
        hosts=[cassandra.host], port=cassandra.port, keyspace="no_such_keyspace_here"
    )
    async with missing:
        with pytest.raises(SchemaError, match="no_such_keyspace_here"):
            await missing.ping()
