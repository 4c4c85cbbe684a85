-- chunked(cmd, key, args): redis.call(cmd, key, ...args) in chunks of {{UNPACK}}
-- arguments (Lua's C stack holds about 8,000 values).
local function chunked(cmd, key, args)
  local n = #args
  for i = 1, n, {{UNPACK}} do
    redis.call(cmd, key, unpack(args, i, math.min(i + {{UNPACK}} - 1, n)))
  end
end
