-- KEYS: the states to renew, then the states only loaded. ARGV[1]: how many of KEYS
-- are renewed; ARGV[2]: before; ARGV[3...]: the renewed states' new values, in order.
-- A renewed state is set unless it holds a time later than before (a value that is no
-- number is overwritten: aiostream.storage.base.renews decides the same way).
-- Returns the values all KEYS held before (false where unset).
local renewed, before = tonumber(ARGV[1]), tonumber(ARGV[2])
local old = {}
for first = 1, #KEYS, {{UNPACK}} do
  local values = redis.call('MGET', unpack(KEYS, first, math.min(first + {{UNPACK}} - 1, #KEYS)))
  for _, value in ipairs(values) do old[#old + 1] = value end
end
for i = 1, renewed do
  local time = old[i] and tonumber(old[i])
  if not (time and time > before) then redis.call('SET', KEYS[i], ARGV[2 + i]) end
end
return old
