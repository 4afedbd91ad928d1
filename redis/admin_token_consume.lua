-- Consumes a purchase token once (admin /token/consume), checked against Redis TIME.
-- KEYS: 1 the activity's tokens hash, token -> "user_id product_id activity_id issued_at expires_at[ state]"
--       (state: an order id once consumed, 'cancelled' or 'expired' once its unit went back), 2 the token counts
--       hash; one activity's slot. The token stays in the expiry index: the reaper pops it and finds the order id.
-- ARGV: 1 user_id, 2 product_id, 3 order_id, 4 token
-- Returns {1002, why} (missing, mismatch, expired), {1014, 'cancelled'}, {1014, order_id, aid, issued_at, expires_at}
-- (already consumed) or {0, order_id, aid, issued_at, expires_at}. Past expires_at the token is refused even before the
-- reaper has seen it, with the same second test as the reaper's, so an order never exists for a returned unit.
local v = redis.call('HGET', KEYS[1], ARGV[4])
if not v then return {1002, 'missing'} end
local uid, pid, aid, iss, exp, oid = string.match(v, '^(%S+) (%S+) (%S+) (%S+) (%S+) ?(%S*)$')
if not uid then return {1002, 'missing'} end
if uid ~= ARGV[1] or pid ~= ARGV[2] then return {1002, 'mismatch'} end
if oid == 'expired' then return {1002, 'expired'} end
if oid == 'cancelled' then return {1014, 'cancelled'} end
if oid ~= '' then return {1014, oid, aid, iss, exp} end
if tonumber(exp) <= tonumber(redis.call('TIME')[1]) then return {1002, 'expired'} end
redis.call('HSET', KEYS[1], ARGV[4], v .. ' ' .. ARGV[3])
redis.call('HINCRBY', KEYS[2], 'consumed', 1)
return {0, ARGV[3], aid, iss, exp}
