"""The CQL text of every statement the storage prepares, for one keyspace.

Values always travel as bind markers (``?``); only the validated keyspace and extra
column names are part of the text. ``ORDER BY`` direction cannot be bound, so reads come
in a descending and an ascending variant. ``LIMIT ?`` is bound. Each text is built once
(``cached_property``) and prepared once per session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from aiostream.storage.cassandra._schema import (
    ACTIVITIES,
    GROUPS,
    LEASES,
    STATES,
    TIMELINE,
    quote,
)

_PK = "namespace = ? AND feed = ?"
_RANGE = "AND {col} >= ? AND {col} <= ? ORDER BY {col} {order} LIMIT ?"


def _by_order(template: str) -> dict[bool, str]:
    """``{descending: cql}`` for a template with an ``{order}`` field."""
    return {True: template.format(order="DESC"), False: template.format(order="ASC")}


@dataclass(frozen=True)
class Statements:
    """CQL for one keyspace and set of extra activity columns."""

    keyspace: str
    extra_columns: tuple[str, ...] = ()

    def _table(self, name: str) -> str:
        return f"{quote(self.keyspace)}.{name}"

    def _insert(self, table: str, keys: Sequence[str]) -> str:
        columns = [*keys, "payload", *(quote(c) for c in self.extra_columns)]
        markers = ", ".join("?" for _ in columns)
        return f"INSERT INTO {self._table(table)} ({', '.join(columns)}) VALUES ({markers})"

    # -- activities ---------------------------------------------------------------------------

    @cached_property
    def activity_insert(self) -> str:
        return self._insert(ACTIVITIES, ("namespace", "activity_id"))

    @cached_property
    def activity_select(self) -> str:
        return (
            f"SELECT activity_id, payload FROM {self._table(ACTIVITIES)} "
            "WHERE namespace = ? AND activity_id = ?"
        )

    @cached_property
    def activity_select_many(self) -> str:
        """Payloads of many activities; a deleted one is a row with a null payload."""
        return (
            f"SELECT activity_id, payload FROM {self._table(ACTIVITIES)} "
            "WHERE namespace = ? AND activity_id IN ?"
        )

    @cached_property
    def activity_delete(self) -> str:
        """Deletes the payload (and extra columns), not the row: the row INSERT made
        stays as the sign that the activity was stored and then deleted, which is what
        lets a feed read tell a deleted activity from one it cannot see yet."""
        columns = ", ".join(["payload", *(quote(c) for c in self.extra_columns)])
        return (
            f"DELETE {columns} FROM {self._table(ACTIVITIES)} "
            "WHERE namespace = ? AND activity_id = ?"
        )

    # -- timelines ----------------------------------------------------------------------------

    @cached_property
    def timeline_insert(self) -> str:
        return self._insert(TIMELINE, ("namespace", "feed", "activity_id"))

    @cached_property
    def timeline_delete_ids(self) -> str:
        return f"DELETE FROM {self._table(TIMELINE)} WHERE {_PK} AND activity_id IN ?"

    @cached_property
    def timeline_delete_upto(self) -> str:
        """Deletes every entry at or older than an id: one range tombstone (the trim)."""
        return f"DELETE FROM {self._table(TIMELINE)} WHERE {_PK} AND activity_id <= ?"

    @cached_property
    def timeline_delete_feed(self) -> str:
        return f"DELETE FROM {self._table(TIMELINE)} WHERE {_PK}"

    @cached_property
    def timeline_read(self) -> dict[bool, str]:
        return _by_order(
            f"SELECT activity_id, payload FROM {self._table(TIMELINE)} WHERE {_PK} "
            + _RANGE.format(col="activity_id", order="{order}")
        )

    @cached_property
    def timeline_ids(self) -> dict[bool, str]:
        return _by_order(
            f"SELECT activity_id FROM {self._table(TIMELINE)} WHERE {_PK} "
            + _RANGE.format(col="activity_id", order="{order}")
        )

    @cached_property
    def timeline_count(self) -> str:
        return f"SELECT COUNT(*) FROM {self._table(TIMELINE)} WHERE {_PK}"

    @cached_property
    def timeline_count_newer(self) -> str:
        return f"SELECT COUNT(*) FROM {self._table(TIMELINE)} WHERE {_PK} AND activity_id > ?"

    @cached_property
    def timeline_has(self) -> str:
        return f"SELECT activity_id FROM {self._table(TIMELINE)} WHERE {_PK} AND activity_id = ?"

    # -- groups -------------------------------------------------------------------------------

    @cached_property
    def groups_snapshot(self) -> str:
        return (
            f"SELECT version, names, unseen, unread FROM {self._table(GROUPS)} WHERE {_PK} LIMIT 1"
        )

    @cached_property
    def groups_read(self) -> dict[bool, str]:
        return _by_order(
            "SELECT group_id, name, payload, group_version, unseen, unread "
            f"FROM {self._table(GROUPS)} WHERE {_PK} "
            + _RANGE.format(col="group_id", order="{order}")
        )

    @cached_property
    def groups_ids(self) -> dict[bool, str]:
        return _by_order(
            f"SELECT group_id FROM {self._table(GROUPS)} WHERE {_PK} "
            + _RANGE.format(col="group_id", order="{order}")
        )

    @cached_property
    def groups_by_ids(self) -> str:
        return (
            f"SELECT names, group_id, name, payload, group_version FROM {self._table(GROUPS)} "
            f"WHERE {_PK} AND group_id IN ?"
        )

    @cached_property
    def groups_cas(self) -> str:
        """The statement that carries a group batch's condition (and bumps ``version``)."""
        return (
            f"UPDATE {self._table(GROUPS)} SET version = ?, names = names + ?, "
            f"unseen = unseen + ?, unread = unread + ? WHERE {_PK} IF version = ?"
        )

    @cached_property
    def groups_remove(self) -> str:
        return (
            f"UPDATE {self._table(GROUPS)} SET names = names - ?, unseen = unseen - ?, "
            f"unread = unread - ? WHERE {_PK}"
        )

    @cached_property
    def group_insert(self) -> str:
        return (
            f"INSERT INTO {self._table(GROUPS)} "
            "(namespace, feed, group_id, name, payload, group_version) VALUES (?, ?, ?, ?, ?, ?)"
        )

    @cached_property
    def group_delete(self) -> str:
        # One statement per row: conditional batches reject ``group_id IN ?``.
        return f"DELETE FROM {self._table(GROUPS)} WHERE {_PK} AND group_id = ?"

    @cached_property
    def group_delete_all(self) -> str:
        """Every group row of a feed: one range tombstone (ids are never negative)."""
        return f"DELETE FROM {self._table(GROUPS)} WHERE {_PK} AND group_id >= 0"

    def groups_mark(self, *, seen: bool, read: bool, every: bool) -> str:
        """Clear markers, as a lightweight transaction so it is ordered with group writes.

        ``IF version != null`` skips feeds that never had a group.
        """
        columns = [c for c, flag in (("unseen", seen), ("unread", read)) if flag]
        sets = ", ".join(f"{c} = null" if every else f"{c} = {c} - ?" for c in columns)
        return f"UPDATE {self._table(GROUPS)} SET {sets} WHERE {_PK} IF version != null"

    # -- states -------------------------------------------------------------------------------

    @cached_property
    def state_select(self) -> str:
        return f"SELECT name, value FROM {self._table(STATES)} WHERE namespace = ? AND name = ?"

    @cached_property
    def state_insert(self) -> str:
        return f"INSERT INTO {self._table(STATES)} (namespace, name, value) VALUES (?, ?, ?)"

    @cached_property
    def maximum_insert(self) -> str:
        # (never deleted: a tombstone's timestamp would hide every smaller maximum)
        return (
            f"INSERT INTO {self._table(STATES)} (namespace, name, value) VALUES (?, ?, ?) "
            "USING TIMESTAMP ?"
        )

    @cached_property
    def state_delete(self) -> str:
        return f"DELETE FROM {self._table(STATES)} WHERE namespace = ? AND name = ?"

    # -- leases -------------------------------------------------------------------------------

    @cached_property
    def lease_acquire(self) -> str:
        return (
            f"INSERT INTO {self._table(LEASES)} (namespace, name, owner) VALUES (?, ?, ?) "
            "IF NOT EXISTS USING TTL ?"
        )

    @cached_property
    def lease_renew(self) -> str:
        return (
            f"UPDATE {self._table(LEASES)} USING TTL ? SET owner = ? "
            "WHERE namespace = ? AND name = ? IF owner = ?"
        )

    @cached_property
    def lease_release(self) -> str:
        return f"DELETE FROM {self._table(LEASES)} WHERE namespace = ? AND name = ? IF owner = ?"
