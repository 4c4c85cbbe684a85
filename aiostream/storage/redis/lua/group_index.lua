-- KEYS[1]: groups. ARGV: min, max lex bounds selecting one id. Returns the rank from
-- the newest, or -1.
local found = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, 1)
if #found == 0 then return -1 end
return redis.call('ZREVRANK', KEYS[1], found[1])
