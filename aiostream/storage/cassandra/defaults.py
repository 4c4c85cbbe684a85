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
from collections.abc import Sequence

from aiostream.query import Query
from aiostream.settings import Settings
from aiostream.storage.base import Entry, GroupChange, GroupRecord
from aiostream.storage.cassandra.storage import CassandraStorage

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


class LoopBoundCassandraStorage:
    """A :class:`~aiostream.storage.base.FeedStorage` that forwards every call to the
    default :class:`CassandraStorage` of the loop the call runs in."""

    def resolve(self) -> CassandraStorage:
        """The storage for the running loop."""
        return get_default_storage()

    def __repr__(self) -> str:
        return "<LoopBoundCassandraStorage>"

    async def __aenter__(self) -> LoopBoundCassandraStorage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the running loop's default storage."""
        storage = _storages.pop(asyncio.get_running_loop(), None)
        if storage is not None:
            await storage.aclose()

    async def store_activities(self, entries: Sequence[Entry]) -> None:
        await self.resolve().store_activities(entries)

    async def load_activities(self, ids: Sequence[int]) -> dict[int, str]:
        return await self.resolve().load_activities(ids)

    async def delete_activities(self, ids: Sequence[int]) -> None:
        await self.resolve().delete_activities(ids)

    async def add_to_timelines(
        self,
        keys: Sequence[str],
        entries: Sequence[Entry],
        *,
        max_length: int | None,
        store: bool,
    ) -> None:
        await self.resolve().add_to_timelines(keys, entries, max_length=max_length, store=store)

    async def remove_from_timelines(self, keys: Sequence[str], ids: Sequence[int]) -> None:
        await self.resolve().remove_from_timelines(keys, ids)

    async def read_timeline(
        self, key: str, start: int, stop: int | None, query: Query
    ) -> list[Entry]:
        return await self.resolve().read_timeline(key, start, stop, query)

    async def count_timeline(self, key: str) -> int:
        return await self.resolve().count_timeline(key)

    async def trim_timeline(self, key: str, max_length: int) -> None:
        await self.resolve().trim_timeline(key, max_length)

    async def timeline_index_of(self, key: str, activity_id: int) -> int | None:
        return await self.resolve().timeline_index_of(key, activity_id)

    async def read_groups(
        self, key: str, start: int, stop: int | None, query: Query, *, markers: bool
    ) -> list[GroupRecord]:
        return await self.resolve().read_groups(key, start, stop, query, markers=markers)

    async def get_groups(self, key: str, groups: Sequence[str]) -> dict[str, GroupRecord]:
        return await self.resolve().get_groups(key, groups)

    async def write_groups(
        self,
        key: str,
        changes: Sequence[GroupChange],
        *,
        max_length: int | None,
        track_markers: bool,
    ) -> bool:
        return await self.resolve().write_groups(
            key, changes, max_length=max_length, track_markers=track_markers
        )

    async def count_groups(self, key: str) -> int:
        return await self.resolve().count_groups(key)

    async def trim_groups(self, key: str, max_length: int) -> None:
        await self.resolve().trim_groups(key, max_length)

    async def groups_index_of(self, key: str, group_id: int) -> int | None:
        return await self.resolve().groups_index_of(key, group_id)

    async def mark_groups(
        self, key: str, ids: Sequence[int] | None, *, seen: bool, read: bool
    ) -> None:
        await self.resolve().mark_groups(key, ids, seen=seen, read=read)

    async def count_markers(self, key: str) -> tuple[int, int]:
        return await self.resolve().count_markers(key)

    async def delete_feeds(self, keys: Sequence[str]) -> None:
        await self.resolve().delete_feeds(keys)
