-- KEYS: groups, group data, unseen, unread.
-- ARGV[1]: track markers ('1'/'0'). ARGV[2]: max_length (-1: no trim).
-- Then per change: name, expected version ('' = must not exist), new hex id
-- ('' = delete), new data (version '|' payload), keeps markers ('1': the new id
-- takes the old id's unseen / unread markers, as a removal does; '0': both set).
-- Compare every group first and write nothing on a mismatch: that is the
-- compare-and-set concurrent writers of one feed rely on.
local function version_of(data)
  if not data then return '' end
  return string.sub(data, {{ID_WIDTH}} + 1, string.find(data, '|', {{ID_WIDTH}} + 1, true) - 1)
end
for i = 3, #ARGV, 5 do
  if version_of(redis.call('HGET', KEYS[2], ARGV[i])) ~= ARGV[i + 1] then return 0 end
end
local track = ARGV[1] == '1'
for i = 3, #ARGV, 5 do
  local name, new_id = ARGV[i], ARGV[i + 2]
  local current = redis.call('HGET', KEYS[2], name)
  local unseen, unread = 1, 1
  if current then
    local old_id = string.sub(current, 1, {{ID_WIDTH}})
    redis.call('ZREM', KEYS[1], old_id .. name)
    unseen = redis.call('SREM', KEYS[3], old_id)
    unread = redis.call('SREM', KEYS[4], old_id)
  end
  if ARGV[i + 4] ~= '1' then unseen, unread = 1, 1 end
  if new_id ~= '' then
    redis.call('HSET', KEYS[2], name, new_id .. ARGV[i + 3])
    redis.call('ZADD', KEYS[1], 0, new_id .. name)
    if track then
      if unseen == 1 then redis.call('SADD', KEYS[3], new_id) end
      if unread == 1 then redis.call('SADD', KEYS[4], new_id) end
    end
  elseif current then
    redis.call('HDEL', KEYS[2], name)
  end
end
local maxlen = tonumber(ARGV[2])
if maxlen >= 0 then trim_groups(KEYS, maxlen) end
return 1
