"""Key names, member encodings and range bounds of the Redis layout.

Everything one feed stores lives under keys that share the hash tag
``{<prefix><feed key>}``, so every multi-key script and pipeline on one feed runs in
a single Redis Cluster slot. ``<feed key>`` is the feed's formatted ``key_format``;
:func:`aiostream.ids.format_key` escapes ``{``, ``}`` and ``:`` in user ids, so a
user id can never move a key into another feed's tag.

=============================== ======== ===============================================
key                             type     content
=============================== ======== ===============================================
``{P K}:t``                     zset     timeline: member = 13-byte id, score 0
``{P K}:g``                     zset     groups: member = 26-hex group id + group name
``{P K}:gd``                    hash     group name -> 26-hex id, version, ``|``, payload
``{P K}:us`` / ``{P K}:ur``     set      unseen / unread markers: 26-hex group ids
``{P act:N}``                   hash     activity storage shard N: 26-hex id -> payload
=============================== ======== ===============================================

Why this shape:

* Ids are up to 104 bits, far beyond a double's 53-bit mantissa, so scores cannot carry
  them (Stream Framework's issue #66). All scores are 0 and the member *is* the id at
  fixed width: Redis orders equal-score members by bytes, which is numeric order, and
  ``ZRANGEBYLEX`` with ``[``/``(`` bounds gives exact ``activity_id`` filters. Timeline
  members, the most numerous thing stored, are the id's 13 bytes, big-endian
  (:func:`timeline_member`); everything else names ids in 26 hex digits, which is also
  how the scripts take and return them. Timelines written before held hex members:
  reads still take them (and drop the second member of an id, :func:`member_id`), and
  ``python -m aiostream.storage.redis migrate`` rewrites them.
* A group's zset member starts with its id (ordering, filters) and ends with its name,
  so a range read yields names without another lookup, and trimming knows which
  ``gd`` fields to drop. ``gd`` values start with the id (to find the old member when a
  group is rewritten) and the decimal version the compare-and-set in
  :mod:`aiostream.storage.redis._scripts` checks, then ``|`` and the payload.
* The activity storage is shared by every feed (an activity is stored once, however
  many feeds show it) and split over ``activity_shards`` hashes by the id's low bits,
  so no single key grows without bound and, on a cluster, the shards spread over
  nodes. The shard count must be the same for every client of one prefix.
* The same names are used on a standalone server and on a cluster, so data can move
  between the two with ``MIGRATE`` / ``redis-cli --cluster import``.
"""

from __future__ import annotations

from aiostream.exceptions import ConfigurationError
from aiostream.ids import ID_KEY_WIDTH, MAX_ID, checked_key
from aiostream.query import Query

MEMBER_BYTES = ID_KEY_WIDTH // 2
"""Bytes of a timeline member: an id's 104 bits."""

SHARD_MASK = 0xFFFFFF
"""The shard of an id is ``(id & SHARD_MASK) % shards``: the low 24 bits are the last six
hex digits of its key, which the Lua scripts read with ``string.sub(id, -6)``."""


def check_prefix(prefix: str) -> str:
    """Validate a key prefix (it goes inside hash tags, so no braces).

    Raises:
        ConfigurationError: the prefix is not a str or contains ``{`` or ``}``.
    """
    if not isinstance(prefix, str):
        raise ConfigurationError(f"prefix must be a str, got {type(prefix).__name__}")
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(f"prefix must not contain '{{' or '}}': {prefix!r}")
    return prefix


def timeline_member(activity_id: int) -> bytes:
    """The member of a (checked) id in a timeline: its :data:`MEMBER_BYTES`, big-endian."""
    return activity_id.to_bytes(MEMBER_BYTES, "big")


def member_id(member: bytes | str) -> int:
    """The id of a timeline member: :data:`MEMBER_BYTES` bytes, or the 26 hex digits of a
    timeline written before binary members."""
    if len(member) == ID_KEY_WIDTH:
        return int(member, 16)
    return int.from_bytes(member, "big")  # type: ignore[arg-type]


def shard_of(activity_id: int, shards: int) -> int:
    """Activity storage shard of an id."""
    return (activity_id & SHARD_MASK) % shards


def activity_shard_keys(prefix: str, shards: int) -> list[str]:
    """Names of the activity storage shards, by shard number."""
    return [f"{activity_shard_opening(prefix)}{n}}}" for n in range(shards)]


def activity_shard_opening(prefix: str) -> str:
    """The name of every activity storage shard up to its number (it ends with ``}``)."""
    return f"{{{prefix}act:"


GROUP_KEY_SUFFIXES = (":g", ":gd", ":us", ":ur")
"""What follows a feed's hash tag in the names of its groups, group data, unseen and
unread keys (the group scripts' order)."""


class FeedKeys:
    """The keys of one feed.

    Args:
        prefix: Storage-wide key prefix.
        key: The feed key.
    """

    __slots__ = ("group_data", "groups", "timeline", "unread", "unseen")

    def __init__(self, prefix: str, key: str) -> None:
        tag = f"{{{prefix}{key}}}"
        self.timeline = tag + ":t"
        self.groups, self.group_data, self.unseen, self.unread = (
            tag + suffix for suffix in GROUP_KEY_SUFFIXES
        )

    @property
    def group_keys(self) -> list[str]:
        """The keys the group scripts take, in the order they expect them."""
        return [self.groups, self.group_data, self.unseen, self.unread]

    @property
    def all(self) -> list[str]:
        """Every key of the feed."""
        return [self.timeline, self.groups, self.group_data, self.unseen, self.unread]


def timeline_bounds(query: Query) -> tuple[str, str]:
    """``ZRANGEBYLEX`` ``(min, max)`` of a non-empty query over hex ids (the read scripts
    turn them into bounds over members)."""
    low = "-" if query.low <= 0 else "[" + checked_key(query.low)
    high = "+" if query.high >= MAX_ID else "[" + checked_key(query.high)
    return low, high


def member_bounds(query: Query) -> tuple[bytes, bytes]:
    """``ZRANGEBYLEX`` ``(min, max)`` of a non-empty query over timeline members."""
    low = b"-" if query.low <= 0 else b"[" + timeline_member(query.low)
    high = b"+" if query.high >= MAX_ID else b"[" + timeline_member(query.high)
    return low, high


def group_bounds(query: Query) -> tuple[str, str]:
    """``ZRANGEBYLEX`` ``(min, max)`` of a non-empty query over ``hex id + name`` members.

    ``hex(low)`` sorts before every member whose id is ``low``; the upper bound is
    exclusive at ``hex(high + 1)`` because ``hex(high) + name`` sorts after ``hex(high)``.
    """
    low = "-" if query.low <= 0 else "[" + checked_key(query.low)
    high = "+" if query.high >= MAX_ID else "(" + checked_key(query.high + 1)
    return low, high
