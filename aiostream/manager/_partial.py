"""Partial updates: ``set`` / ``unset`` of dotted paths into an activity's
``extra_context`` (see :meth:`~aiostream.manager.Manager.partial_update_activity`)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from aiostream.exceptions import ValidationError

Path = tuple[str, ...]

_FIXED = ("actor", "verb", "object", "target", "time", "foreign_id", "to", "id")
"""Top-level names a path may not start with: what makes the activity's id, or where
it was published (``extra_context.<name>`` reaches a key of that name)."""


def checked_changes(set_: object, unset: object) -> tuple[list[tuple[Path, Any]], list[Path]]:
    """The paths of a partial update, checked (before anything is read or written).

    A path is ``"extra_context.a.b"``, or ``"a.b"`` for the same key; the keys between
    the dots are dict keys, so none may be empty.

    Raises:
        ValidationError: naming ``set`` / ``unset`` (not a dict / a list of paths),
            ``set['path']`` / ``unset[i]`` (a bad path, one that would change actor,
            verb, object, target, time or foreign id, or one both set and unset).
    """
    if set_ is None:
        set_ = {}
    if not isinstance(set_, Mapping):
        raise ValidationError("set", f"expected a dict of path: value, got {type(set_).__name__}")
    if unset is None:
        unset = []
    if isinstance(unset, str | bytes) or not isinstance(unset, Iterable):
        raise ValidationError("unset", f"expected a list of paths, got {type(unset).__name__}")
    sets = [(_path(path, f"set[{path!r}]"), value) for path, value in set_.items()]
    unsets = [_path(path, f"unset[{index}]") for index, path in enumerate(unset)]
    both = {p for p, _ in sets} & set(unsets)
    if both:
        shown = ".".join(min(both))
        raise ValidationError("unset", f"{shown!r} is both set and unset")
    return sets, unsets


def apply_changes(
    extra_context: Mapping[str, Any], sets: list[tuple[Path, Any]], unsets: list[Path]
) -> dict[str, Any]:
    """A copy of ``extra_context`` with the sets (missing dicts on the way made) and then
    the unsets (a missing path changes nothing) applied.

    Raises:
        ValidationError: naming the path, when it goes through a value that is not a
            dict (nothing is changed then).
    """
    result = copy.deepcopy(dict(extra_context))
    for path, value in sets:
        node = _parent(result, path, f"set[{'.'.join(path)!r}]", make=True)
        if node is not None:  # (always, as missing dicts are made)
            node[path[-1]] = copy.deepcopy(value)
    for path in unsets:
        node = _parent(result, path, f"unset[{'.'.join(path)!r}]", make=False)
        if node is not None:
            node.pop(path[-1], None)
    return result


def _path(path: object, field: str) -> Path:
    if not isinstance(path, str) or not path:
        raise ValidationError(field, f"expected a dotted path (a non-empty str), got {path!r}")
    keys = path.split(".")
    if keys[0] == "extra_context":
        keys = keys[1:]
        if not keys:
            raise ValidationError(
                field, "name a key inside extra_context, e.g. extra_context.title"
            )
    elif keys[0] in _FIXED:
        raise ValidationError(
            field,
            f"{keys[0]} cannot change: set and unset change extra_context only (actor, "
            "verb, object, target, time and foreign id make the activity's id)",
        )
    if not all(keys):
        raise ValidationError(field, f"{path!r} has an empty key")
    return tuple(keys)


def _parent(root: dict[str, Any], path: Path, field: str, *, make: bool) -> dict[str, Any] | None:
    """The dict holding ``path``'s last key (None: a missing path, when not ``make``)."""
    node = root
    for depth, key in enumerate(path[:-1]):
        if key not in node:
            if not make:
                return None
            node[key] = {}
        child = node[key]
        if not isinstance(child, dict):
            through = ".".join(path[: depth + 1])
            raise ValidationError(
                field, f"extra_context.{through} is a {type(child).__name__}, not a dict"
            )
        node = child
    return node
