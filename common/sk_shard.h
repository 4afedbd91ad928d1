/*
 * Stock buckets of a hot activity (SPEC §9, README "Hot activities: shards"). Pure code, no I/O.
 *
 * An activity with shards = K keeps its per-activity keys K times, once per bucket, each set under its own hash tag so
 * that the buckets spread over the masters of a Redis Cluster. Bucket 0's tag is the activity's own "a<aid>", so K = 1
 * is today's layout byte for byte. Bucket b >= 1 uses "a<aid>.<b>.<n>" with the smallest n whose slot lies in stripe
 * (stripe of bucket 0 + b) mod K, the 16384 slots cut into K equal stripes: redis-cli --cluster create splits the slots
 * evenly, so with K = the number of masters the K buckets land on K masters, with no coordination and the same answer
 * on every node. A user always maps to one bucket (sk_shard_of_user), so buy_limit stays a single-slot check.
 */
#ifndef SK_SHARD_H
#define SK_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SK_SHARD_SLOTS 16384
#define SK_SHARD_TAG_MAX 48         /* "a<int64>.<63>.<n>" and its NUL */
#define SK_SHARD_SEARCH_MAX 1000000 /* n is ~K tries on average; past this bound n = 0 (a bucket may then share a stripe) */

/** Writes bucket b's hash tag (without braces) of activity aid with k buckets into buf: "a<aid>" for b = 0 or k <= 1,
 * else "a<aid>.<b>.<n>". Returns its length, or -1 if it does not fit or b >= k. */
int sk_shard_tag(char *buf, size_t cap, int64_t aid, unsigned b, unsigned k);

/** The bucket (0 .. k-1) of user uid: FNV-1a of the decimal id, mod k. tests/integration/sk_wire.py has the same. */
unsigned sk_shard_of_user(int64_t uid, unsigned k);

/** Bucket b's initial share of total over k buckets: total / k, plus one for the first total % k buckets. */
int64_t sk_shard_split(int64_t total, unsigned b, unsigned k);

/** Bucket b's share of speed (wins per second, > 0) in unix second sec: speed / k, plus one when
 * (b + sec) mod k < speed mod k, so that the shares of one second add up to speed exactly and the extra wins rotate.
 * A share of 0 means no win in that second. redis/logic_stock.lua computes the same from Redis' TIME. */
int64_t sk_shard_speed(int64_t speed, unsigned b, unsigned k, int64_t sec);

/** How many units to move from a donor holding donor_left to a low bucket: ceil(donor_left / (2k)), at least 1, at
 * most donor_left. A donor never gives more than half of what it holds divided over the buckets, so racing
 * rebalancers cannot empty a donor, and near the end the moves shrink to single units so that none is stranded.
 * 0 when donor_left <= 0. */
int64_t sk_shard_move_amount(int64_t donor_left, unsigned k);

/** The low-water mark of a bucket: below it (and not only at 0) stock moves to it. A quarter of its initial share,
 * at least 1, so that a hot bucket is refilled before it runs dry. */
int64_t sk_shard_low_water(int64_t total, unsigned k);

#define SK_SHARD_MAX 64 /* SK_MAX_SHARDS of the plugin API */

typedef struct st_sk_shard_move_t {
    unsigned from, to;
    int64_t units;
} sk_shard_move_t;

#define SK_SHARD_WANTED 1   /* empty and turning buyers away: its 'w' flag */
#define SK_SHARD_RECEIVED 2 /* received a move a moment ago: its 'r' flag */

/** The moves one rebalancer read calls for, given each bucket's units left and its flags (SK_SHARD_WANTED,
 * SK_SHARD_RECEIVED). A bucket below sk_shard_low_water() receives sk_shard_move_amount() of the fullest other bucket
 * that has not just received: at once when it is empty and wanted, else only when the donor keeps at least as much
 * as the receiver then holds. A bucket that has just received (also earlier in the same plan) gives nothing, so that
 * the last units are not passed back and forth between two empty buckets with buyers faster than either can sell
 * them. At most one move per receiver; the plan's moves add up to zero over the buckets. Writes the moves to out
 * (room for k) and returns their count; 0 for k < 2. */
size_t sk_shard_plan(const int64_t *left, const unsigned char *flags, unsigned k, int64_t total, sk_shard_move_t *out);

#endif
