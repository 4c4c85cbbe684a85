"""Fanout as a real app runs it: a Manager writing flat, aggregated and notification
feeds, beside the same Manager writing flat feeds only, in one run on one private Redis.

For each follower count, one activity is fanned out by ``Manager.add_user_activity``
(in-process dispatcher) with

* ``flat``: one flat feed class;
* ``three kinds``: a flat, an aggregated and a notification feed class,

and reported as seconds and feed writes per second (followers times feed classes over
the seconds), with the ratio of the aggregated + notification writes' rate to the flat
rate of the same run. Beside them, the ceilings: a Lua loop over 1,000 keys per call
doing nothing but the minimum writes of each kind (flat: ``ZADD`` and the trim; a group:
read it, write it back, re-rank it), so the share of the physical limit shows. Every
follower feed already holds an activity of the same group before the measured fanout, so
the aggregated writes merge into stored groups (the costly case) rather than create them.

``python -m benchmarks.feed_kinds_bench [--followers 1000,10000,100000,1000000] [--chunk 100]``
(several follower counts: a sweep, charted in ``benchmarks/results/feed_kinds.png``)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

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
from benchmarks import chart
from benchmarks.common import RESULTS, write_results
from tests.servers import start_redis

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


class KindsFlat(BaseFeed):
    key_format = "kinds:flat:%(user_id)s"
    max_length = 100


class KindsAggregated(AggregatedFeed):
    key_format = "kinds:aggregated:%(user_id)s"
    max_length = 100


class KindsNotification(NotificationFeed):
    key_format = "kinds:notification:%(user_id)s"
    max_length = 100


class KindsManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"flat": KindsFlat}
    user_feed_class = UserBaseFeed
    followers = 0

    def get_user_follower_ids(self, user_id: int) -> dict[FanoutPriority, range]:
        return {FanoutPriority.HIGH: range(self.followers)}


def manager(storage: RedisStorage, kinds: dict[str, Any], followers: int, chunk: int) -> Manager:
    made = KindsManager(storage=storage)
    made.feed_classes = kinds
    made.followers = followers
    made.fanout_chunk_size = chunk
    return made


async def server_cpu(storage: RedisStorage) -> float:
    """CPU seconds the Redis server has used (user + system)."""
    info = await storage.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def fanout(made: Manager, storage: RedisStorage, offset: int) -> tuple[float, float]:
    """One fanout of an activity ``offset`` seconds after T0: its seconds, and the Redis
    server's CPU seconds in them."""
    activity = Activity(-1, Love, offset, time=T0 + dt.timedelta(seconds=offset))
    cpu = await server_cpu(storage)
    started = time.perf_counter()
    await made.add_user_activity(-1, activity)
    seconds = time.perf_counter() - started
    return seconds, await server_cpu(storage) - cpu


# The least a fanout can do per feed: flat, add the member and trim; a group, read it,
# write it back and re-rank it. ARGV[1] is a group's payload, ARGV[2] a timeline member;
# one call per 1,000 keys.
CEILINGS = {
    "flat": "for _, k in ipairs(KEYS) do redis.call('ZADD', k, 0, ARGV[2]) "
    "redis.call('ZREMRANGEBYRANK', k, 0, -101) end",
    "group": "for _, k in ipairs(KEYS) do local old = redis.call('HGET', k .. ':d', 'g') "
    "redis.call('HSET', k .. ':d', 'g', ARGV[1]) redis.call('ZADD', k .. ':o', 0, ARGV[1]) end",
    # A layout where a group write is one command (no read, no re-rank): the bound of
    # any redesign that keeps one key written per feed.
    "one_command": "for _, k in ipairs(KEYS) do redis.call('HSET', k .. ':d', 'g', ARGV[1]) end",
}


async def ceilings(storage: RedisStorage, feeds: int) -> dict[str, float]:
    """Feed writes/s of each :data:`CEILINGS` loop over ``feeds`` keys, counted in the
    server's own time running it (``INFO commandstats``): the rate if the client cost
    nothing, the physical limit of one Redis for that many writes."""
    client: Any = storage.client
    rates = {}
    for name, source in CEILINGS.items():
        sha = await client.execute_command("SCRIPT LOAD", source)
        payload = "x" * 300  # about a stored group of two activities
        member = "m" * 13  # a timeline member's size
        batches = [
            [f"ceiling:{name}:{i}" for i in range(first, min(feeds, first + 1000))]
            for first in range(0, feeds, 1000)
        ]
        before = await script_usec(client)
        for keys in batches:
            await client.execute_command("EVALSHA", sha, len(keys), *keys, payload, member)
        rates[name] = feeds / ((await script_usec(client) - before) / 1e6)
    return rates


