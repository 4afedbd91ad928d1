-- Adds a blacklist entry and tells every access node, in one step (admin /blacklist/add).
-- KEYS: 1 the blacklist hash (user or ip)
-- ARGV: 1 value, 2 reason, 3 the notice channel, 4 the notice ("add user 42")
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
