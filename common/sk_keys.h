/*
 * Every Redis key and pub/sub channel name of SecKill (docs/DESIGN.md "Redis keys"). Pure code.
 *
 * No other file spells a key: plugins, the host and the tools call these functions, and the Python tests derive the
 * names from the format table in sk_keys.c (tests/integration/sk_wire.py parses it; tests/unit/test_common_keys.c and
 * tests/integration/test_keys_layout.py check that both agree). Keys of one activity carry the hash tag {a<ID>}, so
 * every script and multi-key command of one activity touches one Redis Cluster slot.
 */
#ifndef SK_KEYS_H
#define SK_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* Stored results live in one hash per activity and minute of the request's deadline (Redis clock), so that a result
 * costs a hash field instead of a key with its own TTL. A result only matters until the logic script refuses the
 * entry by its deadline and the access node has settled it; the bucket is kept this long past its minute. */
#define SK_RESULT_BUCKET_MS 60000
#define SK_RESULT_KEEP_S 600

/** The names of the layout; sk_key_format() gives each one's printf format (the table in sk_keys.c). */
typedef enum en_sk_key_id {
    SK_KEY_NODE,             /* sk_key_node(): the live-node lock */
    SK_KEY_LOGIC_ALIVE,      /* constant: the logic heartbeat zset */
    SK_KEY_QUEUE,            /* sk_key_activity(): the activity's request stream */
    SK_KEY_NONCE,            /* sk_key_nonce(): the replay guard */
    SK_KEY_TOTAL,            /* sk_key_activity(): stock */
    SK_KEY_SOLD,             /* sk_key_activity(): wins so far */
    SK_KEY_USERS,            /* sk_key_activity(): per-user wins and tokens */
    SK_KEY_TOKENS,           /* sk_key_activity(): purchase tokens */
    SK_KEY_WINS,             /* sk_key_activity(): the winners list */
    SK_KEY_EXPIRY,           /* sk_key_activity(): zset of expiry seconds; list <key>:<s> */
    SK_KEY_TOKEN_COUNTS,     /* sk_key_activity(): consumed / cancelled / expired counts */
    SK_KEY_SEC_PREFIX,       /* sk_key_activity(): prefix of the per-second win counters (the script appends the second) */
    SK_KEY_RESULT,           /* sk_result_key(): a stored-results bucket */
    SK_KEY_BLACKLIST_USER,   /* constant */
    SK_KEY_BLACKLIST_IP,     /* constant */
    SK_KEY_BLACKLIST_NOTICE, /* constant: pub/sub channel */
    SK_KEY_REPLY,            /* sk_key_reply(): pub/sub channel of one access thread */
    SK_KEY_STATS,            /* sk_key_node_stats(): one node's published counters */
    SK_KEY_STATS_INDEX,      /* sk_key_node_stats(NULL): the nodes that publish */
    SK_KEY_MOVE_OUT,         /* sk_key_activity(): a bucket's outbox of stock moves (common/sk_shard.h) */
    SK_KEY_MOVE_IN,          /* sk_key_activity(): a bucket's inbox, the ids of the moves applied to it */
    SK_KEY_DRY,              /* sk_key_activity(): set by the rebalancer while every bucket of the activity is empty */
    SK_KEY_COUNT
} sk_key_id_t;

/** The printf format of a key (arguments: see each function), or NULL for an id out of range. */
const char *sk_key_format(sk_key_id_t id);
/** The name of a key without arguments (SK_KEY_LOGIC_ALIVE, SK_KEY_BLACKLIST_*), else NULL. */
const char *sk_key_const(sk_key_id_t id);
/** "sk:blacklist:user" for "user", "sk:blacklist:ip" for "ip", NULL for anything else. */
const char *sk_key_blacklist(const char *type);

/* Each writer below writes the key into buf and returns its length, or -1 if it does not fit. */

/* Room for the lock key of any node id the configuration accepts. */
#define SK_NODE_KEY_MAX 256
/** The live-node lock of node_id. */
int sk_key_node(char *buf, size_t cap, const char *node_id);
/** The replay guard of (user, nance) for a request to activity aid (a replay is refused within one activity). */
int sk_key_nonce(char *buf, size_t cap, int64_t aid, int64_t uid, const char *nance);
/** A key of activity aid: id is SK_KEY_QUEUE, one of SK_KEY_TOTAL .. SK_KEY_SEC_PREFIX or SK_KEY_MOVE_OUT ..
 * SK_KEY_DRY (-1 for any other id). */
int sk_key_activity(char *buf, size_t cap, sk_key_id_t id, int64_t aid);

/* Stock buckets (common/sk_shard.h): the same keys with the activity's tag "a<aid>" replaced by a bucket's tag from
 * sk_shard_tag(), so that bucket 0 (and every key of an unsharded activity) is exactly the key written above. */
/** sk_key_activity() for the bucket with hash tag `tag`. */
int sk_key_bucket(char *buf, size_t cap, sk_key_id_t id, const char *tag);
/** sk_key_nonce() for the bucket with hash tag `tag` (the user's bucket). */
int sk_key_bucket_nonce(char *buf, size_t cap, const char *tag, int64_t uid, const char *nance);
/** sk_result_key() for the bucket with hash tag `tag`. */
int sk_result_key_bucket(char *buf, size_t cap, const char *tag, int64_t deadline_ms);
/** The reply channel of access thread `thread` of node_id. */
int sk_key_reply(char *buf, size_t cap, const char *node_id, unsigned thread);
/** Writes "sk:{a<aid>}:res:<minute of deadline_ms>" into buf. Returns its length, or -1 if it does not fit. */
int sk_result_key(char *buf, size_t cap, int64_t aid, int64_t deadline_ms);
/** Unix seconds at which the bucket of deadline_ms may go (its EXPIREAT). */
int64_t sk_result_keep_until(int64_t deadline_ms);

/* Each node's published counters (host/stats_publish.c), read by the admin's dashboard. Both keys are untagged on
 * purpose: every command names one key only (HSET, PEXPIRE, ZADD, ZRANGEBYSCORE, HGETALL), so with a cluster each goes
 * to its own slot's master and nothing needs two of them together. The hash "sk:stats:<node_id>" lives a few seconds
 * past its last refresh; the zset "sk:stats" (no colon, so no node id can collide with it) lists node ids scored by the unix ms of
 * their last refresh, so that the admin finds every node without KEYS or SCAN. */
/** Writes the node's stats hash key, or with node_id NULL the index zset's, into buf. Its length, or -1. */
int sk_key_node_stats(char *buf, size_t cap, const char *node_id);

#endif
