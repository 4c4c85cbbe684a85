"""Flat feeds on Redis: the :class:`~aiostream.storage.base.TimelineStorage` part of
:class:`~aiostream.storage.redis.RedisStorage` (see its module for how each call travels).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisClusterException, ResponseError

from aiostream.ids import checked_key, valid_keys
from aiostream.query import Query
from aiostream.storage.base import Entry, LiveWindow
from aiostream.storage.redis import _scripts as scripts
from aiostream.storage.redis._base import RedisBase, _check_length, _text
from aiostream.storage.redis._layout import (
    shard_of,
    timeline_bounds,
)


class RedisTimelines(RedisBase):
    """Timelines: sorted sets of hex ids, one per flat feed."""

    # -- flat timelines ----------------------------------------------------------------------

    async def add_to_timelines(
        self, keys: Sequence[str], entries: Sequence[Entry], *, max_length: int | None, store: bool
    ) -> None:
        """Add every entry to every feed, trimming each atomically with its add.

        Raises:
            ValidationError: an id outside ``0..2**104-1`` or a negative ``max_length``
                (before anything is written).
            StorageError: Redis failed (subclasses for down / timeout); part of the
                feeds may have been written (retrying is safe: adds are idempotent).
        """
        trim = _check_length("max_length", max_length)
        hexes = [checked_key(activity_id) for activity_id, _ in entries]
        tag = self._tag
        timelines = [tag + key + "}:t" for key in keys]
        if not hexes:
            # Nothing to add, but the memory storage still trims: so do we.
            if trim >= 0 and timelines:
                async with self._op("add_to_timelines"):
                    await self._pipeline(
                        lambda pipe: [
                            pipe.execute_command("ZREMRANGEBYRANK", t, 0, -trim - 1)
                            for t in timelines
                        ]
                    )
            return
        stores = self._store_commands(entries) if store else []
        if not timelines and not stores:
            return
        async with self._op("add_to_timelines"):
            if self.cluster:
                if stores:
                    # Stored first: the nodes of one cluster pipeline run its commands in
                    # no set order, and a read that met the entry before its activity
                    # would take it for a deleted one and remove it.
                    await self._pipeline(lambda pipe: [pipe.execute_command(*c) for c in stores])
                await self._cluster_fanout(
                    "add",
                    timelines,
                    hexes,
                    trim,
                    [],
                    lambda pipe: self._queue_cluster_add(pipe, timelines, hexes, trim, []),
                )
                return
            args = [trim, *hexes]
            size = self.chunk_size
            if not stores and len(timelines) <= size:
                await scripts.ADD_TO_TIMELINES(self._c, timelines, args)
                return
            if len(timelines) <= size and len(entries) <= size:
                # The feed.add path: one command instead of a pipeline of several.
                shard_keys, shards = self._shard_keys, self.activity_shards
                pairs: list[Any] = [trim, len(timelines)]
                for (_, payload), hexed in zip(entries, hexes, strict=True):
                    pairs.append(hexed)
                    pairs.append(payload)
                await scripts.STORE_AND_ADD(
                    self._c,
                    [*timelines, *(shard_keys[shard_of(i, shards)] for i, _ in entries)],
                    pairs,
                )
                return

            def fill(pipe: Any) -> None:
                for command in stores:
                    pipe.execute_command(*command)
                for i in range(0, len(timelines), size):
                    scripts.ADD_TO_TIMELINES.queue(pipe, timelines[i : i + size], args)

            await self._pipeline(fill)

    async def _cluster_fanout(
        self,
        operation: str,
        timelines: list[str],
        hexes: list[str],
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
            hexes: Member ids.
            trim: ``max_length`` or -1 (add only).
            stores: Activity-storage commands to send in the same pipeline.
            fallback: Fills a pipeline with the per-feed commands.
        """
        by_node: dict[str, tuple[Any, list[str]]] = {}
        if self._cross_slot is not False:
            try:
                node_of = self._c.get_node_from_key
                for timeline in timelines:
                    node = node_of(timeline)
                    by_node.setdefault(node.name, (node, []))[1].append(timeline)
            except (RedisClusterException, AttributeError):
                by_node = {}  # topology unknown or changing: the per-feed path copes
        if by_node:
            head = [operation, trim, len(hexes), *hexes]
            size = self.chunk_size

            def fill(pipe: Any) -> None:
                for command in stores:
                    pipe.execute_command(*command)
                for node, keys in by_node.values():
                    for i in range(0, len(keys), size):
                        scripts.TIMELINES_CROSS_SLOT.queue(
                            pipe, [], [*head, *keys[i : i + size]], target_nodes=node
                        )

            try:
                await self._pipeline(fill)
            except (ResponseError, RedisClusterException) as exc:
                if scripts.unsupported_flags(exc):
                    self._cross_slot = False
            else:
                self._cross_slot = True
                return
        await self._pipeline(fallback)

    def _queue_cluster_add(
        self,
        pipe: Any,
        timelines: list[str],
        hexes: list[str],
        trim: int,
        stores: list[tuple[Any, ...]],
    ) -> None:
        for command in stores:
            pipe.execute_command(*command)
        if trim < 0:
            # A lone ZADD is atomic already; no script needed.
            members: list[Any] = []
            for hexed in hexes:
                members.append(0)
                members.append(hexed)
            for timeline in timelines:
                pipe.execute_command("ZADD", timeline, *members)
            return
        by_slot: dict[int, list[str]] = defaultdict(list)
        keyslot = self._c.keyslot
        for timeline in timelines:
            by_slot[keyslot(timeline)].append(timeline)
        args = [trim, *hexes]
        for slot_keys in by_slot.values():
            scripts.ADD_TO_TIMELINES.queue(pipe, slot_keys, args)

    async def remove_from_timelines(self, keys: Sequence[str], ids: Sequence[int]) -> None:
        """Remove ids from every feed in ``keys`` (missing ones are ignored)."""
        hexes = valid_keys(ids)
        if not hexes or not keys:
            return
        timelines = [self._tag + key + "}:t" for key in keys]
        async with self._op("remove_from_timelines"):
            if self.cluster:
                await self._cluster_fanout(
                    "remove",
                    timelines,
                    hexes,
                    -1,
                    [],
                    lambda pipe: [pipe.execute_command("ZREM", t, *hexes) for t in timelines],
                )
                return
            size = self.chunk_size
            if len(timelines) <= size:
                await scripts.REMOVE_FROM_TIMELINES(self._c, timelines, hexes)
                return

            def fill(pipe: Any) -> None:
                for i in range(0, len(timelines), size):
                    scripts.REMOVE_FROM_TIMELINES.queue(pipe, timelines[i : i + size], hexes)

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
        if query.is_empty or (stop is not None and stop <= start):
            return []
        low, high = timeline_bounds(query)
        count = -1 if stop is None else stop - start
        timeline = self._tag + key + "}:t"
        async with self._op("read_timeline"):
            if self._reads is not None:
                # (bounds are "-", "+" or a bracket and hex digits: never a space)
                numbers = (
                    f"{low} {high} {start} {count} {int(query.descending)} {self.activity_shards}"
                )
                reply = await self._reads.call(
                    scripts.READ_TIMELINE, [timeline], [numbers, self._shard_opening]
                )
                if reply and not isinstance(reply[0], str):
                    reply = [_text(item) for item in reply]
                return [(int(h, 16), p) for h, p in zip(reply[::2], reply[1::2], strict=True)]
            window = LiveWindow(start, stop)
            return await self._read_cluster_timeline(timeline, low, high, window, query)

    async def _read_cluster_timeline(
        self, timeline: str, low: str, high: str, window: LiveWindow, query: Query
    ) -> list[Entry]:
        """:meth:`read_timeline` on a cluster: what the read script does on a standalone
        server, in steps (the activity shards live in other slots than the timeline)."""
        while True:
            ask = -1 if window.want is None else window.skip + window.want
            if query.descending:
                members = await self._c.execute_command(
                    "ZREVRANGEBYLEX", timeline, high, low, "LIMIT", 0, ask
                )
            else:
                members = await self._c.execute_command(
                    "ZRANGEBYLEX", timeline, low, high, "LIMIT", 0, ask
                )
            hexes = [_text(m) for m in members]
            found = await self._load_hexes(hexes)
            dead = [h for h in hexes if not window.offer(int(h, 16), found.get(h))]
            if not dead:
                return window.page
            await self._c.execute_command("ZREM", timeline, *dead)
            if ask < 0 or len(hexes) < ask or window.full:
                return window.page
            # Go on after the last entry read: bounds, not positions, so entries added
            # meanwhile neither repeat nor shift the page.
            if query.descending:
                high = "(" + hexes[-1]
            else:
                low = "(" + hexes[-1]

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

    async def timeline_index_of(self, key: str, activity_id: int) -> int | None:
        """Position from the newest (``ZREVRANK``), None when absent."""
        hexes = valid_keys([activity_id])
        if not hexes:
            return None
        async with self._op("timeline_index_of"):
            rank = await self._c.execute_command("ZREVRANK", self._tag + key + "}:t", hexes[0])
        return None if rank is None else int(rank)
