-- limits.lua: the per-request rate limit of the access layer (SPEC §7).
--
-- admit(r) runs once for each /sec/kill request that passed the parameter, referer, signature, blacklist and
-- replay checks. Return true to let the request go on, or false and a short reason: the request then answers
-- 1010 (HTTP 429, Retry-After: 1) and the reason is logged.
--
--   r.user_id, r.product_id   integers
--   r.ip                      the client IP, a string
--   r.now                     unix seconds, an integer
--   r.user_sec, r.ip_sec      requests of this user / this IP in the current calendar second, this one included
--   r.user_min, r.ip_min      the same over the last 60 one-second buckets, the current one included
--
-- The counts are kept per access node and shared by its threads, so with N access nodes behind a balancer a user
-- may get up to N times these numbers through.
--
-- The sandbox (the same for the three policies, each with its own globals): the base functions without load,
-- loadfile, dofile, require, collectgarbage, getmetatable, setmetatable and raw*; string, table, math and utf8;
-- no io, os, debug or package. print and seckill.log(msg) write one bounded line to the daemon's log.
-- seckill.now() is the unix time in whole seconds, seckill.random() a float in [0, 1),
-- seckill.random_hex(n) n random bytes as hex (n <= 64), seckill.sha256(s) and seckill.hmac_sha256(key, msg) hex.
-- string.find/match/gmatch/gsub refuse subjects over 16384 bytes and patterns over 256 bytes (plain finds are
-- not limited). Each call may run lua.instr_limit instructions (pattern matching steps count against the same
-- number) and the state may use lua.mem_limit_kb; past either the call fails, and pcall cannot catch that. A
-- failing call, or one that returns anything but a boolean (and, with false, a string or nothing), answers 1013.
-- Change it at run time with `PUT /policy/limits.lua` on the admin port, or
-- `etcdctl put /seckill/policies/limits.lua "$(cat limits.lua)"`; deleting the key brings this file back.

-- The defaults reproduce the original system.
local USER_PER_SEC = 1
local USER_PER_MIN = 10
local IP_PER_SEC = 50
local IP_PER_MIN = 500

function admit(r)
    if r.user_sec > USER_PER_SEC then
        return false, "user: too many requests this second"
    end
    if r.user_min > USER_PER_MIN then
        return false, "user: too many requests this minute"
    end
    if r.ip_sec > IP_PER_SEC then
        return false, "ip: too many requests this second"
    end
    if r.ip_min > IP_PER_MIN then
        return false, "ip: too many requests this minute"
    end
    return true
end
