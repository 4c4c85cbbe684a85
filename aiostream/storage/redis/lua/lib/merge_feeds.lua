-- merge_feeds(feeds, first, served): the body of MERGE_GROUPS and of
-- MERGE_GROUPS_CROSS_SLOT, an aggregated add in one step: AggregatedActivity.append of
-- the new activities to their stored groups, done here instead of a read and a
-- compare-and-set. A copy of that Python rule, held to it by tests/redis/test_merge.py;
-- its constants come from aiostream.group_format. The same merges go into every feed:
-- a fanout chunk is one script.
-- feeds: per feed, the table {groups zset, group data hash, unseen set, unread set}.
-- first: where the merges begin in ARGV. served: nil, or a function telling whether
-- this node serves all the keys of a feed now (a feed it does not is left alone).
-- ARGV[1]: track markers ('1'/'0'). ARGV[2]: max_length (-1: no trim).
-- ARGV[3]: activities a group keeps (the oldest beyond it count as minimized).
-- ARGV[4]: '1' to return the written groups, '0' for their count only.
-- From ARGV[first], per group: name, header, id and payload to store if the group does
-- not exist, n, then n times: activity id (hex), time (decimal microseconds), stored
-- activity, in id order.
-- Stored data is the id, the decimal version, '|', then the payload in
-- aiostream.group_format's format {{GROUP_FORMAT_VERSION}}:
--   header created,updated,seen,read,minimized,[row<US>row...]]<RS>id id ...[<RS>let go]
-- (let go: the ids of the activities dropped past the cap, ascending, never counted twice)
-- (header = '[{{GROUP_FORMAT_VERSION}},"<name>",'; JSON never holds US or RS raw).
-- Returns, per feed in order: -2 when served says no, -1 when one of its stored groups
-- is in another format (both having written nothing to that feed); else n, the groups
-- written, followed (when ARGV[4] is '1') by n times: created (1/0), name, data.
local US, RS = {{ROW_SEPARATOR}}, {{IDS_SEPARATOR}}
local ID_WIDTH, TIME_WIDTH = {{ID_WIDTH}}, {{TIME_WIDTH}}
local track = ARGV[1] == '1'
local maxlen = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local results = ARGV[4] == '1'
local SUFFIXES = {{GROUP_KEY_SUFFIXES}}

local function parse(data, header)
  local bar = string.find(data, '|', ID_WIDTH + 1, true)
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
  -- The ids held, then (after a second RS, when any) those of the activities let go.
  local ids_end, let_go = #data, ''
  local sep2 = string.find(data, RS, sep + 1, true)
  if sep2 then ids_end, let_go = sep2 - 1, string.sub(data, sep2 + 1) end
  if ids_end - sep ~= ID_WIDTH * #rows or #let_go % ID_WIDTH ~= 0 then return nil end
  local ids = {}
  for k = 1, #rows do
    ids[k] = string.sub(data, sep + ID_WIDTH * (k - 1) + 1, sep + ID_WIDTH * k)
  end
  return {
    id = string.sub(data, 1, ID_WIDTH), version = tonumber(string.sub(data, ID_WIDTH + 1, bar - 1)),
    created = created, updated = updated, seen = seen, read = read,
    minimized = tonumber(minimized), rows = rows, ids = ids, let_go = let_go,
  }
end

-- Where hex id key is or would go among the ascending ids of let_go (a count of ids
-- before it), and whether it is there: AggregatedActivity._dropped_index.
local function let_go_index(let_go, key)
  local lo, hi = 0, #let_go / ID_WIDTH
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if newer(key, string.sub(let_go, mid * ID_WIDTH + 1, (mid + 1) * ID_WIDTH)) then
      lo = mid + 1
    else
      hi = mid
    end
  end
  return lo, string.sub(let_go, lo * ID_WIDTH + 1, (lo + 1) * ID_WIDTH) == key
end

local merges = {}


-- The stored groups of the feed whose keys are k, parsed; nil when one cannot merge.
local function read(k)
  local stored = {}
  for j, g in ipairs(merges) do
    local data = redis.call('HGET', k[2], g.name)
    if data then
      stored[j] = parse(data, g.header)
      if not stored[j] then return nil end
    else
      stored[j] = false
    end
  end
  return stored
