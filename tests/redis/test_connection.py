"""Building storages: URLs, options, ownership of the pool. No server needed."""

from __future__ import annotations

import pytest
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster

from aiostream import ConfigurationError
from aiostream.storage.redis import RedisStorage
from aiostream.storage.redis._connection import split_cluster_flag

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:1/0", ("redis://h:1/0", None)),
        ("redis://h:1/0?cluster=true", ("redis://h:1/0", True)),
        ("redis://h:1?cluster=no&socket_timeout=2", ("redis://h:1?socket_timeout=2", False)),
        ("rediss://u:p@h:1/0?cluster=1", ("rediss://u:p@h:1/0", True)),
        # A unix socket's empty authority survives, with and without a cluster flag.
        ("unix:///run/redis.sock?db=1", ("unix:///run/redis.sock?db=1", None)),
        ("unix:///run/redis.sock?cluster=false&db=1", ("unix:///run/redis.sock?db=1", False)),
        ("unix:///run/redis.sock?cluster=false", ("unix:///run/redis.sock", False)),
    ],
)
def test_split_cluster_flag(url: str, expected: tuple[str, bool | None]) -> None:
    assert split_cluster_flag(url) == expected


def test_bad_cluster_flag() -> None:
    with pytest.raises(ConfigurationError, match="cluster="):
        split_cluster_flag("redis://h?cluster=maybe")


async def test_standalone_from_url_owns_a_blocking_pool() -> None:
    storage = RedisStorage.from_url(
        "redis://127.0.0.1:6390/2", prefix="app:", max_connections=7, socket_timeout=1.5
    )
    async with storage:
        assert not storage.cluster
        assert isinstance(storage.client, Redis)
        pool = storage.client.connection_pool
        assert isinstance(pool, BlockingConnectionPool)
        assert pool.max_connections == 7
        assert pool.connection_kwargs["socket_timeout"] == 1.5
        assert pool.connection_kwargs["db"] == 2
        assert storage.server == "127.0.0.1:6390"
        assert "standalone" in repr(storage)


async def test_cluster_from_url() -> None:
    for storage in (
        RedisStorage.from_url("redis://127.0.0.1:6390?cluster=true"),
        RedisStorage.from_url("redis://127.0.0.1:6390", cluster=True),
    ):
        async with storage:
            assert storage.cluster
            assert isinstance(storage.client, RedisCluster)
            assert "127.0.0.1:6390" in storage.server


@pytest.mark.parametrize(
    "url", ["unix:///tmp/nowhere.sock?db=1", "unix:///tmp/nowhere.sock?cluster=false&db=1"]
)
async def test_unix_socket_url(url: str) -> None:
    async with RedisStorage.from_url(url) as storage:
        assert storage.server == "unix:/tmp/nowhere.sock"
        assert storage.client.connection_pool.connection_kwargs["db"] == 1


async def test_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_REDIS_URL", "redis://127.0.0.1:6391/0")
    async with RedisStorage() as storage:
        assert storage.server == "127.0.0.1:6391"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "http://h"}, "scheme"),
        ({"url": "unix:///s.sock", "cluster": True}, "unix"),
        ({"url": "redis://h", "prefix": "a{b"}, "prefix"),
        ({"url": "redis://h", "activity_shards": 0}, "activity_shards"),
        ({"url": "redis://h", "chunk_size": 0}, "chunk_size"),
        ({"url": "redis://h", "max_connections": 0}, "max_connections"),
        ({"url": "redis://h?socket_timeout=abc"}, "socket_timeout|cannot build"),
    ],
)
def test_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisStorage(**kwargs)  # type: ignore[arg-type]


async def test_client_and_url_are_exclusive() -> None:
    client = Redis()
    try:
        with pytest.raises(ConfigurationError, match="either"):
            RedisStorage(client, url="redis://h")
    finally:
        await client.aclose()


def test_importing_aiostream_does_not_import_redis() -> None:
    import subprocess
    import sys

    code = "import sys, aiostream, aiostream.feeds; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_passwords_stay_out_of_messages() -> None:
    from aiostream.storage.redis._connection import redact

    assert redact("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"
    assert redact("redis://:s3cret@h:1/0") == "redis://:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    with pytest.raises(ConfigurationError) as caught:
        RedisStorage.from_url("redis://u:s3cret@h:1/0?socket_timeout=abc")
    assert "s3cret" not in str(caught.value)
