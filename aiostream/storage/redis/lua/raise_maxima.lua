-- KEYS[1]: a set of maxima (a sorted set); KEYS[2]: its members in the order they
-- joined (a list: a reader that knows the first n learns the others from it).
-- ARGV: value, member, value, member, ... Each member keeps the largest value it was
-- ever given; a member new to the set is appended to the list first. Returns member,
-- score, ... of the members that had a score before.
local members = {}
for i = 2, #ARGV, 2 do members[#members + 1] = ARGV[i] end
local joined, before = {}, {}
for first = 1, #members, {{UNPACK}} do
  local last = math.min(first + {{UNPACK}} - 1, #members)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(members, first, last))
  for offset = 1, last - first + 1 do
    -- (members are distinct: the client sends a mapping's keys)
    local member = members[first + offset - 1]
    if scores[offset] then
      before[#before + 1] = member
      before[#before + 1] = scores[offset]
    else
      joined[#joined + 1] = member
    end
  end
end
if #joined > 0 then chunked('RPUSH', KEYS[2], joined) end
for first = 1, #ARGV, {{UNPACK}} do
  redis.call('ZADD', KEYS[1], 'GT', unpack(ARGV, first, math.min(first + {{UNPACK}} - 1, #ARGV)))
end
return before
