-- READ_MERGED: the newest entries of a feed and of other feeds (sources) together, as
-- reading each one's first page (read_timeline) and merging them would give, in one
-- step. A source's entries are no newer than its maximum in a set of maxima (the
-- microsecond of its newest activity; its member there is its feed key), and a source
-- with no maximum holds nothing to merge. So sources are read newest maximum first,
-- and only until the next one's maximum is older than the page's last entry: no later
-- source can change the page. The caller names as sources only the feeds it knows to
-- be in the set; the reply tells it which joined the set since (from the set's list of
-- members in joining order), with the entries of each that may reach the page when
-- they are few, so that it can merge those it follows (else read again with them).
-- Standalone servers only (it reaches timelines and activity shards of other slots,
-- as READ_TIMELINE does).
-- ARGV[1]: numbers as read_timeline takes them (min max 0 stop 1 shards: newest
-- first). ARGV[2]: the activity shards' opening. ARGV[3]: what precedes a feed key in
-- its timeline's name ('{' and the prefix; '}:t' follows it). ARGV[4]: the feed key.
-- ARGV[5]: the maxima (a sorted set); ARGV[6]: its members in joining order (a list).
-- ARGV[7]: a JSON array of the sources' keys. ARGV[8]: how many members the caller
-- knows (the first ones of the list). ARGV[9]: how many joined members it reads at most.
-- ARGV[10]: what follows a member's key in the key of the timeline read for it.
-- ARGV[11]: a set of floors by member ('' for none): a source gives only its entries of
-- a later microsecond than its floor (its entries newest first, so a prefix), and one
-- whose maximum is not past its floor gives none.
-- Returns where the members it reports start (ARGV[8], or 0), those members (an
-- array), per member the hex id, payload, ... of its entries that may reach the page
-- (an array of arrays; false when more joined than ARGV[9]), then hex id, payload, ...
-- of the page: at most stop entries, newest first.
local min, max, stop, shards = string.match(ARGV[1], '^(%S+) (%S+) 0 (%d+) 1 (%S+)$')
stop = tonumber(stop)
local opening, before, maxima = ARGV[2], ARGV[3], ARGV[5]
local TIME_WIDTH = {{TIME_WIDTH}}

-- The page so far: ids newest first (at most stop), their payloads, and which are in.
local ids, payloads, held = {}, {}, {}
local read = {}  -- the sources read (by key)
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
local suffix, floors = ARGV[10], ARGV[11]
local function floors_of(members)
  if floors == '' or #members == 0 then return {} end
  return redis.call('ZMSCORE', floors, unpack(members))
end

offer(read_timeline(timeline(ARGV[4]), ARGV[1], opening))

-- Whether a source of this maximum can still reach the page; if so, it is read from
-- its newest entry down to the page's last one (all of its page while the page is not
-- full yet).
local rest = string.format(' 0 %d 1 %s', stop, shards)
local function reaches(newest)
  return #ids < stop or newest >= tonumber(string.sub(ids[stop], 1, TIME_WIDTH), 16)
end
-- A source's entries that may reach the page: from its newest down to the page's last,
-- and only those of a later microsecond than its floor.
local function source_page(key, above)
  local low = min
  if #ids == stop then
    local floor = ids[stop]
    if min == '-' or newer(floor, string.sub(min, 2)) then low = '(' .. floor end
  end
  local page = read_timeline(timeline(key .. suffix), low .. ' ' .. max .. rest, opening)
  if not above then return page end
  for i = 1, #page, 2 do
    if tonumber(string.sub(page[i], 1, TIME_WIDTH), 16) <= above then
      local kept = {}
      for j = 1, i - 1 do kept[j] = page[j] end
      return kept
    end
  end
  return page
end
-- Whether a source of this maximum and floor gives anything at all.
local function gives(newest, above)
  return not above or newest > above
end

-- The members the caller does not know: those after the first ARGV[8], or all of them
-- if the list is shorter (it was emptied since).
local since = tonumber(ARGV[8])
if redis.call('LLEN', ARGV[6]) < since then since = 0 end
local function page()
  local joined = redis.call('LRANGE', ARGV[6], since, -1)
  -- A few of them (at most ARGV[9]) are read apart, each as a source would be: the
  -- caller merges those it follows, so that it need not read again.
  local apart = false
  if #joined <= math.min(tonumber(ARGV[9]), {{UNPACK}}) then  -- (one unpack below)
    apart = {}
    local scores = #joined > 0 and redis.call('ZMSCORE', maxima, unpack(joined)) or {}
    local lows = floors_of(joined)
    for i, member in ipairs(joined) do
      local score, above = scores[i], lows[i] and tonumber(lows[i])
      if read[member] or not (score and reaches(tonumber(score)))
          or not gives(tonumber(score), above) then
        apart[i] = {}
      else
        apart[i] = source_page(member, above)
      end
    end
  end
  local out = {since, joined, apart}
  for _, id in ipairs(ids) do
    out[#out + 1] = id
    out[#out + 1] = payloads[id]
  end
  return out
end

local sources = cjson.decode(ARGV[7])
local scored = {}
for first = 1, #sources, {{UNPACK}} do
  local last = math.min(first + {{UNPACK}} - 1, #sources)
  local chunk = {unpack(sources, first, last)}
  local found, lows = redis.call('ZMSCORE', maxima, unpack(chunk)), floors_of(chunk)
  for s = first, last do
    local score, above = found[s - first + 1], lows[s - first + 1]
    above = above and tonumber(above)
    if score and gives(tonumber(score), above) then
      scored[#scored + 1] = {sources[s], tonumber(score), above}
    end
  end
end

-- Newest maximum first: a read usually needs only the first stop + 1, picked by
-- insertion into a short list; past them (a sparse page), all are sorted once.
local function before_in_order(x, y) return x[2] > y[2] end
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
-- Reads the sources of list in its order while they reach the page; false once one
-- does not (the page is then settled).
local function read_in_order(list)
  for _, pair in ipairs(list) do
    if not reaches(pair[2]) then return false end
    if not read[pair[1]] then
      read[pair[1]] = true
      offer(source_page(pair[1], pair[3]))
    end
  end
  return true
end
if read_in_order(order) and #order < #scored then
  table.sort(scored, before_in_order)
  read_in_order(scored)
end
return page()
