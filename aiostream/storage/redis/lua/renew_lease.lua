-- KEYS[1]: the lease. ARGV[1]: owner, ARGV[2]: ttl in ms. 1 if the owner held it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
