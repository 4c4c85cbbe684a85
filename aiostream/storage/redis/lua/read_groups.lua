-- KEYS: groups, group data, unseen, unread. ARGV: min, max, offset, count, descending,
-- markers. Returns member, data[, unseen, unread], ...
local members = range(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
local markers = ARGV[6] == '1'
local out = {}
for _, member in ipairs(members) do
  local data = redis.call('HGET', KEYS[2], string.sub(member, {{ID_WIDTH}} + 1))
  if data then
    out[#out + 1] = member
    out[#out + 1] = data
    if markers then
      local id = string.sub(member, 1, {{ID_WIDTH}})
      out[#out + 1] = redis.call('SISMEMBER', KEYS[3], id)
      out[#out + 1] = redis.call('SISMEMBER', KEYS[4], id)
    end
  end
end
return out
