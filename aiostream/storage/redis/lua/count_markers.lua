-- KEYS: unseen, unread. Both counts from one moment.
return {redis.call('SCARD', KEYS[1]), redis.call('SCARD', KEYS[2])}
