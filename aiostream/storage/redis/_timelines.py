"""Flat feeds on Redis: the :class:`~aiostream.storage.base.TimelineStorage` part of
:class:`~aiostream.storage.redis.RedisStorage` (see its module for how each call travels).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from redis.client import NEVER_DECODE

from aiostream.ids import ID_KEY_WIDTH, MAX_ID, checked_key, id_to_key, is_id
from aiostream.query import Query
from aiostream.storage.base import Entry, LiveWindow, stored_differently
from aiostream.storage.redis import _scripts as scripts
from aiostream.storage.redis._base import RedisBase, _check_length, _entries, _text, clamped
from aiostream.storage.redis._layout import (
    member_bounds,
    member_id,
    shard_of,
    timeline_bounds,
    timeline_member,
)


class RedisTimelines(RedisBase):
    """Timelines: sorted sets of ids (13-byte members), one per flat feed."""

    # -- flat timelines ----------------------------------------------------------------------

    async def add_to_timelines(
        self, keys: Sequence[str], entries: Sequence[Entry], *, max_length: int | None, store: bool
    ) -> dict[int, str]:
        """Add every entry to every feed, trimming each atomically with its add; with
        ``store``, only when no activity is stored with another payload (else returns
        those, having written nothing: see the protocol).

        Raises:
            ValidationError: an id outside ``0..2**104-1`` or a negative ``max_length``
                (before anything is written).
            StorageError: Redis failed (subclasses for down / timeout); part of the
                feeds may have been written (retrying is safe: adds are idempotent).
        """
        trim = _check_length("max_length", max_length)
        for activity_id, _ in entries:
            checked_key(activity_id)
        members = [timeline_member(activity_id) for activity_id, _ in entries]
        tag = self._tag
        timelines = [tag + key + "}:t" for key in keys]
        if not members:
            # Nothing to add, but the memory storage still trims: so do we.
            if trim >= 0 and timelines:
                async with self._op("add_to_timelines"):
                    await self._pipeline(
                        lambda pipe: [
                            pipe.execute_command("ZREMRANGEBYRANK", t, 0, -trim - 1)
                            for t in timelines
                        ]
                    )
            return {}
        stores = self._store_commands(entries) if store else []
        if not timelines and not stores:
            return {}
        async with self._op("add_to_timelines"):
            one_script = len(timelines) <= self.chunk_size and len(entries) <= self.chunk_size
            if stores and (self.cluster or not one_script):
                # Not the one-script path (which checks on the server): read first.
                found = await self._load_hexes([checked_key(i) for i, _ in entries])
                differ = stored_differently({int(h, 16): p for h, p in found.items()}, entries)
                if differ:
                    return differ
            if self.cluster:
                if stores:
                    # Stored first: the nodes of one cluster pipeline run its commands in
                    # no set order, and a read that met the entry before its activity
                    # would take it for a deleted one and remove it.
                    await self._pipeline(lambda pipe: [pipe.execute_command(*c) for c in stores])
                await self._cluster_fanout(
                    "add",
                    timelines,
                    members,
                    trim,
                    [],
                    lambda pipe: self._queue_cluster_add(pipe, timelines, members, trim, []),
                )
                return {}
            args = [trim, *members]
            size = self.chunk_size
            if not stores and len(timelines) <= size:
                await scripts.ADD_TO_TIMELINES(self._c, timelines, args)
                return {}
            if len(timelines) <= size and len(entries) <= size:
                # The feed.add path: one command instead of a pipeline of several.
                shard_keys, shards = self._shard_keys, self.activity_shards
                pairs: list[Any] = [trim, len(timelines)]
                for (_, payload), member in zip(entries, members, strict=True):
                    pairs.append(member)
                    pairs.append(payload)
                reply = await scripts.STORE_AND_ADD(
                    self._c,
                    [*timelines, *(shard_keys[shard_of(i, shards)] for i, _ in entries)],
                    pairs,
                )
                if isinstance(reply, list):  # stored with other payloads: nothing written
                    stored = zip(reply[::2], reply[1::2], strict=True)
                    return {int(_text(h), 16): _text(p) for h, p in stored}
                return {}

            def fill(pipe: Any) -> None:
                for command in stores:
                    pipe.execute_command(*command)
                for i in range(0, len(timelines), size):
                    scripts.ADD_TO_TIMELINES.queue(pipe, timelines[i : i + size], args)

            await self._pipeline(fill)
        return {}

    async def _cluster_fanout(
        self,
        operation: str,
        timelines: list[str],
        members: Sequence[bytes | str],
        trim: int,
        stores: list[tuple[Any, ...]],
        fallback: Callable[[Any], object],
    ) -> None:
        """Write many timelines on a cluster: one script per node when the servers allow.

        A plain cluster pipeline costs redis-py ~30 µs of Python per command, i.e. per
        feed. Redis 7's ``allow-cross-slot-keys`` lets one script write the keys of many
        slots as long as one node serves them all, so a chunk becomes one command per
        node. Anything unexpected (Redis 6, a slot moving mid-call: the script stops at
        the first key its node does not serve) falls back to ``fallback``, a per-feed
        pipeline that follows redirections; adds and removes are idempotent, so feeds
        the first attempt wrote are simply written again.

        Args:
            operation: ``"add"`` or ``"remove"``.
            timelines: Timeline keys.
            members: Timeline members.
            trim: ``max_length`` or -1 (add only).
            stores: Activity-storage commands to send in the same pipeline.
            fallback: Fills a pipeline with the per-feed commands.
        """
        calls = self._node_calls(timelines) if self._cross_slot is not False else None
        if calls:
            head = [operation, trim, len(members), *members]

            def fill(pipe: Any) -> None:
                for command in stores:
                    pipe.execute_command(*command)
                for node, positions in calls:
                    keys = [timelines[p] for p in positions]
                    scripts.TIMELINES_CROSS_SLOT.queue(pipe, [], [*head, *keys], target_nodes=node)

            if await self._cross_slot_pipeline(fill) is not None:
                return
        await self._pipeline(fallback)

    def _queue_cluster_add(
        self,
        pipe: Any,
        timelines: list[str],
        members: list[bytes],
        trim: int,
        stores: list[tuple[Any, ...]],
    ) -> None:
        for command in stores:
            pipe.execute_command(*command)
        if trim < 0:
            # A lone ZADD is atomic already; no script needed.
            scored: list[Any] = []
            for member in members:
                scored.append(0)
                scored.append(member)
            for timeline in timelines:
                pipe.execute_command("ZADD", timeline, *scored)
            return
        by_slot: dict[int, list[str]] = defaultdict(list)
        keyslot = self._c.keyslot
        for timeline in timelines:
            by_slot[keyslot(timeline)].append(timeline)
        args = [trim, *members]
        for slot_keys in by_slot.values():
            scripts.ADD_TO_TIMELINES.queue(pipe, slot_keys, args)

    async def remove_from_timelines(self, keys: Sequence[str], ids: Sequence[int]) -> None:
        """Remove ids from every feed in ``keys`` (missing ones are ignored): both
        members of each, binary and the hex one of a timeline not migrated yet."""
        valid = [i for i in ids if is_id(i)]
        members: list[bytes | str] = [timeline_member(i) for i in valid]
        members += [id_to_key(i) for i in valid]
        if not valid or not keys:
            return
        timelines = [self._tag + key + "}:t" for key in keys]
        async with self._op("remove_from_timelines"):
            if self.cluster:
                await self._cluster_fanout(
                    "remove",
                    timelines,
                    members,
                    -1,
                    [],
                    lambda pipe: [pipe.execute_command("ZREM", t, *members) for t in timelines],
                )
                return
            size = self.chunk_size
            if len(timelines) <= size:
                await scripts.REMOVE_FROM_TIMELINES(self._c, timelines, members)
                return

            def fill(pipe: Any) -> None:
                for i in range(0, len(timelines), size):
                    scripts.REMOVE_FROM_TIMELINES.queue(pipe, timelines[i : i + size], members)

            await self._pipeline(fill)

    async def read_timeline(
        self, key: str, start: int, stop: int | None, query: Query
    ) -> list[Entry]:
        """The ``[start:stop]`` window of the live entries under ``query``, with payloads.

        One round trip on a standalone server (one script: range, payloads, and the
        removal of entries whose activity is gone, the page filled from the entries after
        them), two on a cluster (the range, then the payloads; entries whose activity is
        gone cost a removal and another range and read).
        """
        start, stop = clamped(start), None if stop is None else clamped(stop)
        if query.is_empty or (stop is not None and stop <= start):
            return []
        count = -1 if stop is None else stop - start
        timeline = self._tag + key + "}:t"
        async with self._op("read_timeline"):
            if self._reads is not None:
                low, high = timeline_bounds(query)
                # (bounds are "-", "+" or a bracket and hex digits: never a space)
                numbers = (
                    f"{low} {high} {start} {count} {int(query.descending)} {self.activity_shards}"
                )
                reply = await self._reads.call(
                    scripts.READ_TIMELINE, [timeline], [numbers, self._shard_opening]
                )
                return _entries(reply)
            return await self._read_cluster_timeline(timeline, LiveWindow(start, stop), query)

    async def _read_cluster_timeline(
        self, timeline: str, window: LiveWindow, query: Query
    ) -> list[Entry]:
        """:meth:`read_timeline` on a cluster: what the read script does on a standalone
        server, in steps (the activity shards live in other slots than the timeline)."""
        low, high = member_bounds(query)
        if query.low > 0 or query.high < MAX_ID:
            # Bounds over hex ids if the timeline still holds hex members (see the read
            # script): its oldest member says so.
            oldest = await self._c.execute_command("ZRANGE", timeline, 0, 0, **{NEVER_DECODE: True})
            if oldest and len(oldest[0]) == ID_KEY_WIDTH:
                low, high = (bound.encode() for bound in timeline_bounds(query))
        seen: set[int] = set()
        while True:
            ask = -1 if window.want is None else window.skip + window.want
            # Members are bytes, whatever the client decodes.
            if query.descending:
                members = await self._c.execute_command(
                    "ZREVRANGEBYLEX", timeline, high, low, "LIMIT", 0, ask, **{NEVER_DECODE: True}
                )
            else:
                members = await self._c.execute_command(
                    "ZRANGEBYLEX", timeline, low, high, "LIMIT", 0, ask, **{NEVER_DECODE: True}
                )
            ids = [member_id(m) for m in members]
            found = await self._load_hexes([id_to_key(i) for i in ids])
            dead = []
            for member, activity_id in zip(members, ids, strict=True):
                # The second member of an id (hex beside binary) is dropped like a dead one.
                if activity_id in seen or not window.offer(
                    activity_id, found.get(id_to_key(activity_id))
                ):
                    dead.append(member)
                else:
                    seen.add(activity_id)
            if not dead:
                return window.page
            await self._c.execute_command("ZREM", timeline, *dead)
            if ask < 0 or len(members) < ask or window.full:
                return window.page
            # Go on after the last entry read: bounds, not positions, so entries added
            # meanwhile neither repeat nor shift the page.
            if query.descending:
                high = b"(" + members[-1]
            else:
                low = b"(" + members[-1]

    async def count_timeline(self, key: str) -> int:
        """Number of entries in the feed (``ZCARD``)."""
        async with self._op("count_timeline"):
            return int(await self._c.execute_command("ZCARD", self._tag + key + "}:t"))

    async def trim_timeline(self, key: str, max_length: int) -> None:
        """Keep the newest ``max_length`` entries (one ``ZREMRANGEBYRANK``)."""
        length = _check_length("max_length", max_length)
        async with self._op("trim_timeline"):
            await self._c.execute_command(
                "ZREMRANGEBYRANK", self._tag + key + "}:t", 0, -length - 1
            )

    async def migrate_timelines(self, *, batch: int = 100) -> tuple[int, int]:
        """Rewrite the hex members of every timeline under this storage's prefix as
        binary ones (the current layout: see :mod:`aiostream.storage.redis._layout`).

        Safe beside live reads and writes and idempotent: run it again after an
        interruption, or as often as you like. Until a timeline is rewritten its hex
        members read as before, filters included. Once newer entries were added to it
        (binary members, sorting above the hex ones) its pages stay in order, but an
        ``activity_id`` filter over it, and the place of an old activity written again,
        are exact only after the rewrite.

        Args:
            batch: Timelines rewritten per script call (per key on a cluster).

        Returns:
            ``(timelines scanned, members rewritten)``.
        """
        pattern = "{" + _glob_escape(self.prefix) + "*}:t"
        scanned = rewritten = 0
        keys: list[str] = []

        async def flush() -> int:
            if self.cluster:

                def fill(pipe: Any) -> None:
                    for k in keys:
                        scripts.MIGRATE_TIMELINE.queue(pipe, [k], [])

                replies = await self._pipeline(fill)
            else:
                replies = [await scripts.MIGRATE_TIMELINE(self._c, keys, [])]
            keys.clear()
            return sum(int(r) for r in replies)

        async with self._op("migrate_timelines"):
            async for key in self._c.scan_iter(match=pattern, count=1000):
                keys.append(_text(key))
                scanned += 1
                if len(keys) >= batch:
                    rewritten += await flush()
            if keys:
                rewritten += await flush()
        return scanned, rewritten

    async def timeline_index_of(self, key: str, activity_id: int) -> int | None:
        """Position from the newest (``ZREVRANK``), None when absent (either member:
        binary, or hex in a timeline not migrated yet)."""
        if not is_id(activity_id):
            return None
        timeline = self._tag + key + "}:t"
        async with self._op("timeline_index_of"):
            ranks = await self._pipeline(
                lambda pipe: [
                    pipe.execute_command("ZREVRANK", timeline, timeline_member(activity_id)),
                    pipe.execute_command("ZREVRANK", timeline, id_to_key(activity_id)),
                ]
            )
        rank = next((r for r in ranks if r is not None), None)
        return None if rank is None else int(rank)


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a ``SCAN MATCH`` pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
