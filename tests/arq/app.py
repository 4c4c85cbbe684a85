"""A small application for the arq tests: Redis feeds, a Manager and its workers.

The tests enqueue through :class:`AppManager` with an ``ArqDispatcher``; workers (in the
test's event loop, or as ``python -m arq tests.arq.app.WorkerSettings`` subprocesses with
``STREAM_REDIS_URL`` set) run the jobs with the same classes.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import anyio

from aiostream import FanoutPriority, Manager, RecentVerbAggregator, Settings
from aiostream.fanout import FollowChunk
from aiostream.feeds.redis import (
    RedisAggregatedFeed,
    RedisFeed,
    RedisNotificationFeed,
    RedisUserBaseFeed,
)
from aiostream.tasks import DEFAULT_QUEUE, HIGH_QUEUE, worker_settings
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


# The subprocess workers are started with STREAM_REDIS_URL set; the test process only
# imports these classes, whose servers it never uses (worker_settings() without settings
# refuses a queue Redis that nothing configures).
SETTINGS = (
    Settings.from_env(require=["STREAM_REDIS_URL"])
    if os.environ.get("STREAM_REDIS_URL")
    else Settings(redis_url="redis://unused.invalid:6379/0")
)

# What the subprocess workers run: HIGH priority chunks, a short job timeout so that a
# killed worker's jobs become runnable again soon (arq: timeout + 2 s grace + 10 s).
WorkerSettings = worker_settings(
    AppManager,
    queue=HIGH_QUEUE,
    settings=SETTINGS,
    job_timeout=5,
    poll_delay=0.05,
    retry_delay=0.05,
)


class FollowManager(AppManager):
    """A follow lease that a killed worker holds for 2 s, not 30."""

    follow_lease_ttl = 2.0


class StallingFollowManager(FollowManager):
    """Writes a follow's feeds, then hangs before the job ends: a worker to kill mid-job."""

    async def apply_follow(self, job: FollowChunk) -> None:
        await super().apply_follow(job)
        if job.operation == "follow":
            await anyio.sleep(3600)


# Follow / unfollow workers (the default queue): the same short job timeout.
FollowWorker = worker_settings(
    FollowManager,
    queue=DEFAULT_QUEUE,
    settings=SETTINGS,
    job_timeout=5,
    poll_delay=0.05,
    retry_delay=0.05,
)
StallingFollowWorker = worker_settings(
    StallingFollowManager,
    queue=DEFAULT_QUEUE,
    settings=SETTINGS,
    job_timeout=5,
    poll_delay=0.05,
    retry_delay=0.05,
)

__all__ = [
    "AppAggregatedFeed",
    "AppFeed",
    "AppManager",
    "AppNotificationFeed",
    "AppUserFeed",
    "FanoutPriority",
    "FollowWorker",
    "Pin",
    "StallingFollowWorker",
    "WorkerSettings",
]
