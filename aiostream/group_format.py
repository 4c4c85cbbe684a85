"""The stored form of a group, and what a storage that merges groups itself needs of it.

Python owns the merge rule (:meth:`aiostream.activity.AggregatedActivity.append`); a
storage may apply it on its server (Redis does, in one Lua script) only as a copy held
to it by a property test (``tests/redis/test_merge.py``). Everything that copy needs
comes from here: the format version, the separators and the id layout below (the Lua
scripts get them filled in when they are loaded, see
:mod:`aiostream.storage.redis._scripts`), the pieces of one group (:class:`MergeParts`,
built by :meth:`aiostream.serializers.AggregatedActivitySerializer.merge_parts`) and
the declaration that a class keeps the stock rule (:func:`inherit_declared`, behind the
``server_mergeable`` attribute of aggregators, group classes and serializers).

Format 2, the one written::

    [2,"<group>",created,updated,seen,read,minimized,[row<US>row<US>...]]<RS>ids[<RS>let go]

The times are microseconds since the epoch (``null`` when unset), ``row`` one activity
in its stored form without the version element, oldest first, ``US`` is
:data:`ROW_SEPARATOR` where JSON would have a ``,`` and ``RS`` is :data:`IDS_SEPARATOR`,
followed by the activities' ids (:data:`ID_WIDTH` hex digits each, in the same order)
and, when the group has let activities go past its cap, ``RS`` and their ids (the same
width, ascending), so that a repeated delivery of one is never counted again.
JSON escapes every control character, so neither separator can occur anywhere else: a
server splits a stored group on them without parsing any JSON, and readers turn the
``US`` back into ``,`` and decode the whole group in one call. Every payload of a group
starts with :func:`group_header`. Version 1 (the same array, plain JSON, without the
ids) is still read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar, NamedTuple

from aiostream.ids import ID_KEY_WIDTH, TIME_BITS

__all__ = [
    "Capabilities",
    "DeclaresCapabilities",
    "GROUP_FORMAT_VERSION",
    "GROUP_OPENING",
    "IDS_SEPARATOR",
    "ID_WIDTH",
    "MergeParts",
    "ROW_SEPARATOR",
    "TIME_WIDTH",
    "group_header",
    "ids_match",
    "inherit_declared",
    "join_group",
    "split_group",
    "split_ids",
    "to_json",
]

GROUP_FORMAT_VERSION = 2
"""Version of the stored group format written (version 1 is still read)."""
ROW_SEPARATOR = "\x1f"
"""Separates the stored activities of a group (a ``,`` in its JSON)."""
IDS_SEPARATOR = "\x1e"
"""Separates a group's JSON from its activities' ids."""
GROUP_OPENING = f"[{GROUP_FORMAT_VERSION},"
"""What every payload in this format starts with."""
ID_WIDTH = ID_KEY_WIDTH
"""Hex digits of an id (activity or group: :func:`aiostream.ids.id_to_key`)."""
TIME_WIDTH = TIME_BITS // 4
"""Hex digits of the time half of an id, its first ones: a group's id is its
``updated_at`` (in microseconds) in these, then a digest of the group key. Each half
fits a double exactly, which is how Lua compares ids."""

_FIELDS = 8  # elements of a decoded group: version, group, 4 times, minimized, rows
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class MergeParts(NamedTuple):
    """A group's stored form and its pieces (see
    :meth:`aiostream.serializers.AggregatedActivitySerializer.merge_parts`)."""

    header: str
    """What every stored payload of the group starts with: :func:`group_header`."""
    payload: str
    """The whole stored form."""
    items: list[tuple[int, int, str]]
    """``(id, time in microseconds, stored form)`` of each activity, oldest first."""


def group_header(group: str) -> str:
    """The start of every stored payload of ``group``: ``[2,"<group>",`` in JSON."""
    return f"{GROUP_OPENING}{_dumps(group)},"


def join_group(
    header: str, numbers: str, rows: Iterable[str], ids: Iterable[str], let_go: str = ""
) -> str:
    """A group's payload from its pieces.

    Args:
        header: :func:`group_header` of the group.
        numbers: ``created,updated,seen,read,minimized`` in JSON.
        rows: The stored activities (JSON), oldest first.
        ids: Their ids, :data:`ID_WIDTH` hex digits each, in the same order.
        let_go: The ids of the activities the group let go, ascending, joined.
    """
    tail = f"{''.join(ids)}{IDS_SEPARATOR}{let_go}" if let_go else "".join(ids)
    return f"{header}{numbers},[{ROW_SEPARATOR.join(rows)}]]{IDS_SEPARATOR}{tail}"


def split_group(payload: str) -> tuple[str, str | None]:
    """``(body, tail)`` of a payload in this format: the body's JSON is :func:`to_json`
    of it, the tail holds the ids (see :func:`split_ids`; None: the payload has no ids,
    it is malformed)."""
    body, separator, tail = payload.partition(IDS_SEPARATOR)
    return body, tail if separator else None


def split_ids(tail: str | None) -> tuple[str | None, str]:
    """``(ids, let go)`` of a tail from :func:`split_group`: :data:`ID_WIDTH` hex digits
    per activity held, and those of the activities let go (``""`` when none)."""
    if tail is None:
        return None, ""
    ids, _, let_go = tail.partition(IDS_SEPARATOR)
    return ids, let_go


def to_json(bodies: str) -> str:
    """The JSON of a body from :func:`split_group` (or of several joined with ``,``)."""
    return bodies.replace(ROW_SEPARATOR, ",")


def ids_match(data: Any, ids: str | None, let_go: str = "") -> bool:
    """Whether a decoded group in this format has as many stored ids as activities, and
    whole ids of the activities it let go, no more than it counts as minimized."""
    return (
        ids is not None
        and len(let_go) % ID_WIDTH == 0
        and isinstance(data, list)
        and len(data) == _FIELDS
        and data[0] == GROUP_FORMAT_VERSION
        and isinstance(data[6], int)
        and len(let_go) // ID_WIDTH <= data[6]
        and isinstance(data[7], list)
        and len(ids) == ID_WIDTH * len(data[7])
    )


def inherit_declared(cls: type[Any], flag: str, rule: Iterable[str]) -> None:
    """Set a declared capability of a new subclass (call it from ``__init_subclass__``).

    ``cls`` keeps the value of ``flag`` it inherits, unless a class that comes before
    the one declaring that value in its MRO (``cls`` itself, or a mixin) defines one of
    the attributes in ``rule``, the ones the capability depends on: then ``cls.<flag>``
    is False. Whoever overrides them without a thought never gets the capability
    silently; a class that keeps the rule says so by setting ``flag`` in its own body.

    Example::

        class LoggingAggregator(RecentVerbAggregator):
            server_mergeable = True  # merge() below keeps the stock rule

            def merge(self, aggregated, activities):
                log.debug("merging %d activities", len(activities))
                return super().merge(aggregated, activities)
    """
    mro = cls.__mro__

    def owner(name: str) -> int:
        return next((i for i, base in enumerate(mro) if name in vars(base)), len(mro))

    declared = owner(flag)
    if any(owner(name) < declared for name in rule):
        setattr(cls, flag, False)


Capabilities = dict[str, tuple[str, ...]]
"""``{flag: the attributes it depends on}`` (see :class:`DeclaresCapabilities`)."""


class DeclaresCapabilities:
    """Base of the classes whose capabilities are declared: for each ``flag: rule`` of
    ``capability_rules``, a subclass gets :func:`inherit_declared` ``(cls, flag, rule)``
    when it is created."""

    __slots__ = ()
    capability_rules: ClassVar[Capabilities] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for flag, rule in cls.capability_rules.items():
            inherit_declared(cls, flag, rule)
