"""Redis storage (``pip install aiostream-feeds[redis]``): standalone servers and Redis Cluster.

Not imported by ``import aiostream``; importing this package imports ``redis``.

Example::

    from aiostream.storage.redis import RedisStorage

    async with RedisStorage.from_url("redis://localhost:6379/0", prefix="myapp:") as storage:
        feed = PinFeed(13, storage=storage)
        await feed.add(activity)

Clients built from a URL take redis-py's query options too, e.g.
``redis://cache:6379/0?socket_timeout=1&max_connections=32`` (they win over keyword
arguments), and ``?cluster=true`` for a Redis Cluster: a URL is a standalone server
unless it says so (or ``cluster=True`` is passed); nothing is guessed by asking the
server. The key layout is documented in :mod:`aiostream.storage.redis.layout`.
"""

try:
    import redis.asyncio  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aiostream.storage.redis needs redis-py: pip install 'aiostream-feeds[redis]'"
    ) from exc

from aiostream.storage.redis.connection import ClientOptions
from aiostream.storage.redis.defaults import (
    LoopBoundRedisStorage,
    close_default_storages,
    configure,
    default_storage,
    get_default_storage,
)
from aiostream.storage.redis.storage import RedisStorage

__all__ = [
    "ClientOptions",
    "LoopBoundRedisStorage",
    "RedisStorage",
    "close_default_storages",
    "configure",
    "default_storage",
    "get_default_storage",
]
