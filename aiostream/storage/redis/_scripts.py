"""Lua scripts: the atomic multi-key steps of the Redis layout.

The per-feed scripts take the keys of one feed (one hash tag, so one cluster slot) and
touch only those. :data:`ADD_TO_TIMELINES` and :data:`REMOVE_FROM_TIMELINES` take
many feeds' timelines (on a cluster: one slot's); :data:`STORE_AND_ADD` and
:data:`READ_TIMELINE` also reach activity shards, so they run on standalone servers only,
where keys of different slots may meet. :data:`TIMELINES_CROSS_SLOT` and
:data:`MERGE_GROUPS_CROSS_SLOT` are the cluster's fanout scripts: sent to one node with
the feeds of many slots that node serves (Redis 7+).

The Lua lives in ``lua/*.lua`` beside this module (package resources), with the
functions several scripts share in ``lua/lib/``. Scripts are put together when this
module is imported: the shared functions they use, then their own file, with every
``{{NAME}}`` placeholder replaced by a constant of the Python module that owns it (the
id width, the group format's separators and version from :mod:`aiostream.group_format`,
the width of timeline members and the shard digits from
:mod:`aiostream.storage.redis._layout`, :data:`UNPACK`), so the Lua never hard-codes
them. :data:`MERGE_GROUPS` is a copy of
:meth:`aiostream.activity.AggregatedActivity.append` on the server, held to it by a
property test.

Scripts run with ``EVALSHA``. A ``NOSCRIPT`` reply (server restarted, ``SCRIPT FLUSH``,
a new cluster node) makes :class:`Script` fall back to ``EVAL``, which also caches the
script; inside a pipeline the storage loads the scripts with ``SCRIPT LOAD`` on every
primary and sends the pipeline again (every pipelined write is idempotent). This is what
redis-py's ``register_script`` does, without its ``SCRIPT EXISTS`` round trip before
every pipeline.

``redis.call`` arguments are unpacked in chunks of :data:`UNPACK` because Lua's C stack
holds about 8,000 values.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from redis.exceptions import NoScriptError

from aiostream.group_format import (
    GROUP_FORMAT_VERSION,
    ID_WIDTH,
    IDS_SEPARATOR,
    ROW_SEPARATOR,
    TIME_WIDTH,
)
from aiostream.storage.redis._layout import GROUP_KEY_SUFFIXES, MEMBER_BYTES, SHARD_MASK

UNPACK = 4000


def _lua_string(text: str) -> str:
    """A Lua string literal of ``text`` (decimal escapes for all but printable ASCII)."""
    return (
        '"'
        + "".join(
            chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03d}" for b in text.encode()
        )
        + '"'
    )


_CONSTANTS: dict[str, str] = {
    "GROUP_FORMAT_VERSION": str(GROUP_FORMAT_VERSION),
    "GROUP_KEY_SUFFIXES": "{" + ", ".join(map(_lua_string, GROUP_KEY_SUFFIXES)) + "}",
    "IDS_SEPARATOR": _lua_string(IDS_SEPARATOR),
    "ID_WIDTH": str(ID_WIDTH),
    "MEMBER_BYTES": str(MEMBER_BYTES),
    "ROW_SEPARATOR": _lua_string(ROW_SEPARATOR),
    "SHARD_DIGITS": str(SHARD_MASK.bit_length() // 4),
    "TIME_WIDTH": str(TIME_WIDTH),
    "UNPACK": str(UNPACK),
}
"""What each ``{{NAME}}`` in the Lua files stands for, in Lua syntax."""

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
_LUA = files("aiostream.storage.redis") / "lua"


def _read(path: str) -> str:
    """A Lua file of the package, its placeholders filled in.

    Raises:
        KeyError: a placeholder that ``_CONSTANTS`` does not define.
    """
    text = (_LUA / path).read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda m: _CONSTANTS[m.group(1)], text)


def _load(name: str, *lib: str) -> Script:
    """The script of ``lua/<name>.lua``, after the shared functions ``lua/lib/<lib>.lua``
    it uses (in that order; a ``#!lua`` line stays first)."""
    main = _read(f"{name}.lua")
    shebang = ""
    if main.startswith("#!"):
        first, _, main = main.partition("\n")
        shebang = first + "\n"
    return Script(name, shebang + "".join(_read(f"lib/{f}.lua") for f in lib) + main)


class Script:
    """A Lua script called by SHA1, falling back to ``EVAL``.

    Args:
        name: Short name for error messages.
        source: The Lua source.
    """

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(
        self, client: Any, keys: Sequence[str], args: Sequence[Any], **options: Any
    ) -> Any:
        """Run on ``client`` (a ``Redis`` or ``RedisCluster``) and return the reply
        (``options`` go to redis-py: ``target_nodes=`` on a cluster)."""
        try:
            return await client.execute_command(
                "EVALSHA", self.sha, len(keys), *keys, *args, **options
            )
        except NoScriptError:
            return await client.execute_command(
                "EVAL", self.source, len(keys), *keys, *args, **options
            )

    def queue(
        self, pipeline: Any, keys: Sequence[str], args: Sequence[Any], **options: Any
    ) -> None:
        """Append an ``EVALSHA`` to a pipeline (see the module docstring for NOSCRIPT).

        ``options`` go to redis-py (``target_nodes=`` on a cluster pipeline).
        """
        pipeline.execute_command("EVALSHA", self.sha, len(keys), *keys, *args, **options)

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:8]}>"


