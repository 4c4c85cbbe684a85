-- KEYS: timelines. ARGV[1]: max_length (-1: no trim). ARGV[2..]: members.
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
