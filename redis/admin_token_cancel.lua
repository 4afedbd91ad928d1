-- Cancels a live purchase token (admin /token/cancel) and gives its unit back, in one step against Redis TIME.
-- KEYS: 1 tokens (token -> 'uid pid aid issued_at expires_at[ state]'), 2 sold, 3 users (uid -> 'wins token
--       expires_at ...'), 4 the token counts hash; all of one activity (one cluster slot). The token stays in the
--       expiry index: the reaper pops it and finds it 'cancelled'.
-- ARGV: 1 user_id, 2 product_id, 3 token
-- The state word after expires_at is an order id (consumed), 'cancelled' or 'expired'; whichever script writes it
-- first decides, and only a token without one gives its unit back, so a unit comes back at most once.
-- Returns {1002, why} (missing, mismatch, expired), {1014, 'consumed' | 'cancelled'} or {0, aid, issued_at,
-- expires_at}.
local tok = ARGV[3]
local v = redis.call('HGET', KEYS[1], tok)
if not v then return {1002, 'missing'} end
local uid, pid, aid, iss, exp, st = string.match(v, '^(%S+) (%S+) (%S+) (%S+) (%S+) ?(%S*)$')
if not uid then return {1002, 'missing'} end
if uid ~= ARGV[1] or pid ~= ARGV[2] then return {1002, 'mismatch'} end
if st == 'expired' then return {1002, 'expired'} end
if st == 'cancelled' then return {1014, 'cancelled'} end
if st ~= '' then return {1014, 'consumed'} end
-- past expires_at the reaper owns it (consume refuses it too): it comes back through expiry, never twice
if tonumber(exp) <= tonumber(redis.call('TIME')[1]) then return {1002, 'expired'} end
redis.call('HSET', KEYS[1], tok, v .. ' cancelled')
local sold = tonumber(redis.call('GET', KEYS[2]) or '0')
if sold > 0 then redis.call('DECR', KEYS[2]) end
-- the user's count toward buy_limit goes down with the token's pair, so the user may buy again
local held = redis.call('HGET', KEYS[3], uid)
if held then
  local w, keep = {}, {}
  for x in string.gmatch(held, '%S+') do w[#w + 1] = x end
  for i = 2, #w - 1, 2 do
    if w[i] ~= tok then keep[#keep + 1] = w[i]; keep[#keep + 1] = w[i + 1] end
  end
  if #keep == 0 then redis.call('HDEL', KEYS[3], uid)
  else redis.call('HSET', KEYS[3], uid, (#keep / 2) .. ' ' .. table.concat(keep, ' ')) end
end
redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
return {0, aid, iss, exp}
