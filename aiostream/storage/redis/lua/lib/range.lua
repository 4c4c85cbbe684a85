-- range(key, min, max, offset, count, descending): a ZRANGEBYLEX page, newest first
-- when descending is '1'.
local function range(key, min, max, offset, count, descending)
  if descending == '1' then
    return redis.call('ZREVRANGEBYLEX', key, max, min, 'LIMIT', offset, count)
  end
  return redis.call('ZRANGEBYLEX', key, min, max, 'LIMIT', offset, count)
end
