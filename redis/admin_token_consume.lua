-- Consumes a purchase token once (admin /token/consume), checked against Redis TIME.
-- KEYS: 1 the activity's tokens hash, token -> "user_id product_id activity_id issued_at expires_at[ order_id]"
-- ARGV: 1 user_id, 2 product_id, 3 order_id, 4 token
-- Returns {1002, why}, {1014, order_id, aid, issued_at, expires_at} (already consumed) or {0, order_id, aid, issued_at,
-- expires_at}.
local v = redis.call('HGET', KEYS[1], ARGV[4])
if not v then return {1002, 'missing'} end
local uid, pid, aid, iss, exp, oid = string.match(v, '^(%S+) (%S+) (%S+) (%S+) (%S+) ?(%S*)$')
if not uid then return {1002, 'missing'} end
if uid ~= ARGV[1] or pid ~= ARGV[2] then return {1002, 'mismatch'} end
if oid ~= '' then return {1014, oid, aid, iss, exp} end
if tonumber(exp) <= tonumber(redis.call('TIME')[1]) then return {1002, 'expired'} end
redis.call('HSET', KEYS[1], ARGV[4], v .. ' ' .. ARGV[3])
return {0, ARGV[3], aid, iss, exp}
