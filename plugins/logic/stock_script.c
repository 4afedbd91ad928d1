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
    "-- The atomic step for a batch of entries of one activity, each decided as if alone, in stream order.\n"
    "-- KEYS: 1 total, 2 sold, 3 users (uid -> 'wins token expires_at ...'),\n"
    "--       4 tokens (token -> 'uid pid aid issued_at expires_at'), 5 winners, then each entry's result bucket\n"
    "-- ARGV: 1 aid, 2 pid, 3 buy_limit, 4 speed, 5 snapshot_total, 6 per-second key prefix, then 10 per entry:\n"
    "--       deadline_ms, stream_ms, pre_code, allow, token, ttl, uid, reply channel, request id, bucket expireat\n"
    "-- Every outcome is published from here, one message per channel: the answers leave in the Redis pass (and AOF\n"
    "-- fsync) that decides them. Returns the results, then sold (-1 when not read).\n"
    "local t = redis.call('TIME')\n"
    "local sec = tonumber(t[1])\n"
    "local now_ms = sec * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local limit, speed = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local seckey = ARGV[6] .. t[1]\n"
    "local total, sold, secn\n"
    "local out, wins, pubs, chans, kept, keptn = {}, {}, {}, {}, {}, {}\n"
    "for i = 1, (#ARGV - 6) / 10 do\n"
    "  local a = 6 + (i - 1) * 10\n"
    "  local rk, id = KEYS[5 + i], ARGV[a + 9]\n"
    "  local deadline = tonumber(ARGV[a + 1])\n"
    "  local res\n"
    "  if now_ms > deadline or tonumber(ARGV[a + 2]) > deadline then\n"
    "    -- the access node stopped waiting: nothing may change (the entry may also have been added late)\n"
    "    res = redis.call('HGET', rk, id) or '1008 - 0'\n"
    "  else\n"
    "    local code, uid, tok = tonumber(ARGV[a + 3]), ARGV[a + 7], ARGV[a + 5]\n"
    "    local held, mine, exp = nil, 0, '0'\n"
    "    if code == 0 then\n"
    "      if not total then\n"
    "        local ts = redis.call('MGET', KEYS[1], KEYS[2])\n"
    "        total = tonumber(ts[1] or '-1')\n"
    "        if total == nil or total < 0 then\n"
    "          -- admin writes the total; until it has, the snapshot's total is the one every node agrees on\n"
    "          total = tonumber(ARGV[5])\n"
    "          redis.call('SET', KEYS[1], ARGV[5], 'NX')\n"
    "        end\n"
    "        sold = tonumber(ts[2] or '0')\n"
    "      end\n"
    "      if sold >= total then code = 1007\n"
    "      else\n"
    "        held = redis.call('HGET', KEYS[3], uid)\n"
    "        if held then mine = tonumber(string.match(held, '^%d+')) or 0 end\n"
    "        if mine >= limit then code = 1012\n"
    "        elseif ARGV[a + 4] ~= '1' then code = 1011\n"
    "        elseif speed > 0 then\n"
    "          if not secn then secn = tonumber(redis.call('GET', seckey) or '0') end\n"
    "          if secn >= speed then code = 1011 end\n"
    "        end\n"
    "      end\n"
    "      if code == 0 then\n"
    "        exp = string.format('%d', sec + tonumber(ARGV[a + 6]))\n"
    "        -- a token that already exists (a broken token.lua) must not hand one purchase to two winners\n"
    "        if redis.call('HSETNX', KEYS[4], tok, uid .. ' ' .. ARGV[2] .. ' ' .. ARGV[1] .. ' ' .. t[1] .. ' ' .. exp) == 0 then\n"
    "          code = 1013\n"
    "        end\n"
    "      end\n"
    "    end\n"
    "    res = code == 0 and ('0 ' .. tok .. ' ' .. exp) or (code .. ' - 0')\n"
    "    -- the result is stored before anything is sold: one seen before (a takeover, or settled by access) stands\n"
    "    if redis.call('HSETNX', rk, id, res) == 0 then\n"
    "      if code == 0 then redis.call('HDEL', KEYS[4], tok) end\n"
    "      res = redis.call('HGET', rk, id)\n"
    "    else\n"
    "      if not kept[rk] then kept[rk] = ARGV[a + 10]; keptn[#keptn + 1] = rk end\n"
    "      if code == 0 then\n"
    "        sold = sold + 1\n"
    "        if speed > 0 then secn = secn + 1 end\n"
    "        local rest = held and string.match(held, '^%d+ (.*)$')\n"
    "        redis.call('HSET', KEYS[3], uid, (mine + 1) .. ' ' .. (rest and (rest .. ' ') or '') .. tok .. ' ' .. exp)\n"
    "        wins[#wins + 1] = uid .. ' ' .. tok .. ' ' .. t[1] .. ' ' .. exp\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  out[i] = res\n"
    "  local ch = ARGV[a + 8]\n"
    "  if not pubs[ch] then pubs[ch] = {}; chans[#chans + 1] = ch end\n"
    "  local p = pubs[ch]\n"
    "  p[#p + 1] = id .. ' ' .. res\n"
    "end\n"
    "if #wins > 0 then\n"
    "  redis.call('INCRBY', KEYS[2], #wins)\n"
    "  redis.call('RPUSH', KEYS[5], unpack(wins))\n"
    "  if speed > 0 then\n"
    "    redis.call('INCRBY', seckey, #wins)\n"
    "    redis.call('EXPIRE', seckey, 5)\n"
    "  end\n"
    "end\n"
    "for _, k in ipairs(keptn) do redis.call('EXPIREAT', k, kept[k], 'NX') end\n"
    "for _, ch in ipairs(chans) do redis.call('PUBLISH', ch, table.concat(pubs[ch], '\\n')) end\n"
    "out[#out + 1] = sold or -1\n"
    "return out\n";

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
