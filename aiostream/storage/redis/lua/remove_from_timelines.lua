-- KEYS: timelines. ARGV: hex ids.
for i = 1, #KEYS do
  chunked('ZREM', KEYS[i], ARGV)
end
return #KEYS
