#include "sk_keys.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*
 * The layout, one format per name. tests/integration/sk_wire.py parses this table (one `[SK_KEY_X] = "format",` per
 * line; %lld, %u and %s only), so keep that shape. A key without the {a<ID>} tag is a single-key structure: no script
 * or multi-key command takes it together with another key, so its slot does not matter.
 */
static const char *const formats[SK_KEY_COUNT] = {
    /* untagged: one string per node, only SET/EVAL on that one key */
    [SK_KEY_NODE] = "sk:node:%s",
    /* untagged: one zset read and written alone (ZADD, ZCOUNT, ZREMRANGEBYSCORE) */
    [SK_KEY_LOGIC_ALIVE] = "sk:logic:alive",
    /* aid: the request stream of one activity (group "logic"); the access script takes it with that activity's nonce
     * keys, the logic layer reads it alone */
    [SK_KEY_QUEUE] = "sk:{a%lld}:q",
    /* aid, user, nance: in the activity's slot, so /sec/result's script (nonce + users) is one slot */
    [SK_KEY_NONCE] = "sk:{a%lld}:n:%lld:%s",
    [SK_KEY_TOTAL] = "sk:{a%lld}:total",
    [SK_KEY_SOLD] = "sk:{a%lld}:sold",
    [SK_KEY_USERS] = "sk:{a%lld}:users",
    [SK_KEY_TOKENS] = "sk:{a%lld}:tokens",
    [SK_KEY_WINS] = "sk:{a%lld}:wins",
    /* zset token -> expires_at, written with the win; the reaper pops what is due (never a scan of every token) */
    [SK_KEY_EXPIRY] = "sk:{a%lld}:exp",
    /* hash: consumed, cancelled, expired (returned = cancelled + expired), each counted once by the deciding script */
    [SK_KEY_TOKEN_COUNTS] = "sk:{a%lld}:tcount",
    [SK_KEY_SEC_PREFIX] = "sk:{a%lld}:sec:",
    /* aid, minute of the deadline */
    [SK_KEY_RESULT] = "sk:{a%lld}:res:%lld",
    /* untagged: hashes read and written one command at a time (HSET, HDEL, HSCAN, a one-key script) */
    [SK_KEY_BLACKLIST_USER] = "sk:blacklist:user",
    [SK_KEY_BLACKLIST_IP] = "sk:blacklist:ip",
    /* pub/sub channels have no slot that matters on one Redis; on a cluster PUBLISH reaches every node */
    [SK_KEY_BLACKLIST_NOTICE] = "sk:blacklist:notice",
    /* node id, access thread index */
    [SK_KEY_REPLY] = "sk:reply:%s:%u",
    /* untagged: one node's published counters (host/stats_publish.c), a hash with a TTL, written and read alone */
    [SK_KEY_STATS] = "sk:stats:%s",
    /* untagged: the zset of nodes that publish counters; "sk:stats" without a colon, so no node id can collide */
    [SK_KEY_STATS_INDEX] = "sk:stats",
    /* hash move id -> "<units> <destination bucket>": units taken from this bucket's total and not yet known added */
    [SK_KEY_MOVE_OUT] = "sk:{a%lld}:mout",
    /* set of move ids added to this bucket's total: a re-driven move is applied at most once */
    [SK_KEY_MOVE_IN] = "sk:{a%lld}:min",
    /* "1" while every bucket is empty: the stock script of an empty bucket then answers 1007 instead of 1011 */
    [SK_KEY_DRY] = "sk:{a%lld}:dry",
};

const char *
sk_key_format(sk_key_id_t id)
{
    return (unsigned)id < SK_KEY_COUNT ? formats[id] : NULL;
}

const char *
sk_key_const(sk_key_id_t id)
{
    switch (id) {
    case SK_KEY_LOGIC_ALIVE:
    case SK_KEY_BLACKLIST_USER:
    case SK_KEY_BLACKLIST_IP:
    case SK_KEY_BLACKLIST_NOTICE:
        return formats[id];
    default:
        return NULL;
    }
}

