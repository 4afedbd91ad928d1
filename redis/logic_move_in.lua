-- Step 2 of a stock move (plugins/logic/rebalance.c): adds the units to the receiving bucket, at most once per move
-- id however often a crashed move is re-driven. The inbox remembers every id applied here; the donor's outbox entry
-- is deleted only after this step, so a re-drive can only find an id that is here already or not yet.
-- KEYS: 1 the receiver's total, 2 its inbox (set of applied move ids), 3 its dry flag
-- ARGV: 1 move id, 2 units, 3 the receiver's initial stock (its total until the first decision wrote it),
--       4 when the inbox may go (unix s), 5 how long the receiver is marked as having just received (ms)
-- Returns 1 when applied now, 0 when it had been.
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('EXPIREAT', KEYS[2], ARGV[4])
local total = tonumber(redis.call('GET', KEYS[1]) or ARGV[3])
redis.call('SET', KEYS[1], total + tonumber(ARGV[2]))
-- 'r' replaces 'w' (it has stock now) and keeps the rebalancers from taking the units straight back for another
-- empty bucket before this one's buyers had a chance at them
redis.call('SET', KEYS[3], 'r', 'PX', ARGV[5])
return 1
