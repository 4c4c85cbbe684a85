"""Lua scripts: the atomic multi-key steps of the Redis layout.

The per-feed scripts take the keys of one feed (one hash tag, so one cluster slot) and
touch only those. :data:`ADD_TO_TIMELINES` and :data:`REMOVE_FROM_TIMELINES` take
many feeds' timelines (on a cluster: one slot's); :data:`STORE_AND_ADD` and
:data:`READ_TIMELINE` also reach activity shards, so they run on standalone servers only,
where keys of different slots may meet. :data:`TIMELINES_CROSS_SLOT` is the cluster's
fanout script: sent to one node with keys of many slots that node serves (Redis 7+).

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
    "MERGE_GROUPS",
    "READ_GROUPS",
    "READ_TIMELINE",
    "READ_TIMELINES",
    "RELEASE_LEASE",
    "REMOVE_FROM_TIMELINES",
    "RENEW_LEASE",
    "REPLACE_GROUPS",
    "STORE_AND_ADD",
    "TIMELINES_CROSS_SLOT",
    "TRIM_GROUPS",
    "WRITE_GROUPS",
    "Script",
    "unsupported_flags",
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

    def queue(
        self, pipeline: Any, keys: Sequence[str], args: Sequence[Any], **options: Any
    ) -> None:
        """Append an ``EVALSHA`` to a pipeline (see the module docstring for NOSCRIPT).

        ``options`` go to redis-py (``target_nodes=`` on a cluster pipeline).
        """
        pipeline.execute_command("EVALSHA", self.sha, len(keys), *keys, *args, **options)

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:8]}>"


STORE_AND_ADD = Script(
    "store_and_add",
    _CHUNKED_CALL
    + """
