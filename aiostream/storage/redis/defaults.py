"""The shared storages behind ``RedisFeed`` and friends when no ``storage=`` is given.

One :class:`RedisStorage` per (Redis server name, running event loop): redis-py's
asyncio connections belong to the loop that opened them, so each loop gets its own pool.
Server URLs come from :func:`configure` or, by default, from
:meth:`aiostream.Settings.from_env` (``STREAM_REDIS_URL``, ``STREAM_REDIS_SERVERS``),
read when a server's storage is first needed, never at import.

Example::

    from aiostream.storage.redis import configure, close_default_storages

    configure(Settings(redis_url="redis://cache:6379/0",
                       redis_servers={"other": "redis://cache2:6379/0"}))
    ...
    await close_default_storages()   # at application shutdown
"""

from __future__ import annotations

import asyncio
import weakref

from aiostream.settings import Settings
from aiostream.storage.loop_bound import LoopBoundStorage
from aiostream.storage.redis.storage import RedisStorage

__all__ = [
    "LoopBoundRedisStorage",
    "close_default_storages",
    "configure",
    "default_storage",
    "get_default_storage",
]

_settings: Settings | None = None
_storages: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RedisStorage]] = (
    weakref.WeakKeyDictionary()
)
_proxies: dict[str, LoopBoundRedisStorage] = {}


def configure(settings: Settings | None) -> None:
    """Use ``settings`` for the default storages made from now on (None: from the env).

    Storages already open keep their connections: call
    :func:`close_default_storages` first to replace them.
    """
    global _settings
    _settings = settings


def _current_settings() -> Settings:
    return _settings if _settings is not None else Settings.from_env()


def get_default_storage(server: str = "default") -> RedisStorage:
    """The shared storage of a named server for the running event loop (made on first use).

    Raises:
        RuntimeError: no event loop is running.
        ConfigurationError: the server name is not configured, or its URL is invalid.
    """
    loop = asyncio.get_running_loop()
    per_loop = _storages.get(loop)
    if per_loop is None:
        for other in [other for other in _storages if other.is_closed()]:
            # Their connections died with their loop; nothing left to close.
            del _storages[other]
        per_loop = _storages[loop] = {}
    storage = per_loop.get(server)
    if storage is None:
        url = _current_settings().redis_server_url(server)
        storage = per_loop[server] = RedisStorage.from_url(url)
    return storage


def default_storage(server: str = "default") -> RedisStorage | LoopBoundRedisStorage:
    """What a Redis-bound feed class uses when no storage is passed.

    Inside a running event loop: that loop's :class:`RedisStorage` for ``server``.
    Outside one (a feed built at import time, in sync code): a
    :class:`LoopBoundRedisStorage` that finds the right storage on every call.

    Raises:
        ConfigurationError: the server name is not configured.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        _current_settings().redis_server_url(server)  # fail early on an unknown name
        proxy = _proxies.get(server)
        if proxy is None:
            proxy = _proxies[server] = LoopBoundRedisStorage(server)
        return proxy
    return get_default_storage(server)


async def close_default_storages() -> None:
    """Close the default storages of the running event loop (they are rebuilt on demand)."""
    per_loop = _storages.pop(asyncio.get_running_loop(), {})
    for storage in per_loop.values():
        await storage.aclose()


class LoopBoundRedisStorage(LoopBoundStorage):
    """A :class:`~aiostream.storage.base.FeedStorage` that forwards every call to the
    default :class:`RedisStorage` of one server name for the loop the call runs in.

    Args:
        server: The Redis server name (``"default"`` or one of ``redis_servers``).
    """

    def __init__(self, server: str = "default") -> None:
        self.server = server

    def resolve(self) -> RedisStorage:
        """The storage for the running loop."""
        return get_default_storage(self.server)

    def __repr__(self) -> str:
        return f"<LoopBoundRedisStorage {self.server!r}>"

    async def aclose(self) -> None:
        """Close this server's storage for the running loop."""
        loop = asyncio.get_running_loop()
        storage = _storages.get(loop, {}).pop(self.server, None)
        if storage is not None:
            await storage.aclose()
