-- KEYS: timelines. ARGV: members (either form: see lib/members.lua).
for i = 1, #KEYS do
  chunked('ZREM', KEYS[i], ARGV)
end
return #KEYS
