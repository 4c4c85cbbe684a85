"""Fixtures for the Redis-only tests: the session's servers, storages and raw clients.

``kind`` runs a test on the standalone server and on the cluster (``-m redis`` /
``-m redis_cluster`` select them); tests that need only one use ``standalone``.
"""

from __future__ import annotations

import gc
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from tests.backends.redis import BACKENDS

pytest.importorskip("redis")

from redis.asyncio import Redis, RedisCluster

from aiostream.storage.redis import RedisStorage

KINDS = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("redis_cluster", marks=pytest.mark.redis_cluster),
]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def handle(kind: str, servers: Any) -> Any:
    """The session's server (or cluster) of this ``kind``."""
    return servers.get(BACKENDS[kind])


@pytest.fixture
def prefix() -> str:
    return f"r{uuid.uuid4().hex[:10]}:"


StorageOpener = Callable[[], AbstractAsyncContextManager[RedisStorage]]


@pytest.fixture
def open_storage(kind: str, handle: Any, prefix: str) -> StorageOpener:
    """Opens storages of this kind sharing this test's prefix (each with its own client)."""

    def opener() -> AbstractAsyncContextManager[RedisStorage]:
        return BACKENDS[kind].open_storage(handle, prefix)  # type: ignore[return-value]

    return opener


@pytest.fixture
async def storage(open_storage: StorageOpener) -> AsyncIterator[RedisStorage]:
    async with open_storage() as opened:
        yield opened


@pytest.fixture
async def raw(kind: str, handle: Any) -> AsyncIterator[Any]:
    """A plain redis-py client (str replies) on the same server, for inspecting keys."""
    client: Any
    if kind == "redis_cluster":
        client = await RedisCluster.from_url(handle.url, decode_responses=True).initialize()
    else:
        client = Redis.from_url(handle.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def keys_with_prefix(raw: Any, prefix: str) -> set[str]:
    """Every key of one test (its prefix sits right after the opening brace)."""
    pattern = "{" + prefix + "*"
    nodes = raw.get_primaries() if isinstance(raw, RedisCluster) else [None]
    found: set[str] = set()
    for node in nodes:
        options = {} if node is None else {"target_nodes": node}
        cursor = 0
        while True:
            cursor, batch = await raw.execute_command(
                "SCAN", cursor, "MATCH", pattern, "COUNT", 1000, **options
            )
            found.update(batch)
            if isinstance(cursor, dict):  # the cluster client keys cursors by node
                (cursor,) = cursor.values()
            if int(cursor) == 0:
                break
    return found


async def close_forgotten_cluster_nodes(ports: Iterable[int]) -> None:
    """Disconnect every redis-py ``ClusterNode`` of the servers on ``ports`` (a test's
    private cluster) still in memory. A topology change (failover, slot move) makes
    redis-py drop node objects without closing their connections; left to the garbage
    collector, their sockets are reported whenever it runs, in whatever test runs then."""
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.connection import AbstractConnection

    wanted = set(ports)
    gc.collect()  # what is unreachable already goes while this test's filters apply
    for found in gc.get_objects():
        if type(found) in weakref.ProxyTypes:
            continue  # (redis-py 8.2 keeps weak proxies; a dead one raises when touched)
        if isinstance(found, ClusterNode) and found.port in wanted:
            await found.disconnect()
        elif isinstance(found, AbstractConnection) and getattr(found, "port", None) in wanted:
            await found.disconnect()  # a connection its dropped node left behind
    gc.collect()
