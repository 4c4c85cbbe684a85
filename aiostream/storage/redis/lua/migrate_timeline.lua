-- KEYS: timelines. Rewrites each one's hex members (written before binary members) as
-- binary ones; a member already there in both forms is left once. Returns the number of
-- members rewritten. Idempotent: a timeline holding only binary members is not touched.
local rewritten = 0
for _, key in ipairs(KEYS) do
  local old, new = {}, {}
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if #member == {{ID_WIDTH}} then
      old[#old + 1] = member
      new[#new + 1] = 0
      new[#new + 1] = hex_member(member)
    end
  end
  if #old > 0 then
    chunked('ZREM', key, old)
    chunked('ZADD', key, new)
    rewritten = rewritten + #old
  end
end
return rewritten
