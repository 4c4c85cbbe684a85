"""Aggregated feeds: activities shown in groups ("alice and 3 others loved your pin").

Each group is stored once per feed, keyed by the aggregator's group key, so a group never
appears twice however old it is. Adding activities is a read-modify-write of the groups
they fall into, committed with a compare-and-set: concurrent writers on one feed (many
tasks, many workers) retry instead of overwriting each other. A storage that can merge
activities into stored groups itself (Redis) does so in one atomic step instead, when
the aggregator, the group class and the serializers all declare that they keep the stock
merge rule (``server_mergeable``, True for the stock classes; a subclass that overrides
what the rule depends on gets False unless it says otherwise in its own body).

Example::

    class AggregatedPinFeed(AggregatedFeed):
        key_format = "feed:aggregated:%(user_id)s"
        aggregator_class = RecentVerbAggregator

    groups = await AggregatedPinFeed(13)[:25]   # list[AggregatedActivity]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from typing_extensions import TypeVar

from aiostream._concurrency import RetryPolicy, run_each
from aiostream.activity import Activity, AggregatedActivity
from aiostream.aggregators import BaseAggregator, RecentVerbAggregator
from aiostream.exceptions import ConflictError
from aiostream.feeds.base import (
    BaseFeed,
    FanoutBatch,
    _ids_of,
    _length,
    _maybe_await,
)
from aiostream.group_format import Capabilities, DeclaresCapabilities
from aiostream.query import Query
from aiostream.realtime import UpdateKind
from aiostream.serializers import AggregatedActivitySerializer
from aiostream.storage.base import (
    Capability,
    FeedStorage,
    GroupChange,
    GroupChanges,
    GroupMerge,
    GroupRecord,
    has,
)

__all__ = ["AggregatedFeed"]

logger = logging.getLogger("aiostream.feeds.aggregated")

# The group class reads return (see BaseFeed's ItemT): AggregatedActivity by default.
GroupT = TypeVar("GroupT", bound=AggregatedActivity, default=AggregatedActivity, covariant=True)


class AggregatedFeed(DeclaresCapabilities, BaseFeed[GroupT]):
    """A feed of :class:`~aiostream.activity.AggregatedActivity` groups, newest first.

    Generic in the group class its reads return, as :class:`BaseFeed` is in its
    activities: ``class MyAggregatedFeed(AggregatedFeed[MyGroup])`` with
    ``aggregated_activity_class = MyGroup``; plain subclasses read ``AggregatedActivity``.

    Class attributes (beyond :class:`~aiostream.feeds.base.BaseFeed`'s):
        aggregator_class: Decides the groups (``RecentVerbAggregator``).
        aggregated_activity_class: Class of the groups read back.
        merge_max_length: Kept for Stream Framework compatibility and not used:
            activities merge into their group wherever it is in the feed.
        max_write_attempts: Compare-and-set attempts of one write before
            :class:`ConflictError` (all of them: the storage does not retry on its own).
        fanout_concurrency: Follower feeds updated at once by :meth:`fanout_add`.
    """

    key_format: ClassVar[str] = "aggregated_feed_%(user_id)s"
    aggregator_class: ClassVar[type[BaseAggregator]] = RecentVerbAggregator
    aggregated_activity_class: ClassVar[type[AggregatedActivity]] = AggregatedActivity
    merge_max_length: ClassVar[int] = 20
    max_write_attempts: ClassVar[int] = 50
    fanout_concurrency: ClassVar[int] = 32
    track_markers: ClassVar[bool] = False
    keeps_copies: ClassVar[bool] = True  # groups embed their activities
    stock_writes: ClassVar[bool] = True
    """Whether adds run :meth:`add_many` and :meth:`on_update_feed` as defined here: then
    :meth:`add` skips rebuilding groups nobody looks at, and :meth:`fanout_add` merges a
    whole chunk of follower feeds in one storage call instead of one ``add_many`` per
    feed. A subclass that overrides either gets False, unless it sets it in its body."""

    capability_rules: ClassVar[Capabilities] = {"stock_writes": ("add_many", "on_update_feed")}
    required_capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.GROUPS})

    def get_aggregator(self) -> BaseAggregator:
        """A new aggregator for this feed's classes."""
        return self.aggregator_class(self.aggregated_activity_class, self.activity_class)

    @classmethod
    def get_aggregated_serializer(
        cls,
    ) -> AggregatedActivitySerializer[AggregatedActivity, Activity]:
        """Serializer for this feed's groups."""
        return AggregatedActivitySerializer(
            cls.aggregated_activity_class, cls.get_activity_serializer()
        )

    def _record(self, aggregated: AggregatedActivity, previous: GroupRecord | None) -> GroupRecord:
        payload = self.get_aggregated_serializer().dumps(aggregated)
        version = previous.version + 1 if previous is not None else 1
        return GroupRecord(aggregated.group, aggregated.serialization_id, payload, version)

    def _change(
        self,
        group: str,
        current: GroupRecord | None,
        new: AggregatedActivity | None,
        *,
        keeps_markers: bool = False,
    ) -> GroupChange:
        record = None if new is None else self._record(new, current)
        version = None if current is None else current.version
        return GroupChange(group, version, record, keeps_markers=keeps_markers)

    def _load(self, record: GroupRecord) -> AggregatedActivity:
        return self.get_aggregated_serializer().loads(record.payload)

    async def _commit(self, changes: GroupChanges, trim: bool) -> bool:
        max_length = self.max_length if self.should_trim(trim) else None
        return await self.io.write_groups(
            self.key, changes, max_length=max_length, track_markers=self.track_markers
        )

    @property
    def _retry(self) -> RetryPolicy:
        """The one budget of a write: ``max_write_attempts`` compare-and-sets (the
        storage makes a single one per call), with jittered pauses between."""
        return RetryPolicy(self.max_write_attempts)

    async def _backoff(self, attempt: int) -> None:
        retry = self._retry
        if retry.is_last(attempt):
            raise ConflictError.given_up(
                logger,
                f"feed {self.key!r}: {self.max_write_attempts} concurrent updates in a row won",
            )
        await retry.backoff(attempt)

    # -- writing -----------------------------------------------------------------------------

    async def add_many(  # type: ignore[override]
        self, activities: Iterable[Activity], trim: bool = True
    ) -> list[AggregatedActivity]:
        """Merge activities into their groups; returns the new and changed groups, ranked.

        Raises:
            SerializationError: an activity is of the wrong class or cannot be stored.
            ConflictError: lost the compare-and-set ``max_write_attempts`` times.
        """
        return await self._add_many(list(activities), trim, results=True)

    async def add(self, activity: Activity) -> None:
        """Add one activity (see :meth:`add_many`)."""
        if (
            self.stock_writes
            and "add_many" not in vars(self)
            and "on_update_feed" not in vars(self)
        ):
            # Nothing looks at the groups add_many returns: skip rebuilding them.
            await self._add_many([activity], True, results=False)
        else:
            await self.add_many([activity])

    async def _add_many(
        self, activities: list[Activity], trim: bool, *, results: bool
    ) -> list[AggregatedActivity]:
        # Class check now; payloads are serialized (and fully validated) while the changes
        # are built, which is still before anything is written.
        check = self.get_activity_serializer().check
        for activity in activities:
            check(activity)
        aggregator = self.get_aggregator()
        grouped = aggregator.group_activities(activities)
        merged = await self._merge_in_storage([self.key], aggregator, grouped, trim)
        if merged is not None and merged[0] is not None:
            written = merged[0]
            if not written:
                return []
            # New groups are stored as built here; changed ones are read back from what
            # was written (only when someone wants them).
            groups = [grouped[record.group] for created, record in written if created]
            if results:
                groups += [self._load(record) for created, record in written if not created]
            result = aggregator.rank(groups)
            await self._announce_added([self.key], activities, grouped, io=self.io)
            self.metrics.on_feed_write(type(self).__name__, len(activities))
            await _maybe_await(self.on_update_feed(new=result, deleted=[]))
            return result
        names = list(grouped)
        for attempt in self._retry.attempts_range():
            records = await self.io.get_groups(self.key, names)
            current = [self._load(r) for r in records.values()]
            new, changed, deleted = aggregator.merge(current, activities)
            changes = [self._change(a.group, records.get(a.group), a) for a in new]
            changes += [self._change(b.group, records[b.group], a) for b, a in changed]
            changes += [self._change(d.group, records[d.group], None) for d in deleted]
            if not changes:
                return []
            if await self._commit(changes, trim):
                break
            await self._backoff(attempt)
        result = aggregator.rank(new + [after for _, after in changed])
        await self._announce_added([self.key], activities, grouped, io=self.io)
        self.metrics.on_feed_write(type(self).__name__, len(activities))
        await _maybe_await(self.on_update_feed(new=result, deleted=deleted))
        return result

    async def _merge_in_storage(
        self,
        keys: Sequence[str],
        aggregator: BaseAggregator,
        grouped: dict[str, AggregatedActivity],
        trim: bool,
        *,
        results: bool = True,
    ) -> list[list[tuple[bool, GroupRecord]] | None] | None:
        """Let the storage merge the new activities into their groups in the feeds of
        ``keys``, in one call, when it can
        (:class:`~aiostream.storage.base.GroupMergeStorage`) and the stock merge rule it
        implements applies (:meth:`_server_mergeable`).

        Returns:
            What ``merge_groups`` returns (per feed: the groups written, or None where
            the storage could not merge); None when the storage cannot merge at all (the
            caller reads and writes back instead).
        """
        io = self.io
        serializer = self.get_aggregated_serializer()
        # What the storage declares (one set lookup), not a probe for the method.
        if not has(io, Capability.GROUP_MERGE) or not self._server_mergeable(
            aggregator, serializer
        ):
            return None
        merges = []
        for name, incoming in grouped.items():
            parts = serializer.merge_parts(incoming)
            record = GroupRecord(name, incoming.serialization_id, parts.payload)
            merges.append(GroupMerge(name, parts.header, record, parts.items))
        written: list[list[tuple[bool, GroupRecord]] | None] = await io.merge_groups(
            keys,
            merges,
            cap=self.aggregated_activity_class.max_aggregated_activities_length,
            max_length=self.max_length if self.should_trim(trim) else None,
            track_markers=self.track_markers,
            results=results,
        )
        return written

    def _server_mergeable(
        self,
        aggregator: BaseAggregator,
        serializer: AggregatedActivitySerializer[AggregatedActivity, Activity],
    ) -> bool:
        """Whether a storage may apply the stock merge rule itself: the aggregator, the
        group class and both serializers declare it (``server_mergeable``), and the
        group class keeps a plain cap."""
        group_class = self.aggregated_activity_class
        cap = group_class.max_aggregated_activities_length
        return (
            aggregator.server_mergeable
            and group_class.server_mergeable
            and serializer.server_mergeable
            and serializer.activity_serializer.server_mergeable
            and type(cap) is int
            and cap >= 0
        )

    async def remove_many(  # type: ignore[override]
        self, activities: Iterable[Activity | int]
    ) -> list[AggregatedActivity]:
        """Remove activities (or ids) from their groups; a group left empty is deleted.

        Activities are found through their group; bare ids make it scan the feed.
        Returns the groups that changed (after the change).
        """
        activities = list(activities)
        ids = set(_ids_of(activities))
        if not ids:
            return []
        aggregator = self.get_aggregator()
        by_group = all(isinstance(a, Activity) for a in activities)
        names = sorted({aggregator.group_of(a) for a in activities if isinstance(a, Activity)})
        for attempt in self._retry.attempts_range():
            if by_group:
                records = list((await self.io.get_groups(self.key, names)).values())
            else:
                records = await self.io.read_groups(self.key, 0, None, Query(), markers=False)
            changes, updated = self._removal_changes(records, ids)
            if not changes:
                return []
            if await self._commit(changes, trim=False):
                break
            await self._backoff(attempt)
        groups = [a.group for a in updated] + [c.group for c in changes if c.new is None]
        await self._announce(self.io, [self.key], "removed", sorted(ids), sorted(set(groups)))
        self.metrics.on_feed_remove(type(self).__name__, len(ids))
        await _maybe_await(self.on_update_feed(new=updated, deleted=sorted(ids)))
        return updated

    def _removal_changes(
        self, records: Iterable[GroupRecord], ids: set[int]
    ) -> tuple[list[GroupChange], list[AggregatedActivity]]:
        changes: list[GroupChange] = []
        updated: list[AggregatedActivity] = []
        for record in records:
            aggregated = self._load(record)
            hit = [i for i in aggregated.activity_ids if i in ids]
            if not hit:
                continue
            if len(hit) == len(aggregated.activities):
                changes.append(self._change(record.group, record, None))
                continue
            after = aggregated.copy()
            after.remove_many(hit)
            # A removal brings nothing new to see: the group stays seen / read as it was.
            changes.append(self._change(record.group, record, after, keeps_markers=True))
            updated.append(after)
        return changes, updated

    async def add_many_aggregated(self, aggregated: Iterable[AggregatedActivity]) -> None:
        """Store whole groups as they are, replacing groups of the same key."""
        await self._replace_groups(list(aggregated), delete=False)

    async def remove_many_aggregated(self, aggregated: Iterable[AggregatedActivity]) -> None:
        """Delete whole groups (by group key)."""
        await self._replace_groups(list(aggregated), delete=True)

    async def _replace_groups(self, aggregated: list[AggregatedActivity], *, delete: bool) -> None:
        serializer = self.get_aggregated_serializer()
        for a in aggregated:
            serializer.check(a)
        new = {a.group: None if delete else a for a in aggregated}
        for attempt in self._retry.attempts_range():
            records = await self.io.get_groups(self.key, list(new))
            changes = [
                self._change(g, records.get(g), a)
                for g, a in new.items()
                if a is not None or g in records
            ]
            if not changes:
                return
            if await self._commit(changes, trim=not delete):
                kind: UpdateKind = "removed" if delete else "added"
                ids = [i for a in aggregated for i in a.activity_ids]
                await self._announce(self.io, [self.key], kind, ids, sorted(new))
                return
            await self._backoff(attempt)

    # -- batch path ----------------------------------------------------------------------------

    @classmethod
    async def _fanout_add(cls, batch: FanoutBatch) -> None:
        # Each feed would refuse a bad activity before writing, but all at once, as a
        # FanoutError: validate once first.
        activities = batch.activities
        cls.serialize_activities(activities)
        if not batch.keys or not activities:
            return
        pending = list(batch.user_ids)
        if cls.stock_writes:
            # The whole chunk in one storage call when the storage merges groups itself;
            # feeds it could not merge into (and every feed elsewhere) go one by one.
            feed = cls._follower(batch, pending[0])
            aggregator = feed.get_aggregator()
            grouped = aggregator.group_activities(activities)
            merged = await feed._merge_in_storage(
                batch.keys, aggregator, grouped, batch.trim, results=False
            )
            if merged is not None:
                done = [k for k, m in zip(batch.keys, merged, strict=True) if m is not None]
                await cls._announce_added(done, activities, grouped, io=batch.io)
                pending = [u for u, m in zip(pending, merged, strict=True) if m is None]
        await cls._each(batch, pending, lambda feed: feed.add_many(activities, trim=batch.trim))

    @classmethod
    async def _fanout_remove(cls, batch: FanoutBatch) -> None:
        await cls._each(batch, batch.user_ids, lambda feed: feed.remove_many(batch.activities))

    @classmethod
    async def _fanout_update(cls, batch: FanoutBatch) -> None:
        """Replace the copies of the batch's activities that the groups of each follower's
        feed embed, where a group holds them: nothing is added, and a group keeps its id,
        place, counts and seen / read markers. One storage call for the chunk
        (:meth:`~aiostream.storage.base.FeedStorage.update_groups`, compare-and-set);
        idempotent.

        The activities keep their ids (an update changes ``extra_context`` only), and
        their group is found by the aggregator's group key of the new version: the
        Manager refuses updates that would change it.
        """
        activities = batch.activities
        if not activities or not batch.keys:
            return
        cls.serialize_activities(activities)  # checked and storable, before any write
        new = {a.serialization_id: a for a in activities}
        aggregator = cls._follower(batch, batch.user_ids[0]).get_aggregator()
        groups = sorted({aggregator.group_of(a) for a in new.values()})
        serializer = cls.get_aggregated_serializer()

        def rewrite(key: str, record: GroupRecord) -> str | None:
            aggregated = serializer.loads(record.payload)
            held = aggregated.activities
            hits = [i for i, a in enumerate(held) if a.serialization_id in new]
            if not hits:
                return None
            for i in hits:
                held[i] = new[held[i].serialization_id]
            return serializer.dumps(aggregated)

        await batch.io.update_groups(
            batch.keys, groups, rewrite, max_attempts=cls.max_write_attempts
        )
        await cls._announce(batch.io, batch.keys, "updated", sorted(new), groups)

    @classmethod
    async def _announce_added(
        cls,
        keys: Sequence[str],
        activities: Sequence[Activity],
        grouped: Mapping[str, AggregatedActivity],
        *,
        io: FeedStorage,
    ) -> None:
        ids = [a.serialization_id for a in activities]
        await cls._announce(io, keys, "added", ids, sorted(grouped))

    @classmethod
    def _follower(cls, batch: FanoutBatch, user_id: int | str) -> AggregatedFeed:
        """The feed of one follower, on the batch's storage and metrics."""
        return cls(user_id, storage=batch.storage, metrics=batch.metrics)

    @classmethod
    async def _each(cls, batch: FanoutBatch, user_ids: Sequence[int | str], op: Any) -> None:
        """``op(feed)`` for the feed of each of ``user_ids``, ``fanout_concurrency`` at once.

        Raises:
            StorageError: a feed's write failed (the others still running are stopped).
            FanoutError: several feeds' writes failed at once (holds each error).
        """
        await run_each(
            user_ids, lambda u: op(cls._follower(batch, u)), limit=cls.fanout_concurrency
        )

    # -- reading -------------------------------------------------------------------------------

    async def _read(self, start: int, stop: int | None, query: Query) -> list[Any]:
        records = await self.io.read_groups(
            self.key, start, stop, query, markers=self.track_markers
        )
        groups = self.get_aggregated_serializer().loads_many([r.payload for r in records])
        for group, record in zip(groups, records, strict=True):
            self._loaded(group, record)
        return groups

    def _loaded(self, aggregated: AggregatedActivity, record: GroupRecord) -> None:
        """Hook: ``aggregated`` was just read from ``record`` (does nothing here)."""

    async def contains(self, activity: Activity) -> bool:
        """Whether ``activity`` is in its group in this feed."""
        group = self.get_aggregator().group_of(self.get_activity_serializer().check(activity))
        records = await self.io.get_groups(self.key, [group])
        return group in records and self._load(records[group]).contains(activity)

    async def count(self) -> int:
        """Number of groups in the feed."""
        return await self.io.count_groups(self.key)

    async def _position(self, item_id: int) -> int | None:
        return await self.io.groups_index_of(self.key, item_id)

    async def trim(self, length: int | None = None) -> None:
        """Keep only the newest ``length`` (default ``max_length``) groups."""
        await self.io.trim_groups(self.key, _length(length, self.max_length))

    @staticmethod
    def inner_activities(item: Any) -> list[Activity]:
        """The activities of a group."""
        return list(item.activities)
