-- /sec/result: the replay guard, then the user's tokens.
-- KEYS: 1 the nonce hash of the second the nonce expires at (as in access_queue.lua), 2 the activity's users hash
--       (user_id -> "wins token expires_at token expires_at ...")
-- ARGV: 1 that second, 2 user_id, 3 the nonce field '<uid>:<nance>'
-- Returns 1003 (nonce seen), or a list of "token expires_at" (at most 100).
if redis.call('HSETNX', KEYS[1], ARGV[3], '1') == 0 then return 1003 end
redis.call('EXPIREAT', KEYS[1], math.max(tonumber(ARGV[1]), tonumber(redis.call('TIME')[1]) + 1), 'NX')
local v = redis.call('HGET', KEYS[2], ARGV[2])
local out = {}
if not v then return out end
for tok, exp in string.gmatch(string.gsub(v, '^%d+', ''), '(%S+) (%S+)') do
  if #out == 100 then break end
  out[#out + 1] = tok .. ' ' .. exp
end
return out
