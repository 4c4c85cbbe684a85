"""A group's stored activities, kept as decoded rows until they are first touched.

Reading a page of groups decodes its JSON in one call; building each activity object
from its row is most of the rest of the cost, and a notification list shows only what a
group's rows already say (ids, actors, objects, verbs) and its newest activity.
:class:`GroupRows` answers those from the rows and builds the activities once, when
:attr:`~aiostream.activity.AggregatedActivity.activities` is first asked for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiostream.activity import Activity
from aiostream.group_format import ID_WIDTH
from aiostream.verbs import Verb, VerbRegistry

_SIZES = (5, 6, 7)  # the fields of a stored activity row: extra_context and foreign id optional


class GroupRows:
    """The stored activities of one group (format 2), checked but not built.

    Args:
        rows: The group's activity rows, oldest first, as decoded from its JSON.
        ids: Their ids, :data:`~aiostream.group_format.ID_WIDTH` hex digits each.
        build: Builds activities from rows (the serializer's ``from_rows``).
        verbs: Where the rows' verb ids are looked up.

    Raises:
        ValueError: a row is not an activity row.
        UnknownVerbError: a verb id is not registered (so a broken group fails when it
            is read, as it did when activities were built at once).
    """

    __slots__ = ("_build", "_built", "_ids", "_last", "_rows", "_verbs")

    def __init__(
        self,
        rows: list[Any],
        ids: str,
        build: Callable[[list[Any]], list[Any]],
        verbs: VerbRegistry,
    ) -> None:
        for row in rows:
            if type(row) is not list or len(row) not in _SIZES or type(row[4]) is not int:
                raise ValueError(f"not an activity row: {row!r}")
        self._verbs = {verb_id: verbs.get(verb_id) for verb_id in {row[1] for row in rows}}
        self._rows = rows
        self._ids = ids
        self._build = build
        self._last: Activity | None = None
        self._built: list[Activity] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def activity_ids(self) -> list[int]:
        text = self._ids
        return [int(text[i : i + ID_WIDTH], 16) for i in range(0, len(text), ID_WIDTH)]

    def actor_ids(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def object_ids(self) -> list[Any]:
        return [row[2] for row in self._rows]

    def verbs(self) -> list[type[Verb]]:
        verbs = self._verbs
        return [verbs[row[1]] for row in self._rows]

    def last(self) -> Activity:
        if self._built is not None:
            return self._built[-1]
        if self._last is None:
            self._last = self._build(self._rows[-1:])[0]
        return self._last

    def build(self) -> list[Activity]:
        if self._built is None:
            if self._last is None:
                self._built = self._build(self._rows)
            else:
                self._built = [*self._build(self._rows[:-1]), self._last]
        return list(self._built)
