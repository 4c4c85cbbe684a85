"""The core on the in-memory storage: fanout, flat reads and aggregated adds / reads.

These numbers are the library's own overhead (serialization, feed logic, fanout
chunking) with no network in the way; the server backends have their own modules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any, ClassVar

from aiostream import (
    Activity,
    AggregatedFeed,
    BaseFeed,
    FanoutPriority,
    Love,
    Manager,
    MemoryStorage,
    UserBaseFeed,
)
from benchmarks.common import latencies, write_results

FOLLOWERS = 100_000
T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


class BenchFeed(BaseFeed):
    key_format = "bench:flat:%(user_id)s"
    trim_chance = 1.0


class BenchAggregated(AggregatedFeed):
    key_format = "bench:aggregated:%(user_id)s"


class BenchManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"normal": BenchFeed}
    user_feed_class = UserBaseFeed
    fanout_chunk_size = 1000

    def get_user_follower_ids(self, user_id: int) -> dict[str, range]:
        return {FanoutPriority.HIGH: range(FOLLOWERS)}


async def main() -> None:
    storage = MemoryStorage()
    manager = BenchManager(storage=storage)
    started = time.perf_counter()
    await manager.add_user_activity(-1, Activity(1, Love, 1, time=T0))
    fanout_seconds = time.perf_counter() - started

    feed = BenchFeed(0, storage=storage)
    await feed.add_many(
        [Activity(2, Love, i, time=T0 + dt.timedelta(seconds=i)) for i in range(100)]
    )
    flat_read = await latencies(lambda: feed[:25], 2000)

    aggregated = BenchAggregated(0, storage=storage)
    activities = [Activity(i % 50, Love, i, time=T0 + dt.timedelta(hours=i)) for i in range(1000)]
    started = time.perf_counter()
    for activity in activities:
        await aggregated.add(activity)
    add_seconds = time.perf_counter() - started
    aggregated_read = await latencies(lambda: aggregated[:25], 500)

    write_results(
        "memory",
        {
            "fanout_100k": {
                "followers": FOLLOWERS,
                "seconds": fanout_seconds,
                "feed_writes_per_second": FOLLOWERS / fanout_seconds,
            },
            "flat_read_25": flat_read,
            "aggregated_single_adds": {"adds": 1000, "per_second": 1000 / add_seconds},
            "aggregated_read_25": aggregated_read,
        },
    )


if __name__ == "__main__":
    asyncio.run(main())
