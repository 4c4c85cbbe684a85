"""``CassandraStorage``: the :class:`~aiostream.storage.base.FeedStorage` on Cassandra.

How each part maps onto the tables of :mod:`aiostream.storage.cassandra._schema`:

* Fanout (``add_to_timelines``) writes every feed with its own single-partition
  statement (an UNLOGGED batch when several entries go to one feed), many at once but
  never more than ``max_concurrency`` requests in flight per storage, pipelined on the
  driver's I/O thread (:mod:`~aiostream.storage.cassandra._pipeline`). Trims, when asked
  for, run after every write succeeded.
* Reads are one single-partition query with ``LIMIT`` (two when a window starts far
  from the top: ids first, then the page). CQL has no ``OFFSET``. A flat feed's page
  then reads its activities' rows (one query per 100 ids, all at once): the page shows
  the activity storage's payloads and leaves out, and removes, entries whose activity
  was deleted.
* Trims are exact: read the ids of the newest ``max_length + 1`` entries, then delete
  everything at or older than the last one with one range tombstone.
* Aggregated groups change through lightweight transactions on the feed's partition
  (see :mod:`aiostream.storage.cassandra._groups`), so concurrent writers from any
  number of processes never lose an update.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, ClassVar

from cassandra import WriteTimeout
from cassandra.policies import WriteType
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType

from aiostream._concurrency import RetryPolicy
from aiostream.exceptions import (
    ConfigurationError,
    ConflictError,
    StorageTimeoutError,
    ValidationError,
)
from aiostream.ids import MAX_ID
from aiostream.query import Query
from aiostream.realtime import DEFAULT_BUFFER, FeedUpdate, Subscription
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
from aiostream.storage.cassandra._bridge import Row
from aiostream.storage.cassandra._client import MAX_LIMIT, CassandraClient, chunks, sized_chunks
from aiostream.storage.cassandra._groups import (
    GroupPlan,
    Snapshot,
    plan_clear,
    plan_trim,
    plan_write,
)
from aiostream.storage.cassandra._pipeline import Statement

logger = logging.getLogger("aiostream.storage.cassandra")


def unique(keys: Iterable[str]) -> Iterator[str]:
    """``keys`` without repeats, lazily (a fanout's 100,000 keys are deduplicated by the
    driver's thread as it goes, not on the event loop up front)."""
    seen: set[str] = set()
    for key in keys:
        if key not in seen:
            seen.add(key)
            yield key


class CassandraStorage(CassandraClient):
    """Feeds on Apache Cassandra or ScyllaDB, through scylla-driver, from asyncio.

    Nothing connects until the first operation. The keyspace and tables must exist
    (:func:`~aiostream.storage.cassandra.create_schema`); a missing one raises
    :class:`~aiostream.exceptions.SchemaError` naming the command that creates it.
    Arguments are those of :class:`~aiostream.storage.cassandra._client.CassandraClient`
    (hosts, port, keyspace, consistency, namespace, driver_kwargs, session, ...).

    Example::

        async with CassandraStorage(hosts=["10.0.0.5"], keyspace="feeds") as storage:
            feed = PinFeed(13, storage=storage)
            await feed.add(activity)
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.GROUPS, Capability.LEASES, Capability.STATES, Capability.UPDATES}
    )
    """Not the server-side fast paths (no scripts to merge groups or read merged pages
    in). Updates go through the ``notifier``: without one nothing is published, and
    :meth:`subscribe` says why."""

    offset_scan_threshold: ClassVar[int] = 100
    """Windows starting further down than this skip ahead by reading ids only."""
    trim_count_threshold: ClassVar[int] = 5000
    """Trims to more entries than this count first (server side) before reading ids."""
    cas_attempts: ClassVar[int] = 20
    """Conditional-batch attempts of a trim or a feed delete (group writes from feeds
    are retried by the feed, within its ``max_write_attempts``)."""

    # -- activity storage ------------------------------------------------------------------

    def _extras(self, entry: Entry) -> tuple[Any, ...]:
        if not self.extra_columns:
            return ()
        values = dict(self.column_values(*entry)) if self.column_values else {}
        unknown = set(values) - set(self.extra_columns)
        if unknown:
            raise ValidationError("column_values", f"returned unknown column(s) {sorted(unknown)}")
        # UNSET leaves a column alone instead of writing a null (a tombstone).
        return tuple(values.get(c, UNSET_VALUE) for c in self.extra_columns)

    async def store_activities(
        self, entries: Sequence[Entry], *, only_new: bool = False
    ) -> dict[int, str]:
        if only_new:  # as add_to_timelines with no timeline
            return await self.add_to_timelines([], entries, max_length=None, store=True)
        rows = [(i, p, *self._extras((i, p))) for i, p in dict(entries).items()]
        await self._store_rows(rows)
        return {}

    async def _store_rows(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if len(rows) <= 1:
            for row in rows:
                await self._run(self.statements.activity_insert, (self.namespace, *row))
            return
        session = await self._ready()
        insert = await self._prepare(session, self.statements.activity_insert)
        ns = self.namespace
        await self._send_many(session, ((insert, (ns, *row)) for row in rows), len(rows))

    async def load_activities(self, ids: Sequence[int]) -> dict[int, str]:
        unique = list(dict.fromkeys(ids))
        cql, ns = self.statements.activity_select, self.namespace
        if len(unique) <= 1:
            rows = [row for i in unique for row in await self._run(cql, (ns, i))]
        else:
            session = await self._ready()
            select = await self._prepare(session, cql)
            rows = []
            await self._send_many(session, ((select, (ns, i)) for i in unique), len(unique), rows)
        # A deleted activity keeps its row, without a payload (see delete_activities).
        return {i: p for i, p in rows if p is not None}

    async def _activity_payloads(self, ids: Sequence[int]) -> dict[int, str | None]:
        """The activity rows of ``ids``: the payload, or None for an activity that was
        deleted; ids whose row this read cannot see are left out. One query per
        ``IN_CHUNK`` ids, all sent at once."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            return {}
        cql, ns = self.statements.activity_select_many, self.namespace
        groups = chunks(unique)
        if len(groups) == 1:
            rows = await self._run(cql, (ns, list(groups[0])), all_pages=True)
        else:
            session = await self._ready()
            select = await self._prepare(session, cql)
            rows = []
            statements = ((select, (ns, list(group))) for group in groups)
            await self._send_many(session, statements, len(groups), rows)
        return {int(i): p for i, p in rows}

    async def delete_activities(self, ids: Sequence[int]) -> None:
        """Delete the payloads; the rows stay, so that feed reads know the activities
        are gone (rather than not replicated to the replica they read yet)."""
        unique = dict.fromkeys(ids)
        ns = self.namespace
        await self._write_each(
            self.statements.activity_delete, ((ns, i) for i in unique), len(unique)
        )

    async def _write_each(self, cql: str, params: Iterable[Sequence[Any]], count: int) -> None:
        """One prepared statement, once per item of ``params`` (``count`` of them).

        More than one go through the pipeline, which takes ``params`` lazily from the
        driver's thread: a fanout's 100,000 parameter tuples are never built on the loop.
        """
        if count <= 1:
            for values in params:
                await self._run(cql, values)
            return
        session = await self._ready()
        prepared = await self._prepare(session, cql)
        await self._send_many(session, ((prepared, values) for values in params), count)

    # -- flat timelines ----------------------------------------------------------------------

    async def add_to_timelines(
        self, keys: Sequence[str], entries: Sequence[Entry], *, max_length: int | None, store: bool
    ) -> dict[int, str]:
        # Extra column values are computed once, before any write, so a failing hook
        # writes nothing.
        rows = [(i, p, *self._extras((i, p))) for i, p in dict(entries).items()]
        if store and rows:
            # An add never overwrites a stored activity: what is stored is read first
            # (a lightweight transaction per activity would cost four round trips).
            stored = await self.load_activities([i for i, _ in entries])
            differ = stored_differently(stored, entries)
            if differ:
                return differ
        if not rows or not keys:
            if store:
                await self._store_rows(rows)
            return {}
        feeds = list(keys)  # a snapshot; deduplicated by the driver's thread, not here
        # Each timeline row keeps a copy of its payload (see read_timeline).
        batches = sized_chunks(rows, lambda row: len(row[1]))
        session = await self._ready()
        insert = await self._prepare(session, self.statements.timeline_insert)
        ns = self.namespace

        def statements() -> Iterator[Statement]:
            # Taken lazily by the driver's I/O thread: nothing is bound on the loop.
            for key in unique(feeds):
                for batch in batches:
                    if len(batch) == 1:
                        yield insert, (ns, key, *batch[0])
                    else:  # several entries for one feed: one partition, one batch
                        statement = BatchStatement(batch_type=BatchType.UNLOGGED)
                        for row in batch:
                            statement.add(insert, (ns, key, *row))
                        yield statement, None

        async def fanout() -> None:
            # len(feeds) counts duplicates: an upper bound, used to size the window.
            await self._send_many(session, statements(), len(feeds) * len(batches))
            if max_length is not None:
                # Only after every write succeeded: a failed fanout trims nothing.
                await self._each(
                    list(unique(feeds)), lambda key: self.trim_timeline(key, max_length)
                )

        async def keep() -> None:
            await self._store_rows(rows)

        await self._all([keep, fanout] if store else [fanout])
        return {}

    async def remove_from_timelines(self, keys: Sequence[str], ids: Sequence[int]) -> None:
        ns, ids, feeds = self.namespace, list(dict.fromkeys(ids)), list(keys)
        if ids:
            groups = chunks(ids)
            await self._write_each(
                self.statements.timeline_delete_ids,
                ((ns, key, list(group)) for key in unique(feeds) for group in groups),
                len(feeds) * len(groups),
            )

    async def _window(
        self,
        reads: Mapping[bool, str],
        ids: Mapping[bool, str],
        key: str,
        start: int,
        stop: int | None,
        query: Query,
    ) -> list[Row]:
        """Rows ``[start:stop]`` of a feed partition under ``query``.

        CQL has no OFFSET: a window near the top is read in one query and sliced; one
        further down first reads only the ids it skips, then the page after them.
        """
        if query.is_empty or (stop is not None and stop <= start):
            return []
        low, high = query.low, query.high
        if start > self.offset_scan_threshold:
            skipped = await self._run(
                ids[query.descending],
                (self.namespace, key, low, high, min(start, MAX_LIMIT)),
                all_pages=True,
            )
            if len(skipped) < start:
                return []
            edge = skipped[-1][0]
            low, high = (low, edge - 1) if query.descending else (edge + 1, high)
            if low > high:
                return []
            stop = None if stop is None else stop - start
            start = 0
        limit = MAX_LIMIT if stop is None else min(stop, MAX_LIMIT)
        rows = await self._run(
            reads[query.descending], (self.namespace, key, low, high, limit), all_pages=True
        )
        return rows[start:]

    async def read_timeline(
        self, key: str, start: int, stop: int | None, query: Query
    ) -> list[Entry]:
        """The ``[start:stop]`` window of the live entries under ``query``.

        The timeline rows, then the activity rows of their ids: an entry shows the
        activity storage's payload; one whose activity was deleted is left out, removed
        from the feed, and the window filled from the rows after it; one whose activity
        row this read cannot see (not on the replica read yet, or never stored here)
        shows the copy its timeline row keeps.
        """
        if query.is_empty or (stop is not None and stop <= start):
            return []
        s, ns = self.statements, self.namespace
        low, high, descending = query.low, query.high, query.descending
        window = LiveWindow(start, stop)
        while True:
            skip, want = window.skip, window.want
            passed: list[int] = []  # a deep window's first ``skip`` ids, read alone
            exhausted = False
            if skip > self.offset_scan_threshold:
                ids = await self._run(
                    s.timeline_ids[descending],
                    (ns, key, low, high, min(skip, MAX_LIMIT)),
                    all_pages=True,
                )
                passed = [int(row[0]) for row in ids]
                exhausted = len(passed) < skip
            rows: list[Row] = []
            if not exhausted:
                after_low, after_high = _after(low, high, descending, passed[-1:])
                ask = None if want is None else want if passed else skip + want
                limit = MAX_LIMIT if ask is None else min(ask, MAX_LIMIT)
                if after_low <= after_high:
                    rows = await self._run(
                        s.timeline_read[descending],
                        (ns, key, after_low, after_high, limit),
                        all_pages=True,
                    )
                exhausted = ask is None or len(rows) < ask
            stored = await self._activity_payloads([*passed, *(row[0] for row in rows)])
            dead: list[int] = []
            for activity_id in passed:
                if activity_id in stored and stored[activity_id] is None:
                    dead.append(activity_id)
                else:
                    window.skip -= 1  # live, and within the skipped part by construction
            for activity_id, copy in rows:
                if not window.offer(activity_id, stored.get(activity_id, copy)):
                    dead.append(activity_id)
            if not dead:
                return window.page
            await self.remove_from_timelines([key], dead)
            if exhausted or window.full:
                return window.page
            # Go on after the last row read, for the entries the removed ones left short.
            low, high = _after(low, high, descending, [rows[-1][0] if rows else passed[-1]])
            if low > high:
                return window.page

    async def count_timeline(self, key: str) -> int:
        ((count,),) = await self._run(self.statements.timeline_count, (self.namespace, key))
        return int(count)

    async def trim_timeline(self, key: str, max_length: int) -> None:
        if max_length > self.trim_count_threshold and await self.count_timeline(key) <= max_length:
            return  # a long feed (a user feed keeps 10**6) under its limit: no id scan
        newest = await self._run(
            self.statements.timeline_ids[True],
            (self.namespace, key, 0, MAX_ID, min(max_length + 1, MAX_LIMIT)),
            all_pages=True,
        )
        if len(newest) > max_length:
            # Everything at or older than the (max_length + 1)-th newest id goes, so
            # exactly max_length entries stay, whatever order they were written in.
            await self._run(
                self.statements.timeline_delete_upto, (self.namespace, key, newest[-1][0])
            )

    async def timeline_index_of(self, key: str, activity_id: int) -> int | None:
        s, ns = self.statements, self.namespace
        found: list[Row] = []
        newer: list[Row] = []

        async def has() -> None:
            found.extend(await self._run(s.timeline_has, (ns, key, activity_id)))

        async def count() -> None:
            newer.extend(await self._run(s.timeline_count_newer, (ns, key, activity_id)))

        await self._all([has, count])
        return int(newer[0][0]) if found else None

    # -- groups ------------------------------------------------------------------------------

    async def _snapshot(self, key: str) -> Snapshot:
        rows = await self._run(self.statements.groups_snapshot, (self.namespace, key))
        return Snapshot.from_row(rows[0] if rows else None)

    async def read_groups(
        self, key: str, start: int, stop: int | None, query: Query, *, markers: bool
    ) -> list[GroupRecord]:
        s = self.statements
        rows = await self._window(s.groups_read, s.groups_ids, key, start, stop, query)
        records = []
        for group_id, name, payload, version, unseen, unread in rows:
            if group_id is None:  # a partition with only static columns
                continue
            if markers:
                unseen_now, unread_now = group_id in (unseen or ()), group_id in (unread or ())
            else:
                unseen_now = unread_now = False
            records.append(GroupRecord(name, group_id, payload, version, unseen_now, unread_now))
        return records

    async def get_groups(self, key: str, groups: Sequence[str]) -> dict[str, GroupRecord]:
        return await self._group_rows(key, await self._snapshot(key), groups)

    async def _group_rows(
        self, key: str, snapshot: Snapshot, groups: Sequence[str]
    ) -> dict[str, GroupRecord]:
        ids = [snapshot.names[g][0] for g in dict.fromkeys(groups) if g in snapshot.names]
        if not ids:
            return {}
        found: dict[str, GroupRecord] = {}
        for chunk in chunks(ids):
            rows = await self._run(
                self.statements.groups_by_ids, (self.namespace, key, list(chunk))
            )
            for names, group_id, name, payload, version in rows:
                # Only rows the index (read in the same query) still points at: a row
                # replaced since the snapshot is left out, and the caller's
                # compare-and-set then fails and retries, as it should.
                if tuple((names or {}).get(name, ())) == (group_id, version):
                    found[name] = GroupRecord(name, group_id, payload, version)
        return found

    async def _commit(
        self, key: str, snapshot: Snapshot, plan: GroupPlan, *, clear: bool = False
    ) -> bool:
        """One conditional batch on the feed's partition; True if it applied."""
        s, ns = self.statements, self.namespace
        items: list[tuple[str, Sequence[Any]]] = [
            (
                s.groups_cas,
                (
                    (snapshot.version or 0) + 1,
                    plan.names_set,
                    plan.unseen_add,
                    plan.unread_add,
                    ns,
                    key,
                    snapshot.version,
                ),
            )
        ]
        if plan.removes_anything:
            items.append(
                (
                    s.groups_remove,
                    (plan.names_removed, plan.unseen_remove, plan.unread_remove, ns, key),
                )
            )
        items += [
            (s.group_insert, (ns, key, group_id, name, payload, version))
            for group_id, (name, payload, version) in plan.upserts.items()
        ]
        if clear:
            items.append((s.group_delete_all, (ns, key)))
        else:
            items += [(s.group_delete, (ns, key, group_id)) for group_id in plan.deletes]
        try:
            rows = await self._batch(items)
        except StorageTimeoutError as exc:
            if _is_cas_timeout(exc.__cause__):
                # Paxos timed out: the batch may or may not apply. Report "not applied";
                # the caller's next snapshot (whose version check the pending round
                # settles first) shows which, and re-merging is idempotent.
                return False
            raise
        return bool(rows and rows[0][0])

    async def write_groups(
        self, key: str, changes: GroupChanges, *, max_length: int | None, track_markers: bool
    ) -> bool:
        """One conditional batch (a single attempt: the feed retries, within its
        ``max_write_attempts``); False when some group changed since it was read or
        another writer changed the feed first."""
        if not changes and max_length is None:
            return True
        snapshot = await self._snapshot(key)
        if not snapshot.matches(changes):
            return False
        plan = plan_write(snapshot, changes, max_length=max_length, track_markers=track_markers)
        return await self._commit(key, snapshot, plan)

    async def _rewrite(
        self, key: str, plan_for: Callable[[Snapshot], GroupPlan | None], clear: bool = False
    ) -> None:
        retry = RetryPolicy(self.cas_attempts)
        for attempt in retry.attempts_range():
            snapshot = await self._snapshot(key)
            plan = plan_for(snapshot)
            if plan is None or await self._commit(key, snapshot, plan, clear=clear):
                return
            await retry.backoff(attempt)
        raise ConflictError.given_up(
            logger, f"feed {key!r}: {self.cas_attempts} concurrent updates in a row won"
        )

    async def update_groups(
        self, keys: Sequence[str], names: Sequence[str], rewrite: GroupRewrite, *, max_attempts: int
    ) -> None:
        """Rewrite groups in place, feed by feed (``max_concurrency`` at once): the
        snapshot and the rows, then one conditional batch writing the new payloads under
        the same ids (markers untouched); again when another writer came first."""
        names = list(dict.fromkeys(names))
        if not names:
            return

        retry = RetryPolicy(max_attempts)

        async def one(key: str) -> None:
            for attempt in retry.attempts_range():
                snapshot = await self._snapshot(key)
                found = await self._group_rows(key, snapshot, names)
                if any(name in snapshot.names and name not in found for name in names):
                    await retry.backoff(attempt)  # a row changed after the snapshot
                    continue
                plan = GroupPlan()
                for name, record in found.items():
                    payload = rewrite(key, record)
                    if payload is not None and payload != record.payload:
                        version = record.version + 1
                        plan.names_set[name] = (record.id, version)
                        plan.upserts[record.id] = (name, payload, version)
                if not plan.upserts or await self._commit(key, snapshot, plan):
                    return
                await retry.backoff(attempt)
            raise ConflictError.given_up(
                logger, f"feed {key!r}: groups kept changing for {max_attempts} attempts"
            )

        await self._each(list(dict.fromkeys(keys)), one)

    async def count_groups(self, key: str) -> int:
        return len((await self._snapshot(key)).names)

    async def trim_groups(self, key: str, max_length: int) -> None:
        await self._rewrite(key, lambda snapshot: plan_trim(snapshot, max_length))

    async def groups_index_of(self, key: str, group_id: int) -> int | None:
        ids = (await self._snapshot(key)).ids()
        if group_id not in ids:
            return None
        return sum(1 for i in ids if i > group_id)

    async def mark_groups(
        self, key: str, ids: Sequence[int] | None, *, seen: bool, read: bool
    ) -> None:
        if not (seen or read) or (ids is not None and not ids):
            return
        cql = self.statements.groups_mark(seen=seen, read=read, every=ids is None)
        marked = [] if ids is None else [set(ids)] * (int(seen) + int(read))
        await self._run(cql, (*marked, self.namespace, key))

    async def count_markers(self, key: str) -> tuple[int, int]:
        snapshot = await self._snapshot(key)
        return len(snapshot.unseen), len(snapshot.unread)

    # -- whole feeds -------------------------------------------------------------------------

    async def delete_feeds(self, keys: Sequence[str]) -> None:
        def clear(snapshot: Snapshot) -> GroupPlan | None:
            if not (snapshot.names or snapshot.unseen or snapshot.unread):
                return None
            return plan_clear(snapshot)

        async def delete(key: str) -> None:
            await self._run(self.statements.timeline_delete_feed, (self.namespace, key))
            await self._rewrite(key, clear, clear=True)

        await self._each(list(dict.fromkeys(keys)), delete)

    # -- realtime updates (through the notifier) ------------------------------------------

    async def listening(self) -> bool:
        return self.notifier is not None and await self.notifier.listening()

    async def publish_updates(
        self,
        keys: Sequence[str],
        update: FeedUpdate,
        *,
        counts: tuple[bool, bool] = (False, False),
    ) -> None:
        """Through the notifier; a notification feed's counts are read here (the
        notifier holds none), one feed at a time."""
        notifier = self.notifier
        if notifier is None or not keys or not await notifier.listening():
            return
        if not (counts[0] or counts[1]):
            await notifier.publish_updates(keys, update)
            return

        async def publish(key: str) -> None:
            unseen, unread = await self.count_markers(key)
            counted = replace(
                update,
                unseen=unseen if counts[0] else None,
                unread=unread if counts[1] else None,
            )
            await notifier.publish_updates([key], counted)

        await self._each(list(dict.fromkeys(keys)), publish)

    def subscribe(
        self, key: str, *, buffer: int = DEFAULT_BUFFER
    ) -> AbstractAsyncContextManager[Subscription]:
        """Through the notifier.

        Raises:
            ConfigurationError: no ``notifier`` was given.
        """
        if self.notifier is None:
            raise ConfigurationError(
                "Cassandra has no pub/sub: give CassandraStorage a notifier "
                "(notifier=RedisStorage.from_url(...)) to subscribe to its feeds"
            )
        return self.notifier.subscribe(key, buffer=buffer)

    # -- states ------------------------------------------------------------------------------

    async def load_states(self, names: Sequence[str]) -> dict[str, str]:
        rows: list[Row] = []
        await self._send_all(self.statements.state_select, [(n,) for n in names], rows)
        return {str(name): str(value) for name, value in rows}

    async def store_states(self, states: Mapping[str, str]) -> None:
        await self._send_all(self.statements.state_insert, list(states.items()))

    async def delete_states(self, names: Sequence[str]) -> None:
        await self._send_all(self.statements.state_delete, [(n,) for n in names])

    async def renew_states(
        self, times: Mapping[str, float], before: float, names: Sequence[str] = ()
    ) -> dict[str, str]:
        """A read of all the names, then a write of those to renew: two round trips,
        not one step (a lightweight transaction would cost four), so two processes
        renewing a name at the same moment may both write it. Either time is kept,
        each within the interval: only the count of writes differs."""
        check_times(times, before)
        found = await self.load_states([*times, *names])
        renewed = {n: repr(float(t)) for n, t in times.items() if renews(found.get(n), before)}
        await self.store_states(renewed)
        return found

    async def raise_maxima(self, name: str, values: Mapping[str, int]) -> dict[str, int]:
        """A write whose timestamp is the value: Cassandra keeps the write with the
        highest timestamp, so the largest value stays, whatever the order of arrival.
        The maxima before are read first (a lightweight transaction would cost four
        round trips)."""
        checked = check_maxima(values)
        if not checked:
            return {}
        before = await self.load_maxima(name, list(checked))
        params = [(f"mx:{name}:{m}", str(v), v) for m, v in checked.items()]
        await self._send_all(self.statements.maximum_insert, params)
        return before

    async def load_maxima(self, name: str, members: Sequence[str]) -> dict[str, int]:
        found = await self.load_states([f"mx:{name}:{m}" for m in members])
        prefix = len(f"mx:{name}:")
        return {key[prefix:]: int(value) for key, value in found.items()}

    async def _send_all(
        self, cql: str, params: Sequence[tuple[Any, ...]], rows: list[Row] | None = None
    ) -> None:
        """Run ``cql`` once per parameter tuple (after the namespace), all at once."""
        unique = list(dict.fromkeys(params))
        if not unique:
            return
        session = await self._ready()
        statement = await self._prepare(session, cql)
        ns = self.namespace
        await self._send_many(session, ((statement, (ns, *p)) for p in unique), len(unique), rows)

    # -- leases ------------------------------------------------------------------------------

    async def _lease_cas(self, cql: str, params: Sequence[Any]) -> bool:
        try:
            rows = await self._run(cql, params)
        except StorageTimeoutError as exc:
            if _is_cas_timeout(exc.__cause__):
                # Undecided; the lease's TTL settles it. Callers try again.
                return False
            raise
        return bool(rows and rows[0][0])

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        s = self.statements
        return await self._lease_cas(s.lease_acquire, (self.namespace, name, owner, _ttl_s(ttl)))

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        params = (_ttl_s(ttl), owner, self.namespace, name, owner)
        return await self._lease_cas(self.statements.lease_renew, params)

    async def release_lease(self, name: str, owner: str) -> None:
        await self._lease_cas(self.statements.lease_release, (self.namespace, name, owner))


def _ttl_s(ttl: float) -> int:
    # CQL TTLs are whole seconds; rounding up never lets a lease lapse early.
    return max(1, math.ceil(ttl))


def _after(low: int, high: int, descending: bool, last: Sequence[int]) -> tuple[int, int]:
    """The id range ``[low, high]`` past ``last[0]`` in reading order (all of it when
    ``last`` is empty)."""
    if not last:
        return low, high
    return (low, last[0] - 1) if descending else (last[0] + 1, high)


def _is_cas_timeout(cause: BaseException | None) -> bool:
    """Whether the driver error is a lightweight transaction's write timeout."""
    return isinstance(cause, WriteTimeout) and getattr(cause, "write_type", None) == WriteType.CAS
