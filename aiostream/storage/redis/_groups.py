"""Aggregated and notification feeds on Redis: the
:class:`~aiostream.storage.base.GroupStorage` and
:class:`~aiostream.storage.base.GroupMergeStorage` part of
:class:`~aiostream.storage.redis.RedisStorage`.

A feed's groups live in four keys of one hash tag (one cluster slot): the groups sorted
by id, their data, the unseen and the unread ids. Every group operation is one script
over them, atomic; ``merge_groups`` merges into many feeds per script.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiostream.exceptions import ConflictError, ValidationError
from aiostream.ids import ID_KEY_WIDTH, checked_key, valid_keys
from aiostream.query import Query
from aiostream.storage.base import GroupChanges, GroupMerge, GroupRecord, GroupRewrite
from aiostream.storage.redis import _scripts as scripts
from aiostream.storage.redis._base import (
    RedisBase,
    _check_length,
    _group_record,
    _text,
    clamped,
)
from aiostream.storage.redis._layout import GROUP_KEY_SUFFIXES, group_bounds

logger = logging.getLogger("aiostream.storage.redis")


class RedisGroups(RedisBase):
    """Groups and their markers."""

    # -- groups ------------------------------------------------------------------------------

    async def read_groups(
        self, key: str, start: int, stop: int | None, query: Query, *, markers: bool
    ) -> list[GroupRecord]:
        """The ``[start:stop]`` window of groups under ``query`` (one script)."""
        start, stop = clamped(start), None if stop is None else clamped(stop)
        if query.is_empty or (stop is not None and stop <= start):
            return []
        low, high = group_bounds(query)
        count = -1 if stop is None else stop - start
        args = [low, high, start, count, "1" if query.descending else "0", "1" if markers else "0"]
        keys = self._feed(key).group_keys
        async with self._op("read_groups"):
            if self._reads is not None:
                reply = await self._reads.call(scripts.READ_GROUPS, keys, args)
            else:
                reply = await scripts.READ_GROUPS(self._c, keys, args)
        step = 4 if markers else 2
        records = []
        for i in range(0, len(reply), step):
            name = _text(reply[i])[ID_KEY_WIDTH:]
            data = _text(reply[i + 1])
            if markers:
                records.append(_group_record(name, data, bool(reply[i + 2]), bool(reply[i + 3])))
            else:
                records.append(_group_record(name, data))
        return records

    async def get_groups(self, key: str, groups: Sequence[str]) -> dict[str, GroupRecord]:
        """Current records of the named groups (one ``HMGET``)."""
        names = list(groups)
        if not names:
            return {}
        async with self._op("get_groups"):
            values = await self._c.execute_command("HMGET", self._feed(key).group_data, *names)
        found: dict[str, GroupRecord] = {}
        for name, value in zip(names, values, strict=True):
            if value is not None:
                found[name] = _group_record(name, _text(value))
        return found

    async def write_groups(
        self, key: str, changes: GroupChanges, *, max_length: int | None, track_markers: bool
    ) -> bool:
        """Compare-and-set over the feed's groups in one script (see the protocol).

        Returns:
            False, having written nothing, when a group's version is no longer the
            expected one.

        Raises:
            ValidationError: an id outside ``0..2**104-1`` or a negative ``max_length``.
            StorageError: Redis failed (the script is atomic: all or nothing).
        """
        trim = _check_length("max_length", max_length)
        args: list[Any] = ["1" if track_markers else "0", trim]
        for change in changes:
            args.append(change.group)
            expected = change.expected_version
            args.append("" if expected is None else str(int(expected)))
            new = change.new
            if new is None:
                args.append("")
                args.append("")
            else:
                if new.group != change.group:
                    raise ValidationError(
                        "changes", f"record of group {new.group!r} filed under {change.group!r}"
                    )
                args.append(checked_key(new.id))
                args.append(f"{int(new.version)}|{new.payload}")
            args.append("1" if change.keeps_markers else "0")
        async with self._op("write_groups"):
            written = await scripts.WRITE_GROUPS(self._c, self._feed(key).group_keys, args)
        return bool(written)

    async def merge_groups(
        self,
        keys: Sequence[str],
        merges: Sequence[GroupMerge],
        *,
        cap: int,
        max_length: int | None,
        track_markers: bool,
        results: bool = True,
    ) -> list[list[tuple[bool, GroupRecord]] | None]:
        """Merge activities into the groups of many feeds: one script per ``chunk_size``
        feeds (on a cluster, per node), all in one pipeline; an aggregated add or a
        fanout chunk is one round trip (see
        :class:`~aiostream.storage.base.GroupMergeStorage`).

        Raises:
            ValidationError: an id outside ``0..2**104-1``, a negative ``cap`` or
                ``max_length``, or a record filed under another group.
            StorageError: Redis failed (each feed's script is atomic; feeds of other
                scripts may have been written: merging again is idempotent).
        """
        trim = _check_length("max_length", max_length)
        keep = _check_length("cap", cap)
        args: list[Any] = ["1" if track_markers else "0", trim, keep, "1" if results else "0"]
        for merge in merges:
            record = merge.record
            if record.group != merge.group:
                raise ValidationError(
                    "merges", f"record of group {record.group!r} filed under {merge.group!r}"
                )
            args += (merge.group, merge.header, checked_key(record.id), record.payload)
            args.append(len(merge.activities))
            for activity_id, time_us, payload in merge.activities:
                args += (checked_key(activity_id), int(time_us), payload)
        if not merges or not keys:
            return [[] for _ in keys]
        merged: list[list[tuple[bool, GroupRecord]] | None] = [None] * len(keys)
        pending: Sequence[int] = range(len(keys))
        async with self._op("merge_groups"):
            if self.cluster and self._cross_slot is not False:
                pending = await self._merge_on_nodes(keys, args, merged, results)
            if pending:
                batches = self._group_batches(keys, pending)
                if len(batches) == 1:
                    replies = [await scripts.MERGE_GROUPS(self._c, batches[0][1], args)]
                else:

                    def fill(pipe: Any) -> None:
                        for _, batch_keys in batches:
                            scripts.MERGE_GROUPS.queue(pipe, batch_keys, args)

                    replies = await self._pipeline(fill)
                for (positions, _), reply in zip(batches, replies, strict=True):
                    _read_merges(positions, reply, merged, results)
        return merged

    async def _merge_on_nodes(
        self,
        keys: Sequence[str],
        args: list[Any],
        merged: list[list[tuple[bool, GroupRecord]] | None],
        results: bool,
    ) -> Sequence[int]:
        """``merge_groups`` on a cluster, one script per node and ``chunk_size`` feeds
        (the feeds of many slots a node serves: Redis 7's ``allow-cross-slot-keys``);
        fills ``merged`` and returns the positions of the feeds still to merge by slot.

        A chunk of 1,000 feeds touches about 1,000 slots, so a script per slot would be
        about a script per feed. Feeds the node no longer serves (a slot moving) are
        left alone by the script and returned, as are all feeds when the topology is
        unknown, a node failed, or the servers refuse the script's flags (Redis 6);
        merging again is idempotent.
        """
        tag = self._tag
        calls = self._node_calls([tag + key + "}" for key in keys])
        if not calls:
            return range(len(keys))
        head, merges = args[:4], args[4:]

        def fill(pipe: Any) -> None:
            for node, positions in calls:
                tags = [tag + keys[p] + "}" for p in positions]
                scripts.MERGE_GROUPS_CROSS_SLOT.queue(
                    pipe, [], [*head, len(tags), *tags, *merges], target_nodes=node
                )

        replies = await self._cross_slot_pipeline(fill)
        if replies is None:
            return range(len(keys))
        elsewhere: list[int] = []
        for (_, positions), reply in zip(calls, replies, strict=True):
            elsewhere += _read_merges(positions, reply, merged, results)
        return elsewhere

    def _group_batches(
        self, keys: Sequence[str], positions: Sequence[int]
    ) -> list[tuple[list[int], list[str]]]:
        """The feeds of ``keys`` at ``positions`` cut into ``merge_groups`` script calls:
        ``chunk_size`` feeds per call (on a cluster, only feeds of one slot share a
        call). Each batch is the feeds' positions in ``keys`` and their hash tags (the
        script derives the group keys from them; on a cluster, the four group keys of
        each feed)."""
        size = self.chunk_size
        batches: dict[int, tuple[list[int], list[str]]] = {}
        keyslot = self._c.keyslot if self.cluster else None
        tag = self._tag
        for n, position in enumerate(positions):
            feed_tag = tag + keys[position] + "}"
            bucket = keyslot(feed_tag) if keyslot is not None else n // size
            in_batch, tags = batches.setdefault(bucket, ([], []))
            in_batch.append(position)
            if keyslot is None:
                tags.append(feed_tag)
            else:
                # Every key the script touches, declared (see the script: slot moves).
                tags.extend(feed_tag + suffix for suffix in GROUP_KEY_SUFFIXES)
        return list(batches.values())

    async def update_groups(
        self, keys: Sequence[str], names: Sequence[str], rewrite: GroupRewrite, *, max_attempts: int
    ) -> None:
        """Rewrite groups of many feeds in place (see the protocol): one pipeline of
        ``HMGET`` s, then one of compare-and-set scripts (one per feed written), again
        for the groups that changed in between.

        Raises:
            ConflictError: some group kept changing for ``max_attempts`` rounds.
        """
        names = list(dict.fromkeys(names))
        feed_keys = {self._feed(key).group_data: key for key in keys}
        pending = list(feed_keys)
        if not names:
            return
        async with self._op("update_groups"):
            for _ in range(max(max_attempts, 1)):
                pending = await self._rewrite_groups(pending, names, feed_keys, rewrite)
                if not pending:
                    return
        raise ConflictError.given_up(
            logger,
            f"update_groups: groups of {len(pending)} feed(s) kept changing for "
            f"{max_attempts} attempts",
        )

    async def _rewrite_groups(
        self,
        data_keys: list[str],
        names: list[str],
        feed_keys: dict[str, str],
        rewrite: GroupRewrite,
    ) -> list[str]:
        """One round of :meth:`update_groups`; returns the group data keys of the feeds
        where some group changed between the read and the write (to do again)."""
        replies = await self._pipeline(
            lambda pipe: [pipe.execute_command("HMGET", d, *names) for d in data_keys]
        )
        writes: list[tuple[str, list[Any]]] = []
        for data_key, values in zip(data_keys, replies, strict=True):
            args: list[Any] = []
            for name, value in zip(names, values, strict=True):
                if value is None:
                    continue
                record = _group_record(name, _text(value))
                payload = rewrite(feed_keys[data_key], record)
                if payload is not None and payload != record.payload:
                    args += (name, str(record.version), payload)
            if args:
                writes.append((data_key, args))
        if not writes:
            return []

        def fill(pipe: Any) -> None:
            for data_key, args in writes:
                scripts.REPLACE_GROUPS.queue(pipe, [data_key], args)

        results = await self._pipeline(fill)
        return [
            d for (d, _), written in zip(writes, results, strict=True) if not all(map(int, written))
        ]

    async def count_groups(self, key: str) -> int:
        """Number of groups in the feed (``ZCARD``)."""
        async with self._op("count_groups"):
            return int(await self._c.execute_command("ZCARD", self._feed(key).groups))

    async def trim_groups(self, key: str, max_length: int) -> None:
        """Keep the newest ``max_length`` groups, dropping the others' data and markers."""
        length = _check_length("max_length", max_length)
        async with self._op("trim_groups"):
            await scripts.TRIM_GROUPS(self._c, self._feed(key).group_keys, [length])

    async def groups_index_of(self, key: str, group_id: int) -> int | None:
        """Position of a group id from the newest, None when absent."""
        hexes = valid_keys([group_id])
        if not hexes:
            return None
        bounds = group_bounds(Query(low=group_id, high=group_id))
        async with self._op("groups_index_of"):
            rank = await scripts.GROUP_INDEX(self._c, [self._feed(key).groups], list(bounds))
        return None if rank is None or int(rank) < 0 else int(rank)

    async def mark_groups(
        self, key: str, ids: Sequence[int] | None, *, seen: bool, read: bool
    ) -> None:
        """Clear unseen and / or unread markers of group ids (None: of every group)."""
        if not (seen or read):
            return
        hexes = [] if ids is None else valid_keys(ids)
        if ids is not None and not hexes:
            return
        feed = self._feed(key)
        args = ["1" if seen else "0", "1" if read else "0", "1" if ids is None else "0", *hexes]
        async with self._op("mark_groups"):
            await scripts.MARK_GROUPS(self._c, [feed.unseen, feed.unread], args)

    async def count_markers(self, key: str) -> tuple[int, int]:
        """``(unseen, unread)`` counts, read together."""
        feed = self._feed(key)
        async with self._op("count_markers"):
            unseen, unread = await scripts.COUNT_MARKERS(self._c, [feed.unseen, feed.unread], [])
        return int(unseen), int(unread)


def _read_merges(
    positions: Sequence[int],
    reply: Sequence[Any],
    merged: list[list[tuple[bool, GroupRecord]] | None],
    results: bool,
) -> list[int]:
    """Fill ``merged`` at ``positions`` from one ``merge_groups`` script's reply; returns
    the positions the script left to another node (-2)."""
    elsewhere: list[int] = []
    at = 0
    for position in positions:
        count = int(reply[at])
        at += 1
        if count == -2:
            elsewhere.append(position)
        if count < 0:
            continue  # stays None (-1: this feed could not be merged into)
        written = []
        if results:
            for i in range(at, at + 3 * count, 3):
                record = _group_record(_text(reply[i + 1]), _text(reply[i + 2]))
                written.append((bool(int(reply[i])), record))
            at += 3 * count
        merged[position] = written
    return elsewhere