STORE_AND_ADD = _load("store_and_add", "chunked", "members")
ADD_TO_TIMELINES = _load("add_to_timelines", "chunked")
TIMELINES_CROSS_SLOT = _load("timelines_cross_slot", "chunked")


def unsupported_flags(exc: BaseException) -> bool:
    """Whether an error says the server cannot run the :data:`CROSS_SLOT_SCRIPTS`
    (Redis before 7.0 does not know script flags)."""
    text = str(exc).lower()
    return any(word in text for word in ("flag", "shebang", "compiling", "unexpected symbol"))


REMOVE_FROM_TIMELINES = _load("remove_from_timelines", "chunked")
MIGRATE_TIMELINE = _load("migrate_timeline", "chunked", "members")
READ_TIMELINE = _load("read_timeline", "range", "chunked", "members", "read_timeline")
READ_TIMELINES = _load("read_timelines", "range", "chunked", "members", "read_timeline")
READ_MERGED = _load("read_merged", "range", "chunked", "members", "read_timeline", "hex_order")
READ_GROUPS = _load("read_groups", "range")
WRITE_GROUPS = _load("write_groups", "trim_groups")
MERGE_GROUPS = _load("merge_groups", "trim_groups", "hex_order", "merge_feeds")
MERGE_GROUPS_CROSS_SLOT = _load(
    "merge_groups_cross_slot", "trim_groups", "hex_order", "merge_feeds"
)
REPLACE_GROUPS = _load("replace_groups")
TRIM_GROUPS = _load("trim_groups", "trim_groups")
GROUP_INDEX = _load("group_index")
MARK_GROUPS = _load("mark_groups", "chunked")
COUNT_MARKERS = _load("count_markers")
RENEW_LEASE = _load("renew_lease")
RELEASE_LEASE = _load("release_lease")
LOAD_MAXIMA = _load("load_maxima")
RAISE_MAXIMA = _load("raise_maxima", "chunked")
RENEW_STATES = _load("renew_states")
PUBLISH_UPDATES = _load("publish_updates")

ALL_SCRIPTS = (
    LOAD_MAXIMA,
    RAISE_MAXIMA,
    RENEW_STATES,
    STORE_AND_ADD,
    ADD_TO_TIMELINES,
    REMOVE_FROM_TIMELINES,
    MIGRATE_TIMELINE,
    READ_TIMELINE,
    READ_TIMELINES,
    READ_MERGED,
    READ_GROUPS,
    WRITE_GROUPS,
    MERGE_GROUPS,
    REPLACE_GROUPS,
    TRIM_GROUPS,
    GROUP_INDEX,
    MARK_GROUPS,
    COUNT_MARKERS,
    RENEW_LEASE,
    RELEASE_LEASE,
)

CROSS_SLOT_SCRIPTS = (TIMELINES_CROSS_SLOT, MERGE_GROUPS_CROSS_SLOT)
"""The cluster's fanout scripts: loaded on their own, as Redis 6 refuses their flags."""
