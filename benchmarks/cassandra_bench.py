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
* ``group_fanout``: one activity fanned out to 10,000 aggregated feeds and to 10,000
  notification feeds (``fanout_add``: per feed a read and a lightweight transaction,
  ``fanout_concurrency`` feeds at once), beside a flat fanout to as many feeds in the same
  run (``--groups-only`` measures just this);
* ``node_start_seconds``: launch to "CQL port ready".

``--rounds N`` (3 by default) repeats the fanout, the driver baseline and the reads N
times, the fanout and the baseline taking turns at going first; the figures reported are
medians over the rounds, and ``fanout_vs_driver`` is the median of each round's ratio,
of writes per second and of CPU time per write (``cpu_us_per_write``: the process's
CPU time, all threads, per feed written; on a busy shared machine it says more than
wall time about what each path costs).
``--feeds`` changes the 100,000.

Everything runs on one machine: the JVM, the driver's I/O thread and the event loop
share its cores (and, on a shared machine, other people's work does too), so absolute
numbers say more about this machine than about Cassandra: compare within one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import resource
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from aiostream import Activity, AggregatedFeed, BaseFeed, Love, NotificationFeed
from aiostream.storage.cassandra import CassandraStorage, create_schema
from benchmarks.common import latencies, median_of, write_results
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


class BenchAggregated(AggregatedFeed):
    key_format = "bench:aggregated:%(user_id)s"
    trim_chance = 0.0


GROUP_FEEDS = 10_000


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread counted (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def with_stall_probe(work: Callable[[], Awaitable[Any]]) -> tuple[float, float, float]:
    """Run ``work`` next to a 1 ms ticker; return (seconds, longest gap between ticks,
    CPU seconds of the process meanwhile)."""
    ticks: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.05)
        started, cpu = time.perf_counter(), cpu_seconds()
        await work()
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        done.set()
    during = [t for t in ticks if t >= started - 0.002]
    stall = max((b - a for a, b in itertools.pairwise(during)), default=seconds)
    return seconds, stall, cpu


async def fanout(storage: CassandraStorage, feeds: int, tag: str) -> dict[str, float]:
    activity = Activity(1, Love, 1, time=T0, extra_context={"tag": tag})
    entries = BenchFeed.serialize_activities([activity])
    keys = [f"bench:{tag}:{i}" for i in range(feeds)]
    seconds, stall, cpu = await with_stall_probe(
        lambda: storage.add_to_timelines(keys, entries, max_length=None, store=True)
    )
    return {
        "feeds": feeds,
        "max_concurrency": storage.max_concurrency,
        "seconds": seconds,
        "feed_writes_per_second": feeds / seconds,
        "longest_loop_stall_ms": stall * 1000,
        "cpu_us_per_write": cpu / feeds * 1e6,
    }


async def driver_baseline(
    storage: CassandraStorage, feeds: int, tag: str = "driver"
) -> dict[str, float]:
    """The same inserts through ``execute_concurrent_with_args`` in a worker thread."""
    from cassandra.concurrent import execute_concurrent_with_args

    session = await storage.get_session()
    prepared = await anyio.to_thread.run_sync(session.prepare, storage.statements.timeline_insert)
    (entry,) = BenchFeed.serialize_activities([Activity(1, Love, 2, time=T0)])
    params = [("driver", f"bench:{tag}:{i}", *entry) for i in range(feeds)]

    def run() -> None:
        results = execute_concurrent_with_args(
            session, prepared, params, concurrency=storage.max_concurrency, results_generator=True
        )
        for ok, result in results:
            if not ok:
                raise result

    seconds, stall, cpu = await with_stall_probe(lambda: anyio.to_thread.run_sync(run))
    return {
        "feeds": feeds,
        "concurrency": storage.max_concurrency,
        "seconds": seconds,
        "feed_writes_per_second": feeds / seconds,
        "longest_loop_stall_ms": stall * 1000,
        "cpu_us_per_write": cpu / feeds * 1e6,
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


async def group_fanout(storage: CassandraStorage, feeds: int = GROUP_FEEDS) -> dict[str, Any]:
    """Aggregated and notification fanout of one activity beside a flat one, one run."""
    activity = Activity(1, Love, 1, time=T0, extra_context={"tag": "groups"})
    results: dict[str, Any] = {}
    users = range(feeds)
    for name, feed_class in (("aggregated", BenchAggregated), ("notification", BenchNotifications)):
        seconds, stall, cpu = await with_stall_probe(
            lambda feed_class=feed_class: feed_class.fanout_add(users, [activity], storage=storage)
        )
        results[name] = {
            "feeds": feeds,
            "seconds": seconds,
            "feed_writes_per_second": feeds / seconds,
            "longest_loop_stall_ms": stall * 1000,
            "cpu_us_per_write": cpu / feeds * 1e6,
        }
    # After the group fanouts: the node has warmed up by then (a flat fanout first, on a
    # node just started, measured a tenth of its usual rate).
    results["flat"] = await fanout(storage, feeds, "groups-flat")
    flat = results["flat"]["feed_writes_per_second"]
    for name in ("aggregated", "notification"):
        results[name]["ratio_to_flat"] = results[name]["feed_writes_per_second"] / flat
        print(
            f"{name} fanout to {feeds:,} feeds: {results[name]['feed_writes_per_second']:,.0f} "
            f"feed writes/s, {results[name]['ratio_to_flat']:.3f}x flat ({flat:,.0f})",
            flush=True,
        )
    return results


async def main(
    workdir: Path, rounds: int = 3, feeds: int = FEEDS, groups_only: bool = False
) -> None:
    server = start_cassandra(workdir)
    try:
        results: dict[str, Any] = {
            "node_start_seconds": server.startup_seconds,
            "cassandra_version": server.version,
            "rounds": rounds,
        }
        async with CassandraStorage(
            hosts=[server.host], port=server.port, keyspace="bench"
        ) as storage:
            await create_schema(storage)
            if groups_only:
                await fanout(storage, 2_000, "warmup")
                results["group_fanout"] = await group_fanout(storage)
                write_results("cassandra_groups", results)
                return
            await fanout(storage, 2_000, "warmup")
            await driver_baseline(storage, 2_000, "warmup")
            runs: dict[str, list[dict[str, Any]]] = {"fanout": [], "driver": [], "reads": []}
            for n in range(rounds):
                turns = [
                    ("fanout", lambda n=n: fanout(storage, feeds, f"main{n}")),
                    ("driver", lambda n=n: driver_baseline(storage, feeds, f"driver{n}")),
                ]
                for name, run in turns[:: 1 if n % 2 == 0 else -1]:
                    runs[name].append(await run())
                runs["reads"].append(await concurrent_reads(storage))
                print(round_line(n, runs), flush=True)
            ratios = [
                a["feed_writes_per_second"] / d["feed_writes_per_second"]
                for a, d in zip(runs["fanout"], runs["driver"], strict=True)
            ]
            results["fanout_100k"] = median_of(runs["fanout"])
            results["driver_execute_concurrent_100k"] = median_of(runs["driver"])
            cpu_ratios = [
                d["cpu_us_per_write"] / a["cpu_us_per_write"]
                for a, d in zip(runs["fanout"], runs["driver"], strict=True)
            ]
            results["fanout_vs_driver"] = {
                "ratio_median": statistics.median(ratios),
                "ratios": ratios,
                "cpu_ratio_median": statistics.median(cpu_ratios),
                "cpu_ratios": cpu_ratios,
                "fanout_writes_per_second": [r["feed_writes_per_second"] for r in runs["fanout"]],
                "driver_writes_per_second": [r["feed_writes_per_second"] for r in runs["driver"]],
                "fanout_stall_ms": [r["longest_loop_stall_ms"] for r in runs["fanout"]],
                "driver_stall_ms": [r["longest_loop_stall_ms"] for r in runs["driver"]],
            }
            results["flat_read_25"] = median_of(runs["reads"])
            results["notification_adds"] = await notification_adds(storage)
            results["group_fanout"] = await group_fanout(storage)
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


def round_line(n: int, runs: dict[str, list[dict[str, Any]]]) -> str:
    a, d, r = runs["fanout"][-1], runs["driver"][-1], runs["reads"][-1]
    return (
        f"round {n + 1}: fanout {a['feed_writes_per_second']:,.0f}/s "
        f"(stall {a['longest_loop_stall_ms']:.0f} ms, {a['cpu_us_per_write']:.0f} us CPU), "
        f"driver {d['feed_writes_per_second']:,.0f}/s "
        f"(stall {d['longest_loop_stall_ms']:.0f} ms, {d['cpu_us_per_write']:.0f} us CPU), ratio "
        f"{a['feed_writes_per_second'] / d['feed_writes_per_second']:.2f}; reads "
        f"{r['per_second']:,.0f}/s p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument("--feeds", type=int, default=FEEDS, help="feeds per fanout")
    parser.add_argument(
        "--groups-only", action="store_true", help="only the aggregated / notification fanout"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aiostream-cassandra-bench-") as tmp:
        anyio.run(main, Path(tmp), args.rounds, args.feeds, args.groups_only)
