-- Logic heartbeat: the node's member in the alive zset gets Redis-clock ms; members older than ARGV[2] ms go.
-- KEYS: 1 the alive zset
-- ARGV: 1 node id, 2 stale ms
-- Returns the Redis ms.
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', ms - tonumber(ARGV[2])))
return ms
