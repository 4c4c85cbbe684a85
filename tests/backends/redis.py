"""The Redis backends: a private standalone redis-server and a private 3-master cluster.

Each test gets a fresh :class:`RedisStorage` with a unique key prefix. The standalone one
is built from a URL (the storage owns its pool, replies decoded to str); the cluster one
wraps an injected ``redis.asyncio.RedisCluster`` with bytes replies, so both client paths
run the whole behaviour suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.backends import Backend
from tests.servers import RedisCluster, RedisServer, start_redis, start_redis_cluster

if TYPE_CHECKING:
    # redis is imported only when a Redis test runs, so the other backends' tests work
    # without it installed.
    from aiostream.storage.redis import RedisStorage


def _start(workdir: Path) -> RedisServer:
    return start_redis(workdir)


def _stop(handle: RedisServer) -> None:
    handle.stop()


def _start_cluster(workdir: Path) -> RedisCluster:
    return start_redis_cluster(workdir)


def _stop_cluster(handle: RedisCluster) -> None:
    handle.stop()


@asynccontextmanager
async def _open(handle: RedisServer, prefix: str) -> AsyncIterator[RedisStorage]:
    from aiostream.storage.redis import RedisStorage

    async with RedisStorage.from_url(handle.url, prefix=prefix) as storage:
        yield storage


@asynccontextmanager
async def _open_cluster(handle: RedisCluster, prefix: str) -> AsyncIterator[RedisStorage]:
    from redis.asyncio import RedisCluster as ClusterClient

    from aiostream.storage.redis import RedisStorage

    client = ClusterClient.from_url(handle.url)
    try:
        async with RedisStorage(client, prefix=prefix) as storage:
            yield storage
    finally:
        await client.aclose()


BACKENDS = {
    "redis": Backend(name="redis", open_storage=_open, start=_start, stop=_stop),
    "redis_cluster": Backend(
        name="redis_cluster", open_storage=_open_cluster, start=_start_cluster, stop=_stop_cluster
    ),
}
