"""aiostream against Stream Framework 1.4.0, side by side in one run on one private Redis.

Both libraries use the same private redis-server (``tests.servers.start_redis``), in
turn, on the same activities (same actor, verb, object, target, time and
``extra_context``), so the ratios are what counts; absolute numbers drift from machine
to machine.

1. Fanout of one activity into 1,000 / 10,000 / 100,000 follower feeds (max_length 100,
   trim on): aiostream's storage batch path (``RedisStorage.add_to_timelines``) and its
   ``Manager``, against Stream Framework's ``Manager`` with Celery eager; plus
   ``redis-benchmark`` ZADD on random keys (pipeline 64, one client) as the ceiling.
2. ``feed[:25]`` hydrated on a flat feed: concurrency 1 and 50 (50 asyncio tasks; Stream
   Framework is synchronous: one thread, and 50 threads).
3. Aggregated feed: 1,000 single adds an hour apart (42 groups), then reads of 25 groups
   (concurrency 1 and 50).
4. Redis memory per timeline entry and per stored activity (``used_memory`` deltas and
   ``MEMORY USAGE``), measured first, on the empty server.

Stream Framework runs in its own virtualenv, built once under the aiostream cache
directory (``stream-framework==1.4.0``, redis-py 2.10.6, Celery 5.7, no Django), through
``benchmarks/peer/sf_driver.py``, which times its own calls.

Writes ``benchmarks/results/peer.json``, ``peer.md`` (the comparison table) and
``peer.png`` (fanout throughput against follower count).

``python -m benchmarks.peer_bench [--repeat 3] [--sweep 1000,10000,100000] [--calls 3000]``
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import functools
import io
import itertools
import json
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis

from aiostream import Activity, BaseFeed, Love, get_verb_by_id
from aiostream.storage.redis import RedisStorage
from aiostream.storage.redis._layout import FeedKeys, activity_shard_keys
from benchmarks import chart
from benchmarks.common import (
    RESULTS,
    latencies,
    machine,
    median_of,
    summarize,
    write_results,
)
from benchmarks.feed_kinds_bench import ceilings
from benchmarks.peer.touch import TOUCH
from benchmarks.redis_bench import (
    T0,
    BenchAggregated,
    BenchFeed,
    BenchNotification,
    manager_fanout,
    storage_fanout,
)
from tests.servers import start_redis
from tests.servers.maven import cache_root

SF_PACKAGES = (
    "stream-framework==1.4.0",
    # The newest redis-py it runs on: 3.0 removed redis.client.BasePipeline, which it imports.
    "redis==2.10.6",
    "celery==5.7.0",
    "kombu==5.7.0",
    "billiard==4.3.2",
    "vine==5.1.0",
    "amqp==5.4.2",
)
DRIVER = Path(__file__).parent / "peer" / "sf_driver.py"

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
T0_US = (T0 - EPOCH) // dt.timedelta(microseconds=1)
SECOND_US = 1_000_000
HOUR_US = 3600 * SECOND_US
DAY_US = 24 * HOUR_US

MAX_LENGTH = 100  # both libraries' feeds (Stream Framework's default)
READ_SIZE = 25
CONCURRENCY = 50
WARM = 8  # connections opened before each aiostream step
MEMORY_ACTIVITIES = 10_000
MEMORY_FEEDS = 1_000
ENTRY_BYTES_TARGET = 18  # a timeline entry: 13 id bytes, a 0 score, listpack framing
GROUP_FEEDS = 100
GROUP_FILLS = {"aggregated": (240, HOUR_US), "notification": (100, DAY_US)}
"""Activities added to each group feed, and how far apart: 240 an hour apart make 10
groups (a verb and a day each) of 24, of which a group keeps 15; 100 a day apart make
100 groups of one."""

# Users of each phase, far apart so no two phases share a feed.
FANOUT_AUTHOR = 1
FIRST_FOLLOWER = 1_000_000
MEMORY_USER = 5_000_000
GROUP_USER = 6_000_000
FLAT_USER = 7_000_000
AGGREGATED_USER = 8_000_000

T = TypeVar("T")
Row = list[Any]
"""An activity as both libraries are given it: actor, verb id, object, target, time in
microseconds since the epoch, extra_context."""


def make_row(n: int, actor: int, spacing_us: int) -> Row:
    """The ``n``-th activity of a series: object ``n``, ``spacing_us`` after the previous."""
    return [actor, Love.id, n, None, T0_US + n * spacing_us, {"item_id": n}]


def to_activity(row: Row) -> Activity:
    """The aiostream Activity of a row (``sf_driver.activity`` builds Stream Framework's)."""
    actor, verb_id, obj, target, time_us, extra = row
    when = EPOCH + dt.timedelta(microseconds=time_us)
    return Activity(actor, get_verb_by_id(verb_id), obj, target, time=when, extra_context=extra)


# -- Stream Framework, in its own virtualenv ----------------------------------------------------


def _base_python() -> str:
    """A Python that runs Stream Framework 1.4.0: 3.11 at most (redis 2.10 imports distutils)."""
    if sys.version_info < (3, 12):
        return sys.executable  # a venv's python makes a venv of its base interpreter
    found = shutil.which("python3.11")
    if found is None:
        raise RuntimeError("Stream Framework 1.4.0 needs Python <= 3.11: install python3.11")
    return found


def sf_python() -> Path:
    """The Stream Framework virtualenv's interpreter, building the venv on first use.

    A stamp file lists the pinned packages; a venv without it (interrupted build) or with
    other pins is rebuilt from scratch.
    """
    venv = cache_root() / "sf-venv"
    python = venv / "bin" / "python"
    stamp = venv / "aiostream-packages.txt"
    wanted = "\n".join(SF_PACKAGES) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"building the Stream Framework virtualenv in {venv} (once)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *SF_PACKAGES], check=True)
    stamp.write_text(wanted)
    return python


class StreamFramework:
    """The ``sf_driver.py`` process: one JSON request, one JSON reply (see its docstring)."""

    def __init__(self, python: Path, host: str, port: int, db: int = 0) -> None:
        self.process = subprocess.Popen(
            [str(python), str(DRIVER), host, str(port), str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, op: str, **params: Any) -> dict[str, Any]:
        """Run one driver operation.

        Raises:
            RuntimeError: the operation failed (its traceback is on stderr) or the
                driver died.
        """
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(json.dumps({"op": op, **params}) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"Stream Framework driver exited ({self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"Stream Framework {op}: {reply['error']}")
        return reply

    def close(self) -> None:
        """End the driver (EOF on stdin; killed by PID if it does not exit)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- Redis introspection (sync client: both libraries' data, between their runs) ---------------


def data_memory(client: redis.Redis) -> int:
    """``used_memory`` less client buffers and script caches (``MEMORY STATS``).

    A pipelined write leaves its connection's query buffer allocated for a while, and a
    first script call fills the script cache: neither is what the data costs.
    """
    stats = client.memory_stats()
    return int(stats["total.allocated"]) - int(stats["clients.normal"]) - int(stats["lua.caches"])


def memory_usage(client: redis.Redis, keys: list[str]) -> int:
    """Sum of ``MEMORY USAGE key SAMPLES 0`` (exact, every element counted)."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(size or 0) for size in pipe.execute())


def drop_keys(client: redis.Redis, *patterns: str) -> None:
    """Unlink every key matching ``patterns``: each run starts from the same server state."""
    for pattern in patterns:
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


def with_storage(url: str, prefix: str, step: Callable[[RedisStorage], Awaitable[T]]) -> T:
    """Run ``step(storage)`` in a fresh event loop with its own storage, closed afterwards.

    One loop per step keeps measurements in sync code between the steps, and aiostream's
    connections out of every memory delta (they are closed before it is taken).
    """

    async def main() -> T:
        async with RedisStorage.from_url(url, prefix=prefix) as storage:
            # Open the connections the step will use at once (fanout: up to 8 chunks in
            # flight), as Stream Framework's long-lived pool already has its connection.
            await asyncio.gather(*(storage.count_timeline("warm-up") for _ in range(WARM)))
            return await step(storage)

    return asyncio.run(main())


# -- 4. memory (first: on the empty server) --------------------------------------------------


def memory_phase(sf: StreamFramework, client: redis.Redis, url: str) -> dict[str, Any]:
    """10,000 stored activities, then 1,000 timelines of 100 entries, for each library."""
    rows = [make_row(n, n % 100 + 1, SECOND_US) for n in range(MEMORY_ACTIVITIES)]
    feeds = [
        [MEMORY_USER + f, (f * 10) % (MEMORY_ACTIVITIES - MAX_LENGTH), MAX_LENGTH]
        for f in range(MEMORY_FEEDS)
    ]
    entries = MEMORY_FEEDS * MAX_LENGTH

    def account(store: Callable[[], list[str]], fill: Callable[[], list[str]]) -> dict[str, Any]:
        before = data_memory(client)
        activity_keys = store()
        stored = data_memory(client)
        timeline_keys = fill()
        filled = data_memory(client)
        return {
            "activity_bytes_delta": (stored - before) / MEMORY_ACTIVITIES,
            "activity_bytes_usage": memory_usage(client, activity_keys) / MEMORY_ACTIVITIES,
            "entry_bytes_delta": (filled - stored) / entries,
            "entry_bytes_usage": memory_usage(client, timeline_keys) / entries,
            "activity_keys": len(activity_keys),
            "timeline_keys": len(timeline_keys),
        }

    sf_result = account(
        lambda: sf.call("store_activities", rows=rows)["keys"],
        lambda: sf.call("fill_timelines", rows=rows, feeds=feeds)["keys"],
    )

    prefix = "peer:mem:"
    serialized = BenchFeed.serialize_activities(to_activity(r) for r in rows)

    async def store(storage: RedisStorage) -> list[str]:
        for i in range(0, len(serialized), 1000):
            await storage.store_activities(serialized[i : i + 1000])
        return activity_shard_keys(prefix, storage.activity_shards)

    async def fill(storage: RedisStorage) -> list[str]:
        keys = []
        for user_id, start, count in feeds:
            key = BenchFeed(user_id, storage=storage).key
            await storage.add_to_timelines(
                [key], serialized[start : start + count], max_length=MAX_LENGTH, store=False
            )
            keys.append(FeedKeys(prefix, key).timeline)
        return keys

    aio_result = account(
        lambda: with_storage(url, prefix, store), lambda: with_storage(url, prefix, fill)
    )
    drop_keys(client, "sf:flat:*", "global:*", "{peer:mem:*")
    return {
        "activities": MEMORY_ACTIVITIES,
        "timelines": MEMORY_FEEDS,
        "entries_per_timeline": MAX_LENGTH,
        "stream_framework": sf_result,
        "aiostream": aio_result,
    }


GROUP_PREFIX = "peer:groups:"


def group_memory_phase(sf: StreamFramework, client: redis.Redis, url: str) -> dict[str, Any]:
    """Bytes per aggregated and per notification feed (:data:`GROUP_FILLS`), the
    activities stored beforehand: only what the feeds add is counted (Stream
    Framework's aggregated groups hold activity ids and need the stored activities; its
    notification groups, like every aiostream group, hold copies of them)."""
    result: dict[str, Any] = {"feeds": GROUP_FEEDS, "stream_framework": {}, "aiostream": {}}
    for kind in GROUP_FILLS:
        for library, measured in group_memory(sf, client, url, kind).items():
            result[library][kind] = measured
    drop_keys(client, "global:*", f"{{{GROUP_PREFIX}*")
    return result


def sf_storable_item_ids() -> Iterator[int]:
    """``item_id`` values Stream Framework's notification groups can store: they embed
    the pickled ``extra_context`` and refuse a ``;`` in it (their separator), which the
    pickle of 59, among others, holds. The test only predicts its refusal; nothing is
    stored pickled by aiostream."""
    return (n for n in itertools.count() if b";" not in pickle.dumps({"item_id": n}))


def group_memory(
    sf: StreamFramework, client: redis.Redis, url: str, kind: str
) -> dict[str, dict[str, Any]]:
    """:func:`group_memory_phase` of one feed kind, for each library."""
    count, spacing_us = GROUP_FILLS[kind]
    users = [GROUP_USER + f for f in range(GROUP_FEEDS)]
    rows = [make_row(n, n % 7 + 1, spacing_us) for n in range(count)]
    for row, item_id in zip(rows, sf_storable_item_ids(), strict=False):
        row[5] = {"item_id": item_id}
    activities = [to_activity(r) for r in rows]
    feed_class: type[BaseFeed] = BenchAggregated if kind == "aggregated" else BenchNotification

    async def store(storage: RedisStorage) -> None:
        await storage.store_activities(feed_class.serialize_activities(activities))

    async def fill(storage: RedisStorage) -> None:
        for user_id in users:
            await feed_class(user_id, storage=storage).add_many(activities)

    # Each library's steps, and the key patterns of what the feeds write (Stream
    # Framework keeps a notification feed's unseen / unread markers in "list:" keys).
    sides: dict[str, tuple[Callable[[], Any], Callable[[], Any], tuple[str, ...]]] = {
        "stream_framework": (
            lambda: sf.call("store_activities", rows=rows),
            lambda: sf.call("fill_groups", feed=kind, rows=rows, users=users),
            (f"sf:{kind}:*", f"list:sf:{kind}:*"),
        ),
        "aiostream": (
            lambda: with_storage(url, GROUP_PREFIX, store),
            lambda: with_storage(url, GROUP_PREFIX, fill),
            (f"{{{GROUP_PREFIX}bench:{kind}:*",),
        ),
    }
    measured: dict[str, dict[str, Any]] = {}
    for library, (store_step, fill_step, patterns) in sides.items():
        store_step()
        before = data_memory(client)
        fill_step()
        after = data_memory(client)
        keys = [k for p in patterns for k in client.scan_iter(match=p, count=10_000)]
        measured[library] = {
            "activities": count,
            "feed_bytes_delta": (after - before) / GROUP_FEEDS,
            "feed_bytes_usage": memory_usage(client, keys) / GROUP_FEEDS,
            "keys_per_feed": len(keys) / GROUP_FEEDS,
        }
        drop_keys(client, *patterns)
    return measured


# -- 1. fanout ---------------------------------------------------------------------------------


def redis_benchmark_zadd(host: str, port: int, repeat: int) -> dict[str, Any] | None:
    """``redis-benchmark`` ZADD on random keys, pipeline 64, one client (in db 15).

    None when redis-benchmark (Debian's redis-tools) is not installed.
    """
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    argv = [binary, "-h", host, "-p", str(port), "--dbnum", "15", "-n", "200000"]
    argv += ["-r", "100000", "-P", "64", "-c", "1", "--csv"]
    argv += ["zadd", "key:__rand_int__", "__rand_int__", "member"]
    runs = []
    for _ in range(repeat):
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        rows = list(csv.DictReader(io.StringIO(out)))
        runs.append(float(rows[-1]["rps"]))
    redis.Redis(host=host, port=port, db=15).flushdb()  # only redis-benchmark uses db 15
    return {"command": " ".join(argv[1:]), "runs": runs, "per_second": statistics.median(runs)}


def fanout_phase(
    sf: StreamFramework, client: redis.Redis, url: str, sweep: list[int], repeat: int
) -> list[dict[str, Any]]:
    """Each follower count, ``repeat`` times per library (interleaved); medians reported.

    Every run writes fresh feeds and the keys are dropped afterwards, so each run starts
    from the same server state.
    """
    row = make_row(0, FANOUT_AUTHOR, SECOND_US)
    activity = to_activity(row)
    points = []
    for followers in sweep:
        runs: dict[str, list[float]] = {"stream_framework": [], "storage": [], "manager": []}
        for _ in range(repeat):
            reply = sf.call(
                "fanout",
                user_id=FANOUT_AUTHOR,
                first_follower=FIRST_FOLLOWER,
                followers=followers,
                row=row,
            )
            assert reply["sample_count"] == 1, reply
            runs["stream_framework"].append(followers / reply["seconds"])
            drop_keys(client, "sf:flat:*", "sf:user:*")
            for path, measure in (("storage", storage_fanout), ("manager", manager_fanout)):
                step = functools.partial(measure, followers=followers, activity=activity)
                result = with_storage(url, "peer:fanout:", step)
                runs[path].append(result["feed_writes_per_second"])
                drop_keys(client, "{peer:fanout:*")
        point: dict[str, Any] = {"followers": followers, "runs": runs}
        for name, values in runs.items():
            point[name] = statistics.median(values)
        print(f"fanout {followers}: {json.dumps(point)}", flush=True)
        points.append(point)
    return points


# -- 2. and 3. single adds and reads, flat and aggregated ---------------------------------------


async def aio_single_adds(
    storage: RedisStorage, *, feed_class: type[BaseFeed], user_id: int, rows: list[Row]
) -> float:
    """``feed.add`` of each row in turn; adds per second."""
    feed = feed_class(user_id, storage=storage)
    activities = [to_activity(r) for r in rows]
    started = time.perf_counter()
    for activity in activities:
        await feed.add(activity)
    return len(rows) / (time.perf_counter() - started)


async def aio_reads(
    storage: RedisStorage,
    *,
    feed_class: type[BaseFeed],
    user_id: int,
    calls: int,
    concurrency: int,
    touch: str = "none",
) -> dict[str, float]:
    """``feed[:25]`` then ``TOUCH[touch]`` of the page, ``calls`` times from
    ``concurrency`` tasks, after a warm-up."""
    feed = feed_class(user_id, storage=storage)
    use = TOUCH[touch]

    async def read() -> int:
        return use(await feed[:READ_SIZE])

    assert await read() == READ_SIZE
    await latencies(read, 100, concurrency=concurrency)
    return await latencies(read, calls, concurrency=concurrency)


def feed_phase(
    sf: StreamFramework,
    url: str,
    kind: str,
    *,
    spacing_us: int,
    adds: int,
    calls: int,
    concurrencies: tuple[int, ...],
    repeat: int,
    touches: tuple[str, ...] = ("none",),
) -> dict[str, Any]:
    """Single adds, then ``feed[:25]`` at each concurrency and each way of using the page
    (:data:`TOUCH`), for ``kind`` (flat / aggregated).

    ``repeat`` rounds, the libraries taking turns within each; every figure reported is
    the median over the rounds. Each round adds to a feed of its own; reads go to the
    first round's. Stream Framework reads at concurrency n with n threads.
    """
    feed_class: type[BaseFeed] = BenchFeed if kind == "flat" else BenchAggregated
    base_user = FLAT_USER if kind == "flat" else AGGREGATED_USER
    prefix = f"peer:{kind}:"
    rows = [make_row(n, n % 50 + 1, spacing_us) for n in range(adds)]
    rounds: dict[str, dict[str, list[Any]]] = {"stream_framework": {}, "aiostream": {}}

    def record(library: str, name: str, value: Any) -> None:
        rounds[library].setdefault(name, []).append(value)

    for r in range(repeat):
        reply = sf.call("single_adds", feed=kind, user_id=base_user + r, rows=rows)
        record("stream_framework", "single_adds_per_second", adds / reply["seconds"])
        step = functools.partial(
            aio_single_adds, feed_class=feed_class, user_id=base_user + r, rows=rows
        )
        record("aiostream", "single_adds_per_second", with_storage(url, prefix, step))
        for n, touch in itertools.product(concurrencies, touches):
            name = read_name(touch, n)
            reply = sf.call(
                "reads",
                feed=kind,
                user_id=base_user,
                size=READ_SIZE,
                calls=calls,
                threads=n,
                touch=touch,
            )
            assert reply["items"] == READ_SIZE, reply
            record("stream_framework", name, summarize(reply["samples"], reply["seconds"]))
            read = functools.partial(
                aio_reads,
                feed_class=feed_class,
                user_id=base_user,
                calls=calls,
                concurrency=n,
                touch=touch,
            )
            record("aiostream", name, with_storage(url, prefix, read))
    result: dict[str, Any] = {"adds": adds, "calls": calls, "rounds": rounds}
    for library, measured in rounds.items():
        result[library] = {
            name: median_of(values) if isinstance(values[0], dict) else statistics.median(values)
            for name, values in measured.items()
        }
    print(f"{kind}: {json.dumps({k: result[k] for k in rounds})}", flush=True)
    return result


# -- report ------------------------------------------------------------------------------------


def read_name(touch: str, concurrency: int) -> str:
    """The results' name of the reads at ``concurrency`` that ``touch`` the page."""
    return f"read_c{concurrency}" if touch == "none" else f"read_{touch}_c{concurrency}"


def _num(value: float, unit: str = "") -> str:
    text = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return f"{text}{unit}"


def table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison rows: operation, both values, aiostream's advantage, target, met.

    The ratio is always "times better": aiostream / Stream Framework for rates,
    Stream Framework / aiostream for latencies and bytes.
    """
    rows: list[dict[str, Any]] = []

    def add(
        operation: str,
        sf: float,
        aio: float,
        *,
        higher_is_better: bool = False,
        target: str = "",
        met: bool | None = None,
        unit: str = "",
        sf_note: str = "",
        compare: bool = True,
    ) -> None:
        ratio = (aio / sf if higher_is_better else sf / aio) if compare else None
        rows.append(
            {
                "operation": operation,
                "stream_framework": sf,
                "aiostream": aio,
                "ratio": ratio,
                "target": target,
                "met": met,
                "unit": unit,
                "sf_note": sf_note,
            }
        )

    fanout = results["fanout"]["sweep"][-1]
    n = f"{fanout['followers']:,}"
    sf_fanout = fanout["stream_framework"]
    for path, label in (("storage", "storage batch path"), ("manager", "Manager")):
        add(
            f"fanout 1 activity → {n} feeds, aiostream {label} (feed writes/s)",
            sf_fanout,
            fanout[path],
            higher_is_better=True,
            target="≥ 20x",
            met=fanout[path] >= 20 * sf_fanout,
        )
    ceiling = results["fanout"]["redis_benchmark"]
    if ceiling is not None:
        add(
            f"fanout {n} as a share of redis-benchmark ZADD -P 64 -c 1 "
            f"({ceiling['per_second']:,.0f}/s), aiostream storage path",
            sf_fanout / ceiling["per_second"],
            fanout["storage"] / ceiling["per_second"],
            unit="x",
            compare=False,
        )
    loop = results["fanout"]["lua_ceiling"]
    for path, label in (("storage", "storage path"), ("manager", "Manager")):
        add(
            f"fanout {n} as a share of the ceiling, a Lua loop of ZADD + trim over 1,000 keys "
            f"a call ({loop:,.0f}/s), aiostream {label}",
            sf_fanout / loop,
            fanout[path] / loop,
            unit="x",
            compare=False,
        )

    flat = results["flat"]
    sf_flat, aio_flat = flat["stream_framework"], flat["aiostream"]
    add(
        f"flat feed: {flat['adds']:,} single add (adds/s)",
        sf_flat["single_adds_per_second"],
        aio_flat["single_adds_per_second"],
        higher_is_better=True,
    )
    c1_sf, c1_aio = sf_flat["read_c1"], aio_flat["read_c1"]
    add(
        "flat `feed[:25]` hydrated, concurrency 1 (reads/s)",
        c1_sf["per_second"],
        c1_aio["per_second"],
        higher_is_better=True,
    )
    add("flat `feed[:25]`, concurrency 1, p50", c1_sf["p50_ms"], c1_aio["p50_ms"], unit=" ms")
    add(
        "flat `feed[:25]`, concurrency 1, p99",
        c1_sf["p99_ms"],
        c1_aio["p99_ms"],
        unit=" ms",
        target="aiostream ≤ 2 ms",
        met=c1_aio["p99_ms"] <= 2.0,
    )
    threads = sf_flat[f"read_c{CONCURRENCY}"]
    # Stream Framework is synchronous: compare with whichever of its setups did better.
    best_sf, note = (
        (threads, f"{CONCURRENCY} threads")
        if threads["per_second"] > c1_sf["per_second"]
        else (c1_sf, "1 thread")
    )
    c50 = aio_flat[f"read_c{CONCURRENCY}"]
    add(
        f"flat `feed[:25]`, concurrency {CONCURRENCY} (reads/s)",
        best_sf["per_second"],
        c50["per_second"],
        higher_is_better=True,
        target="≥ 5x",
        met=c50["per_second"] >= 5 * best_sf["per_second"],
        sf_note=note,
    )
    for q in ("p50", "p99"):
        add(
            f"flat `feed[:25]`, concurrency {CONCURRENCY}, {q}",
            threads[f"{q}_ms"],
            c50[f"{q}_ms"],
            unit=" ms",
            sf_note=f"{CONCURRENCY} threads",
        )

    agg = results["aggregated"]
    sf_agg, aio_agg = agg["stream_framework"], agg["aiostream"]
    sf_adds, aio_adds = sf_agg["single_adds_per_second"], aio_agg["single_adds_per_second"]
    add(
        f"aggregated feed: {agg['adds']:,} single add (adds/s)",
        sf_adds,
        aio_adds,
        higher_is_better=True,
        target="≥ 10x",
        met=aio_adds >= 10 * sf_adds,
    )
    for touch, readers, factor in (
        ("render", 1, 10),
        ("render", CONCURRENCY, 10),
        ("full", 1, 8),
        ("full", CONCURRENCY, None),
    ):
        label = f"aggregated feed: read 25 groups, {touch}"
        note = ""
        if readers > 1:
            label, note = f"{label}, concurrency {readers}", f"{readers} threads"
        sf_read = sf_agg[read_name(touch, readers)]
        aio_read = aio_agg[read_name(touch, readers)]
        add(
            f"{label} (reads/s)",
            sf_read["per_second"],
            aio_read["per_second"],
            higher_is_better=True,
            target="" if factor is None else f"≥ {factor}x",
            met=None
            if factor is None
            else aio_read["per_second"] >= factor * sf_read["per_second"],
            sf_note=note,
        )
        for q in ("p50", "p99"):
            add(f"{label}, {q}", sf_read[f"{q}_ms"], aio_read[f"{q}_ms"], unit=" ms", sf_note=note)

    mem = results["memory"]
    sf_mem, aio_mem = mem["stream_framework"], mem["aiostream"]
    for field, what, how, limit in (
        ("entry_bytes_delta", "timeline entry", "used_memory delta", ENTRY_BYTES_TARGET),
        ("entry_bytes_usage", "timeline entry", "MEMORY USAGE", ENTRY_BYTES_TARGET),
        ("activity_bytes_delta", "stored activity", "used_memory delta", None),
        ("activity_bytes_usage", "stored activity", "MEMORY USAGE", None),
    ):
        add(
            f"Redis bytes per {what} ({how})",
            sf_mem[field],
            aio_mem[field],
            unit=" B",
            target="aiostream ≤ SF" if limit is None else f"≤ {limit} B",
            met=aio_mem[field] <= (sf_mem[field] if limit is None else limit),
        )
    groups = results["group_memory"]
    for kind, what in (
        ("aggregated", "aggregated feed ({n} activities, 10 groups of 15)"),
        ("notification", "notification feed ({n} single-activity groups)"),
    ):
        sf_feed, aio_feed = groups["stream_framework"][kind], groups["aiostream"][kind]
        label = what.format(n=sf_feed["activities"])
        for field, how in (
            ("feed_bytes_delta", "used_memory delta"),
            ("feed_bytes_usage", "MEMORY USAGE"),
        ):
            add(
                f"Redis bytes per {label} ({how})",
                sf_feed[field],
                aio_feed[field],
                unit=" B",
                target="aiostream ≤ SF",
                met=aio_feed[field] <= sf_feed[field],
            )
    return rows


def markdown(results: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """``peer.md``: the comparison table, the fanout sweep and how it was measured."""
    versions = results["versions"]
    lines = [
        "# aiostream vs Stream Framework 1.4.0 (`python -m benchmarks peer`)",
        "",
        f"Measured side by side in one run: Python {machine()['python']}, "
        f"{machine()['cpus']} CPUs, Redis {results['redis_version']} on loopback "
        f"(one private server for both), Stream Framework {versions['stream_framework']} "
        f"with redis-py {versions['redis_py']} and Celery {versions['celery']} (eager) "
        f'on Python {versions["python"]}. Ratios are "times better for aiostream".',
        "",
        "| operation | Stream Framework | aiostream | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        sf = _num(row["stream_framework"], row["unit"])
        if row["sf_note"]:
            sf += f" ({row['sf_note']})"
        met = "—" if row["met"] is None else ("yes" if row["met"] else "**no**")
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.1f}x"
        lines.append(
            f"| {row['operation']} | {sf} | {_num(row['aiostream'], row['unit'])} "
            f"| {ratio} | {row['target'] or '—'} | {met} |"
        )
    lines += [
        "",
        "## Fanout throughput against follower count (feed writes/s, median of "
        f"{results['setup']['repeat']} runs)",
        "",
        "| followers | Stream Framework (Manager, Celery eager) | aiostream storage path "
        "| aiostream Manager | ratio (storage / Manager) |",
        "|---|---|---|---|---|",
    ]
    for p in results["fanout"]["sweep"]:
        sf = p["stream_framework"]
        lines.append(
            f"| {p['followers']:,} | {sf:,.0f} | {p['storage']:,.0f} | {p['manager']:,.0f} "
            f"| {p['storage'] / sf:.0f}x / {p['manager'] / sf:.0f}x |"
        )
    lines += ["", "![fanout throughput against follower count](peer.png)", "", "## How", ""]
    lines += [f"- {note}" for note in NOTES]
    return "\n".join(lines) + "\n"


NOTES = (
    "Every figure is the median of `--repeat` rounds (3 by default), the libraries taking "
    "turns within each round; the machine may be busy with other work, so only the "
    "ratios of one run mean much.",
    "Both libraries use the same private redis-server, one after the other, on the same "
    "activities: actor, verb (love), object, target (none), time and "
    "`extra_context={'item_id': n}`; feeds have max_length 100.",
    "Stream Framework runs in its own virtualenv through `benchmarks/peer/sf_driver.py`, "
    "which times its calls itself; its `async` parameter is renamed by an import hook and "
    "Celery runs eager with the pickle serializer.",
    "Fanout: Stream Framework's `Manager.add_user_activity` (activity storage, user feed, "
    "then 100-follower Celery tasks, one ZADD per feed) against aiostream's "
    "`RedisStorage.add_to_timelines` (1,000 feeds per script call, 4 calls in flight, the "
    "activity stored beforehand) and aiostream's `Manager.add_user_activity` end to end. "
    "aiostream trims every feed on every write; Stream Framework trims with its default "
    "1% chance. Every run writes fresh feeds.",
    "Flat reads: `feed[:25]` with the activities hydrated from the activity storage, on a "
    "feed filled by the single adds. Concurrency 50 is 50 asyncio tasks on one connection "
    "pool for aiostream (reads that start while others are in flight are sent together, in "
    "one script call); Stream Framework is synchronous, so it runs one thread and 50 "
    "threads, and the better of the two is the comparison.",
    "Flat reads return complete activities: actor, verb, object, target, time (a "
    "datetime) and `extra_context` (a dict). Group reads are timed two ways, the read "
    "and then a use of every group of the page: *render* takes what a notification list "
    "shows (group key, verb, activity and actor counts, actor ids, the newest activity's "
    "actor and time, created / updated times, seen / read), *full* every field of every "
    "activity. aiostream's groups build their activities when first touched, so a render "
    "builds only each group's newest; Stream Framework builds them all in the read.",
    "Single adds on Stream Framework store the activity and then add it, as its "
    "`Manager.add_user_activity` does (its aggregated add hydrates the groups it merges "
    "into, so the activity must be stored first); aiostream's `feed.add` does both in one "
    "call. Stream Framework's aggregated add reads the groups, merges and writes them back; "
    "aiostream's is one script that merges on the server.",
    "Memory: measured first, on the empty server: 10,000 activities stored, then 1,000 "
    "timelines of 100 entries; bytes from `used_memory` before and after each step (less "
    "client buffers and script caches, from `MEMORY STATS`), and from "
    "`MEMORY USAGE key SAMPLES 0` summed over every key written.",
    "`redis-benchmark` (pipeline 64, one client, random keys) is the ceiling of one "
    "connection doing nothing but ZADD.",
)


def fanout_chart(results: dict[str, Any], path: Path) -> None:
    sweep = results["fanout"]["sweep"]
    series = [
        chart.Series(
            "aiostream: RedisStorage.add_to_timelines",
            [(p["followers"], p["storage"]) for p in sweep],
            chart.BLUE,
        ),
        chart.Series(
            "aiostream: Manager.add_user_activity",
            [(p["followers"], p["manager"]) for p in sweep],
            chart.GREEN,
        ),
        chart.Series(
            "Stream Framework 1.4.0: Manager, Celery eager",
            [(p["followers"], p["stream_framework"]) for p in sweep],
            chart.ORANGE,
        ),
    ]
    ceiling = results["fanout"]["redis_benchmark"]
    references = (
        [
            chart.Reference(
                "redis-benchmark ZADD, pipeline 64, 1 client", ceiling["per_second"], chart.RED
            )
        ]
        if ceiling
        else []
    )
    chart.line_chart(
        path,
        series,
        title="Fanout of one activity: feed writes per second",
        x_label="followers (log)",
        y_label="feed writes / s (log)",
        references=references,
    )


def measure(
    python: Path, host: str, port: int, url: str, options: argparse.Namespace, sweep: list[int]
) -> dict[str, Any]:
    """Every phase, against the server at ``host:port``; memory first, on the empty server."""
    client = redis.Redis(host=host, port=port, decode_responses=True)
    sf = StreamFramework(python, host, port)
    try:
        results: dict[str, Any] = {
            "versions": sf.call("hello"),
            "redis_version": client.info("server")["redis_version"],
            "setup": {"repeat": options.repeat, "max_length": MAX_LENGTH, "sweep": sweep},
        }
        results["memory"] = memory_phase(sf, client, url)
        print(f"memory: {json.dumps(results['memory'])}", flush=True)
        results["group_memory"] = group_memory_phase(sf, client, url)
        print(f"group memory: {json.dumps(results['group_memory'])}", flush=True)
        results["fanout"] = {
            "redis_benchmark": redis_benchmark_zadd(host, port, options.repeat),
            "sweep": fanout_phase(sf, client, url, sweep, options.repeat),
            # The least a flat fanout write can be (benchmarks.feed_kinds_bench):
            "lua_ceiling": with_storage(
                url, "peer:ceiling:", functools.partial(ceilings, feeds=max(sweep))
            )["flat"],
        }
        drop_keys(client, "ceiling:*")
        results["flat"] = feed_phase(
            sf,
            url,
            "flat",
            spacing_us=SECOND_US,
            adds=1000,
            calls=options.calls,
            concurrencies=(1, CONCURRENCY),
            repeat=options.repeat,
        )
        # An hour apart: a group per verb and day, 42 in all, so a read of 25 is full.
        results["aggregated"] = feed_phase(
            sf,
            url,
            "aggregated",
            spacing_us=HOUR_US,
            adds=1000,
            calls=1000,
            concurrencies=(1, CONCURRENCY),
            repeat=options.repeat,
            touches=("render", "full"),
        )
        return results
    finally:
        sf.close()
        client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of everything (median)")
    parser.add_argument(
        "--sweep", default="1000,10000,100000", help="follower counts, comma separated"
    )
    parser.add_argument("--calls", type=int, default=3000, help="flat reads per measurement")
    options = parser.parse_args(argv)
    sweep = sorted(int(n) for n in options.sweep.split(","))

    python = sf_python()
    with tempfile.TemporaryDirectory(prefix="aiostream-peer-") as workdir:
        server = start_redis(Path(workdir))
        try:
            results = measure(python, server.host, server.port, server.url, options, sweep)
        finally:
            server.stop()
    rows = table(results)
    results["table"] = rows
    write_results("peer", results)
    (RESULTS / "peer.md").write_text(markdown(results, rows))
    fanout_chart(results, RESULTS / "peer.png")


if __name__ == "__main__":
    main()
