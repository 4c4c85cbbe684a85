"""The Cassandra backend on a private single node: fanout, reads, group writes, start-up.

Starts Cassandra 5.0 from the cached Maven jars (``tests/servers``), creates a keyspace,
and measures:

* ``fanout_100k``: one activity into 100,000 feeds with ``add_to_timelines`` (writes/s),
  with the longest stall of the event loop seen by a 1 ms ticker meanwhile;
* ``driver_execute_concurrent_100k``: the same 100,000 inserts by the driver's own
  ``execute_concurrent_with_args`` from a worker thread (the ceiling of a synchronous
  client), with the loop's longest stall meanwhile (GIL contention only);
* ``fanout_concurrency``: 20,000-feed fanouts at other ``max_concurrency`` settings;
* ``flat_read_25``: ``feed[:25]`` (one query plus deserialization) from 50 concurrent
  tasks: p50 / p99 latency and reads per second;
* ``notification_adds``: one task adding activities to a notification feed one by one
  (each a read plus a lightweight transaction);
* ``node_start_seconds``: launch to "CQL port ready".

Everything runs on one machine: the JVM, the driver's I/O thread and the event loop
share its cores, so absolute numbers say more about this machine than about Cassandra.
"""

from __future__ import annotations

import datetime as dt
import itertools
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from aiostream import Activity, BaseFeed, Love, NotificationFeed
from aiostream.storage.cassandra import CassandraStorage, create_schema
from benchmarks.common import latencies, write_results
from tests.servers import start_cassandra

FEEDS = 100_000
READERS, READS_EACH = 50, 40
SWEEP = (32, 512)  # other max_concurrency settings, on 20,000 feeds each
T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


class BenchFeed(BaseFeed):
    key_format = "bench:flat:%(user_id)s"
    trim_chance = 0.0


class BenchNotifications(NotificationFeed):
    key_format = "bench:notification:%(user_id)s"
    trim_chance = 0.0


async def with_stall_probe(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Run ``work`` next to a 1 ms ticker; return (seconds, longest gap between ticks)."""
    ticks: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.05)
        started = time.perf_counter()
        await work()
        seconds = time.perf_counter() - started
        done.set()
    during = [t for t in ticks if t >= started - 0.002]
    stall = max((b - a for a, b in itertools.pairwise(during)), default=seconds)
    return seconds, stall


async def fanout(storage: CassandraStorage, feeds: int, tag: str) -> dict[str, float]:
    activity = Activity(1, Love, 1, time=T0, extra_context={"tag": tag})
    entries = BenchFeed.serialize_activities([activity])
    keys = [f"bench:{tag}:{i}" for i in range(feeds)]
    seconds, stall = await with_stall_probe(
        lambda: storage.add_to_timelines(keys, entries, max_length=None, store=True)
    )
    return {
        "feeds": feeds,
        "max_concurrency": storage.max_concurrency,
        "seconds": seconds,
        "feed_writes_per_second": feeds / seconds,
        "longest_loop_stall_ms": stall * 1000,
    }


async def driver_baseline(storage: CassandraStorage, feeds: int) -> dict[str, float]:
    """The same inserts through ``execute_concurrent_with_args`` in a worker thread."""
    from cassandra.concurrent import execute_concurrent_with_args

    session = await storage.get_session()
    prepared = await anyio.to_thread.run_sync(session.prepare, storage.statements.timeline_insert)
    (entry,) = BenchFeed.serialize_activities([Activity(1, Love, 2, time=T0)])
    params = [("driver", f"bench:driver:{i}", *entry) for i in range(feeds)]

    def run() -> None:
        results = execute_concurrent_with_args(
            session, prepared, params, concurrency=storage.max_concurrency, results_generator=True
        )
        for ok, result in results:
            if not ok:
                raise result

    seconds, stall = await with_stall_probe(lambda: anyio.to_thread.run_sync(run))
    return {
        "feeds": feeds,
        "concurrency": storage.max_concurrency,
        "seconds": seconds,
        "feed_writes_per_second": feeds / seconds,
        "longest_loop_stall_ms": stall * 1000,
    }


async def concurrent_reads(storage: CassandraStorage) -> dict[str, Any]:
    feed = BenchFeed(0, storage=storage)
    await feed.add_many(
        [
            Activity(i % 7, Love, i, time=T0 + dt.timedelta(seconds=i), extra_context={"n": i})
            for i in range(100)
        ]
    )
    await feed[:25]  # prepared and warm
    result: dict[str, Any] = await latencies(
        lambda: feed[:25], READERS * READS_EACH, concurrency=READERS
    )
    return {"concurrency": READERS, **result}


async def notification_adds(storage: CassandraStorage, n: int = 300) -> dict[str, float]:
    feed = BenchNotifications(0, storage=storage)
    activities = [
        Activity(i % 20, Love, i % 40, time=T0 + dt.timedelta(minutes=i)) for i in range(n)
    ]
    started = time.perf_counter()
    for activity in activities:
        await feed.add(activity)
    seconds = time.perf_counter() - started
    return {"adds": n, "per_second": n / seconds, "mean_ms": seconds / n * 1000}


async def main(workdir: Path) -> None:
    server = start_cassandra(workdir)
    try:
        results: dict[str, Any] = {
            "node_start_seconds": server.startup_seconds,
            "cassandra_version": server.version,
        }
        async with CassandraStorage(
            hosts=[server.host], port=server.port, keyspace="bench"
        ) as storage:
            await create_schema(storage)
            await fanout(storage, 2_000, "warmup")
            results["fanout_100k"] = await fanout(storage, FEEDS, "main")
            results["driver_execute_concurrent_100k"] = await driver_baseline(storage, FEEDS)
            results["flat_read_25"] = await concurrent_reads(storage)
            results["notification_adds"] = await notification_adds(storage)
        results["fanout_concurrency"] = []
        for concurrency in SWEEP:
            async with CassandraStorage(
                hosts=[server.host],
                port=server.port,
                keyspace="bench",
                max_concurrency=concurrency,
            ) as storage:
                results["fanout_concurrency"].append(
                    await fanout(storage, 20_000, f"c{concurrency}")
                )
        write_results("cassandra", results)
    finally:
        server.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="aiostream-cassandra-bench-") as tmp:
        anyio.run(main, Path(tmp))
