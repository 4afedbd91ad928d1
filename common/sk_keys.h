/*
 * Redis keys that more than one plugin names (docs/DESIGN.md "Redis keys"). Pure code.
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
