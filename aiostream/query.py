"""Feed queries: ``activity_id`` range filters and ordering, validated up front.

Every backend answers the same :class:`Query` the same way; the in-memory storage uses
:meth:`Query.select` directly and is the reference the others are tested against.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiostream.exceptions import InvalidQueryError
from aiostream.ids import MAX_ID, clamp_id, parse_id

__all__ = ["FILTER_KEYWORDS", "ORDERINGS", "Query", "check_slice"]

FILTER_KEYWORDS = ("activity_id__gt", "activity_id__gte", "activity_id__lt", "activity_id__lte")
ORDERINGS = ("activity_id", "-activity_id")


@dataclass(frozen=True, slots=True)
class Query:
    """An inclusive id range ``[low, high]`` and a direction (newest first by default).

    Strict bounds are folded into inclusive ones (``gt=x`` is ``low=x+1``), which is exact
    because ids are integers. An empty range (``low > high``) selects nothing.
    """

    low: int = 0
    high: int = MAX_ID
    descending: bool = True

    @property
    def is_empty(self) -> bool:
        """True when no id can match."""
        return self.low > self.high

    @property
    def is_default(self) -> bool:
        """True for the whole feed, newest first."""
        return self.low == 0 and self.high == MAX_ID and self.descending

    def filter(self, **filters: Any) -> Query:
        """Return a query narrowed by ``activity_id__gt / __gte / __lt / __lte`` keywords.

        A bound is an int, an activity or group (its ``serialization_id``), or the
        decimal str of an id, as ``to_dict()`` writes ``"id"``: a client pages with the
        ids it was sent (``activity_id__lt=data["id"]``) without converting them.

        Raises:
            InvalidQueryError: naming the keyword: an unknown keyword, or a value that is
                neither an int, an activity nor an id's decimal str (see
                :func:`~aiostream.ids.parse_id`: ``"-1"``, ``" 12"``, ``"1e5"`` are not).
        """
        low, high = self.low, self.high
        for name, value in filters.items():
            if name not in FILTER_KEYWORDS:
                raise InvalidQueryError(
                    name, f"unknown filter; use one of {', '.join(FILTER_KEYWORDS)}"
                )
            if isinstance(value, str):
                value = parse_id(value, name, error=InvalidQueryError)
            if isinstance(value, bool) or not isinstance(value, int):
                value = getattr(value, "serialization_id", value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidQueryError(
                    name,
                    f"expected an int activity id or its decimal str, got {type(value).__name__}",
                )
            op = name.rsplit("__", 1)[1]
            if op == "gt":
                low = max(low, value + 1)
            elif op == "gte":
                low = max(low, value)
            elif op == "lt":
                high = min(high, value - 1)
            else:
                high = min(high, value)
        if low > high or low > MAX_ID or high < 0:
            return replace(self, low=1, high=0)
        return replace(self, low=clamp_id(low), high=clamp_id(high))

    def order_by(self, *fields: str) -> Query:
        """Return a query ordered by ``'activity_id'`` (oldest first) or ``'-activity_id'``.

        Raises:
            InvalidQueryError: more than one field, or an unknown one.
        """
        if len(fields) > 1:
            raise InvalidQueryError("order_by", f"takes one field, got {len(fields)}")
        if not fields:
            return replace(self, descending=True)
        (field,) = fields
        if field not in ORDERINGS:
            raise InvalidQueryError("order_by", f"unknown ordering {field!r}; use {ORDERINGS}")
        return replace(self, descending=field.startswith("-"))

    def matches(self, activity_id: int) -> bool:
        """Whether ``activity_id`` is in the range."""
        return self.low <= activity_id <= self.high

    def select(self, ascending_ids: Sequence[int], start: int, stop: int | None) -> list[int]:
        """Apply the query and the ``[start:stop]`` window to ids sorted ascending."""
        if self.is_empty:
            return []
        lo = bisect.bisect_left(ascending_ids, self.low)
        hi = bisect.bisect_right(ascending_ids, self.high)
        window = ascending_ids[lo:hi]
        ordered = list(reversed(window)) if self.descending else list(window)
        return ordered[start:stop]

    @classmethod
    def from_kwargs(cls, filters: Mapping[str, Any], ordering: Sequence[str] = ()) -> Query:
        """Build a query from keyword filters and an ordering tuple."""
        return cls().filter(**filters).order_by(*ordering)


def check_slice(key: object) -> tuple[int, int | None]:
    """Validate a feed index or slice; return ``(start, stop)``.

    ``feed[i]`` is the window ``[i, i+1)``; ``feed[a:b]`` is ``[a or 0, b)``.

    Raises:
        InvalidQueryError: a negative or non-integer bound, or a step.
    """
    if isinstance(key, slice):
        if key.step is not None:
            raise InvalidQueryError("slice", "steps are not supported")
        bounds: list[int | None] = []
        for name, value in (("start", key.start), ("stop", key.stop)):
            if value is None:
                bounds.append(None)
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidQueryError(
                    f"slice.{name}", f"expected a non-negative int, got {type(value).__name__}"
                )
            if value < 0:
                raise InvalidQueryError(
                    f"slice.{name}", f"negative bounds are not supported: {value}"
                )
            bounds.append(value)
        return bounds[0] or 0, bounds[1]
    if isinstance(key, bool) or not isinstance(key, int):
        raise InvalidQueryError("index", f"expected a non-negative int, got {type(key).__name__}")
    if key < 0:
        raise InvalidQueryError("index", f"negative indexes are not supported: {key}")
    return key, key + 1
