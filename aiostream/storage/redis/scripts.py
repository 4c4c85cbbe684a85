"""Lua scripts: the atomic multi-key steps of the Redis layout.

Each script touches only the keys passed in ``KEYS``. The per-feed scripts take keys of
one feed (one hash tag, so one cluster slot); :data:`ADD_TO_TIMELINES` and
:data:`REMOVE_FROM_TIMELINES` take any number of timelines and are called with one
slot's keys on a cluster; :data:`READ_TIMELINE` reads the activity shards too, so it is
only used on a standalone server, where keys of different slots may meet.

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
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

__all__ = [
    "ADD_TO_TIMELINES",
    "ALL_SCRIPTS",
    "COUNT_MARKERS",
    "GROUP_INDEX",
    "MARK_GROUPS",
    "READ_GROUPS",
    "READ_TIMELINE",
    "REMOVE_FROM_TIMELINES",
    "TRIM_GROUPS",
    "WRITE_GROUPS",
    "Script",
]

UNPACK = 4000

_CHUNKED_CALL = f"""
local function chunked(cmd, key, args)
  local n = #args
  for i = 1, n, {UNPACK} do
    redis.call(cmd, key, unpack(args, i, math.min(i + {UNPACK} - 1, n)))
  end
end
"""

# KEYS[1..4] = groups zset, group data hash, unseen set, unread set.
_TRIM_GROUPS_FUNCTION = """
local function trim_groups(maxlen)
  local total = redis.call('ZCARD', KEYS[1])
  if total <= maxlen then return end
  local last = total - maxlen - 1
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, last)) do
    local id = string.sub(member, 1, 26)
    redis.call('HDEL', KEYS[2], string.sub(member, 27))
    redis.call('SREM', KEYS[3], id)
    redis.call('SREM', KEYS[4], id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, last)
end
"""

_RANGE_FUNCTION = """
local function range(key, min, max, offset, count, descending)
  if descending == '1' then
    return redis.call('ZREVRANGEBYLEX', key, max, min, 'LIMIT', offset, count)
  end
  return redis.call('ZRANGEBYLEX', key, min, max, 'LIMIT', offset, count)
end
"""


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

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run on ``client`` (a ``Redis`` or ``RedisCluster``) and return the reply."""
        try:
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.execute_command("EVAL", self.source, len(keys), *keys, *args)

    def queue(self, pipeline: Any, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Append an ``EVALSHA`` to a pipeline (see the module docstring for NOSCRIPT)."""
        pipeline.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:8]}>"


ADD_TO_TIMELINES = Script(
    "add_to_timelines",
    _CHUNKED_CALL
    + """
-- KEYS: timelines. ARGV[1]: max_length (-1: no trim). ARGV[2..]: 26-hex ids.
-- Fanout writes one id to a thousand keys: that case skips building a table.
local maxlen = tonumber(ARGV[1])
local stop = -maxlen - 1
if #ARGV == 2 then
  local id = ARGV[2]
  for i = 1, #KEYS do
    redis.call('ZADD', KEYS[i], 0, id)
    if maxlen >= 0 then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, stop) end
  end
  return #KEYS
