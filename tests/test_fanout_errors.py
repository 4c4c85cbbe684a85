"""Errors out of concurrent fanout and follow work are aiostream's own, never an
ExceptionGroup: the storage error itself when one part failed, a FanoutError holding each
error when several did (on the in-memory backend, with writes made to fail)."""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import pytest

from aiostream import FanoutError, Manager, StorageTimeoutError, StorageUnavailableError
from aiostream._concurrency import run_each
from aiostream.fanout import FollowChunk
from aiostream.storage.memory import MemoryStorage
from tests.helpers import (
    TestAggregatedFeed,
    TestFeed,
    TestNotificationFeed,
    TestUserFeed,
    make_activities,
)

pytestmark = [pytest.mark.anyio, pytest.mark.memory]

WRITES = ("add_to_timelines", "remove_from_timelines", "write_groups", "merge_groups")


class DownStorage:
    """Memory storage whose writes fail as a stopped server's would (reads work)."""

    def __init__(self, inner: MemoryStorage) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in WRITES:
            return attribute

        async def write(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StorageUnavailableError("redis://127.0.0.1:1: connection refused")
            return await attribute(*args, **kwargs)

        return write


@pytest.mark.parametrize("feed_class", [TestAggregatedFeed, TestNotificationFeed])
async def test_fanout_into_a_failing_storage_raises_the_storage_error(
    feed_class: type[TestAggregatedFeed],
) -> None:
    storage = DownStorage(MemoryStorage())
    (activity,) = make_activities(1)
    await feed_class.fanout_add([10], [activity], storage=storage)
    storage.down = True
    with pytest.raises(StorageUnavailableError, match="connection refused"):
        await feed_class.fanout_add([11], [activity], storage=storage)
    with pytest.raises(StorageUnavailableError, match="connection refused"):
        await feed_class.fanout_remove([10], [activity], storage=storage)


class OneFeedManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {"aggregated": TestAggregatedFeed}
    user_feed_class = TestUserFeed


@pytest.mark.parametrize("operation", ["follow", "unfollow"])
async def test_follow_and_unfollow_into_a_failing_storage_raise_the_storage_error(
    operation: Any,
) -> None:
    storage = DownStorage(MemoryStorage())
    manager = OneFeedManager(storage=storage)
    activities = make_activities(2, actor=2)
    await TestUserFeed(2, storage=storage).add_many(activities)
    await manager.run(FollowChunk("follow", 10, (2,)))
    storage.down = True
    with pytest.raises(StorageUnavailableError, match="connection refused"):
        await manager.run(FollowChunk(operation, 10 if operation == "unfollow" else 11, (2,)))


async def test_parts_failing_together_are_one_fanout_error_holding_each() -> None:
    together = anyio.Event()
    errors = {
        "a": StorageUnavailableError("a down"),
        "b": StorageTimeoutError("b slow"),
    }
    finished: list[str] = []

    async def part(name: str) -> None:
        if name == "go":
            together.set()
            return
        await together.wait()
        if name in errors:
            raise errors[name]
        finished.append(name)

    with pytest.raises(FanoutError) as caught:
        await run_each(["a", "b", "go"], part)
    assert caught.value.failures == [("a", errors["a"]), ("b", errors["b"])]
    assert caught.value.errors == [errors["a"], errors["b"]]
    assert not isinstance(caught.value, BaseExceptionGroup)


async def test_the_first_failure_stops_the_other_parts() -> None:
    started: list[int] = []

    async def part(item: int) -> None:
        started.append(item)
        if item == 0:
            raise StorageUnavailableError("down")
        await anyio.sleep_forever()

    with anyio.fail_after(10):  # a hang would mean the others were not cancelled
        with pytest.raises(StorageUnavailableError, match="down"):
            await run_each(range(5), part, limit=2)
    assert started == [0, 1]  # the limit held, and nothing started after the failure


async def test_a_manager_with_several_feeds_raises_an_aiostream_error() -> None:
    class ThreeFeeds(Manager):
        feed_classes: ClassVar[dict[str, Any]] = {
            "normal": TestFeed,
            "aggregated": TestAggregatedFeed,
            "notification": TestNotificationFeed,
        }
        user_feed_class = TestUserFeed

    storage = DownStorage(MemoryStorage())
    manager = ThreeFeeds(storage=storage)
    await TestUserFeed(2, storage=storage).add_many(make_activities(1, actor=2))
    storage.down = True
    with pytest.raises((StorageUnavailableError, FanoutError)) as caught:
        await manager.run(FollowChunk("follow", 10, (2,)))
    error = caught.value
    leaves = error.errors if isinstance(error, FanoutError) else [error]
    assert leaves and all(isinstance(e, StorageUnavailableError) for e in leaves)
