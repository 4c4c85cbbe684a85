"""A small application for the arq tests: Redis feeds, a Manager and its workers.

The tests enqueue through :class:`AppManager` with an ``ArqDispatcher``; workers (in the
test's event loop, or as ``python -m arq tests.arq.app.WorkerSettings`` subprocesses with
``STREAM_REDIS_URL`` set) run the jobs with the same classes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiostream import FanoutPriority, Manager, RecentVerbAggregator
from aiostream.feeds.redis import (
    RedisAggregatedFeed,
    RedisFeed,
    RedisNotificationFeed,
    RedisUserBaseFeed,
)
from aiostream.tasks import HIGH_QUEUE, worker_settings
from tests.helpers import Pin  # registers the verb of the tests' activities in workers too


class AppFeed(RedisFeed):
    key_format = "arqtest:flat:%(user_id)s"


class AppAggregatedFeed(RedisAggregatedFeed):
    key_format = "arqtest:aggregated:%(user_id)s"
    aggregator_class = RecentVerbAggregator


class AppNotificationFeed(RedisNotificationFeed):
    key_format = "arqtest:notification:%(user_id)s"


class AppUserFeed(RedisUserBaseFeed):
    key_format = "arqtest:user:%(user_id)s"


class AppManager(Manager):
    """Followers come from :attr:`followers` (set by the test that enqueues)."""

    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": AppFeed,
        "aggregated": AppAggregatedFeed,
        "notification": AppNotificationFeed,
    }
    user_feed_class = AppUserFeed
    followers: ClassVar[dict[Any, dict[str, list[int]]]] = {}

    def get_user_follower_ids(self, user_id: Any) -> dict[str, list[int]]:
        return self.followers.get(user_id, {})


# What the subprocess workers run: HIGH priority chunks, a short job timeout so that a
# killed worker's jobs become runnable again soon (arq: timeout + 2 s grace + 10 s).
WorkerSettings = worker_settings(
    AppManager, queue=HIGH_QUEUE, job_timeout=5, poll_delay=0.05, retry_delay=0.05
)

__all__ = [
    "AppAggregatedFeed",
    "AppFeed",
    "AppManager",
    "AppNotificationFeed",
    "AppUserFeed",
    "FanoutPriority",
    "Pin",
    "WorkerSettings",
]
