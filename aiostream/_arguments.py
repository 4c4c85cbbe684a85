"""Checks of public call arguments, before any I/O: the one place that turns a wrong
argument type into an error naming the argument (an :class:`ArgumentTypeError`, which
is a :class:`~aiostream.exceptions.ValidationError` and a ``TypeError`` alike)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiostream.exceptions import ArgumentTypeError


def listed(values: object, field: str, what: str = "a list") -> list[Any]:
    """``values`` as a list: any iterable but a str, bytes or mapping (a generator is
    read once, here).

    Raises:
        ArgumentTypeError: naming ``field``: not such an iterable.
    """
    if isinstance(values, str | bytes | dict) or not isinstance(values, Iterable):
        raise ArgumentTypeError(field, f"expected {what}, got {type(values).__name__}")
    return list(values)


def checked_flag(value: object, field: str) -> bool:
    """``value``, which must be a bool.

    Raises:
        ArgumentTypeError: naming ``field``: not a bool (``"no"`` is not False).
    """
    if not isinstance(value, bool):
        raise ArgumentTypeError(field, f"expected True or False, got {value!r}")
    return value
