-- Groups rewritten in place (update_groups). KEYS[1]: the feed's group data hash.
-- ARGV: per group: name, expected version, new payload. A group still at the expected
-- version gets the payload under its own id with the next version: its place in the
-- feed and its markers stay as they are. Returns 1 (written) or 0 (changed or gone
-- since it was read) per group.
local out = {}
for i = 1, #ARGV, 3 do
  local data = redis.call('HGET', KEYS[1], ARGV[i])
  local written = 0
  if data then
    local bar = string.find(data, '|', {{ID_WIDTH}} + 1, true)
    if bar and string.sub(data, {{ID_WIDTH}} + 1, bar - 1) == ARGV[i + 1] then
      local version = string.format('%d', tonumber(ARGV[i + 1]) + 1)
      local id = string.sub(data, 1, {{ID_WIDTH}})
      redis.call('HSET', KEYS[1], ARGV[i], id .. version .. '|' .. ARGV[i + 2])
      written = 1
    end
  end
  out[#out + 1] = written
end
return out
