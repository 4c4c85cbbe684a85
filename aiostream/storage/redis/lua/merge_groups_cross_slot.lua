#!lua flags=allow-cross-slot-keys
-- Redis 7+, clusters only: MERGE_GROUPS for the feeds of many slots, all served by the
-- node the call is sent to (the storage groups them so), as a fanout chunk's flat
-- feeds go in TIMELINES_CROSS_SLOT. Declared keys must share one slot even with this
-- flag, so the feeds' hash tags come in ARGV.
-- ARGV[1 .. 4]: as merge_feeds (lib/merge_feeds.lua). ARGV[5]: n. ARGV[6 .. n+5]: the
-- feeds' hash tags. Then the merges.
-- Returns as merge_feeds; -2 for a feed whose keys this node does not all serve now (a
-- slot half moved, or moved since the storage looked): the storage sends those feeds
-- again, declared, so that the cluster redirects them.

-- Whether this node serves every key of k now. A command on a key of a slot that has
-- moved, or on a missing key of a slot migrating away, is refused inside a script;
-- pcall returns that refusal instead of aborting, and the feed is left untouched.
local function served(k)
  for _, key in ipairs(k) do
    local reply = redis.pcall('EXISTS', key)
    if type(reply) == 'table' and reply.err then return false end
  end
  return true
end

local n = tonumber(ARGV[5])
local feeds = {}
for j = 6, n + 5 do feeds[#feeds + 1] = feed_keys(ARGV[j]) end
return merge_feeds(feeds, n + 6, served)
