"""Real failures of a private redis-server: stopped, frozen, unreachable, killed in the
middle of a fanout and restarted.

Every server here is started for the test and stopped by its PID at the end.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aiostream import (
    FanoutError,
    FanoutPriority,
    Manager,
    StorageError,
    StorageTimeoutError,
    StorageUnavailableError,
)
from aiostream.metrics import NoopMetrics
from aiostream.query import Query
from aiostream.storage.redis import RedisStorage
from tests.helpers import (
    TestAggregatedFeed,
    TestFeed,
    TestNotificationFeed,
    TestUserFeed,
    feeds_not_holding_once,
    make_activities,
)
from tests.servers import RedisServer, free_port, start_redis

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "private")
    try:
        yield server
    finally:
        server.stop()


async def test_stopped_server_is_unavailable_and_named(private_redis: RedisServer) -> None:
    where = f"{private_redis.host}:{private_redis.port}"
    async with RedisStorage.from_url(private_redis.url, retries=0) as storage:
        await storage.add_to_timelines(["f"], [(1, "one")], max_length=None, store=True)
        assert await storage.count_timeline("f") == 1
        private_redis.stop()
        with pytest.raises(StorageUnavailableError, match=where) as caught:
            await storage.count_timeline("f")
        assert isinstance(caught.value.__cause__, RedisConnectionError)
        # A write is not reported as done either, pipelined or not.
        with pytest.raises(StorageUnavailableError, match=where):
            await storage.add_to_timelines(["f", "g"], [(2, "two")], max_length=None, store=True)
        with pytest.raises(StorageUnavailableError, match="read_timeline"):
            await storage.read_timeline("f", 0, 10, Query())


async def test_nothing_listening_is_unavailable() -> None:
    port = free_port()
    async with RedisStorage.from_url(f"redis://127.0.0.1:{port}/0", retries=1) as storage:
        with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{port}"):
            await storage.load_activities([1])


@pytest.mark.redis_cluster
async def test_nothing_listening_is_unavailable_on_a_cluster_url() -> None:
    port = free_port()
    async with RedisStorage.from_url(f"redis://127.0.0.1:{port}?cluster=true") as storage:
        assert storage.cluster
        with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{port}"):
            await storage.count_groups("x")


async def test_frozen_server_times_out(private_redis: RedisServer) -> None:
    """A timed-out write is not a failed one: it was sent, and the server runs it when
    it wakes up (which is why a caller retries writes, and why they are idempotent).

    The write is made deterministic: it goes first, on the pooled connection the
    warm-up left (already handshaken, so the command itself reaches the server's socket
    buffer before the client gives up), and its script is already cached (the warm-up
    ran the same add). A write on a connection opened while the server is frozen would
    time out in redis-py's connection handshake before the command is sent, and an
    uncached script would be refused with NOSCRIPT after the thaw: either way it would
    never land, which is an accident of the client and the warm-up, not a guarantee.
    """
    where = f"{private_redis.host}:{private_redis.port}"
    storage = RedisStorage.from_url(private_redis.url, socket_timeout=0.3, retries=0)
    async with storage:
        # One pooled connection, and the STORE_AND_ADD script cached on the server.
        await storage.add_to_timelines(["f"], [(1, "one")], max_length=5, store=True)
        os.kill(private_redis.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StorageTimeoutError, match=where) as caught:
                await storage.add_to_timelines(["f"], [(2, "two")], max_length=5, store=True)
            assert isinstance(caught.value.__cause__, RedisTimeoutError | TimeoutError)
            assert isinstance(caught.value, TimeoutError)  # catchable as the builtin too
            with pytest.raises(StorageTimeoutError, match=where) as caught:
                await storage.read_timeline("f", 0, 25, Query())
            assert isinstance(caught.value.__cause__, RedisTimeoutError | TimeoutError)
        finally:
            os.kill(private_redis.pid, signal.SIGCONT)
        # The server answers again: the storage recovers without being rebuilt, and the
        # write that timed out was applied (the server read it from the socket before
        # it accepted the connection this read is sent on).
        assert await storage.count_timeline("f") == 2
        assert await storage.read_timeline("f", 0, 25, Query()) == [(2, "two"), (1, "one")]
        # Retrying it, as a caller of a timed-out write does, adds no second copy.
        await storage.add_to_timelines(["f"], [(2, "two")], max_length=5, store=True)
        assert await storage.read_timeline("f", 0, 25, Query()) == [(2, "two"), (1, "one")]


async def test_aggregated_and_notification_fanout_into_a_stopped_server_raise_its_error(
    private_redis: RedisServer,
) -> None:
    where = f"{private_redis.host}:{private_redis.port}"
    (activity,) = make_activities(1)
    async with RedisStorage.from_url(private_redis.url, retries=0) as storage:
        await TestAggregatedFeed.fanout_add([10], [activity], storage=storage)
        await TestNotificationFeed.fanout_add([10], [activity], storage=storage)
        private_redis.stop()
        for feed_class in (TestAggregatedFeed, TestNotificationFeed):
            with pytest.raises(StorageUnavailableError, match=where) as caught:
                await feed_class.fanout_add([11], [activity], storage=storage)
            assert isinstance(caught.value.__cause__, RedisConnectionError)
            with pytest.raises(StorageUnavailableError, match=where):
                await feed_class.fanout_remove([10], [activity], storage=storage)


def leaves(error: BaseException) -> list[BaseException]:
    """The errors a FanoutError holds (nested ones too), or the error itself."""
    if isinstance(error, FanoutError):
        return [leaf for inner in error.errors for leaf in leaves(inner)]
    return [error]


# -- the server killed in the middle of a fanout ------------------------------------------

FOLLOWERS = list(range(1_000, 3_000))


class ThreeFeedManager(Manager):
    feed_classes: ClassVar[dict[str, Any]] = {
        "normal": TestFeed,
        "aggregated": TestAggregatedFeed,
        "notification": TestNotificationFeed,
    }
    user_feed_class = TestUserFeed
    fanout_chunk_size = 100

    def get_user_follower_ids(self, user_id: Any) -> dict[str, list[int]]:
        return {FanoutPriority.HIGH: FOLLOWERS}


class KillAfterFirstChunk(NoopMetrics):
    """Kills the server (SIGKILL) as soon as one fanout chunk was written."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.killed = False

    def on_fanout(self, feed: str, operation: str, feeds: int, seconds: float) -> None:
        if not self.killed:
            self.killed = True
            self.server.kill()


