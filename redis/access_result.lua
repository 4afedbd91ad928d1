-- /sec/result: the replay guard, then the user's tokens.
-- KEYS: 1 the nonce, 2 the activity's users hash (user_id -> "wins token expires_at token expires_at ...")
-- ARGV: 1 nonce ttl, 2 user_id
-- Returns 1003 (nonce seen), or a list of "token expires_at" (at most 100).
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 1003 end
local v = redis.call('HGET', KEYS[2], ARGV[2])
local out = {}
if not v then return out end
for tok, exp in string.gmatch(string.gsub(v, '^%d+', ''), '(%S+) (%S+)') do
  if #out == 100 then break end
  out[#out + 1] = tok .. ' ' .. exp
end
return out
