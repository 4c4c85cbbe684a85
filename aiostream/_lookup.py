"""Naming stored activities: by id, or by foreign id and time (checked, before any I/O)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from aiostream.exceptions import ValidationError
from aiostream.ids import foreign_activity_id, is_id

ForeignRef = tuple[str, dt.datetime]
"""A foreign id and the activity's time: together they name one activity."""


def checked_ids(ids: object, field: str = "ids") -> list[int]:
    """``ids`` as a list of activity ids.

    Raises:
        ValidationError: naming ``field`` (or ``field[i]``): not a collection, or an
            element that is not an int id.
    """
    found: list[int] = list(_collection(ids, field))
    for index, activity_id in enumerate(found):
        if not is_id(activity_id):
            raise ValidationError(
                f"{field}[{index}]", f"expected an int activity id, got {activity_id!r}"
            )
    return found


def foreign_ref_id(foreign_id: object, time: object, field: str = "foreign_id") -> int:
    """The id of the activity a foreign id and a time name.

    Raises:
        ValidationError: naming ``field`` (the foreign id is not a non-empty str) or
            ``time`` (not a datetime an id can encode).
    """
    if not isinstance(foreign_id, str) or not foreign_id:
        raise ValidationError(field, f"expected a non-empty str, got {foreign_id!r}")
    if not isinstance(time, dt.datetime):
        raise ValidationError("time", f"expected a datetime, got {type(time).__name__}")
    return foreign_activity_id(foreign_id, time)


def checked_foreign_ids(refs: object, field: str = "foreign_ids") -> list[int]:
    """The ids of ``(foreign id, time)`` pairs.

    Raises:
        ValidationError: naming ``field[i]``: not a pair of a non-empty str and a
            datetime an id can encode.
    """
    found = []
    for index, ref in enumerate(_collection(refs, field)):
        where = f"{field}[{index}]"
        if (
            not isinstance(ref, tuple | list)
            or len(ref) != 2
            or not isinstance(ref[0], str)
            or not ref[0]
            or not isinstance(ref[1], dt.datetime)
        ):
            raise ValidationError(
                where, f"expected a (non-empty str foreign id, datetime) pair, got {ref!r}"
            )
        try:
            found.append(foreign_activity_id(ref[0], ref[1]))
        except ValidationError as exc:
            raise ValidationError(where, str(exc)) from None
    return found


def _collection(values: object, field: str) -> Iterable[Any]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(field, f"expected a list, got {type(values).__name__}")
    return values
