-- Queues the requests of one access loop pass (docs/DESIGN.md "The request queue").
-- KEYS: 1 the stream, then one nonce key per request
-- ARGV: 1 the queue bound, then per request its script deadline (Redis ms), the nonce's ttl and its entry,
--       "<id> <reply> <aid> <pid> <uid> <ip> <now> <deadline>" (one field, r)
-- Returns, per request, 1013 (too late, or the queue is full), 1003 (nonce seen) or the stream id.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local out = {}
for i = 1, #KEYS - 1 do
  local a = 2 + (i - 1) * 3
  if now > tonumber(ARGV[a]) then out[i] = 1013
  elseif not redis.call('SET', KEYS[i + 1], '1', 'NX', 'EX', ARGV[a + 1]) then out[i] = 1003
  elseif room <= 0 then out[i] = 1013
  else
    out[i] = redis.call('XADD', KEYS[1], '*', 'r', ARGV[a + 2])
    room = room - 1
  end
end
return out
