"""Planning writes to the ``groups`` table: pure functions, no I/O.

A group write reads the feed's static columns (a :class:`Snapshot`), computes here what
must change (a :class:`GroupPlan`), and commits the plan as one conditional batch on the
feed's partition, guarded by ``IF version = <snapshot version>``. Because every change
to a groups partition is such a lightweight transaction, they are linearizable and
their write timestamps (Paxos ballots) follow that order, so the plan can use
incremental collection updates (``names + ?``, ``unseen - ?``) and still be exact.

All statements of one batch share a timestamp, and at equal timestamps a deletion beats
a write. The plan therefore never deletes a row, map key or set element it also writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiostream.storage.base import GroupChanges


@dataclass(frozen=True)
class Snapshot:
    """The static columns of one feed's groups partition, as read.

    Attributes:
        version: Bumped by every write; ``None`` when the partition does not exist.
        names: Group name to ``(group id, group version)``, for every group in the feed.
        unseen: Ids of unseen groups.
        unread: Ids of unread groups.
    """

    version: int | None = None
    names: dict[str, tuple[int, int]] = field(default_factory=dict)
    unseen: frozenset[int] = frozenset()
    unread: frozenset[int] = frozenset()

    @classmethod
    def from_row(cls, row: Sequence[Any] | None) -> Snapshot:
        """From a ``(version, names, unseen, unread)`` row (``None``: no partition)."""
        if row is None:
            return cls()
        version, names, unseen, unread = row
        return cls(
            version=version,
            names={name: (int(i), int(v)) for name, (i, v) in (names or {}).items()},
            unseen=frozenset(unseen or ()),
            unread=frozenset(unread or ()),
        )

    def ids(self) -> list[int]:
        """Every group id of the feed."""
        return [group_id for group_id, _ in self.names.values()]

    def version_of(self, group: str) -> int | None:
        """The group's version (``None``: no such group)."""
        entry = self.names.get(group)
        return None if entry is None else entry[1]

    def matches(self, changes: GroupChanges) -> bool:
        """Whether every changed group still has the version its writer read."""
        return all(self.version_of(c.group) == c.expected_version for c in changes)


@dataclass
class GroupPlan:
    """What one conditional batch must write, as differences from a :class:`Snapshot`."""

    names_set: dict[str, tuple[int, int]] = field(default_factory=dict)
    names_removed: set[str] = field(default_factory=set)
    unseen_add: set[int] = field(default_factory=set)
    unseen_remove: set[int] = field(default_factory=set)
    unread_add: set[int] = field(default_factory=set)
    unread_remove: set[int] = field(default_factory=set)
    upserts: dict[int, tuple[str, str, int]] = field(default_factory=dict)
    """Rows to write: ``group id -> (group name, payload, group version)``."""
    deletes: set[int] = field(default_factory=set)
    """Group ids whose rows are deleted."""

    @property
    def removes_anything(self) -> bool:
        """Whether the batch needs the statement that removes map keys / set elements."""
        return bool(self.names_removed or self.unseen_remove or self.unread_remove)


def _diff(
    snapshot: Snapshot,
    names: dict[str, tuple[int, int]],
    unseen: set[int],
    unread: set[int],
    upserts: dict[int, tuple[str, str, int]],
    deleted_ids: set[int],
    fresh: set[int],
) -> GroupPlan:
    # Markers of freshly written ids are (re)added even when the snapshot has them:
    # a mark_groups committed after the snapshot must not swallow this write's markers.
    return GroupPlan(
        names_set={g: i for g, i in names.items() if snapshot.names.get(g) != i},
        names_removed=set(snapshot.names) - set(names),
        unseen_add=(unseen - snapshot.unseen) | (unseen & fresh),
        unseen_remove=set(snapshot.unseen - unseen),
        unread_add=(unread - snapshot.unread) | (unread & fresh),
        unread_remove=set(snapshot.unread - unread),
        upserts=upserts,
        # A row rewritten under the same id must not also be deleted (see module doc).
        deletes=deleted_ids - set(upserts),
    )


def _trim(
    names: dict[str, tuple[int, int]],
    unseen: set[int],
    unread: set[int],
    upserts: dict[int, tuple[str, str, int]],
    deleted: set[int],
    max_length: int,
) -> None:
    excess = len(names) - max_length
    if excess <= 0:
        return
    for group, (group_id, _) in sorted(names.items(), key=lambda item: item[1][0])[:excess]:
        del names[group]
        unseen.discard(group_id)
        unread.discard(group_id)
        upserts.pop(group_id, None)
        deleted.add(group_id)


def plan_write(
    snapshot: Snapshot, changes: GroupChanges, *, max_length: int | None, track_markers: bool
) -> GroupPlan:
    """Plan ``changes`` (already checked against ``snapshot``), then the trim.

    Mirrors :meth:`MemoryStorage.write_groups`: a replaced or deleted group loses the
    markers of its old id, a written one gets unseen and unread markers for its new id
    when ``track_markers`` (or the old id's, when the change keeps them), and the trim
    drops the oldest groups with their markers.
    """
    names = dict(snapshot.names)
    unseen, unread = set(snapshot.unseen), set(snapshot.unread)
    upserts: dict[int, tuple[str, str, int]] = {}
    deleted: set[int] = set()
    fresh: set[int] = set()
    for change in changes:
        old_entry = names.pop(change.group, None)
        was = (True, True)  # (unseen, unread) of the group before the change
        if old_entry is not None:
            old = old_entry[0]
            was = (old in unseen, old in unread)
            deleted.add(old)
            upserts.pop(old, None)
            unseen.discard(old)
            unread.discard(old)
        if change.new is not None:
            new = change.new
            names[change.group] = (new.id, new.version)
            upserts[new.id] = (change.group, new.payload, new.version)
            if track_markers and change.keeps_markers:
                if was[0]:
                    unseen.add(new.id)
                if was[1]:
                    unread.add(new.id)
            elif track_markers:
                fresh.add(new.id)
                unseen.add(new.id)
                unread.add(new.id)
    if max_length is not None:
        _trim(names, unseen, unread, upserts, deleted, max_length)
    return _diff(snapshot, names, unseen, unread, upserts, deleted, fresh)


def plan_trim(snapshot: Snapshot, max_length: int) -> GroupPlan | None:
    """Plan keeping the newest ``max_length`` groups (``None``: nothing to do)."""
    if len(snapshot.names) <= max_length:
        return None
    return plan_write(snapshot, (), max_length=max_length, track_markers=False)


def plan_clear(snapshot: Snapshot) -> GroupPlan:
    """Plan deleting every group and marker of the feed."""
    return plan_write(snapshot, (), max_length=0, track_markers=False)
