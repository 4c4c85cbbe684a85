"""aiostream on Redis: fanout, flat reads, aggregated adds and reads.

Starts a private redis-server (and a private 3-master cluster unless ``--no-cluster``) on
free loopback ports, runs the measurements the Stream Framework comparison uses
(``benchmarks/results/redis.json``), and stops the servers.

* fanout of one activity to 100,000 feeds, through ``RedisStorage.add_to_timelines``
  in chunks of 1,000 keys (4 chunks in flight) and end to end through
  ``Manager.add_user_activity`` (in-process dispatcher), trimming on every write;
* 1,000 single ``feed.add`` on a flat feed;
* ``feed[:25]`` hydrated, p50 / p99;
* 1,000 single ``add`` on an aggregated feed, then reading 25 groups.

``python -m benchmarks.redis_bench [--no-cluster] [--followers N]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import anyio

from aiostream import (
    Activity,
    AggregatedFeed,
    BaseFeed,
    FanoutPriority,
    Love,
    Manager,
    NotificationFeed,
)
from aiostream.feeds.base import UserBaseFeed
from aiostream.storage.redis import RedisStorage
from benchmarks.common import latencies, write_results
from tests.servers import start_redis, start_redis_cluster

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
CHUNK = 1000
IN_FLIGHT = 4


class BenchFeed(BaseFeed):
    key_format = "bench:flat:%(user_id)s"
    max_length = 100
    trim_chance = 1.0


class BenchAggregated(AggregatedFeed):
    key_format = "bench:aggregated:%(user_id)s"
    max_length = 100


class BenchNotification(NotificationFeed):
    key_format = "bench:notification:%(user_id)s"
    max_length = 100


class BenchManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"normal": BenchFeed}
    user_feed_class = UserBaseFeed
    fanout_chunk_size = CHUNK
    followers = 100_000

    def get_user_follower_ids(self, user_id: int) -> dict[FanoutPriority, range]:
        return {FanoutPriority.HIGH: range(self.followers)}


async def storage_fanout(
    storage: RedisStorage, followers: int, activity: Activity | None = None
) -> dict[str, float]:
    """One activity into ``followers`` feeds, straight through the storage."""
    entries = BenchFeed.serialize_activities([activity or Activity(1, Love, 1, time=T0)])
    await storage.store_activities(entries)
    keys = [f"bench:storage:{u}" for u in range(followers)]
    limiter = anyio.CapacityLimiter(IN_FLIGHT)

    async def write(chunk: list[str]) -> None:
        async with limiter:
            await storage.add_to_timelines(chunk, entries, max_length=100, store=False)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(0, followers, CHUNK):
            tg.start_soon(write, keys[i : i + CHUNK])
    seconds = time.perf_counter() - started
    return {
        "followers": followers,
        "seconds": seconds,
        "feed_writes_per_second": followers / seconds,
    }


async def manager_fanout(
    storage: RedisStorage, followers: int, activity: Activity | None = None
) -> dict[str, float]:
    """``Manager.add_user_activity`` end to end (user feed + chunked fanout)."""
    manager = BenchManager(storage=storage)
    manager.followers = followers
    activity = activity or Activity(1, Love, 2, time=T0)
    started = time.perf_counter()
    await manager.add_user_activity(-1, activity)
    seconds = time.perf_counter() - started
    return {
        "followers": followers,
        "seconds": seconds,
        "feed_writes_per_second": followers / seconds,
    }


async def measure(url: str, followers: int) -> dict[str, Any]:
    async with RedisStorage.from_url(url, prefix="bench:") as storage:
        results: dict[str, Any] = {
            "fanout_storage": await storage_fanout(storage, followers),
            "fanout_manager": await manager_fanout(storage, followers),
        }

        feed = BenchFeed(0, storage=storage)
        activities = [Activity(2, Love, i, time=T0 + dt.timedelta(seconds=i)) for i in range(1000)]
        started = time.perf_counter()
        for activity in activities:
            await feed.add(activity)
        results["flat_single_adds"] = {
            "adds": 1000,
            "per_second": 1000 / (time.perf_counter() - started),
        }
        await latencies(lambda: feed[:25], 200)  # warm up: connections, scripts
        results["flat_read_25"] = await latencies(lambda: feed[:25], 3000)

        aggregated = BenchAggregated(0, storage=storage)
        grouped = [
            # One group per verb and day: 1,000 hours make ~42 groups, so a read of 25 is full.
            Activity(i % 50, Love, i, time=T0 + dt.timedelta(hours=i))
            for i in range(1000)
        ]
        started = time.perf_counter()
        for activity in grouped:
            await aggregated.add(activity)
        results["aggregated_single_adds"] = {
            "adds": 1000,
            "per_second": 1000 / (time.perf_counter() - started),
        }
        results["aggregated_read_25"] = await latencies(lambda: aggregated[:25], 1000)
        return results


async def main(cluster: bool, followers: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="aiostream-bench-"))
    server = start_redis(workdir / "standalone")
    try:
        results: dict[str, Any] = {"standalone": await measure(server.url, followers)}
    finally:
        server.stop()
    if cluster:
        nodes = start_redis_cluster(workdir / "cluster")
        try:
            results["cluster"] = await measure(nodes.url + "?cluster=true", followers)
        finally:
            nodes.stop()
    results["setup"] = {"chunk": CHUNK, "in_flight": IN_FLIGHT, "max_length": 100}
    write_results("redis", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cluster", action="store_true", help="standalone server only")
    parser.add_argument("--followers", type=int, default=100_000)
    options = parser.parse_args()
    asyncio.run(main(not options.no_cluster, options.followers))
