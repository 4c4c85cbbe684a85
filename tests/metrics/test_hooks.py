"""The hooks themselves: storage timing, its no-op fast path, and where feeds report."""

from __future__ import annotations

from typing import Any

import pytest

from aiostream import AggregatedFeed, BaseFeed, MemoryStorage, StorageUnavailableError
from aiostream.metrics import NoopMetrics, noop_metrics
from aiostream.storage.timing import TimedStorage, timed_storage
from tests.helpers import make_activities

pytestmark = pytest.mark.anyio


class Recorder(NoopMetrics):
    """Keeps every call, by hook name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def on_feed_write(self, feed: str, count: int) -> None:
        self.calls.append(("write", (feed, count)))

    def on_storage_operation(self, operation: str, seconds: float) -> None:
        assert 0 <= seconds < 10
        self.calls.append(("storage", (operation,)))

    def on_error(self, where: str, error: BaseException) -> None:
        self.calls.append(("error", (where, type(error).__name__)))


class OnlyPublished(NoopMetrics):
    def on_activity_published(self) -> None:
        pass


class OnlyErrors(NoopMetrics):
    def on_error(self, where: str, error: BaseException) -> None:
        pass


class PlainSink:
    """A sink that does not inherit from Metrics (the protocol is structural)."""

    def __init__(self) -> None:
        self.operations: list[str] = []

    def on_storage_operation(self, operation: str, seconds: float) -> None:
        self.operations.append(operation)

    def on_error(self, where: str, error: BaseException) -> None:
        pass


class HookFeed(BaseFeed):
    key_format = "m:hook:%(user_id)s"


def test_noop_sinks_get_the_storage_itself() -> None:
    storage = MemoryStorage()
    assert timed_storage(storage, noop_metrics) is storage
    assert timed_storage(storage, NoopMetrics()) is storage
    assert timed_storage(storage, OnlyPublished()) is storage
    assert isinstance(timed_storage(storage, OnlyErrors()), TimedStorage)
    assert isinstance(timed_storage(storage, Recorder()), TimedStorage)


async def test_timed_storage_reports_and_forwards() -> None:
    storage = MemoryStorage()
    sink = Recorder()
    timed = timed_storage(storage, sink)
    await timed.store_activities([(1, "payload")])
    assert await timed.load_activities([1, 2]) == {1: "payload"}
    assert sink.calls == [("storage", ("store_activities",)), ("storage", ("load_activities",))]
    assert "MemoryStorage" in repr(timed)


async def test_failed_storage_calls_are_timed_and_counted() -> None:
    class Down(MemoryStorage):
        async def read_timeline(self, *args: Any, **kwargs: Any) -> Any:
            raise StorageUnavailableError("down")

    sink = Recorder()
    with pytest.raises(StorageUnavailableError):
        await HookFeed(1, storage=Down(), metrics=sink)[:5]
    assert sink.calls == [
        ("error", ("storage.read_timeline", "StorageUnavailableError")),
        ("storage", ("read_timeline",)),
    ]


async def test_instance_metrics_win_over_the_class_and_survive_filters() -> None:
    class_sink, instance_sink = Recorder(), Recorder()

    class ClassSinkFeed(HookFeed):
        metrics = class_sink

    storage = MemoryStorage()
    feed = ClassSinkFeed(1, storage=storage, metrics=instance_sink)
    await feed.add_many(make_activities(2))
    await feed.filter(activity_id__gte=0)[:1]
    await ClassSinkFeed(2, storage=storage).add_many(make_activities(1))
    assert ("write", ("ClassSinkFeed", 2)) in instance_sink.calls
    assert ("storage", ("read_timeline",)) in instance_sink.calls
    assert class_sink.calls == [
        ("storage", ("add_to_timelines",)),
        ("write", ("ClassSinkFeed", 1)),
    ]


async def test_class_level_calls_and_fanout_report_storage() -> None:
    sink = Recorder()

    class ClassSinkFeed(HookFeed):
        metrics = sink

    storage = MemoryStorage()
    activities = make_activities(2)
    await ClassSinkFeed.insert_activities(activities)  # the class's default storage
    await ClassSinkFeed.fanout_add([1, 2, 3], activities, storage=storage)
    other = Recorder()
    await HookFeed.fanout_remove([1, 2, 3], activities, storage=storage, metrics=other)
    assert sink.calls == [("storage", ("store_activities",)), ("storage", ("add_to_timelines",))]
    assert other.calls == [("storage", ("remove_from_timelines",))]


async def test_aggregated_fanout_reports_each_follower_feed() -> None:
    class AggHookFeed(AggregatedFeed):
        key_format = "m:agghook:%(user_id)s"

    sink = Recorder()
    storage = MemoryStorage()
    await AggHookFeed.fanout_add([1, 2], make_activities(2), storage=storage, metrics=sink)
    writes = sorted(args for hook, args in sink.calls if hook == "write")
    assert writes == [("AggHookFeed", 2), ("AggHookFeed", 2)]
    operations = sorted(args[0] for hook, args in sink.calls if hook == "storage")
    assert operations == ["get_groups", "get_groups", "write_groups", "write_groups"]


async def test_structural_sinks_are_timed() -> None:
    sink = PlainSink()
    timed = timed_storage(MemoryStorage(), sink)  # type: ignore[arg-type]
    assert await timed.count_timeline("m:hook:1") == 0
    assert sink.operations == ["count_timeline"]
