-- The reaper (logic control thread, every node): gives back the units of tokens past expires_at, each exactly once.
-- KEYS: 1 tokens (token -> 'uid pid aid issued_at expires_at[ state]'), 2 sold, 3 users (uid -> 'wins token
--       expires_at ...'), 4 the expiry index (a zset of seconds; the tokens expiring in second s are the list
--       KEYS[4] .. ':' .. s, written by logic_stock.lua), 5 the token counts hash; one activity's slot
-- ARGV: 1 the most tokens to pop in this call (bounds the time Redis is busy with it)
-- A due token leaves the index here (popped from its second's list, the second dropped once its list is empty); it is
-- marked 'expired' and its unit returned only if no script has written a state yet (an order id from consume,
-- 'cancelled'; consume and cancel leave the token in its list, so every token is popped once, decided or not). Two
-- reapers popping the same index are serialised by Redis, and the second finds the token gone from the index or
-- already marked: a unit is never returned twice.
-- Returns {returned, popped}: popped == ARGV[1] means more may be due.
local now = tonumber(redis.call('TIME')[1])
local budget = tonumber(ARGV[1])
local due = {}
while #due < budget do
  local s = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 1)[1]
  if not s then break end
  local lk = KEYS[4] .. ':' .. s
  local got = redis.call('LPOP', lk, budget - #due)
  if got then for _, tok in ipairs(got) do due[#due + 1] = tok end end
  if redis.call('EXISTS', lk) == 0 then redis.call('ZREM', KEYS[4], s) end
end
local back, users = 0, {}
for _, tok in ipairs(due) do
  local v = redis.call('HGET', KEYS[1], tok)
  local uid, st
  if v then uid, st = string.match(v, '^(%S+) %S+ %S+ %S+ %S+ ?(%S*)$') end
  if uid and st == '' then
    redis.call('HSET', KEYS[1], tok, v .. ' expired')
    back = back + 1
    local u = users[uid]
    if not u then u = {}; users[uid] = u end
    u[tok] = true
  end
end
if back > 0 then
  local sold = tonumber(redis.call('GET', KEYS[2]) or '0')
  redis.call('DECRBY', KEYS[2], math.min(back, sold))
  -- the user's count toward buy_limit goes down with the token's pair, so the user may buy again
  for uid, gone in pairs(users) do
    local held = redis.call('HGET', KEYS[3], uid)
    if held then
      local w, keep = {}, {}
      for x in string.gmatch(held, '%S+') do w[#w + 1] = x end
      for i = 2, #w - 1, 2 do
        if not gone[w[i]] then keep[#keep + 1] = w[i]; keep[#keep + 1] = w[i + 1] end
      end
      if #keep == 0 then redis.call('HDEL', KEYS[3], uid)
      else redis.call('HSET', KEYS[3], uid, (#keep / 2) .. ' ' .. table.concat(keep, ' ')) end
    end
  end
  redis.call('HINCRBY', KEYS[5], 'expired', back)
end
return {back, #due}
