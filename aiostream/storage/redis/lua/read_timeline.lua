-- KEYS[1]: timeline. ARGV[1]: numbers, ARGV[2]: opening (see read_timeline).
return read_timeline(KEYS[1], ARGV[1], ARGV[2])
