-- Removes a blacklist entry and tells every access node, in one step (admin /blacklist/remove).
-- KEYS: 1 the blacklist hash (user or ip)
-- ARGV: 1 value, 2 the notice channel, 3 the notice ("remove ip 1.2.3.4")
-- Returns the number of fields removed.
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n
