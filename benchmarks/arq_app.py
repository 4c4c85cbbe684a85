"""The application the arq benchmark's worker processes run (``python -m arq
benchmarks.arq_app.WorkerSettings`` with ``STREAM_REDIS_URL`` set).

``BENCH_FEED_KINDS=three`` gives the Manager an aggregated and a notification feed
beside the flat one (the parent process sets it for its workers and itself)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from aiostream import FanoutPriority, Manager, Settings
from aiostream.feeds.redis import (
    RedisAggregatedFeed,
    RedisFeed,
    RedisNotificationFeed,
    RedisUserBaseFeed,
)
from aiostream.tasks import HIGH_QUEUE, worker_settings
from examples.pinterest_demo import PinVerb

__all__ = ["BenchFeed", "BenchManager", "PinVerb", "WorkerSettings", "feed_classes"]


class BenchFeed(RedisFeed):
    key_format = "bench:arq:%(user_id)s"
    max_length = 100


class BenchAggregated(RedisAggregatedFeed):
    key_format = "bench:arq:aggregated:%(user_id)s"
    max_length = 100


class BenchNotification(RedisNotificationFeed):
    key_format = "bench:arq:notification:%(user_id)s"
    max_length = 100


def feed_classes(kinds: str) -> dict[str, Any]:
    """The Manager's feed classes for ``kinds`` (``"flat"`` or ``"three"``)."""
    if kinds == "three":
        return {
            "normal": BenchFeed,
            "aggregated": BenchAggregated,
            "notification": BenchNotification,
        }
    return {"normal": BenchFeed}


class BenchUserFeed(RedisUserBaseFeed):
    key_format = "bench:arq:user:%(user_id)s"


class BenchManager(Manager):
    """User 1 has ``followers`` followers, all HIGH priority."""

    feed_classes: ClassVar[dict[str, Any]] = feed_classes(
        os.environ.get("BENCH_FEED_KINDS", "flat")
    )
    user_feed_class = BenchUserFeed
    followers: ClassVar[list[int]] = []

    def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: self.followers}


# The servers are the bench's (arq_bench sets the variables for the worker processes);
# read explicitly, as worker_settings() no longer falls back to 127.0.0.1 by itself.
WorkerSettings = worker_settings(BenchManager, queue=HIGH_QUEUE, settings=Settings.from_env())
