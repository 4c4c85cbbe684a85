"""Naming stored activities: by id, or by foreign id and time (checked, before any I/O)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from aiostream.activity._single import checked_foreign_id
from aiostream.exceptions import ValidationError
from aiostream.ids import foreign_activity_id, parse_id

ForeignRef = tuple[str, dt.datetime]
"""A foreign id and the activity's time: together they name one activity."""


def checked_ids(ids: object, field: str = "ids") -> list[int]:
    """``ids`` as a list of activity ids, each an int or the decimal str ``to_dict()``
    sends (read by :func:`~aiostream.ids.parse_id`).

    Raises:
        ValidationError: naming ``field`` (or ``field[i]``): not a collection, or an
            element that is neither an id nor an id's decimal str.
    """
    return [
        parse_id(activity_id, f"{field}[{index}]")
        for index, activity_id in enumerate(_collection(ids, field))
    ]


def checked_id(activity: object, field: str = "activity") -> int:
    """One activity id, an int or its decimal str (:func:`~aiostream.ids.parse_id`).

    Raises:
        ValidationError: naming ``field``.
    """
    return parse_id(activity, field)


def foreign_ref_id(
    foreign_id: object, time: object, field: str = "foreign_id", time_field: str = "time"
) -> int:
    """The id of the activity a foreign id and a time name.

    Raises:
        ValidationError: naming ``field`` (not a foreign id Activity would take) or
            ``time_field`` (not a datetime an id can encode).
    """
    checked = checked_foreign_id(foreign_id, field)
    if not isinstance(time, dt.datetime):
        raise ValidationError(time_field, f"expected a datetime, got {type(time).__name__}")
    try:
        return foreign_activity_id(checked, time)
    except ValidationError as exc:  # (a time out of range: "time: ...")
        if exc.field == time_field:
            raise
        raise ValidationError(time_field, str(exc)) from None


def checked_foreign_ids(refs: object, field: str = "foreign_ids") -> list[int]:
    """The ids of ``(foreign id, time)`` pairs.

    Raises:
        ValidationError: naming ``field[i]``: not a pair of a foreign id and a datetime
            an id can encode.
    """
    found = []
    for index, ref in enumerate(_collection(refs, field)):
        where = f"{field}[{index}]"
        if not isinstance(ref, tuple | list) or len(ref) != 2:
            raise ValidationError(
                where, f"expected a (non-empty str foreign id, datetime) pair, got {ref!r}"
            )
        found.append(foreign_ref_id(ref[0], ref[1], where, where))
    return found


def _collection(values: object, field: str) -> Iterable[Any]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(field, f"expected a list, got {type(values).__name__}")
    return values