end

-- The new id and data of group g merged into stored (nil: nothing changes).
local function merged(g, stored)
  if not stored then return g.new_id, g.new_id .. '1|' .. g.payload end
  local ids, rows, let_go = stored.ids, stored.rows, stored.let_go
  local created, updated, minimized = stored.created, stored.updated, stored.minimized
  local changed, raised = false, false
  for k = g.first, g.first + 3 * g.n - 1, 3 do
    local new, time = ARGV[k], ARGV[k + 1]
    local lo, hi = 1, #ids + 1
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if newer(new, ids[mid]) then lo = mid + 1 else hi = mid end
    end
    -- Held, or counted and let go: a repeated delivery changes nothing.
    local _, gone = let_go_index(let_go, new)
    if ids[lo] ~= new and not gone then
      table.insert(ids, lo, new)
      table.insert(rows, lo, ARGV[k + 2])
      changed = true
      local t = tonumber(time)
      if created == 'null' or t < tonumber(created) then created = time end
      if updated == 'null' or t > tonumber(updated) then updated, raised = time, true end
      if #ids > cap then
        local dropped = table.remove(ids, 1)
        table.remove(rows, 1)
        minimized = minimized + 1
        local at = let_go_index(let_go, dropped) * ID_WIDTH
        let_go = string.sub(let_go, 1, at) .. dropped .. string.sub(let_go, at + 1)
      end
    end
  end
  if not changed then return nil end
  -- The id is the update time (TIME_WIDTH hex digits), then the digest of the name.
  local id = stored.id
  if raised then
    id = string.format('%0{{TIME_WIDTH}}x', tonumber(updated)) .. string.sub(stored.id, TIME_WIDTH + 1)
  end
  return id, id .. string.format('%d', stored.version + 1) .. '|' .. g.header
    .. created .. ',' .. updated .. ',' .. stored.seen .. ',' .. stored.read .. ','
    .. string.format('%d', minimized) .. ',[' .. table.concat(rows, US) .. ']]' .. RS
    .. table.concat(ids) .. (let_go ~= '' and RS .. let_go or '')
end

-- The four keys of the feed whose hash tag is tag.
local function feed_keys(tag)
  return {tag .. SUFFIXES[1], tag .. SUFFIXES[2], tag .. SUFFIXES[3], tag .. SUFFIXES[4]}
end

local function merge_feeds(feeds, first, served)
  local i = first
  while i <= #ARGV do
    local g = {name = ARGV[i], header = ARGV[i + 1], new_id = ARGV[i + 2],
               payload = ARGV[i + 3], first = i + 5, n = tonumber(ARGV[i + 4])}
    i = g.first + 3 * g.n
    merges[#merges + 1] = g
  end
  local out = {}
  for _, k in ipairs(feeds) do
    if served and not served(k) then
      out[#out + 1] = -2
    else
      -- Every group of a feed is read and checked first: nothing is written to a feed
      -- unless all its groups can merge.
      local stored = read(k)
      if not stored then
        out[#out + 1] = -1
      else
        local count_at = #out + 1
        out[count_at] = 0
        for j, g in ipairs(merges) do
          local old = stored[j]
          local id, data = merged(g, old)
          if data then
            if old then
              redis.call('ZREM', k[1], old.id .. g.name)
              redis.call('SREM', k[3], old.id)
              redis.call('SREM', k[4], old.id)
            end
            redis.call('HSET', k[2], g.name, data)
            redis.call('ZADD', k[1], 0, id .. g.name)
            if track then
              redis.call('SADD', k[3], id)
              redis.call('SADD', k[4], id)
            end
            out[count_at] = out[count_at] + 1
            if results then
              out[#out + 1] = old and 0 or 1
              out[#out + 1] = g.name
              out[#out + 1] = data
            end
          end
        end
        if out[count_at] > 0 and maxlen >= 0 then trim_groups(k, maxlen) end
      end
    end
  end
  return out
end
