-- MERGE_GROUPS: merge_feeds (lib/merge_feeds.lua) over feeds declared in KEYS.
-- KEYS: per feed, its hash tag; its groups, group data, unseen and unread keys are the
-- tag followed by GROUP_KEY_SUFFIXES of aiostream.storage.redis._layout (the tag's slot).
-- On a cluster KEYS are those four keys of each feed instead (a KEYS[1] that does not
-- end with the tag's '}' says so): while a slot migrates, the server can then tell
-- whether they are all still here (run), all gone (ASK) or split (TRYAGAIN); a bare
-- tag, which never exists, would send every call to the importing node.
-- ARGV: as merge_feeds, the merges from ARGV[5].
local feeds = {}
if KEYS[1] == nil or string.sub(KEYS[1], -1) == '}' then
  for _, tag in ipairs(KEYS) do feeds[#feeds + 1] = feed_keys(tag) end
else
  for f = 1, #KEYS, 4 do feeds[#feeds + 1] = {KEYS[f], KEYS[f + 1], KEYS[f + 2], KEYS[f + 3]} end
end
return merge_feeds(feeds, 5, nil)
