"""Errors out of concurrent fanout and follow work are aiostream's own, never an
ExceptionGroup: the storage error itself when one part failed, a FanoutError holding each
error when several did (on the in-memory backend, with writes made to fail)."""

from __future__ import annotations

from collections.abc import Collection
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
    """Memory storage whose writes fail as a stopped server's would (reads work).

    ``failing``: the write methods that fail once ``down`` is set (all of them by
    default). ``together``: the writes that fail first wait until that many have
    arrived, then fail at the same moment (each raises its own error, kept in
    ``raised``), so a test decides which concurrent parts fail together instead of
    leaving it to the order the event loop happens to run them in.
    """

    def __init__(
        self, inner: MemoryStorage, *, failing: Collection[str] = WRITES, together: int = 1
    ) -> None:
        self.inner = inner
        self.down = False
        self.failing = frozenset(failing)
        self.together = together
        self.arrived = 0
        self.gate = anyio.Event()
        self.raised: list[StorageUnavailableError] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in WRITES:
            return attribute

        async def write(*args: Any, **kwargs: Any) -> Any:
            if self.down and name in self.failing:
                self.arrived += 1
                if self.arrived < self.together:
                    await self.gate.wait()
                else:
                    self.gate.set()  # the last to arrive: no checkpoint before raising
                error = StorageUnavailableError("redis://127.0.0.1:1: connection refused")
                self.raised.append(error)
                raise error
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


class ThreeFeeds(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": TestFeed,
        "aggregated": TestAggregatedFeed,
        "notification": TestNotificationFeed,
    }
    user_feed_class = TestUserFeed


async def follow_into(storage: DownStorage) -> None:
    """User 10 follows user 2 (one activity) on a manager with three feeds, with the
    storage down: the three feeds are written concurrently (``run_each``)."""
    manager = ThreeFeeds(storage=storage)
    await TestUserFeed(2, storage=storage).add_many(make_activities(1, actor=2))
    storage.down = True
    with anyio.fail_after(10):  # a gate never opened would hang
        await manager.run(FollowChunk("follow", 10, (2,)))


# Which of the three feeds' writes fail depends, when all are down, on how far each
# feed gets before the first failure cancels the others: the flat feed writes without
# reading first, so on the in-memory backend it alone fails today and the group feeds
# are cancelled in the read before their write (one error); a feed that wrote without
# reading, or a flat feed that read first, would give two or three. The code promises
# the lone error or a FanoutError of the errors of the same moment; each test below
# fixes which writes fail, so each has one outcome.


async def test_a_lone_failing_feed_of_a_manager_raises_its_own_error() -> None:
    storage = DownStorage(MemoryStorage(), failing={"add_to_timelines"})  # the flat feed
    with pytest.raises(StorageUnavailableError) as caught:
        await follow_into(storage)
    assert len(storage.raised) == 1
    assert caught.value is storage.raised[0]  # the error itself, not wrapped
    assert not isinstance(caught.value, FanoutError | BaseExceptionGroup)


async def test_feeds_of_a_manager_failing_together_are_one_fanout_error_holding_each() -> None:
    storage = DownStorage(MemoryStorage(), together=len(ThreeFeeds.feed_classes))
    with pytest.raises(FanoutError) as caught:
        await follow_into(storage)
    error = caught.value
    assert not isinstance(error, BaseExceptionGroup)
    assert len(storage.raised) == 3
    assert sorted(name for name, _ in error.failures) == sorted(ThreeFeeds.feed_classes)
    # Each feed's own error, each once: none lost to the cancellation, none wrapped.
    assert sorted(map(id, error.errors)) == sorted(map(id, storage.raised))
    assert [e for _, e in error.failures] == error.errors
