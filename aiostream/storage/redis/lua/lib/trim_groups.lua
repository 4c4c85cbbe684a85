-- trim_groups(k, maxlen): keep the newest maxlen groups of the feed whose keys are
-- KEYS[k+1..k+4] = groups zset, group data hash, unseen set, unread set.
local function trim_groups(k, maxlen)
  local total = redis.call('ZCARD', KEYS[k + 1])
  if total <= maxlen then return end
  local last = total - maxlen - 1
  for _, member in ipairs(redis.call('ZRANGE', KEYS[k + 1], 0, last)) do
    local id = string.sub(member, 1, {{ID_WIDTH}})
    redis.call('HDEL', KEYS[k + 2], string.sub(member, {{ID_WIDTH}} + 1))
    redis.call('SREM', KEYS[k + 3], id)
    redis.call('SREM', KEYS[k + 4], id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[k + 1], 0, last)
end
