-- KEYS[1]: a set of maxima (a sorted set). ARGV[1]: a JSON array of members, one
-- argument however many (the client packs each argument at a cost; cjson does not).
-- Returns member, score, member, score... for the members that have a score.
local members = cjson.decode(ARGV[1])
local found = {}
for first = 1, #members, {{UNPACK}} do
  local last = math.min(first + {{UNPACK}} - 1, #members)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(members, first, last))
  for offset = 1, last - first + 1 do
    local score = scores[offset]
    if score then
      found[#found + 1] = members[first + offset - 1]
      found[#found + 1] = score
    end
  end
end
return found
