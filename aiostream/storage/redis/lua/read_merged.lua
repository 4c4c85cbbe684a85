-- READ_MERGED: the newest entries of a feed and of other feeds (sources) together, as
-- reading each one's first page (read_timeline) and merging them would give, in one
-- step. A source's entries are no newer than its maximum in a set of maxima (the
-- microsecond of its newest activity), so sources are read newest maximum first, and
-- only until the next one's maximum is older than the page's last entry: no later
-- source can change the page. Standalone servers only (it reaches timelines and
-- activity shards of other slots, as READ_TIMELINE does).
-- ARGV[1]: numbers as read_timeline takes them (min max 0 stop 1 shards: newest
-- first). ARGV[2]: the activity shards' opening. ARGV[3]: what precedes a feed key in
-- its timeline's name ('{' and the prefix; '}:t' follows it). ARGV[4]: the feed key.
-- ARGV[5]: the maxima (a sorted set). ARGV[6], ARGV[7], ARGV[8]: JSON arrays, one item
-- per source: its feed key, its member in the maxima, and the key of a state that must
-- exist for the source to count ('' for none). A source with no maximum holds nothing.
-- Returns the sources whose state exists as an array (position, value, ...), then hex
-- id, payload, ... of the page: at most stop entries, newest first.
local min, max, stop, shards = string.match(ARGV[1], '^(%S+) (%S+) 0 (%d+) 1 (%S+)$')
stop = tonumber(stop)
local opening, before, maxima = ARGV[2], ARGV[3], ARGV[5]
local TIME_WIDTH = {{TIME_WIDTH}}

-- newer(a, b): whether hex id a is above hex id b (both {{ID_WIDTH}} digits). String
-- comparison follows the server's locale: it is used only if it orders the hex digits
-- as numbers, else each half is compared by value (each fits a double exactly).
local HEX = '0123456789abcdef'
local plain = true
for i = 1, 15 do
  if not (string.sub(HEX, i, i) < string.sub(HEX, i + 1, i + 1)) then plain = false end
end
local function newer(a, b)
  if plain then return a > b end
  local ta, tb = string.sub(a, 1, TIME_WIDTH), string.sub(b, 1, TIME_WIDTH)
  if ta ~= tb then return tonumber(ta, 16) > tonumber(tb, 16) end
  return tonumber(string.sub(a, TIME_WIDTH + 1), 16) > tonumber(string.sub(b, TIME_WIDTH + 1), 16)
end

-- The page so far: ids newest first (at most stop), their payloads, and which are in.
local ids, payloads, held = {}, {}, {}
local function offer(page)
  for i = 1, #page, 2 do
    local id = page[i]
    if not held[id] and (#ids < stop or newer(id, ids[#ids])) then
      local lo, hi = 1, #ids + 1
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if newer(ids[mid], id) then lo = mid + 1 else hi = mid end
      end
      table.insert(ids, lo, id)
      held[id] = true
      payloads[id] = page[i + 1]
      if #ids > stop then
        local out = table.remove(ids)
        held[out], payloads[out] = nil, nil
      end
    end
  end
end

local function timeline(key) return before .. key .. '}:t' end

offer(read_timeline(timeline(ARGV[4]), ARGV[1], opening))

local keys, members, conditions = cjson.decode(ARGV[6]), cjson.decode(ARGV[7]), cjson.decode(ARGV[8])
local met, scores = {}, {}
for first = 1, #members, {{UNPACK}} do
  local last = math.min(first + {{UNPACK}} - 1, #members)
  local found = redis.call('ZMSCORE', maxima, unpack(members, first, last))
  for offset = 1, last - first + 1 do
    local s = first + offset - 1
    local condition, counts = conditions[s], true
    if condition ~= '' then
      local value = redis.call('GET', condition)
      counts = value ~= false
      if counts then
        met[#met + 1] = s
        met[#met + 1] = value
      end
    end
    if counts and found[offset] then scores[s] = tonumber(found[offset]) end
  end
end

-- Sources in order of (maximum descending, position ascending), a batch at a time: the
-- next `size` after (after_score, after_s), by insertion into a short sorted list.
local function before_in_order(s1, v1, s2, v2)
  return v1 > v2 or (v1 == v2 and s1 < s2)
end
local function next_batch(size, after_s, after_score)
  local batch = {}
  for s = 1, #members do
    local v = scores[s]
    if v and (after_s == nil or before_in_order(after_s, after_score, s, v)) then
      local n = #batch
      if n < size or before_in_order(s, v, batch[n], scores[batch[n]]) then
        local at = n + 1
        while at > 1 and before_in_order(s, v, batch[at - 1], scores[batch[at - 1]]) do
          at = at - 1
        end
        table.insert(batch, at, s)
        if #batch > size then batch[#batch] = nil end
      end
    end
  end
  return batch
end

-- Only entries above the page's last one can still enter it: once the page is full,
-- each source is read from its newest down to that entry.
local rest = string.format(' 0 %d 1 %s', stop, shards)
local size, last_s, last_score = stop, nil, nil
while true do
  local batch = next_batch(size, last_s, last_score)
  if #batch == 0 then break end
  local done = false
  for _, s in ipairs(batch) do
    local floor = #ids == stop and ids[stop] or nil
    if floor and scores[s] < tonumber(string.sub(floor, 1, TIME_WIDTH), 16) then
      done = true
      break
    end
    local low = min
    if floor and (min == '-' or newer(floor, string.sub(min, 2))) then low = '(' .. floor end
    offer(read_timeline(timeline(keys[s]), low .. ' ' .. max .. rest, opening))
    last_s, last_score = s, scores[s]
  end
  if done then break end
  size = size * 2
end

local out = {met}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = payloads[id]
end
return out
