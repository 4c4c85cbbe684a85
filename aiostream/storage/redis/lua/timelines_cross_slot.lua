#!lua flags=allow-cross-slot-keys
-- Redis 7+, clusters only. Declared keys must share one slot even with this flag, so
-- the timelines come in ARGV: they may sit in many slots, all served by the node the
-- call is sent to (the storage groups them so); a key of another node makes the script
-- fail, and the storage then falls back to one command per feed.
-- ARGV[1]: 'add' or 'remove'. ARGV[2]: max_length (-1: no trim; add only).
-- ARGV[3]: n, the number of members. ARGV[4 .. n+3]: members. ARGV[n+4 ..]: timelines.
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