end
local members = {}
for i = 2, #ARGV do
  members[#members + 1] = 0
  members[#members + 1] = ARGV[i]
end
for i = 1, #KEYS do
  chunked('ZADD', KEYS[i], members)
  if maxlen >= 0 then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, stop) end
end
return #KEYS
""",
)

REMOVE_FROM_TIMELINES = Script(
    "remove_from_timelines",
    _CHUNKED_CALL
    + """
-- KEYS: timelines. ARGV: 26-hex ids.
for i = 1, #KEYS do
  chunked('ZREM', KEYS[i], ARGV)
end
return #KEYS
""",
)

READ_TIMELINE = Script(
    "read_timeline",
    _RANGE_FUNCTION
    + """
-- KEYS[1]: timeline, KEYS[2..]: activity shards (standalone servers only).
-- ARGV: min, max, offset, count, descending. Returns id, payload, id, payload, ...
-- leaving out ids whose payload is gone.
local ids = range(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
local shards = #KEYS - 1
local out = {}
for _, id in ipairs(ids) do
  local payload = redis.call('HGET', KEYS[2 + tonumber(string.sub(id, -6), 16) % shards], id)
  if payload then
    out[#out + 1] = id
    out[#out + 1] = payload
  end
end
return out
""",
)

READ_GROUPS = Script(
    "read_groups",
    _RANGE_FUNCTION
    + """
-- KEYS: groups, group data, unseen, unread. ARGV: min, max, offset, count, descending,
-- markers. Returns member, data[, unseen, unread], ...
local members = range(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
local markers = ARGV[6] == '1'
local out = {}
for _, member in ipairs(members) do
  local data = redis.call('HGET', KEYS[2], string.sub(member, 27))
  if data then
    out[#out + 1] = member
    out[#out + 1] = data
    if markers then
      local id = string.sub(member, 1, 26)
      out[#out + 1] = redis.call('SISMEMBER', KEYS[3], id)
      out[#out + 1] = redis.call('SISMEMBER', KEYS[4], id)
    end
  end
end
return out
""",
)

WRITE_GROUPS = Script(
    "write_groups",
    _TRIM_GROUPS_FUNCTION
    + """
-- KEYS: groups, group data, unseen, unread.
-- ARGV[1]: track markers ('1'/'0'). ARGV[2]: max_length (-1: no trim).
-- Then per change: name, expected 26-hex id ('' = must not exist), new 26-hex id
-- ('' = delete), new payload.
-- Compare every group first and write nothing on a mismatch: that is the
-- compare-and-set concurrent writers of one feed rely on.
for i = 3, #ARGV, 4 do
  local current = redis.call('HGET', KEYS[2], ARGV[i])
  local current_id = current and string.sub(current, 1, 26) or ''
  if current_id ~= ARGV[i + 1] then return 0 end
end
local track = ARGV[1] == '1'
for i = 3, #ARGV, 4 do
  local name, new_id = ARGV[i], ARGV[i + 2]
  local current = redis.call('HGET', KEYS[2], name)
  if current then
    local old_id = string.sub(current, 1, 26)
    redis.call('ZREM', KEYS[1], old_id .. name)
    redis.call('SREM', KEYS[3], old_id)
    redis.call('SREM', KEYS[4], old_id)
  end
  if new_id ~= '' then
    redis.call('HSET', KEYS[2], name, new_id .. ARGV[i + 3])
    redis.call('ZADD', KEYS[1], 0, new_id .. name)
    if track then
      redis.call('SADD', KEYS[3], new_id)
      redis.call('SADD', KEYS[4], new_id)
    end
  elseif current then
    redis.call('HDEL', KEYS[2], name)
  end
end
local maxlen = tonumber(ARGV[2])
if maxlen >= 0 then trim_groups(maxlen) end
return 1
""",
)

TRIM_GROUPS = Script(
    "trim_groups",
    _TRIM_GROUPS_FUNCTION
    + """
-- KEYS: groups, group data, unseen, unread. ARGV[1]: max_length.
trim_groups(tonumber(ARGV[1]))
return 1
""",
)

GROUP_INDEX = Script(
    "group_index",
    """
-- KEYS[1]: groups. ARGV: min, max lex bounds selecting one id. Returns the rank from
-- the newest, or -1.
local found = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, 1)
if #found == 0 then return -1 end
return redis.call('ZREVRANK', KEYS[1], found[1])
""",
)

MARK_GROUPS = Script(
    "mark_groups",
    _CHUNKED_CALL
    + """
-- KEYS: unseen, unread. ARGV[1]: clear unseen, ARGV[2]: clear unread ('1'/'0'),
-- ARGV[3]: '1' = every group, else ARGV[4..] are 26-hex group ids.
local ids = {}
for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
for k = 1, 2 do
  if ARGV[k] == '1' then
    if ARGV[3] == '1' then
      redis.call('DEL', KEYS[k])
    elseif #ids > 0 then
      chunked('SREM', KEYS[k], ids)
    end
  end
end
return 1
""",
)

COUNT_MARKERS = Script(
    "count_markers",
    """
-- KEYS: unseen, unread. Both counts from one moment.
return {redis.call('SCARD', KEYS[1]), redis.call('SCARD', KEYS[2])}
""",
)

ALL_SCRIPTS = (
    ADD_TO_TIMELINES,
    REMOVE_FROM_TIMELINES,
    READ_TIMELINE,
    READ_GROUPS,
    WRITE_GROUPS,
    TRIM_GROUPS,
    GROUP_INDEX,
    MARK_GROUPS,
    COUNT_MARKERS,
)