async def script_usec(client: Any) -> float:
    """Microseconds the server has spent in ``EVALSHA`` calls."""
    stats = await client.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))


async def measure(url: str, followers: int, chunk: int) -> dict[str, Any]:
    three = {"flat": KindsFlat, "aggregated": KindsAggregated, "notification": KindsNotification}
    async with RedisStorage.from_url(url, prefix="kinds:") as storage:
        await storage.client.flushall()  # a private server: each size starts empty
        results: dict[str, Any] = {"followers": followers}
        for name, kinds in (("flat", {"flat": KindsFlat}), ("three_kinds", three)):
            made = manager(storage, kinds, followers, chunk)
            await fanout(made, storage, 0)  # every feed holds a group to merge into
            seconds, cpu = await fanout(made, storage, 1)
            results[name] = {
                "feed_classes": len(kinds),
                "seconds": seconds,
                "feed_writes_per_second": followers * len(kinds) / seconds,
                "redis_cpu_seconds": cpu,
            }
        flat_rate = results["flat"]["feed_writes_per_second"]
        # The three-kind run's time less the flat feeds' share of it (at the flat rate).
        group_seconds = results["three_kinds"]["seconds"] - followers / flat_rate
        group_rate = 2 * followers / group_seconds if group_seconds > 0 else float("inf")
        ceiling = await ceilings(storage, followers)
        results["groups_vs_flat"] = {
            "aggregated_and_notification_writes_per_second": group_rate,
            "ratio_to_flat": group_rate / flat_rate,
        }
        results["ceilings"] = {
            "flat_writes_per_second": ceiling["flat"],
            "group_writes_per_second": ceiling["group"],
            "flat_share": flat_rate / ceiling["flat"],
            "group_share": group_rate / ceiling["group"],
            "one_command_writes_per_second": ceiling["one_command"],
        }
        return results


def report(run: dict[str, Any]) -> None:
    for name in ("flat", "three_kinds"):
        r = run[name]
        print(
            f"{name:12} {run['followers']:>9,} followers x {r['feed_classes']} feed classes: "
            f"{r['seconds']:7.2f} s, {r['feed_writes_per_second']:>10,.0f} feed writes/s, "
            f"Redis CPU {r['redis_cpu_seconds']:.2f} s",
            flush=True,
        )
    g, c = run["groups_vs_flat"], run["ceilings"]
    print(
        f"aggregated + notification: {g['aggregated_and_notification_writes_per_second']:,.0f} "
        f"feed writes/s, {g['ratio_to_flat']:.2f}x the flat rate",
        flush=True,
    )
    print(
        f"ceilings (Lua loop, minimum writes): flat {c['flat_writes_per_second']:,.0f}/s "
        f"(aiostream at {c['flat_share']:.2f}x), group {c['group_writes_per_second']:,.0f}/s "
        f"(aiostream at {c['group_share']:.2f}x), one command per feed "
        f"{c['one_command_writes_per_second']:,.0f}/s",
        flush=True,
    )


def sweep_chart(runs: list[dict[str, Any]], path: Path) -> None:
    """Feed writes/s against followers, flat beside the three-kind Manager."""
    series = [
        chart.Series(
            "flat feeds only",
            [(r["followers"], r["flat"]["feed_writes_per_second"]) for r in runs],
            chart.BLUE,
        ),
        chart.Series(
            "flat + aggregated + notification",
            [(r["followers"], r["three_kinds"]["feed_writes_per_second"]) for r in runs],
            chart.GREEN,
        ),
        chart.Series(
            "their aggregated + notification writes",
            [
                (
                    r["followers"],
                    r["groups_vs_flat"]["aggregated_and_notification_writes_per_second"],
                )
                for r in runs
            ],
            chart.ORANGE,
        ),
    ]
    chart.line_chart(
        path,
        series,
        title="Manager fanout on one Redis, by feed kind",
        x_label="followers",
        y_label="feed writes / s",
    )


async def main(sizes: list[int], chunk: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="aiostream-bench-"))
    server = start_redis(workdir / "standalone")
    runs = []
    try:
        for followers in sizes:
            runs.append(await measure(server.url, followers, chunk))
            report(runs[-1])
    finally:
        server.stop()
    results = {
        "runs": runs,
        "setup": {"chunk": chunk, "max_length": 100, "dispatcher": "in-process"},
    }
    if len(runs) > 1:
        sweep_chart(runs, RESULTS / "feed_kinds.png")
    write_results("feed_kinds", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--followers", default="100000", help="follower counts, comma-separated (a sweep)"
    )
    parser.add_argument("--chunk", type=int, default=100)
    options = parser.parse_args()
    asyncio.run(main([int(f) for f in options.followers.split(",")], options.chunk))
