"""Readiness: ``RedisStorage.ping()`` and ``aiostream.connect(...).ping()`` on real servers."""

from __future__ import annotations

import socket
from typing import Any

import pytest

import aiostream
from aiostream import Settings, StorageUnavailableError
from aiostream.storage.redis import RedisStorage

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_ping_answers_on_a_running_server(storage: RedisStorage) -> None:
    await storage.ping()


@pytest.mark.redis
async def test_ping_names_a_server_that_is_down() -> None:
    port = free_port()
    async with RedisStorage.from_url(f"redis://127.0.0.1:{port}/0", retries=0) as storage:
        with pytest.raises(StorageUnavailableError, match=rf"127\.0\.0\.1:{port}.*\(ping\)"):
            await storage.ping()


@pytest.mark.redis
async def test_connect_pings_the_named_backends(standalone_url: str) -> None:
    async with aiostream.connect(Settings(redis_url=standalone_url), backends=["redis"]) as feeds:
        await feeds.ping()
    port = free_port()
    down = Settings(redis_url=f"redis://127.0.0.1:{port}/0")
    async with aiostream.connect(down, backends=["redis"]) as feeds:
        with pytest.raises(StorageUnavailableError, match=rf"127\.0\.0\.1:{port}"):
            await feeds.ping()


@pytest.fixture
def standalone_url(servers: Any) -> str:
    from tests.backends.redis import BACKENDS

    handle = servers.get(BACKENDS["redis"])
    return f"redis://{handle.host}:{handle.port}/0"
