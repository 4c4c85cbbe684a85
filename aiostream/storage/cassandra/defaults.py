"""The shared storage behind ``CassandraFeed`` and friends when no ``storage=`` is given.

One :class:`CassandraStorage` per running event loop, configured by :func:`configure` or,
by default, by :meth:`aiostream.Settings.from_env` (``STREAM_CASSANDRA_HOSTS``,
``STREAM_DEFAULT_KEYSPACE``, ...), read when the storage is first needed, never at
import. Nothing connects until the first query.

Example::

    from aiostream.storage.cassandra.defaults import configure, close_default_storages

    configure(Settings(cassandra_hosts=("10.0.0.5",), cassandra_keyspace="feeds"))
    ...
    await close_default_storages()   # at application shutdown
"""

from __future__ import annotations

import asyncio
import weakref

from aiostream.settings import Settings
from aiostream.storage.cassandra.storage import CassandraStorage
from aiostream.storage.loop_bound import LoopBoundStorage

__all__ = [
    "LoopBoundCassandraStorage",
    "close_default_storages",
    "configure",
    "default_storage",
    "get_default_storage",
]

_settings: Settings | None = None
_storages: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CassandraStorage] = (
    weakref.WeakKeyDictionary()
)
_proxy: LoopBoundCassandraStorage | None = None


def configure(settings: Settings | None) -> None:
    """Use ``settings`` for default storages made from now on (``None``: the environment).

    Storages already made keep their configuration: call :func:`close_default_storages`
    first to replace them.
    """
    global _settings
    _settings = settings


def get_default_storage() -> CassandraStorage:
    """The shared storage of the running event loop (made on first use, unconnected).

    Raises:
        RuntimeError: no event loop is running.
        ConfigurationError: the settings cannot work (e.g. an unknown consistency level).
    """
    loop = asyncio.get_running_loop()
    storage = _storages.get(loop)
    if storage is None:
        for other in [other for other in _storages if other.is_closed()]:
            # The driver's threads outlive a closed loop: shut its cluster down.
            _storages.pop(other).close_nowait()
        settings = _settings if _settings is not None else Settings.from_env()
        storage = _storages[loop] = CassandraStorage.from_settings(settings)
    return storage


def default_storage() -> CassandraStorage | LoopBoundCassandraStorage:
    """What a Cassandra-bound feed class uses when no storage is passed.

    Inside a running event loop: that loop's :class:`CassandraStorage`. Outside one (a
    feed built at import time, in sync code): a :class:`LoopBoundCassandraStorage` that
    finds the right storage on every call.
    """
    global _proxy
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if _proxy is None:
            _proxy = LoopBoundCassandraStorage()
        return _proxy
    return get_default_storage()


async def close_default_storages() -> None:
    """Close every default storage (they are made again on demand).

    The driver runs on its own threads, not on a loop, so storages of every loop are
    closed, each cluster shut down in a worker thread.
    """
    storages = list(_storages.values())
    _storages.clear()
    for storage in storages:
        await storage.aclose()


class LoopBoundCassandraStorage(LoopBoundStorage):
    """A :class:`~aiostream.storage.base.FeedStorage` that forwards every call to the
    default :class:`CassandraStorage` of the loop the call runs in."""

    def resolve(self) -> CassandraStorage:
        """The storage for the running loop."""
        return get_default_storage()

    def __repr__(self) -> str:
        return "<LoopBoundCassandraStorage>"

    async def aclose(self) -> None:
        """Close the running loop's default storage."""
        storage = _storages.pop(asyncio.get_running_loop(), None)
        if storage is not None:
            await storage.aclose()
