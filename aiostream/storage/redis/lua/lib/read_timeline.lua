-- A page of a timeline with its payloads, for READ_TIMELINE and READ_TIMELINES (needs
-- range, chunked and members). numbers: min, max (bounds over hex ids), offset, count,
-- descending and the number of activity shards, separated by spaces; opening: the
-- shards' name up to their number. Returns hex id, payload, hex id, payload, ... of the
-- live entries: an entry whose payload is gone (the activity was deleted) is skipped,
-- removed from the timeline, and the page is filled from the entries after it; the
-- offset counts live entries. So is the second member of one id (its hex member beside
-- its binary one, in a timeline the migration has not rewritten yet). The shards are
-- named here rather than passed as KEYS, and the numbers travel as one argument: on
-- this, the hot read of every page, each argument costs the client more to send than
-- the server to parse. Standalone servers only: the shards live in other slots.
local function read_timeline(key, numbers, opening)
  local min, max, offset, count, descending, shards = string.match(
    numbers, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
  shards = tonumber(shards)
  -- Bounds over members, unless the timeline still holds hex ones (not migrated yet:
  -- its oldest member says so, as hex members sort below the binary ones written since).
  if #min > 1 or #max > 1 then
    local oldest = redis.call('ZRANGE', key, 0, 0)[1]
    if not oldest or #oldest ~= {{ID_WIDTH}} then
      min, max = member_bound(min), member_bound(max)
    end
  end
  -- With 16 shards (or 8, 4, 2, 1) the shard is the last hex digit (modulo the count):
  -- read from its byte, it costs a fraction of parsing {{SHARD_DIGITS}} digits.
  local by_last_digit = 16 % shards == 0
  local names, out, n, seen = {}, {}, 0, {}
  -- skip: live entries still to pass over; want: entries still wanted (-1: all);
  -- at: where the next range starts (entries passed over that stay).
  local skip, want, at = tonumber(offset), tonumber(count), 0
  while true do
    local ask = want < 0 and -1 or skip + want
    local members = range(key, min, max, at, ask, descending)
    local dead = {}
    for _, member in ipairs(members) do
      local id = member_hex(member)
      local shard
      if by_last_digit then
        local b = string.byte(id, -1)
        shard = (b < 58 and b - 48 or b - 87) % shards
      else
        shard = tonumber(string.sub(id, -{{SHARD_DIGITS}}), 16) % shards
      end
      local name = names[shard]
      if not name then
        name = opening .. shard .. '}'
        names[shard] = name
      end
      if seen[id] then
        dead[#dead + 1] = member
      elseif skip > 0 then
        if redis.call('HEXISTS', name, id) == 1 then
          skip = skip - 1
          at = at + 1
          seen[id] = true
        else
          dead[#dead + 1] = member
        end
      else
        local payload = redis.call('HGET', name, id)
        if payload then
          out[n + 1] = id
          out[n + 2] = payload
          n = n + 2
          at = at + 1
          if want > 0 then want = want - 1 end
          seen[id] = true
        else
          dead[#dead + 1] = member
        end
      end
    end
    if #dead == 0 then return out end
    chunked('ZREM', key, dead)
    -- The range ran out, or was the whole feed: nothing after it to fill the page from.
    if ask < 0 or #members < ask or want == 0 then return out end
  end
end
