-- Queues the requests of one access loop pass (docs/DESIGN.md "The request queue").
-- KEYS: 1 the stream, then per request the nonce hash of the second its nonce expires at (sk:{a<ID>}:n:<second>)
-- ARGV: 1 the queue bound, then per request its script deadline (Redis ms), that second, its nonce field
--       '<uid>:<nance>' and its entry "<id> <reply> <aid> <pid> <uid> <ip> <now> <deadline>" (one field, r)
-- Returns, per request, 1013 (too late, or the queue is full), 1003 (nonce seen) or the stream id.
-- A nonce is a field of the hash of its expiry second, not a key with a TTL: one dict insert per request, and one
-- EXPIREAT per hash and call (NX: the first one set stays; a second in the past is clamped to now + 1, as a TTL of 1).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nows = tonumber(t[1])
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local out, timed = {}, {}
for i = 1, #KEYS - 1 do
  local a = 2 + (i - 1) * 4
  local nk = KEYS[i + 1]
  if now > tonumber(ARGV[a]) then out[i] = 1013
  elseif redis.call('HSETNX', nk, ARGV[a + 2], '1') == 0 then out[i] = 1003
  else
    if not timed[nk] then
      redis.call('EXPIREAT', nk, math.max(tonumber(ARGV[a + 1]), nows + 1), 'NX')
      timed[nk] = true
    end
    if room <= 0 then out[i] = 1013
    else
      out[i] = redis.call('XADD', KEYS[1], '*', 'r', ARGV[a + 3])
      room = room - 1
    end
  end
end
return out
