"""Real failures of a private redis-server: stopped, frozen, unreachable.

Every server here is started for the test and stopped by its PID at the end.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aiostream import StorageTimeoutError, StorageUnavailableError
from aiostream.query import Query
from aiostream.storage.redis import RedisStorage
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
    where = f"{private_redis.host}:{private_redis.port}"
    storage = RedisStorage.from_url(private_redis.url, socket_timeout=0.3, retries=0)
    async with storage:
        await storage.count_timeline("warm")  # a pooled connection, and the scripts
        os.kill(private_redis.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StorageTimeoutError, match=where) as caught:
                await storage.read_timeline("f", 0, 25, Query())
            assert isinstance(caught.value.__cause__, RedisTimeoutError | TimeoutError)
            assert isinstance(caught.value, TimeoutError)  # catchable as the builtin too
            with pytest.raises(StorageTimeoutError):
                await storage.add_to_timelines(["f"], [(1, "one")], max_length=5, store=True)
        finally:
            os.kill(private_redis.pid, signal.SIGCONT)
        # The server answers again: the storage recovers without being rebuilt.
        assert await storage.count_timeline("f") in (0, 1)
