-- Queue upkeep: XTRIM MINID below the oldest pending (or last delivered) entry of the group.
-- KEYS: 1 the stream
-- ARGV: 1 the group
-- Returns {pending, lag, xlen, trimmed}; -1 for what is unknown.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, -1, 0, 0} end
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) ~= 'table' or groups.err then return {-1, -1, -1, 0} end
local last, lag
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then last = f['last-delivered-id']; lag = f['lag'] end
end
local xlen = redis.call('XLEN', KEYS[1])
if not last then return {-1, -1, xlen, 0} end
if type(lag) ~= 'number' then lag = -1 end
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
local pending = tonumber(p[1])
-- acknowledged entries are garbage: XACK frees nothing, so cut below the oldest entry still needed
local minid = last
if pending > 0 then minid = p[2] end
local trimmed = 0
if minid ~= '0-0' then trimmed = redis.call('XTRIM', KEYS[1], 'MINID', minid) end
return {pending, lag, xlen - trimmed, trimmed}
