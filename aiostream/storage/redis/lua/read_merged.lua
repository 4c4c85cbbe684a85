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
-- ARGV[5]: the maxima (a sorted set). ARGV[6], ARGV[7]: JSON arrays, one item per
-- source: its feed key, its member in the maxima. ARGV[8]: a JSON array of position (in
-- those arrays), key, ...: a state that must exist for the source at that position to
-- count. A source with no maximum holds nothing.
-- Returns the sources whose state exists as an array (position, value, ...), then hex
-- id, payload, ... of the page: at most stop entries, newest first.
local min, max, stop, shards = string.match(ARGV[1], '^(%S+) (%S+) 0 (%d+) 1 (%S+)$')
stop = tonumber(stop)
local opening, before, maxima = ARGV[2], ARGV[3], ARGV[5]
local TIME_WIDTH = {{TIME_WIDTH}}

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

local keys, members, conditional = cjson.decode(ARGV[6]), cjson.decode(ARGV[7]), cjson.decode(ARGV[8])
-- Sources whose state is not set do not count; the others by member.
local met, excluded = {}, {}
for i = 1, #conditional, 2 do
  local s = conditional[i]
  local value = redis.call('GET', conditional[i + 1])
  if value then
    met[#met + 1] = s
    met[#met + 1] = value
  else
    excluded[s] = true
  end
end
local scored = {}
for first = 1, #members, {{UNPACK}} do
  local last = math.min(first + {{UNPACK}} - 1, #members)
  local found = redis.call('ZMSCORE', maxima, unpack(members, first, last))
  for s = first, last do
    local score = found[s - first + 1]
    if score and not excluded[s] then scored[#scored + 1] = {s, tonumber(score)} end
  end
end

-- The sources with a maximum in order: newest maximum first (then by position). A read
-- usually needs only the first stop + 1, picked by insertion into a short list; past
-- them (a sparse page), all are sorted once.
local function before_in_order(x, y)
  return x[2] > y[2] or (x[2] == y[2] and x[1] < y[1])
end
local order = {}
for _, pair in ipairs(scored) do
  local n = #order
  if n <= stop or before_in_order(pair, order[n]) then
    local at = n + 1
    while at > 1 and before_in_order(pair, order[at - 1]) do at = at - 1 end
    table.insert(order, at, pair)
    if #order > stop + 1 then order[#order] = nil end
  end
end
local taken, all_sorted = 0, #order == #scored
local function next_source()
  taken = taken + 1
  if taken > #order and not all_sorted then
    table.sort(scored, before_in_order)
    order, all_sorted = scored, true
  end
  local pair = order[taken]
  if pair then return pair[1], pair[2] end
end

-- Only entries above the page's last one can still enter it: once the page is full,
-- each source is read from its newest down to that entry.
local rest = string.format(' 0 %d 1 %s', stop, shards)
while true do
  local s, newest = next_source()
  if not s then break end
  local floor = #ids == stop and ids[stop] or nil
  if floor and newest < tonumber(string.sub(floor, 1, TIME_WIDTH), 16) then break end
  local low = min
  if floor and (min == '-' or newer(floor, string.sub(min, 2))) then low = '(' .. floor end
  offer(read_timeline(timeline(keys[s]), low .. ' ' .. max .. rest, opening))
end

local out = {met}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = payloads[id]
end
return out