-- feed.add on a standalone server: store the activities and add them to the
-- timelines in one command.
-- KEYS[1..t]: timelines, then one activity shard per entry (in entry order).
-- ARGV[1]: max_length (-1: no trim). ARGV[2]: t. ARGV[3..]: id, payload, id, ...
local maxlen = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local members = {}
for j = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[t + (j - 1) / 2], ARGV[j], ARGV[j + 1])
  members[#members + 1] = 0
  members[#members + 1] = ARGV[j]
end
for i = 1, t do
  chunked('ZADD', KEYS[i], members)
  if maxlen >= 0 then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -maxlen - 1) end
end
return t
""",
)

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

TIMELINES_CROSS_SLOT = Script(
    "timelines_cross_slot",
    # Redis 7+, clusters only. Declared keys must share one slot even with this flag,
    # so the timelines come in ARGV: they may sit in many slots, all served by the node
    # the call is sent to (the storage groups them so); a key of another node makes the
    # script fail, and the storage then falls back to one command per feed.
    "#!lua flags=allow-cross-slot-keys\n"
    + _CHUNKED_CALL
    + """
-- ARGV[1]: 'add' or 'remove'. ARGV[2]: max_length (-1: no trim; add only).
-- ARGV[3]: n, the number of ids. ARGV[4 .. n+3]: 26-hex ids. ARGV[n+4 ..]: timelines.
local maxlen = tonumber(ARGV[2])
local stop = -maxlen - 1
local n = tonumber(ARGV[3])
local args = {}
if ARGV[1] == 'add' then
  for i = 4, n + 3 do
    args[#args + 1] = 0
    args[#args + 1] = ARGV[i]
  end
  for i = n + 4, #ARGV do
    chunked('ZADD', ARGV[i], args)
    if maxlen >= 0 then redis.call('ZREMRANGEBYRANK', ARGV[i], 0, stop) end
  end
else
  for i = 4, n + 3 do args[#args + 1] = ARGV[i] end
  for i = n + 4, #ARGV do chunked('ZREM', ARGV[i], args) end
end
return #ARGV - n - 3
""",
)


def unsupported_flags(exc: BaseException) -> bool:
    """Whether an error says the server cannot run :data:`TIMELINES_CROSS_SLOT`
    (Redis before 7.0 does not know script flags)."""
    text = str(exc).lower()
    return any(word in text for word in ("flag", "shebang", "compiling", "unexpected symbol"))


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

# A page of a timeline with its payloads, for READ_TIMELINE and READ_TIMELINES.
# numbers: min, max, offset, count, descending and the number of activity shards,
# separated by spaces; opening: the shards' name up to their number. Returns id,
# payload, id, payload, ... of the live entries: an entry whose payload is gone (the
# activity was deleted) is skipped, removed from the timeline, and the page is filled
# from the entries after it; the offset counts live entries. The shards are named
# here rather than passed as KEYS, and the numbers travel as one argument: on this, the
# hot read of every page, each argument costs the client more to send than the server
# to parse. Standalone servers only: the shards live in other slots.
_READ_TIMELINE_FUNCTION = (
    _RANGE_FUNCTION
    + _CHUNKED_CALL
    + """
local function read_timeline(key, numbers, opening)
  local min, max, offset, count, descending, shards = string.match(
    numbers, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
  shards = tonumber(shards)
  -- With 16 shards (or 8, 4, 2, 1) the shard is the last hex digit (modulo the count):
  -- read from its byte, it costs a fraction of parsing six digits.
  local by_last_digit = 16 % shards == 0
  local names, out, n = {}, {}, 0
  -- skip: live entries still to pass over; want: entries still wanted (-1: all);
  -- at: where the next range starts (entries passed over that stay).
  local skip, want, at = tonumber(offset), tonumber(count), 0
  while true do
    local ask = want < 0 and -1 or skip + want
    local ids = range(key, min, max, at, ask, descending)
    local dead = {}
    for _, id in ipairs(ids) do
      local shard
      if by_last_digit then
        local b = string.byte(id, -1)
        shard = (b < 58 and b - 48 or b - 87) % shards
      else
        shard = tonumber(string.sub(id, -6), 16) % shards
      end
      local name = names[shard]
      if not name then
        name = opening .. shard .. '}'
        names[shard] = name
      end
      if skip > 0 then
        if redis.call('HEXISTS', name, id) == 1 then
          skip = skip - 1
          at = at + 1
        else
          dead[#dead + 1] = id
        end
      else
        local payload = redis.call('HGET', name, id)
        if payload then
          out[n + 1] = id
          out[n + 2] = payload
          n = n + 2
          at = at + 1
          if want > 0 then want = want - 1 end
        else
          dead[#dead + 1] = id
        end
      end
    end
    if #dead == 0 then return out end
    chunked('ZREM', key, dead)
    -- The range ran out, or was the whole feed: nothing after it to fill the page from.
    if ask < 0 or #ids < ask or want == 0 then return out end
  end
end
"""
)

READ_TIMELINE = Script(
    "read_timeline",
    _READ_TIMELINE_FUNCTION
    + """
-- KEYS[1]: timeline. ARGV[1]: numbers, ARGV[2]: opening (see read_timeline).
return read_timeline(KEYS[1], ARGV[1], ARGV[2])
""",
)

READ_TIMELINES = Script(
    "read_timelines",
    _READ_TIMELINE_FUNCTION
    + """
-- Many READ_TIMELINE calls in one (pages read at once by many tasks: see
-- aiostream.storage.redis.batching). KEYS: timelines. ARGV[1]: opening, ARGV[1 + k]:
-- numbers of KEYS[k]. Returns one reply per timeline, an error reply for a read that
-- failed (the others are not affected).
local pages = {}
for k = 1, #KEYS do
  local ok, page = pcall(read_timeline, KEYS[k], ARGV[k + 1], ARGV[1])
  if ok then
    pages[k] = page
  elseif type(page) == 'table' and page.err then
    pages[k] = page
  else
    pages[k] = {err = tostring(page)}
  end
end
return pages
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
-- Then per change: name, expected version ('' = must not exist), new 26-hex id
-- ('' = delete), new data (version '|' payload).
-- Compare every group first and write nothing on a mismatch: that is the
-- compare-and-set concurrent writers of one feed rely on.
local function version_of(data)
  if not data then return '' end
  return string.sub(data, 27, string.find(data, '|', 27, true) - 1)
end
for i = 3, #ARGV, 4 do
  if version_of(redis.call('HGET', KEYS[2], ARGV[i])) ~= ARGV[i + 1] then return 0 end
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

MERGE_GROUPS = Script(
    "merge_groups",
    _TRIM_GROUPS_FUNCTION
    + """
-- An aggregated add in one step: AggregatedActivity.append of the new activities to
-- their stored groups, done here instead of a read and a compare-and-set.
-- KEYS: groups, group data, unseen, unread.
-- ARGV[1]: track markers ('1'/'0'). ARGV[2]: max_length (-1: no trim).
-- ARGV[3]: activities a group keeps (the oldest beyond it count as minimized).
-- Then per group: name, header, id and payload to store if the group does not exist,
-- n, then n times: activity id (26 hex), time (decimal microseconds), stored activity,
-- in id order.
-- Payloads are aiostream.serializers' group format 2:
--   header created,updated,seen,read,minimized,[row<US>row...]]<RS>id id ...
-- (header = '[2,"<name>",'; US = \x1f, RS = \x1e: JSON never holds them raw.)
-- Returns {-1}, having written nothing, when a stored group is in another format;
-- else {n, then per written group: created (1/0), name, data}.
local US, RS = string.char(31), string.char(30)
local track = ARGV[1] == '1'
local maxlen = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])

local function older(a, b)
  -- a < b for 26-hex ids, by value (string '<' follows the server's locale).
  local ta, tb = string.sub(a, 1, 13), string.sub(b, 1, 13)
  if ta ~= tb then return tonumber(ta, 16) < tonumber(tb, 16) end
  return tonumber(string.sub(a, 14), 16) < tonumber(string.sub(b, 14), 16)
end

local function parse(data, header)
  local bar = string.find(data, '|', 27, true)
  if not bar then return nil end
  local at = bar + 1 + #header
  if string.sub(data, bar + 1, at - 1) ~= header then return nil end
  local sep = string.find(data, RS, at, true)
  if not sep or string.sub(data, sep - 2, sep - 1) ~= ']]' then return nil end
  local created, updated, seen, read, minimized, first = string.match(
    data, '^([^,]*),([^,]*),([^,]*),([^,]*),(%d+),%[()', at)
  if not first then return nil end
  local rows, last, pos = {}, sep - 3, first
  while true do
    local e = string.find(data, US, pos, true)
    if not e or e > last then
      rows[#rows + 1] = string.sub(data, pos, last)
      break
    end
    rows[#rows + 1] = string.sub(data, pos, e - 1)
    pos = e + 1
  end
  if #data - sep ~= 26 * #rows then return nil end
  local ids = {}
  for k = 1, #rows do ids[k] = string.sub(data, sep + 26 * k - 25, sep + 26 * k) end
  return {
    id = string.sub(data, 1, 26), version = tonumber(string.sub(data, 27, bar - 1)),
    created = created, updated = updated, seen = seen, read = read,
    minimized = tonumber(minimized), rows = rows, ids = ids,
  }
end

-- First every group is read and checked: nothing is written unless all can merge.
local groups = {}
local i = 4
while i <= #ARGV do
  local g = {name = ARGV[i], header = ARGV[i + 1], new_id = ARGV[i + 2],
             payload = ARGV[i + 3], first = i + 5, n = tonumber(ARGV[i + 4])}
  i = g.first + 3 * g.n
  local data = redis.call('HGET', KEYS[2], g.name)
  if data then
    g.stored = parse(data, g.header)
    if not g.stored then return {-1} end
  end
  groups[#groups + 1] = g
end

local out = {0}
for _, g in ipairs(groups) do
  local id, data
  local stored = g.stored
  if not stored then
    id, data = g.new_id, g.new_id .. '1|' .. g.payload
  else
    local ids, rows = stored.ids, stored.rows
    local created, updated, minimized = stored.created, stored.updated, stored.minimized
    local changed, raised = false, false
    for k = g.first, g.first + 3 * g.n - 1, 3 do
      local new, time = ARGV[k], ARGV[k + 1]
      local lo, hi = 1, #ids + 1
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if older(ids[mid], new) then lo = mid + 1 else hi = mid end
      end
      if ids[lo] ~= new then
        table.insert(ids, lo, new)
        table.insert(rows, lo, ARGV[k + 2])
        changed = true
        local t = tonumber(time)
        if created == 'null' or t < tonumber(created) then created = time end
        if updated == 'null' or t > tonumber(updated) then updated, raised = time, true end
        if #ids > cap then
          table.remove(ids, 1)
          table.remove(rows, 1)
          minimized = minimized + 1
        end
      end
    end
    if changed then
      -- The id is the update time (13 hex digits), then the digest of the name.
      id = stored.id
      if raised then
        id = string.format('%013x', tonumber(updated)) .. string.sub(stored.id, 14)
      end
      data = id .. string.format('%d', stored.version + 1) .. '|' .. g.header
        .. created .. ',' .. updated .. ',' .. stored.seen .. ',' .. stored.read .. ','
        .. string.format('%d', minimized) .. ',[' .. table.concat(rows, US) .. ']]' .. RS
        .. table.concat(ids)
      redis.call('ZREM', KEYS[1], stored.id .. g.name)
      redis.call('SREM', KEYS[3], stored.id)
      redis.call('SREM', KEYS[4], stored.id)
    end
  end
  if data then
    redis.call('HSET', KEYS[2], g.name, data)
    redis.call('ZADD', KEYS[1], 0, id .. g.name)
    if track then
      redis.call('SADD', KEYS[3], id)
      redis.call('SADD', KEYS[4], id)
    end
    out[1] = out[1] + 1
    out[#out + 1] = stored and 0 or 1
    out[#out + 1] = g.name
    out[#out + 1] = data
  end
end
if out[1] > 0 and maxlen >= 0 then trim_groups(maxlen) end
return out
""",
)

REPLACE_GROUPS = Script(
    "replace_groups",
    """
-- Groups rewritten in place (update_groups). KEYS[1]: the feed's group data hash.
-- ARGV: per group: name, expected version, new payload. A group still at the expected
-- version gets the payload under its own id with the next version: its place in the
-- feed and its markers stay as they are. Returns 1 (written) or 0 (changed or gone
-- since it was read) per group.
local out = {}
for i = 1, #ARGV, 3 do
  local data = redis.call('HGET', KEYS[1], ARGV[i])
  local written = 0
  if data then
    local bar = string.find(data, '|', 27, true)
    if bar and string.sub(data, 27, bar - 1) == ARGV[i + 1] then
      local version = string.format('%d', tonumber(ARGV[i + 1]) + 1)
      redis.call('HSET', KEYS[1], ARGV[i], string.sub(data, 1, 26) .. version .. '|' .. ARGV[i + 2])
      written = 1
    end
  end
  out[#out + 1] = written
end
return out
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

RENEW_LEASE = Script(
    "renew_lease",
    """
-- KEYS[1]: the lease. ARGV[1]: owner, ARGV[2]: ttl in ms. 1 if the owner held it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
""",
)

RELEASE_LEASE = Script(
    "release_lease",
    """
-- KEYS[1]: the lease. ARGV[1]: owner. Deleted only if the owner still holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
""",
)

ALL_SCRIPTS = (
    STORE_AND_ADD,
    ADD_TO_TIMELINES,
    REMOVE_FROM_TIMELINES,
    READ_TIMELINE,
    READ_TIMELINES,
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
