-- KEYS: groups, group data, unseen, unread. ARGV[1]: max_length.
trim_groups(0, tonumber(ARGV[1]))
return 1
