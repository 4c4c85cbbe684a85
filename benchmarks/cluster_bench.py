"""A celebrity on a cluster: one activity fanned out by the Manager to 1,000,000
followers' flat, aggregated and notification feeds, on one standalone Redis and on a
private 3-master Redis Cluster (on loopback, this machine's cores shared by all), one
after the other in one run.

The cluster path sends each chunk as one script per node (the feeds of many slots a node
serves, Redis 7's ``allow-cross-slot-keys``). Reported: seconds and feed writes/s
(followers times three feed classes over the seconds).

``python -m benchmarks.cluster_bench [--followers 1000000] [--chunk 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from redis.asyncio import RedisCluster as ClusterClient

from aiostream import Activity, FanoutPriority, Love, Manager
from aiostream.feeds.base import UserBaseFeed
from aiostream.storage.redis import RedisStorage
from benchmarks.common import RESULTS, write_results
from benchmarks.feed_kinds_bench import KindsAggregated, KindsFlat, KindsNotification
from tests.servers import start_redis, start_redis_cluster

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
KINDS = {"flat": KindsFlat, "aggregated": KindsAggregated, "notification": KindsNotification}


class CelebrityManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = KINDS
    user_feed_class = UserBaseFeed
    followers = 0

    def get_user_follower_ids(self, user_id: int) -> dict[FanoutPriority, range]:
        return {FanoutPriority.HIGH: range(1, self.followers + 1)}


async def celebrity(storage: RedisStorage, followers: int, chunk: int) -> dict[str, float]:
    manager = CelebrityManager(storage=storage)
    manager.fanout_chunk_size = chunk
    manager.followers = 1000  # a warm-up: scripts loaded, connections open
    await manager.add_user_activity(0, Activity(0, Love, 0, time=T0))
    manager.followers = followers
    started = time.perf_counter()
    await manager.add_user_activity(0, Activity(0, Love, 1, time=T0 + dt.timedelta(hours=1)))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "writes_per_s": followers * len(KINDS) / seconds}


async def run(standalone: str, cluster: str, followers: int, chunk: int) -> dict[str, Any]:
    results: dict[str, Any] = {"followers": followers, "chunk": chunk}
    async with RedisStorage.from_url(standalone, prefix="celeb:") as storage:
        results["standalone"] = await celebrity(storage, followers, chunk)
    client = ClusterClient.from_url(cluster)
    try:
        async with RedisStorage(client, prefix="celeb:") as storage:
            results["cluster"] = await celebrity(storage, followers, chunk)
    finally:
        await client.aclose()
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# A celebrity on a cluster",
        "",
        f"One activity to {results['followers']:,} followers' flat, aggregated and "
        f"notification feeds ({results['chunk']:,} followers per chunk):",
        "",
        "| Redis | seconds | feed writes/s |",
        "|---|---|---|",
    ]
    for name in ("standalone", "cluster"):
        row = results[name]
        label = "3-master cluster" if name == "cluster" else "standalone"
        lines.append(f"| {label} | {row['seconds']:.1f} | {row['writes_per_s']:,.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as workdir,
        start_redis(Path(workdir) / "standalone") as server,
        start_redis_cluster(Path(workdir) / "cluster") as cluster,
    ):
        results = asyncio.run(run(server.url, cluster.url, args.followers, args.chunk))
    write_results("cluster", results)
    (RESULTS / "cluster.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
