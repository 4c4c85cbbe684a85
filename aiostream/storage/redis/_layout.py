"""Key names, member encodings and range bounds of the Redis layout.

Everything one feed stores lives under keys that share the hash tag
``{<prefix><feed key>}``, so every multi-key script and pipeline on one feed runs in
a single Redis Cluster slot. ``<feed key>`` is the feed's formatted ``key_format``;
:func:`aiostream.feeds.base.format_key` escapes ``{``, ``}`` and ``:`` in user ids, so a
user id can never move a key into another feed's tag.

=============================== ======== ===============================================
key                             type     content
=============================== ======== ===============================================
``{P K}:t``                     zset     timeline: member = 26-hex id, score 0
``{P K}:g``                     zset     groups: member = 26-hex group id + group name
``{P K}:gd``                    hash     group name -> 26-hex id, version, ``|``, payload
``{P K}:us`` / ``{P K}:ur``     set      unseen / unread markers: 26-hex group ids
``{P act:N}``                   hash     activity storage shard N: 26-hex id -> payload
=============================== ======== ===============================================

Why this shape:

* Ids are up to 104 bits, far beyond a double's 53-bit mantissa, so scores cannot carry
  them (Stream Framework's issue #66). All scores are 0 and the member *is* the id in
  fixed-width hex: Redis orders equal-score members by bytes, which is numeric order,
  and ``ZRANGEBYLEX`` with ``[``/``(`` bounds gives exact ``activity_id`` filters.
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
from aiostream.ids import MAX_ID, checked_key
from aiostream.query import Query

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
    """``ZRANGEBYLEX`` ``(min, max)`` of a non-empty query over 26-hex members."""
    low = "-" if query.low <= 0 else "[" + checked_key(query.low)
    high = "+" if query.high >= MAX_ID else "[" + checked_key(query.high)
    return low, high


def group_bounds(query: Query) -> tuple[str, str]:
    """``ZRANGEBYLEX`` ``(min, max)`` of a non-empty query over ``hex id + name`` members.

    ``hex(low)`` sorts before every member whose id is ``low``; the upper bound is
    exclusive at ``hex(high + 1)`` because ``hex(high) + name`` sorts after ``hex(high)``.
    """
    low = "-" if query.low <= 0 else "[" + checked_key(query.low)
    high = "+" if query.high >= MAX_ID else "(" + checked_key(query.high + 1)
    return low, high
