"""Fanout through arq workers, one worker process per priority queue.

The application defines its feeds and Manager once (here, in this module); the web
process hands fanout to workers with an :class:`~aiostream.tasks.ArqDispatcher`, and each
worker kind takes one queue::

    export STREAM_REDIS_URL=redis://127.0.0.1:6379/0
    python -m arq examples.fanout_workers.HighWorker      # active followers first
    python -m arq examples.fanout_workers.LowWorker       # the rest, when there is time
    python -m arq examples.fanout_workers.DefaultWorker   # follow / unfollow jobs
    python -m examples.fanout_workers --followers 2000    # publish one pin and wait

(run as many processes of each as the load needs). ``python -m arq`` puts the current
directory on ``sys.path``, so run it from the project root. Needs
``pip install "aiostream-feeds[redis,arq]"``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any, ClassVar

from aiostream import Activity, FanoutPriority, Manager, Settings
from aiostream.feeds.redis import RedisAggregatedFeed, RedisFeed, RedisUserBaseFeed
from aiostream.storage.registry import close_default_storages
from aiostream.tasks import DEFAULT_QUEUE, HIGH_QUEUE, LOW_QUEUE, ArqDispatcher, worker_settings
from examples.pinterest_demo import PinVerb

__all__ = [
    "DefaultWorker",
    "FollowerManager",
    "HighWorker",
    "LowWorker",
    "PinFeed",
    "PinAggregatedFeed",
    "main",
]

#: How many followers each user has in this example (``--followers`` changes it).
FOLLOWER_COUNT = 2000


class PinFeed(RedisFeed):
    key_format = "workers:feed:%(user_id)s"


class PinAggregatedFeed(RedisAggregatedFeed):
    key_format = "workers:aggregated:%(user_id)s"


class UserPinFeed(RedisUserBaseFeed):
    key_format = "workers:user:%(user_id)s"


class FollowerManager(Manager):
    """Every user has ``FOLLOWER_COUNT`` followers; one in ten is active (HIGH)."""

    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": PinFeed,
        "aggregated": PinAggregatedFeed,
    }
    user_feed_class = UserPinFeed

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        followers = range(user_id * 1_000_000 + 1, user_id * 1_000_000 + FOLLOWER_COUNT + 1)
        return {
            FanoutPriority.HIGH: [f for f in followers if f % 10 == 0],
            FanoutPriority.LOW: [f for f in followers if f % 10 != 0],
        }


# One settings class per queue: `python -m arq examples.fanout_workers.HighWorker`, ...
HighWorker = worker_settings(FollowerManager, queue=HIGH_QUEUE)
LowWorker = worker_settings(FollowerManager, queue=LOW_QUEUE)
DefaultWorker = worker_settings(FollowerManager, queue=DEFAULT_QUEUE)


async def publish_and_wait(user_id: int, settings: Settings) -> float:
    """Publish one pin of ``user_id`` through the workers; seconds until the last
    follower's feed has it (give up after a minute)."""
    dispatcher = await ArqDispatcher.connect(settings.arq_redis_url or settings.redis_url)
    try:
        manager = FollowerManager(dispatcher=dispatcher)
        followers = manager.get_user_follower_ids(user_id)
        activity = Activity(user_id, PinVerb, int(time.time()), extra_context={"board": "demo"})
        started = time.perf_counter()
        await manager.add_user_activity(user_id, activity)
        last = [PinFeed(ids[-1]) for ids in followers.values() if ids]
        async with asyncio.timeout(60):
            # Delivery happens in other processes: polling is the only way to see it.
            while [await feed[:1] for feed in last] != [[activity]] * len(last):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return time.perf_counter() - started
    finally:
        await dispatcher.aclose()
        await close_default_storages()


def main(argv: list[str] | None = None) -> None:
    """Publish one pin and report how long the workers took to deliver it."""
    global FOLLOWER_COUNT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--user", type=int, default=1)
    parser.add_argument("--followers", type=int, default=FOLLOWER_COUNT)
    args = parser.parse_args(argv)
    FOLLOWER_COUNT = args.followers
    seconds = asyncio.run(publish_and_wait(args.user, Settings.from_env()))
    print(f"{args.followers} followers had the pin after {seconds:.2f} s")


if __name__ == "__main__":
    main()
