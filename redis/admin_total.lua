-- Sets an activity's stock, refusing a stock below what is already sold (admin /activity/update).
-- KEYS: 1 the activity's sold counter, 2 its total
-- ARGV: 1 the new total
-- Returns -1 when set, else the sold count that forbids it.
local sold = tonumber(redis.call('GET', KEYS[1]) or '0')
if sold > tonumber(ARGV[1]) then return sold end
redis.call('SET', KEYS[2], ARGV[1])
return -1
