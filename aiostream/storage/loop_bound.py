"""A storage that forwards every call to the storage of the running event loop.

Backend feed classes (``RedisFeed``, ``CassandraFeed``) may be instantiated where no
loop runs yet (module level, sync code). Their connections must belong to the loop that
uses them, so such a feed gets a :class:`LoopBoundStorage`, which looks the real storage
up on every call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from aiostream.query import Query
from aiostream.storage.base import Entry, FeedStorage, GroupChange, GroupRecord, GroupRewrite

__all__ = ["LoopBoundStorage"]


class LoopBoundStorage(ABC):
    """A :class:`~aiostream.storage.base.FeedStorage` forwarding to :meth:`resolve`."""

    @abstractmethod
    def resolve(self) -> FeedStorage:
        """The storage for the running loop."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the running loop's storage."""

    async def __aenter__(self) -> LoopBoundStorage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

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

    async def update_groups(
        self,
        keys: Sequence[str],
        groups: Sequence[str],
        rewrite: GroupRewrite,
        *,
        max_attempts: int,
    ) -> None:
        await self.resolve().update_groups(keys, groups, rewrite, max_attempts=max_attempts)

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

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        return await self.resolve().acquire_lease(name, owner, ttl)

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        return await self.resolve().renew_lease(name, owner, ttl)

    async def release_lease(self, name: str, owner: str) -> None:
        await self.resolve().release_lease(name, owner)
