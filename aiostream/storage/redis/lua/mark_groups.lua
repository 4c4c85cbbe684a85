-- KEYS: unseen, unread. ARGV[1]: clear unseen, ARGV[2]: clear unread ('1'/'0'),
-- ARGV[3]: '1' = every group, else ARGV[4..] are hex group ids.
local ids = {}
for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
for k = 1, 2 do
  if ARGV[k] == '1' then
    if ARGV[3] == '1' then
      redis.call('DEL', KEYS[k])
    elseif #ids > 0 then
      chunked('SREM', KEYS[k], ids)
    end
  end
end
return 1
