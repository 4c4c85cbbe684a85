-- Many READ_TIMELINE calls in one (pages read at once by many tasks: see
-- aiostream.storage.redis._batching). KEYS: timelines. ARGV[1]: opening, ARGV[1 + k]:
-- numbers of KEYS[k]. Returns one reply per timeline, an error reply for a read that
-- failed (the others are not affected).
local pages = {}
for k = 1, #KEYS do
  local ok, page = pcall(read_timeline, KEYS[k], ARGV[k + 1], ARGV[1])
  if ok then
    pages[k] = page
  elseif type(page) == 'table' and page.err then
    pages[k] = page
  else
    pages[k] = {err = tostring(page)}
  end
end
return pages
