#!lua flags=allow-cross-slot-keys
-- Announce one update to many feeds' subscribers. The feeds come in ARGV: on a
-- cluster they may sit in many slots, all served by the node the call is sent to (the
-- storage groups them so); each feed's channel is in its own slot.
-- ARGV[1]: the update (JSON, ending in '}'). ARGV[2]: '1' to add the feed's unseen
-- count, ARGV[3]: its unread count (notification feeds). ARGV[4]: 'PUBLISH' or
-- 'SPUBLISH' (a cluster's sharded pub/sub). ARGV[5..]: the feeds' hash tags.
local SUFFIXES = {{GROUP_KEY_SUFFIXES}}
local update, unseen, unread, publish = ARGV[1], ARGV[2] == '1', ARGV[3] == '1', ARGV[4]
local body = string.sub(update, 1, -2)
for i = 5, #ARGV do
  local tag = ARGV[i]
  local message = update
  if unseen or unread then
    message = body
    if unseen then message = message .. ',"u":' .. redis.call('SCARD', tag .. SUFFIXES[3]) end
    if unread then message = message .. ',"r":' .. redis.call('SCARD', tag .. SUFFIXES[4]) end
    message = message .. '}'
  end
  redis.call(publish, tag .. ':u', message)
end
return #ARGV - 4
