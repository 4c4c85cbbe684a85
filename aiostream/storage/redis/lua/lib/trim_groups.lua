-- trim_groups(k, maxlen): keep the newest maxlen groups of the feed whose keys are the
-- table k = {groups zset, group data hash, unseen set, unread set} (KEYS, in the
-- scripts over one feed).
local function trim_groups(k, maxlen)
  local total = redis.call('ZCARD', k[1])
  if total <= maxlen then return end
  local last = total - maxlen - 1
  for _, member in ipairs(redis.call('ZRANGE', k[1], 0, last)) do
    local id = string.sub(member, 1, {{ID_WIDTH}})
    redis.call('HDEL', k[2], string.sub(member, {{ID_WIDTH}} + 1))
    redis.call('SREM', k[3], id)
    redis.call('SREM', k[4], id)
  end
  redis.call('ZREMRANGEBYRANK', k[1], 0, last)
end