const char *
sk_key_blacklist(const char *type)
{
    if (type == NULL)
        return NULL;
    if (strcmp(type, "user") == 0)
        return formats[SK_KEY_BLACKLIST_USER];
    if (strcmp(type, "ip") == 0)
        return formats[SK_KEY_BLACKLIST_IP];
    return NULL;
}

/* The formats are not literals here, so the compiler cannot check them: each caller below passes exactly what its
 * table entry asks for (the unit test covers every entry). */
static int
put(char *buf, size_t cap, sk_key_id_t id, ...)
{
    va_list ap;
    va_start(ap, id);
    int n = vsnprintf(buf, cap, formats[id], ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int
sk_key_node(char *buf, size_t cap, const char *node_id)
{
    return put(buf, cap, SK_KEY_NODE, node_id);
}

int
sk_key_nonce(char *buf, size_t cap, int64_t aid, int64_t uid, const char *nance)
{
    return put(buf, cap, SK_KEY_NONCE, (long long)aid, (long long)uid, nance);
}

int
sk_key_activity(char *buf, size_t cap, sk_key_id_t id, int64_t aid)
{
    if (id != SK_KEY_QUEUE && (id < SK_KEY_TOTAL || id > SK_KEY_SEC_PREFIX) && (id < SK_KEY_MOVE_OUT || id > SK_KEY_DRY))
        return -1;
    return put(buf, cap, id, (long long)aid);
}

/* The format of id with its "{a%lld}" made "{%s}", so the tag is the first argument. */
static int
tagged_format(char *out, size_t cap, sk_key_id_t id)
{
    const char *f = formats[id], *at = strstr(f, "{a%lld}");
    if (at == NULL || strlen(f) + 1 > cap)
        return -1;
    size_t pre = (size_t)(at - f);
    snprintf(out, cap, "%.*s{%%s}%s", (int)pre, f, at + strlen("{a%lld}"));
    return 0;
}

static int
put_tagged(char *buf, size_t cap, sk_key_id_t id, ...)
{
    char fmt[64];
    if (tagged_format(fmt, sizeof(fmt), id) != 0)
        return -1;
    va_list ap;
    va_start(ap, id);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int
sk_key_bucket(char *buf, size_t cap, sk_key_id_t id, const char *tag)
{
    if (id != SK_KEY_QUEUE && (id < SK_KEY_TOTAL || id > SK_KEY_SEC_PREFIX) && (id < SK_KEY_MOVE_OUT || id > SK_KEY_DRY))
        return -1;
    return put_tagged(buf, cap, id, tag);
}

int
sk_key_bucket_nonce(char *buf, size_t cap, const char *tag, int64_t uid, const char *nance)
{
    return put_tagged(buf, cap, SK_KEY_NONCE, tag, (long long)uid, nance);
}

int
sk_key_reply(char *buf, size_t cap, const char *node_id, unsigned thread)
{
    return put(buf, cap, SK_KEY_REPLY, node_id, thread);
}

static int64_t
bucket_of(int64_t deadline_ms)
{
    return deadline_ms < 0 ? 0 : deadline_ms / SK_RESULT_BUCKET_MS;
}

int
sk_result_key(char *buf, size_t cap, int64_t aid, int64_t deadline_ms)
{
    return put(buf, cap, SK_KEY_RESULT, (long long)aid, (long long)bucket_of(deadline_ms));
}

int
sk_result_key_bucket(char *buf, size_t cap, const char *tag, int64_t deadline_ms)
{
    return put_tagged(buf, cap, SK_KEY_RESULT, tag, (long long)bucket_of(deadline_ms));
}

int64_t
sk_result_keep_until(int64_t deadline_ms)
{
    return (bucket_of(deadline_ms) + 1) * (SK_RESULT_BUCKET_MS / 1000) + SK_RESULT_KEEP_S;
}

int
sk_key_node_stats(char *buf, size_t cap, const char *node_id)
{
    return node_id != NULL ? put(buf, cap, SK_KEY_STATS, node_id) : put(buf, cap, SK_KEY_STATS_INDEX);
}
