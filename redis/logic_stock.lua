-- The atomic step for a batch of entries of one activity, each decided as if alone, in stream order.
-- All keys are one stock bucket's (common/sk_shard.h; an unsharded activity is its own single bucket).
-- KEYS: 1 total, 2 sold, 3 users (uid -> 'wins token expires_at ...'),
--       4 tokens (token -> 'uid pid aid issued_at expires_at'), 5 winners,
--       6 the expiry index (a zset of the seconds that have tokens expiring, each second's tokens in the list
--       KEYS[6] .. ':' .. second, for logic_reap.lua), 7 the bucket's flag: '1' set by the rebalancer
--       while every bucket is empty, 'w' set here while this bucket is empty and has buyers, 'r' set by a move in a
--       moment ago (logic_move_in.lua); then each entry's
--       result bucket
-- ARGV: 1 aid, 2 pid, 3 buy_limit, 4 speed, 5 the bucket's initial stock, 6 per-second key prefix, 7 bucket index,
--       8 bucket count, then 10 per entry:
--       deadline_ms, stream_ms, pre_code, allow, token, ttl, uid, reply channel, request id, bucket expireat;
--       then, optionally, '1' (hold the wins: redis.wait_replicas > 0)
-- Every outcome is published from here, one message per channel: the answers leave in the Redis pass (and AOF
-- fsync) that decides them. With the hold flag the wins are not published: the logic node tells them after WAIT has
-- confirmed that replicas hold them. Returns the results, then sold (-1 when not read).
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_ms = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, speed = tonumber(ARGV[3]), tonumber(ARGV[4])
local bucket, nbuckets = tonumber(ARGV[7]), tonumber(ARGV[8])
if speed > 0 and nbuckets > 1 then
  -- this bucket's share of the second: the shares of one second add up to speed (sk_shard_speed)
  local share = math.floor(speed / nbuckets)
  if (bucket + sec) % nbuckets < speed % nbuckets then share = share + 1 end
  speed = share
  if speed == 0 then speed = -1 end
end
local seckey = ARGV[6] .. t[1]
local total, sold, secn, wanted
local out, wins, pubs, chans, kept, keptn, dues, duen = {}, {}, {}, {}, {}, {}, {}, {}
local n = #KEYS - 7
local hold = #ARGV == 9 + n * 10 and ARGV[#ARGV] == '1'
for i = 1, n do
  local a = 8 + (i - 1) * 10
  local rk, id = KEYS[7 + i], ARGV[a + 9]
  local deadline = tonumber(ARGV[a + 1])
  local res
  if now_ms > deadline or tonumber(ARGV[a + 2]) > deadline then
    -- the access node stopped waiting: nothing may change (the entry may also have been added late)
    res = redis.call('HGET', rk, id) or '1008 - 0'
  else
    local code, uid, tok = tonumber(ARGV[a + 3]), ARGV[a + 7], ARGV[a + 5]
    local held, mine, exp = nil, 0, '0'
    if code == 0 then
      if not total then
        local ts = redis.call('MGET', KEYS[1], KEYS[2])
        total = tonumber(ts[1] or '-1')
        if total == nil or total < 0 then
          -- admin writes the total; until it has, the snapshot's total is the one every node agrees on
          total = tonumber(ARGV[5])
          redis.call('SET', KEYS[1], ARGV[5], 'NX')
        end
        sold = tonumber(ts[2] or '0')
      end
      if sold >= total then
        -- an empty bucket of a sharded activity is sold out only once the rebalancer found every bucket empty;
        -- until then stock is on its way here, and the client may retry
        local flag = nbuckets > 1 and redis.call('GET', KEYS[7])
        if nbuckets > 1 and flag ~= '1' then
          code = 1011
          -- tells the rebalancer that this empty bucket has buyers: stock is moved to it first ('r', received a
          -- moment ago, means nothing once the bucket is empty again)
          if not wanted and flag ~= 'w' then redis.call('SET', KEYS[7], 'w', 'PX', 2000) end
          wanted = true
        else code = 1007 end
      else
        held = redis.call('HGET', KEYS[3], uid)
        if held then mine = tonumber(string.match(held, '^%d+')) or 0 end
        if mine >= limit then code = 1012
        elseif ARGV[a + 4] ~= '1' then code = 1011
        elseif speed < 0 then code = 1011
        elseif speed > 0 then
          if not secn then secn = tonumber(redis.call('GET', seckey) or '0') end
          if secn >= speed then code = 1011 end
        end
      end
      if code == 0 then
        exp = string.format('%d', sec + tonumber(ARGV[a + 6]))
        -- a token that already exists (a broken token.lua) must not hand one purchase to two winners
        if redis.call('HSETNX', KEYS[4], tok, uid .. ' ' .. ARGV[2] .. ' ' .. ARGV[1] .. ' ' .. t[1] .. ' ' .. exp) == 0 then
          code = 1013
        end
      end
    end
    res = code == 0 and ('0 ' .. tok .. ' ' .. exp) or (code .. ' - 0')
    -- the result is stored before anything is sold: one seen before (a takeover, or settled by access) stands
    if redis.call('HSETNX', rk, id, res) == 0 then
      if code == 0 then redis.call('HDEL', KEYS[4], tok) end
      res = redis.call('HGET', rk, id)
    else
      if not kept[rk] then kept[rk] = ARGV[a + 10]; keptn[#keptn + 1] = rk end
      if code == 0 then
        sold = sold + 1
        if speed > 0 then secn = secn + 1 end
        local rest = held and string.match(held, '^%d+ (.*)$')
        redis.call('HSET', KEYS[3], uid, (mine + 1) .. ' ' .. (rest and (rest .. ' ') or '') .. tok .. ' ' .. exp)
        wins[#wins + 1] = uid .. ' ' .. tok .. ' ' .. t[1] .. ' ' .. exp
        -- indexed in the same step as the win: no token can exist that the reaper will not find
        local d = dues[exp]
        if not d then d = {}; dues[exp] = d; duen[#duen + 1] = exp end
        d[#d + 1] = tok
      end
    end
  end
  out[i] = res
  local ch = ARGV[a + 8]
  if not (hold and string.sub(res, 1, 2) == '0 ') then
    if not pubs[ch] then pubs[ch] = {}; chans[#chans + 1] = ch end
    local p = pubs[ch]
    p[#p + 1] = id .. ' ' .. res
  end
end
if #wins > 0 then
  redis.call('INCRBY', KEYS[2], #wins)
  redis.call('RPUSH', KEYS[5], unpack(wins))
  if speed > 0 then
    redis.call('INCRBY', seckey, #wins)
    redis.call('EXPIRE', seckey, 5)
  end
end
-- a list per second of expiry, not a zset entry per token: one push per batch instead of a skip-list insert per win
for _, e in ipairs(duen) do
  redis.call('RPUSH', KEYS[6] .. ':' .. e, unpack(dues[e]))
  redis.call('ZADD', KEYS[6], e, e)
end
for _, k in ipairs(keptn) do redis.call('EXPIREAT', k, kept[k], 'NX') end
for _, ch in ipairs(chans) do redis.call('PUBLISH', ch, table.concat(pubs[ch], '\n')) end
out[#out + 1] = sold or -1
return out
