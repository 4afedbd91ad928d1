-- Settles a request whose outcome this access node does not know (docs/DESIGN.md "Settling"): stores ARGV[2] as the
-- result of the request unless the logic layer already stored one, and returns whichever is in effect. The logic
-- script keeps a stored result, so once this ran the request can never win behind the client's back (SPEC §8.5).
-- KEYS: 1 the request's result bucket
-- ARGV: 1 request id, 2 the result ("1013 - 0" or "1008 - 0"), 3 the bucket's EXPIREAT
local won = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3], 'NX')
if won == 1 then return ARGV[2] end
return redis.call('HGET', KEYS[1], ARGV[1])
