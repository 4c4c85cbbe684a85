-- KEYS: groups, group data, unseen, unread. ARGV[1]: max_length.
trim_groups(KEYS, tonumber(ARGV[1]))
return 1