async def test_fanout_interrupted_by_a_killed_server_is_completed_by_a_retry(
    tmp_path: Path,
) -> None:
    server = start_redis(tmp_path / "aof", persistent=True)
    try:
        (activity,) = make_activities(1)
        metrics = KillAfterFirstChunk(server)
        async with RedisStorage.from_url(server.url) as storage:
            manager = ThreeFeedManager(storage=storage, metrics=metrics)
            with pytest.raises(FanoutError) as caught:
                await manager.add_user_activity(1, activity)
            chunks = 3 * len(FOLLOWERS) // 100
            assert metrics.killed
            assert 0 < len(caught.value.failures) < chunks
            assert all(isinstance(e, StorageError) for e in leaves(caught.value))

            server.restart()  # same port, the AOF replayed
            await manager.add_user_activity(1, activity)  # the caller's retry

            assert await manager.get_user_feed(1)[:] == [activity]
            problems = await feeds_not_holding_once(
                FOLLOWERS,
                activity,
                flat=lambda user: TestFeed(user, storage=storage),
                aggregated=lambda user: TestAggregatedFeed(user, storage=storage),
                notification=lambda user: TestNotificationFeed(user, storage=storage),
            )
        assert problems == [], f"{len(problems)} feeds wrong, e.g. {problems[:3]}"
    finally:
        server.stop()
