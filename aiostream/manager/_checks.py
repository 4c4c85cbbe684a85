"""What the Manager's hooks return, checked whole before anything is written:
``get_user_follower_ids`` (``{priority: ids}``) and ``get_user_following_ids`` (ids)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aiostream.exceptions import ValidationError
from aiostream.ids import _SMALL_INT, check_user_id


def _user_ids(ids: object, where: str) -> list[Any]:
    """``ids`` as a list of user ids (a UUID as its str: the same feed, as jobs carry it).

    Raises:
        ValidationError: not a collection (a str is iterable too: "23" would otherwise
            be users 2 and 3), or a bad id (naming ``where[i]``).
    """
    if isinstance(ids, str | bytes | Mapping) or not isinstance(ids, Iterable):
        raise ValidationError(where, f"expected a collection of user ids, got {type(ids).__name__}")
    found = list(ids)
    if all(type(user) is int for user in found) and (
        not found or (min(found) > -_SMALL_INT and max(found) < _SMALL_INT)
    ):
        return found  # the usual ids (a reader may follow thousands): nothing to check
    for index, user in enumerate(found):
        if isinstance(user, uuid.UUID):
            found[index] = str(user)
        else:
            check_user_id(user, f"{where}[{index}]")
    return found


def check_followers(result: object) -> dict[str | None, list[Any]]:
    """Validate what ``get_user_follower_ids`` returned: ``{priority: ids}``.

    Raises:
        ValidationError: naming ``get_user_follower_ids`` (and the priority and position
            of a bad id).
    """
    field = "get_user_follower_ids"
    if not isinstance(result, Mapping):
        raise ValidationError(
            field, f"must return a mapping of priority to ids, got {type(result).__name__}"
        )
    followers: dict[str | None, list[Any]] = {}
    for priority, ids in result.items():
        key = None if priority is None else str(priority)
        followers[key] = _user_ids(ids, f"{field}()[{key!r}]")
    return followers


def check_following(result: object) -> list[Any]:
    """Validate what ``get_user_following_ids`` returned: the ids a user follows.

    Raises:
        ValidationError: naming ``get_user_following_ids()`` (and the position of a bad id).
    """
    return _user_ids(result, "get_user_following_ids()")
