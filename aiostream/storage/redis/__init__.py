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
server. The key layout is documented in :mod:`aiostream.storage.redis._layout`.

``RedisFeed`` and friends (:mod:`aiostream.feeds.redis`) find their storage through
:mod:`aiostream.storage.registry` (where ``configure`` and ``close_default_storages``
are). With no settings given there, the default server is built from
``STREAM_REDIS_URL`` and named ones from ``STREAM_REDIS_SERVERS`` only when that
variable is set; otherwise a :class:`~aiostream.exceptions.ConfigurationError` says so.
"""

from aiostream.exceptions import requires_extra

with requires_extra("aiostream.storage.redis", "redis-py", "redis"):
    import redis.asyncio  # noqa: F401

import aiostream.storage.registry as _registry
from aiostream.settings import Settings
from aiostream.storage.redis._connection import ClientOptions
from aiostream.storage.redis._storage import RedisStorage

__all__ = [
    "ClientOptions",
    "RedisStorage",
    "get_default_storage",
    "storage_from_settings",
]


def storage_from_settings(settings: Settings, server: str = "default") -> RedisStorage:
    """The Redis backend of :class:`~aiostream.storage.registry.Storages`: a storage
    on the server named ``server`` (``"default"``: ``settings.redis_url``).

    Raises:
        ConfigurationError: the settings name no such server, or its URL is invalid.
    """
    return RedisStorage.from_url(settings.redis_server_url(server))


def _environment_variable(server: str) -> str:
    """The variable that configures ``server`` when a registry has no settings: the
    registry builds it from the environment only when this one is set."""
    return "STREAM_REDIS_URL" if server == "default" else "STREAM_REDIS_SERVERS"


storage_from_settings.environment_variable = _environment_variable  # type: ignore[attr-defined]


def get_default_storage(server: str = "default") -> RedisStorage:
    """The storage ``RedisFeed`` classes with ``redis_server = server`` use now (in the
    registry entered, or the running loop's own; see :mod:`aiostream.storage.registry`).

    Raises:
        ConfigurationError: the server name is not configured.
    """
    storage = _registry.default_storage("redis", server)
    assert isinstance(storage, RedisStorage), storage  # a registry given another type
    return storage
