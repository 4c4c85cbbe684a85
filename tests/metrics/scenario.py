"""One workload driven through a metrics sink, and what every backend must have received.

The workload runs real feed operations on a fresh :class:`MemoryStorage` and a real
Manager fanout through the in-process dispatcher; the expectations below are stated once,
by hook and labels, and each backend's test translates them into its own names.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from aiostream import (
    AggregatedFeed,
    BaseFeed,
    FanoutPriority,
    Manager,
    MemoryStorage,
    StorageTimeoutError,
    StorageUnavailableError,
    UserBaseFeed,
)
from aiostream.metrics import Metrics
from tests.helpers import make_activities

FOLLOWERS = {FanoutPriority.HIGH: [10, 11, 12], FanoutPriority.LOW: [13]}

# (hook concept, labels) -> total received. Labels are sorted (name, value) pairs.
COUNTS: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
    ("reads", (("feed", "PinFeed"),)): 4,  # 3 from the flat feed, 1 from a follower's
    ("reads", (("feed", "AggPinFeed"),)): 1,  # two activities of one verb: one group
    ("writes", (("feed", "PinFeed"),)): 3,
    ("writes", (("feed", "AggPinFeed"),)): 2,
    ("writes", (("feed", "UserPinFeed"),)): 1,
    ("deletes", (("feed", "PinFeed"),)): 1,
    ("deletes", (("feed", "UserPinFeed"),)): 1,
    ("fanout", (("feed", "PinFeed"), ("operation", "add"))): 4,
    ("fanout", (("feed", "PinFeed"), ("operation", "remove"))): 4,
    ("published", ()): 1,
    ("removed", ()): 1,
    ("errors", (("kind", "StorageUnavailableError"), ("where", "storage.count_timeline"))): 1,
    ("job_retries", (("job_name", "fanout"), ("kind", "StorageTimeoutError"))): 1,
}

# (latency concept, labels) -> number of observations.
TIMINGS: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {
    ("read_latency", (("feed", "PinFeed"),)): 2,
    ("read_latency", (("feed", "AggPinFeed"),)): 1,
    # chunks of 2 followers: HIGH [10, 11], [12]; LOW [13]
    ("fanout_latency", (("feed", "PinFeed"), ("operation", "add"))): 3,
    ("fanout_latency", (("feed", "PinFeed"), ("operation", "remove"))): 3,
    # flat add, user feed add, three fanout chunks (and the same for removal)
    ("storage", (("operation", "add_to_timelines"),)): 5,
    ("storage", (("operation", "remove_from_timelines"),)): 5,
    ("storage", (("operation", "read_timeline"),)): 2,
    # the removal reads the stored activity: the feeds it was also sent to (`to`)
    ("storage", (("operation", "load_activities"),)): 1,
    ("storage", (("operation", "get_groups"),)): 1,
    ("storage", (("operation", "write_groups"),)): 1,
    ("storage", (("operation", "read_groups"),)): 1,
    ("storage", (("operation", "count_timeline"),)): 1,  # the failed call is timed too
}


class DownStorage(MemoryStorage):
    """A memory storage whose server is down for counts."""

    async def count_timeline(self, key: str) -> int:
        raise StorageUnavailableError(f"count of {key!r}: server down")


async def run_workload(sink: Metrics) -> None:
    """Drive every hook of ``sink`` once or more, through real feeds and a Manager."""

    class PinFeed(BaseFeed):
        key_format = "m:pin:%(user_id)s"
        metrics = sink

    class UserPinFeed(UserBaseFeed):
        key_format = "m:user:%(user_id)s"
        metrics = sink

    class AggPinFeed(AggregatedFeed):
        key_format = "m:agg:%(user_id)s"
        metrics = sink

    class PinManager(Manager):
        feed_classes: ClassVar[dict[str, Any]] = {"normal": PinFeed}
        user_feed_class = UserPinFeed
        fanout_chunk_size = 2

        def get_user_follower_ids(self, user_id: int) -> dict[str, list[int]]:
            return FOLLOWERS

    storage = MemoryStorage()
    flat = PinFeed(1, storage=storage)
    activities = make_activities(3, actor=7)
    await flat.add_many(activities)
    assert len(await flat[:10]) == 3
    await flat.remove(activities[0])

    aggregated = AggPinFeed(1, storage=storage)
    await aggregated.add_many(make_activities(2, actor=8, start=100))
    assert len(await aggregated[:10]) == 1

    manager = PinManager(storage=storage, metrics=sink)
    (shared,) = make_activities(1, actor=1, start=200)
    await manager.add_user_activity(1, shared)
    assert [a.serialization_id for a in await PinFeed(13, storage=storage)[:5]] == [
        shared.serialization_id
    ]
    await manager.remove_user_activity(1, shared)

    with pytest.raises(StorageUnavailableError):
        await PinFeed(1, storage=DownStorage()).count()

    # arq's retry path calls this hook (tests/arq drives it through a worker).
    sink.on_job_retry("fanout", 2, StorageTimeoutError("redis at 127.0.0.1:1 timed out"))
