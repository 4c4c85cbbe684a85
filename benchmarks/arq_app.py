"""The application the arq benchmark's worker processes run (``python -m arq
benchmarks.arq_app.WorkerSettings`` with ``STREAM_REDIS_URL`` set)."""

from __future__ import annotations

from typing import Any, ClassVar

from aiostream import FanoutPriority, Manager
from aiostream.feeds.redis import RedisFeed, RedisUserBaseFeed
from aiostream.tasks import HIGH_QUEUE, worker_settings
from examples.pinterest_demo import PinVerb

__all__ = ["BenchFeed", "BenchManager", "PinVerb", "WorkerSettings"]


class BenchFeed(RedisFeed):
    key_format = "bench:arq:%(user_id)s"
    max_length = 100


class BenchUserFeed(RedisUserBaseFeed):
    key_format = "bench:arq:user:%(user_id)s"


class BenchManager(Manager):
    """User 1 has ``followers`` followers, all HIGH priority."""

    feed_classes: ClassVar[dict[str, Any]] = {"normal": BenchFeed}
    user_feed_class = BenchUserFeed
    followers: ClassVar[list[int]] = []

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: self.followers}


WorkerSettings = worker_settings(BenchManager, queue=HIGH_QUEUE)
