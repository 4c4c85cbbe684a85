"""Realtime updates on one private Redis: what publishing costs fanout, and how fast
10,000 subscribers of one process hear of a post.

1. **Fanout cost.** One activity fanned out by ``Manager.add_user_activity`` to 10,000
   followers' flat, aggregated and notification feeds, taking turns (five rounds, each
   in another order, each fanout on an emptied server):

   * ``no publishing``: a storage whose ``publish_updates`` does nothing (the code as it
     was before updates existed);
   * ``nobody subscribed``: the stock storage, its gate closed;
   * ``one subscriber elsewhere``: the stock storage while one unrelated feed is
     subscribed, so the gate is open and every feed written is published to.

   Reported as feed writes per second (followers times three feed classes over the
   seconds, median of the rounds) and the change against ``no publishing``.

2. **Delivery.** 10,000 subscriptions in this process (one per follower's flat feed),
   one post fanned out to all their feeds: the time from the start of the fanout to each
   update's arrival (p50, p99, last), and this process's CPU time per update delivered
   (the CPU of the same fanout with nobody subscribed, measured first, left out).

``python -m benchmarks.realtime_bench [--followers 10000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ClassVar

from aiostream import Activity, FanoutPriority, Love, Manager
from aiostream.feeds.base import UserBaseFeed
from aiostream.realtime import FeedUpdate
from aiostream.storage.redis import RedisStorage
from benchmarks.common import RESULTS, percentile, write_results
from benchmarks.feed_kinds_bench import KindsAggregated, KindsFlat, KindsNotification
from tests.servers import start_redis

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
KINDS = {"flat": KindsFlat, "aggregated": KindsAggregated, "notification": KindsNotification}


class RealtimeManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = KINDS
    user_feed_class = UserBaseFeed
    fanout_chunk_size = 1000
    followers = 0

    def get_user_follower_ids(self, user_id: int) -> dict[FanoutPriority, range]:
        return {FanoutPriority.HIGH: range(1, self.followers + 1)}


class Unpublished(RedisStorage):
    """The storage as it was before updates: nothing is ever published."""

    async def publish_updates(self, keys: Any, update: FeedUpdate, **kwargs: Any) -> None:
        return None


async def fanout_rate(storage: RedisStorage, followers: int, round_: int) -> float:
    manager = RealtimeManager(storage=storage)
    manager.followers = followers
    activity = Activity(0, Love, round_, time=T0 + dt.timedelta(seconds=round_))
    started = time.perf_counter()
    await manager.add_user_activity(0, activity)
    return followers * len(KINDS) / (time.perf_counter() - started)


async def fanout_costs(url: str, followers: int, rounds: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {
        "no publishing": [],
        "nobody subscribed": [],
        "one subscriber elsewhere": [],
    }
    names = list(rates)
    for round_ in range(rounds):
        # Taking turns, each round in another order, on an emptied server: neither a slow
        # moment nor a growing dataset favours one variant.
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            kind = Unpublished if name == "no publishing" else RedisStorage
            async with kind.from_url(url, prefix=f"cost{round_}{len(name)}:") as storage:
                await storage.client.flushall()
                async with AsyncExitStack() as stack:
                    if name == "one subscriber elsewhere":
                        await stack.enter_async_context(KindsFlat(-1, storage=storage).subscribe())
                    rate = await fanout_rate(storage, followers, round_ * 10 + len(name))
                rates[name].append(rate)
    base = statistics.median(rates["no publishing"])
    return {
        name: {
            "writes_per_s": statistics.median(values),
            "change": statistics.median(values) / base - 1,
            "rounds": values,
        }
        for name, values in rates.items()
    }


async def fanout_cpu(url: str, followers: int) -> float:
    """CPU seconds of this process for the same fanout with nobody subscribed."""
    async with RedisStorage.from_url(url, prefix="alone:", max_connections=64) as storage:
        manager = RealtimeManager(storage=storage)
        manager.followers = followers
        started = time.process_time()
        await manager.add_user_activity(0, Activity(0, Love, 1, time=T0))
        return time.process_time() - started


async def delivery(url: str, followers: int) -> dict[str, Any]:
    alone = await fanout_cpu(url, followers)
    async with RedisStorage.from_url(url, prefix="deliver:", max_connections=64) as storage:
        manager = RealtimeManager(storage=storage)
        manager.followers = followers
        arrivals: list[float] = []
        done = asyncio.Event()

        async def listen(updates: Any) -> None:
            async for _ in updates:
                arrivals.append(time.perf_counter())
                if len(arrivals) == followers:
                    done.set()
                return

        async with AsyncExitStack() as stack:
            subscriptions = [
                await stack.enter_async_context(KindsFlat(u, storage=storage).subscribe())
                for u in range(1, followers + 1)
            ]
            listeners = [asyncio.create_task(listen(s)) for s in subscriptions]
            activity = Activity(0, Love, 1, time=T0)
            cpu_start, started = time.process_time(), time.perf_counter()
            await manager.add_user_activity(0, activity)
            await asyncio.wait_for(done.wait(), timeout=120)
            # The listeners run while the fanout awaits its writes: the whole span's CPU,
            # less that of the same fanout with nobody listening.
            cpu = time.process_time() - cpu_start - alone
            await asyncio.gather(*listeners)
    delays = [t - started for t in arrivals]
    return {
        "subscriptions": followers,
        "delivered": len(arrivals),
        "p50_ms": percentile(delays, 0.5) * 1000,
        "p99_ms": percentile(delays, 0.99) * 1000,
        "last_ms": max(delays) * 1000,
        "cpu_us_per_update": cpu / len(arrivals) * 1e6,
        "fanout_alone_cpu_s": alone,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Realtime updates",
        "",
        f"Fanout of one activity to {results['followers']:,} followers' flat, aggregated and "
        "notification feeds (median of the rounds):",
        "",
        "| storage | feed writes/s | change |",
        "|---|---|---|",
    ]
    for name, row in results["fanout"].items():
        lines.append(f"| {name} | {row['writes_per_s']:,.0f} | {row['change']:+.1%} |")
    d = results["delivery"]
    lines += [
        "",
        f"{d['subscriptions']:,} subscriptions in one process, one post fanned out to all "
        f"their feeds: {d['delivered']:,} updates delivered; from the start of the fanout "
        f"p50 {d['p50_ms']:.0f} ms, p99 {d['p99_ms']:.0f} ms, last {d['last_ms']:.0f} ms; "
        f"{d['cpu_us_per_update']:.0f} µs of CPU per update delivered.",
    ]
    return "\n".join(lines) + "\n"


async def run(url: str, followers: int, rounds: int) -> dict[str, Any]:
    return {
        "followers": followers,
        "fanout": await fanout_costs(url, followers, rounds),
        "delivery": await delivery(url, followers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, start_redis(Path(workdir)) as server:
        results = asyncio.run(run(server.url, args.followers, args.rounds))
    write_results("realtime", results)
    (RESULTS / "realtime.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
