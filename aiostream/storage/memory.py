"""In-memory storage: no server, one process. The reference implementation.

Used by default (the demo, unit tests, prototyping) and as the oracle the behaviour and
property tests compare the server backends with. Every method yields to the event loop
once before it acts, so concurrent callers interleave the way they do on a network
backend and races in feed logic show up here too; each method then runs without further
awaits, which makes it atomic.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import ClassVar

from anyio.lowlevel import checkpoint

from aiostream.query import Query
from aiostream.realtime import DEFAULT_BUFFER, FeedUpdate, Hub, Subscription
from aiostream.storage.base import (
    Capability,
    Entry,
    GroupChanges,
    GroupRecord,
    GroupRewrite,
    LiveWindow,
    check_maxima,
    check_times,
    renews,
    stored_differently,
)

__all__ = ["MemoryStorage", "default_memory_storage", "storage_from_settings"]


def _insert(ids: list[int], activity_id: int) -> bool:
    pos = bisect.bisect_left(ids, activity_id)
    if pos < len(ids) and ids[pos] == activity_id:
        return False
    ids.insert(pos, activity_id)
    return True


def _discard(ids: list[int], activity_id: int) -> bool:
    pos = bisect.bisect_left(ids, activity_id)
    if pos < len(ids) and ids[pos] == activity_id:
        del ids[pos]
        return True
    return False


def _index_from_newest(ids: list[int], activity_id: int) -> int | None:
    pos = bisect.bisect_left(ids, activity_id)
    if pos < len(ids) and ids[pos] == activity_id:
        return len(ids) - 1 - pos
    return None


@dataclass
class _Groups:
    by_name: dict[str, GroupRecord] = field(default_factory=dict)
    names_by_id: dict[int, str] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    unseen: set[int] = field(default_factory=set)
    unread: set[int] = field(default_factory=set)

    def drop(self, group: str) -> None:
        record = self.by_name.pop(group)
        del self.names_by_id[record.id]
        _discard(self.ids, record.id)
        self.unseen.discard(record.id)
        self.unread.discard(record.id)

    def put(
        self, record: GroupRecord, track_markers: bool, markers: tuple[bool, bool] | None = None
    ) -> None:
        """Store ``record``; when ``track_markers``, unseen and unread, or as ``markers``
        (unseen, unread) say when given (a change that keeps the group's markers)."""
        self.by_name[record.group] = record
        self.names_by_id[record.id] = record.group
        _insert(self.ids, record.id)
        if track_markers:
            unseen, unread = markers or (True, True)
            if unseen:
                self.unseen.add(record.id)
            if unread:
                self.unread.add(record.id)

    def trim(self, max_length: int) -> None:
        for group_id in self.ids[: max(len(self.ids) - max_length, 0)]:
            self.drop(self.names_by_id[group_id])


class MemoryStorage:
    """A :class:`~aiostream.storage.base.FeedStorage` kept in Python dicts.

    Example::

        storage = MemoryStorage()
        feed = PinFeed(13, storage=storage)
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.GROUPS, Capability.LEASES, Capability.STATES, Capability.UPDATES}
    )
    """Everything but the two server-side fast paths (merging groups, merged reads):
    the reference takes the paths every backend can, so the tests compare the fast
    ones with it."""

    def __init__(self) -> None:
        self.activities: dict[int, str] = {}
        self.timelines: dict[str, list[int]] = {}
        self.groups: dict[str, _Groups] = {}
        self.leases: dict[str, tuple[str, float]] = {}  # name -> (owner, expiry)
        self._states: dict[str, str] = {}
        self._maxima: dict[str, dict[str, int]] = {}
        self._hub = Hub()

    async def __aenter__(self) -> MemoryStorage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def load_states(self, names: Sequence[str]) -> dict[str, str]:
        await checkpoint()
        return {name: self._states[name] for name in names if name in self._states}

    async def store_states(self, states: Mapping[str, str]) -> None:
        await checkpoint()
        self._states.update(states)

    async def delete_states(self, names: Sequence[str]) -> None:
        await checkpoint()
        for name in names:
            self._states.pop(name, None)

    async def renew_states(
        self, times: Mapping[str, float], before: float, names: Sequence[str] = ()
    ) -> dict[str, str]:
        check_times(times, before)
        await checkpoint()
        states = self._states
        found = {n: states[n] for n in (*times, *names) if n in states}
        for name, time_ in times.items():
            if renews(states.get(name), before):
                states[name] = repr(float(time_))
        return found

    async def raise_maxima(self, name: str, values: Mapping[str, int]) -> dict[str, int]:
        await checkpoint()
        kept = self._maxima.setdefault(name, {})
        before = {}
        for member, value in check_maxima(values).items():
            if member in kept:
                before[member] = kept[member]
            kept[member] = max(kept.get(member, value), value)
        return before

    async def load_maxima(self, name: str, members: Sequence[str]) -> dict[str, int]:
        await checkpoint()
        kept = self._maxima.get(name, {})
        return {m: kept[m] for m in members if m in kept}

    async def listening(self) -> bool:
        return bool(self._hub)

    async def publish_updates(
        self,
        keys: Sequence[str],
        update: FeedUpdate,
        *,
        counts: tuple[bool, bool] = (False, False),
    ) -> None:
        hub = self._hub
        for key in dict.fromkeys(keys) if hub else ():
            if key not in hub.channels:
                continue
            if counts[0] or counts[1]:
                unseen, unread = await self.count_markers(key)
                update = replace(
                    update,
                    unseen=unseen if counts[0] else None,
                    unread=unread if counts[1] else None,
                )
            hub.deliver(key, update)

    def subscribe(
        self, key: str, *, buffer: int = DEFAULT_BUFFER
    ) -> AbstractAsyncContextManager[Subscription]:
        """The updates of the feed ``key``, delivered in this process."""
        return self._hub.subscription(key, key, buffer)

    async def ping(self) -> None:
        """Always ready: there is no server."""

    async def aclose(self) -> None:
        """Nothing to release."""

    # -- activity storage ------------------------------------------------------------------

    async def store_activities(
        self, entries: Sequence[Entry], *, only_new: bool = False
    ) -> dict[int, str]:
        await checkpoint()
        differ = stored_differently(self.activities, entries) if only_new else {}
        if not differ:
            self.activities.update(entries)
        return differ

    async def load_activities(self, ids: Sequence[int]) -> dict[int, str]:
        await checkpoint()
        return {i: self.activities[i] for i in ids if i in self.activities}

    async def delete_activities(self, ids: Sequence[int]) -> None:
        await checkpoint()
        for i in ids:
            self.activities.pop(i, None)

    # -- flat timelines ----------------------------------------------------------------------

    async def add_to_timelines(
        self, keys: Sequence[str], entries: Sequence[Entry], *, max_length: int | None, store: bool
    ) -> dict[int, str]:
        await checkpoint()
        if store:
            differ = stored_differently(self.activities, entries)
            if differ:
                return differ
            self.activities.update(entries)
        for key in keys:
            ids = self.timelines.setdefault(key, [])
            for activity_id, _ in entries:
                _insert(ids, activity_id)
            if max_length is not None:
                del ids[: max(len(ids) - max_length, 0)]
        return {}

    async def remove_from_timelines(self, keys: Sequence[str], ids: Sequence[int]) -> None:
        await checkpoint()
        for key in keys:
            timeline = self.timelines.get(key)
            if timeline is None:
                continue
            for activity_id in ids:
                _discard(timeline, activity_id)
            if not timeline:
                del self.timelines[key]

    async def read_timeline(
        self, key: str, start: int, stop: int | None, query: Query
    ) -> list[Entry]:
        await checkpoint()
        timeline = self.timelines.get(key)
        if not timeline or (stop is not None and stop <= start):
            return []
        # Walk the window's entries from the top, skipping (and forgetting) those whose
        # activity was deleted, until `start` live ones are passed and the page is full.
        activities = self.activities
        window = LiveWindow(start, stop)
        dead: list[int] = []
        for activity_id in query.select(timeline, 0, None):
            if window.full:
                break
            if not window.offer(activity_id, activities.get(activity_id)):
                dead.append(activity_id)
        for activity_id in dead:
            _discard(timeline, activity_id)
        if not timeline:
            del self.timelines[key]
        return window.page

    async def count_timeline(self, key: str) -> int:
        await checkpoint()
        return len(self.timelines.get(key, ()))

    async def trim_timeline(self, key: str, max_length: int) -> None:
        await checkpoint()
        ids = self.timelines.get(key)
        if ids:
            del ids[: max(len(ids) - max_length, 0)]

    async def timeline_index_of(self, key: str, activity_id: int) -> int | None:
        await checkpoint()
        return _index_from_newest(self.timelines.get(key, []), activity_id)

    # -- groups ------------------------------------------------------------------------------

    async def read_groups(
        self, key: str, start: int, stop: int | None, query: Query, *, markers: bool
    ) -> list[GroupRecord]:
        await checkpoint()
        state = self.groups.get(key)
        if state is None:
            return []
        records = [
            state.by_name[state.names_by_id[i]] for i in query.select(state.ids, start, stop)
        ]
        if not markers:
            return records
        return [
            r._replace(unseen=r.id in state.unseen, unread=r.id in state.unread) for r in records
        ]

    async def get_groups(self, key: str, groups: Sequence[str]) -> dict[str, GroupRecord]:
        await checkpoint()
        state = self.groups.get(key)
        if state is None:
            return {}
        return {g: state.by_name[g] for g in groups if g in state.by_name}

    async def write_groups(
        self, key: str, changes: GroupChanges, *, max_length: int | None, track_markers: bool
    ) -> bool:
        await checkpoint()
        state = self.groups.setdefault(key, _Groups())
        for change in changes:
            current = state.by_name.get(change.group)
            if (current.version if current else None) != change.expected_version:
                return False
        for change in changes:
            markers = (True, True)
            if change.group in state.by_name:
                old_id = state.by_name[change.group].id
                markers = (old_id in state.unseen, old_id in state.unread)
                state.drop(change.group)
            if change.new is not None:
                state.put(change.new, track_markers, markers if change.keeps_markers else None)
        if max_length is not None:
            state.trim(max_length)
        if not state.by_name:
            del self.groups[key]
        return True

    async def update_groups(
        self, keys: Sequence[str], names: Sequence[str], rewrite: GroupRewrite, *, max_attempts: int
    ) -> None:
        await checkpoint()
        for key in dict.fromkeys(keys):
            state = self.groups.get(key)
            if state is None:
                continue
            for group in dict.fromkeys(names):
                record = state.by_name.get(group)
                if record is None:
                    continue
                payload = rewrite(key, record)
                if payload is not None and payload != record.payload:
                    # Same id: same place, same markers.
                    state.by_name[group] = record._replace(
                        payload=payload, version=record.version + 1
                    )

    async def count_groups(self, key: str) -> int:
        await checkpoint()
        state = self.groups.get(key)
        return len(state.ids) if state else 0

    async def trim_groups(self, key: str, max_length: int) -> None:
        await checkpoint()
        state = self.groups.get(key)
        if state:
            state.trim(max_length)

    async def groups_index_of(self, key: str, group_id: int) -> int | None:
        await checkpoint()
        state = self.groups.get(key)
        return _index_from_newest(state.ids, group_id) if state else None

    async def mark_groups(
        self, key: str, ids: Sequence[int] | None, *, seen: bool, read: bool
    ) -> None:
        await checkpoint()
        state = self.groups.get(key)
        if state is None:
            return
        for flag, markers in ((seen, state.unseen), (read, state.unread)):
            if not flag:
                continue
            if ids is None:
                markers.clear()
            else:
                markers.difference_update(ids)

    async def count_markers(self, key: str) -> tuple[int, int]:
        await checkpoint()
        state = self.groups.get(key)
        return (len(state.unseen), len(state.unread)) if state else (0, 0)

    # -- whole feeds -------------------------------------------------------------------------

    async def delete_feeds(self, keys: Sequence[str]) -> None:
        await checkpoint()
        for key in keys:
            self.timelines.pop(key, None)
            self.groups.pop(key, None)

    # -- leases ------------------------------------------------------------------------------

    def _lease_holder(self, name: str) -> str | None:
        held = self.leases.get(name)
        if held is None or held[1] <= time.monotonic():
            return None
        return held[0]

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        await checkpoint()
        if self._lease_holder(name) is not None:
            return False
        self.leases[name] = (owner, time.monotonic() + ttl)
        return True

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        await checkpoint()
        if self._lease_holder(name) != owner:
            return False
        self.leases[name] = (owner, time.monotonic() + ttl)
        return True

    async def release_lease(self, name: str, owner: str) -> None:
        await checkpoint()
        if self._lease_holder(name) == owner:
            del self.leases[name]


_default: MemoryStorage | None = None


def default_memory_storage() -> MemoryStorage:
    """The process-wide memory storage feeds use when none is given (made on first use)."""
    global _default
    if _default is None:
        _default = MemoryStorage()
    return _default


def storage_from_settings(settings: object, server: str = "default") -> MemoryStorage:
    """The memory backend of :class:`~aiostream.storage.registry.Storages`: the
    process-wide storage for ``"default"``, and one per other server name (process-wide
    too, so feeds of every loop and every registry share them)."""
    if server == "default":
        return default_memory_storage()
    return _named.setdefault(server, MemoryStorage())


storage_from_settings.process_wide = True  # type: ignore[attr-defined]
_named: dict[str, MemoryStorage] = {}
