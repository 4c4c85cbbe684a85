-- feed.add on a standalone server: store the activities and add them to the
-- timelines in one command.
-- KEYS[1..t]: timelines, then one activity shard per entry (in entry order).
-- ARGV[1]: max_length (-1: no trim). ARGV[2]: t. ARGV[3..]: member, payload, member, ...
-- (the shards' fields are the members' hex ids).
-- An add never overwrites a stored activity: when one is stored with another payload,
-- nothing is written and the reply is, per such activity, its hex id and stored payload
-- (else it is t).
local maxlen = tonumber(ARGV[1])
local t = tonumber(ARGV[2])
local differ = {}
for j = 3, #ARGV, 2 do
  local stored = redis.call('HGET', KEYS[t + (j - 1) / 2], member_hex(ARGV[j]))
  if stored and stored ~= ARGV[j + 1] then
    differ[#differ + 1] = member_hex(ARGV[j])
    differ[#differ + 1] = stored
  end
end
if #differ > 0 then return differ end
local members = {}
for j = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[t + (j - 1) / 2], member_hex(ARGV[j]), ARGV[j + 1])
  members[#members + 1] = 0
  members[#members + 1] = ARGV[j]
end
for i = 1, t do
  chunked('ZADD', KEYS[i], members)
  if maxlen >= 0 then redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -maxlen - 1) end
end
return t
