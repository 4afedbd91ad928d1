/*
 * The Redis scripts of the logic layer. Redis runs them in Lua 5.1: numbers are doubles, and GET of a missing key is
 * false, hence `tonumber(redis.call('GET', k) or '0')`. Redis 7 replicates script effects, so TIME before a write is
 * allowed.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include "logic.h"

/* clang-format off */
const char sk_logic_stock_lua[] =
    "-- KEYS: 1 req, 2 total, 3 sold, 4 users, 5 token, 6 the user's tokens, 7 winners (one hash tag)\n"
    "-- ARGV: 1 deadline_ms, 2 stream_ms, 3 pre_code, 4 allow, 5 token, 6 ttl, 7 uid, 8 pid, 9 aid,\n"
    "--       10 buy_limit, 11 speed, 12 snapshot_total, 13 per-second key prefix, 14 reply channel, 15 request id\n"
    "-- Every outcome is published from here: the answer leaves in the same Redis pass (and AOF fsync) as the step.\n"
    "local function answer(res) redis.call('PUBLISH', ARGV[14], ARGV[15] .. ' ' .. res) end\n"
    "local done = redis.call('GET', KEYS[1])\n"
    "if done then answer(done) return {done, -1} end\n"
    "local t = redis.call('TIME')\n"
    "local sec = tonumber(t[1])\n"
    "local now_ms = sec * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local deadline = tonumber(ARGV[1])\n"
    "-- the access node stopped waiting: nothing may change (the entry may also have been added late)\n"
    "if now_ms > deadline or tonumber(ARGV[2]) > deadline then answer('1008 - 0') return {'1008 - 0', -1} end\n"
    "local function finish(code, token, exp, sold)\n"
    "  local res = code .. ' ' .. token .. ' ' .. exp\n"
    "  redis.call('SET', KEYS[1], res, 'EX', 3600)\n"
    "  answer(res)\n"
    "  return {res, sold}\n"
    "end\n"
    "local pre = tonumber(ARGV[3])\n"
    "if pre ~= 0 then return finish(pre, '-', 0, -1) end\n"
    "local ts = redis.call('MGET', KEYS[2], KEYS[3])\n"
    "local total = tonumber(ts[1] or '-1')\n"
    "if total == nil or total < 0 then\n"
    "  -- admin writes the total; until it has, the snapshot's total is the one every node agrees on\n"
    "  total = tonumber(ARGV[12])\n"
    "  redis.call('SET', KEYS[2], ARGV[12], 'NX')\n"
    "end\n"
    "local sold = tonumber(ts[2] or '0')\n"
    "if sold >= total then return finish(1007, '-', 0, sold) end\n"
    "local mine = tonumber(redis.call('HGET', KEYS[4], ARGV[7]) or '0')\n"
    "if mine >= tonumber(ARGV[10]) then return finish(1012, '-', 0, sold) end\n"
    "if ARGV[4] ~= '1' then return finish(1011, '-', 0, sold) end\n"
    "local seckey = ARGV[13] .. t[1]\n"
    "local speed = tonumber(ARGV[11])\n"
    "if speed > 0 and tonumber(redis.call('GET', seckey) or '0') >= speed then return finish(1011, '-', 0, sold) end\n"
    "-- a token that already exists (a broken token.lua) must not hand one purchase to two winners\n"
    "if redis.call('EXISTS', KEYS[5]) == 1 then return finish(1013, '-', 0, sold) end\n"
    "sold = redis.call('INCR', KEYS[3])\n"
    "redis.call('HINCRBY', KEYS[4], ARGV[7], 1)\n"
    "if speed > 0 then\n"
    "  redis.call('INCR', seckey)\n"
    "  redis.call('EXPIRE', seckey, 5)\n"
    "end\n"
    "local exp = string.format('%d', sec + tonumber(ARGV[6]))\n"
    "redis.call('HSET', KEYS[5], 'user_id', ARGV[7], 'product_id', ARGV[8], 'activity_id', ARGV[9],\n"
    "           'issued_at', t[1], 'expires_at', exp)\n"
    "redis.call('EXPIREAT', KEYS[5], exp)\n"
    "redis.call('RPUSH', KEYS[6], ARGV[5] .. ' ' .. exp)\n"
    "redis.call('RPUSH', KEYS[7], ARGV[7] .. ' ' .. ARGV[5] .. ' ' .. t[1] .. ' ' .. exp)\n"
    "return finish(0, ARGV[5], exp, sold)\n";

const char sk_logic_heartbeat_lua[] =
    "-- KEYS: 1 the alive zset; ARGV: 1 node id, 2 stale ms\n"
    "local t = redis.call('TIME')\n"
    "local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[1], ms, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', ms - tonumber(ARGV[2])))\n"
    "return ms\n";

const char sk_logic_trim_lua[] =
    "-- KEYS: 1 the stream; ARGV: 1 the group\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {0, -1, 0, 0} end\n"
    "local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])\n"
    "if type(groups) ~= 'table' or groups.err then return {-1, -1, -1, 0} end\n"
    "local last, lag\n"
    "for _, g in ipairs(groups) do\n"
    "  local f = {}\n"
    "  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
    "  if f['name'] == ARGV[1] then last = f['last-delivered-id']; lag = f['lag'] end\n"
    "end\n"
    "local xlen = redis.call('XLEN', KEYS[1])\n"
    "if not last then return {-1, -1, xlen, 0} end\n"
    "if type(lag) ~= 'number' then lag = -1 end\n"
    "local p = redis.call('XPENDING', KEYS[1], ARGV[1])\n"
    "local pending = tonumber(p[1])\n"
    "-- acknowledged entries are garbage: XACK frees nothing, so cut below the oldest entry still needed\n"
    "local minid = last\n"
    "if pending > 0 then minid = p[2] end\n"
    "local trimmed = 0\n"
    "if minid ~= '0-0' then trimmed = redis.call('XTRIM', KEYS[1], 'MINID', minid) end\n"
    "return {pending, lag, xlen - trimmed, trimmed}\n";
/* clang-format on */

void
sk_logic_script_sha(const char *script, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    out[0] = '\0';
    if (EVP_Digest(script, strlen(script), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return;
    for (unsigned i = 0; i < mdlen; ++i)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}
