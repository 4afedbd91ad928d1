-- Step 1 of a stock move between two buckets of a sharded activity (plugins/logic/rebalance.c): takes units from
-- the donor bucket and records the move in the donor's outbox, in one step, so that the units are always either in
-- a bucket's total or in an outbox entry.
-- KEYS: 1 the donor's total, 2 its sold, 3 its outbox (move id -> 'dst amount created_ms')
-- ARGV: 1 move id, 2 units wanted, 3 destination bucket index, 4 created (unix ms), 5 the donor's initial stock
--       (its total until the first decision has written it)
-- Returns the units taken: at most what the donor has left, 0 when it has none (then nothing is recorded).
local total = tonumber(redis.call('GET', KEYS[1]) or ARGV[5])
local sold = tonumber(redis.call('GET', KEYS[2]) or '0')
local m = math.min(tonumber(ARGV[2]), total - sold)
if m <= 0 then return 0 end
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[3] .. ' ' .. m .. ' ' .. ARGV[4]) == 0 then return 0 end
redis.call('SET', KEYS[1], total - m)
return m
