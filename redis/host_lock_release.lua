-- Releases the live-node lock at shutdown, only if this process still holds it.
-- KEYS: 1 the node lock
-- ARGV: 1 this process's lock value (its pid)
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
