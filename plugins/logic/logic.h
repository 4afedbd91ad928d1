/*
 * The logic layer: consumes the request queue (stream sk:queue, group "logic"), decides every request in one atomic
 * Redis step and answers the waiting access thread by PUBLISH. See docs/DESIGN.md for the keys and the protocol.
 *
 * Files: logic_plugin.c (descriptor and glue), entry.c (pure: queue entries, results, replies), decide.c (pure: the
 * pre-checks and the script call), stock_script.c (the Redis scripts), consumer.c (WORKER threads), heartbeat.c
 * (CONTROL thread: heartbeat, trimming, queue stats), stats.c (/status and /metrics).
 */
#ifndef SK_LOGIC_H
#define SK_LOGIC_H

#include <stdatomic.h>
#include <stdint.h>
#include "seckill/plugin.h"
#include "sk_keys.h"
#include "sk_scripts.h"

/* key names: common/sk_keys.h; each activity has its own stream (SK_KEY_QUEUE) */
#define SK_LOGIC_GROUP "logic"
#define SK_LOGIC_ALIVE sk_key_const(SK_KEY_LOGIC_ALIVE)
#define SK_LOGIC_BATCH 64
#define SK_LOGIC_BATCH_S "64"
#define SK_LOGIC_PIPELINE 4 /* batches in flight per lane */
#define SK_LOGIC_LANES 2    /* consumers (connections) per worker thread */
#define SK_LOGIC_BLOCK_MS 100
#define SK_LOGIC_BLOCK_MS_S "100"
#define SK_LOGIC_CLAIM_IDLE_MS 1000
#define SK_LOGIC_WAIT_MS 100 /* one WAIT's own timeout (redis.wait_replicas) */
#define SK_LOGIC_WAIT_MS_S "100"
#define SK_LOGIC_MAX_STREAMS 256 /* live activities one worker reads */
#define SK_LOGIC_REAP_BATCH 256  /* due tokens one reaper script pops (short scripts: the sale's run in between) */
#define SK_LOGIC_DRAIN_S 60      /* an activity's stream is still read this long after its end_time */
#define SK_LOGIC_CLAIM_EVERY_MS 500
#define SK_LOGIC_HEARTBEAT_MS 500
#define SK_LOGIC_STALE_MS 60000 /* heartbeat members older than this are removed */
#define SK_LOGIC_RESULT_TTL 3600
#define SK_LOGIC_TOKEN_MAX 128
#define SK_LOGIC_REBALANCE_MS 50      /* reads of the buckets of each live sharded activity */
#define SK_LOGIC_MOVE_REDRIVE_MS 1000 /* an outbox entry this old is driven on by any node */
#define SK_LOGIC_RECEIVED_MS 500      /* a bucket that received a move gives nothing for this long */

/* ---- entry.c: pure ---- */

/** One queue entry as access wrote it (DESIGN.md "The request queue"). */
typedef struct st_sk_logic_entry_t {
    char sid[48]; /* stream id "<ms>-<seq>" */
    int64_t sid_ms;
    char id[128];    /* request id */
    char reply[160]; /* pub/sub channel */
    int64_t aid, pid, uid, now, deadline;
    char ip[64];
} sk_logic_entry_t;

/** A decision: what the script stores in the result bucket ("<code> <token> <expires_at>"). token is "-" when none. */
typedef struct st_sk_logic_result_t {
    int code;
    char token[SK_LOGIC_TOKEN_MAX + 1];
    int64_t expires_at;
} sk_logic_result_t;

/** Parses a stream id "<ms>-<seq>" and the entry's field/value pairs (fv[0]=field, fv[1]=value, ...; nfv counts
 * strings): either one field "r" = "<id> <reply> <aid> <pid> <uid> <ip> <now> <deadline>" (what access writes), or a
 * field per value under those names. Returns 0 when every value is present and valid. On -1 `err` names the first bad
 * field, and e->id and e->reply are still filled when those two were valid (check e->id[0] && e->reply[0]) so the
 * request can be answered. */
int sk_logic_entry_parse(sk_logic_entry_t *e, const char *sid, size_t sidlen, const char *const *fv, const size_t *fvlen,
                         size_t nfv, char *err, size_t errlen);
/** Parses "<code> <token> <expires_at>". 0 or -1. */
int sk_logic_result_parse(sk_logic_result_t *r, const char *s, size_t len);
/** A result with no token ("-", 0). */
void sk_logic_result_set(sk_logic_result_t *r, int code);
/** Writes the reply message "<id> <code> <token> <expires_at>". Returns its length, or -1 if it does not fit. */
int sk_logic_reply_format(char *buf, size_t cap, const char *id, const sk_logic_result_t *r);
/** True for a token the script can store and the reply can carry: 16..128 printable bytes without space. */
int sk_logic_token_ok(const char *token);

/* ---- decide.c: pure ---- */

/** The activity of the entry in the snapshot. Returns 0 (found and enabled: *out set), SK_E_NOT_FOUND (unknown, or
 * it belongs to another product) or SK_E_DISABLED (status 0: the kill switch). */
int sk_logic_precheck(const sk_snapshot_t *snap, const sk_logic_entry_t *e, const sk_activity_t **out);

/** What the worker decided before the atomic step. */
typedef struct st_sk_logic_pre_t {
    int code;  /* 0 = let the script decide; else the script only stores and returns this code */
    int allow; /* buy_rate.lua said yes (then token and ttl are set) */
    char token[SK_LOGIC_TOKEN_MAX + 1];
    int64_t ttl;
} sk_logic_pre_t;

#define SK_LOGIC_CALL_NKEYS 7       /* before the per-entry result buckets */
#define SK_LOGIC_CALL_NARGS 8       /* before the per-entry arguments */
#define SK_LOGIC_CALL_ENTRY_ARGS 10 /* per entry */
#define SK_LOGIC_CALL_ARGC (3 + SK_LOGIC_CALL_NKEYS + SK_LOGIC_CALL_NARGS + SK_LOGIC_BATCH * (1 + SK_LOGIC_CALL_ENTRY_ARGS) + 1)

/** The argv of one EVALSHA of the stock script for up to SK_LOGIC_BATCH entries of one activity, with its own
 * storage (about 60 KiB: keep one per consumer, not on a stack). */
typedef struct st_sk_logic_call_t {
    int argc;
    size_t used;
    const char *argv[SK_LOGIC_CALL_ARGC];
    size_t argvlen[SK_LOGIC_CALL_ARGC];
    char buf[SK_LOGIC_BATCH * 768 + 1024];
} sk_logic_call_t;

/** Builds EVALSHA <sha> for n entries (1..SK_LOGIC_BATCH) of one activity, in order; pre[i] is what was decided for
 * e[i] before the step. `act` may be NULL only when every pre[i]->code is non-zero. Returns 0, or -1 if the entries
 * belong to different activities or the call does not fit. */
int sk_logic_call_build(sk_logic_call_t *c, const char *sha, const sk_activity_t *act, const sk_logic_entry_t *const *e,
                        const sk_logic_pre_t *const *pre, size_t n);

/** The stock bucket a call decides in (common/sk_shard.h): its hash tag, index and the activity's bucket count. */
typedef struct st_sk_logic_bucket_t {
    const char *tag;
    unsigned index, count;
} sk_logic_bucket_t;

/** sk_logic_call_build() for one bucket of a sharded activity: the bucket's keys, its initial share of the stock and
 * its index and count (the script shares speed out by them). */
int sk_logic_call_build_bucket(sk_logic_call_t *c, const char *sha, const sk_activity_t *act, const sk_logic_bucket_t *bk,
                               const sk_logic_entry_t *const *e, const sk_logic_pre_t *const *pre, size_t n);

/** Appends the hold flag to a built call (redis.wait_replicas > 0): the script then publishes no win, and the caller
 * tells the wins after WAIT. 0 or -1. */
int sk_logic_call_hold(sk_logic_call_t *c);

/* ---- stock_script.c ---- */

/* The scripts are redis/logic_stock.lua, logic_heartbeat.lua and logic_trim.lua (sk_scripts.h). */
/** Lower-case hex SHA1 of a script, as SCRIPT LOAD would answer. out needs 41 bytes. */
void sk_logic_script_sha(const char *script, char *out);

/* ---- the instance (logic_plugin.c creates it) ---- */

enum {
    SK_LOGIC_C_OK,
    SK_LOGIC_C_NOT_FOUND,
    SK_LOGIC_C_SOLD_OUT,
    SK_LOGIC_C_TIMEOUT,
    SK_LOGIC_C_DISABLED,
    SK_LOGIC_C_NOT_SELECTED,
    SK_LOGIC_C_ALREADY_BOUGHT,
    SK_LOGIC_C_UNAVAILABLE,
    SK_LOGIC_C_OTHER,
    SK_LOGIC_C_N
};

typedef struct st_sk_logic_stats_t {
    atomic_ullong decisions[SK_LOGIC_C_N];
    atomic_ullong read, claimed, batches, malformed, redis_errors, script_errors, policy_errors, reloads, left_pending;
    atomic_llong pending, lag, xlen, trimmed; /* from the control thread; -1 unknown */
    atomic_llong heartbeat_redis_ms;          /* last heartbeat, Redis clock */
    atomic_ullong heartbeats, heartbeat_errors;
    atomic_ullong wait_short;            /* WAIT answers with fewer replicas than redis.wait_replicas */
    atomic_llong streams;                /* live activity streams, summed over workers */
    atomic_ullong returned, reap_errors; /* units the reaper gave back (expired tokens); failed reaper calls */
    /* rebalance.c: moves whose step 1 took units, moves finished, outbox entries driven on for another mover, units
     * added to receivers, failed steps (a failed move is finished by a later re-drive) */
    atomic_ullong moves_started, moves_done, moves_redriven, units_moved, move_errors;
} sk_logic_stats_t;

typedef struct st_sk_logic_hb_t sk_logic_hb_t;

typedef struct st_sk_logic_t {
    const sk_host_api_t *api;
    sk_plugin_t *self;
    const sk_config_t *conf;
    unsigned nworkers;
    char sha[41]; /* of redis/logic_stock.lua */
    atomic_int stopping;
    int64_t stop_deadline_ms; /* monotonic; set before `stopping` */
    atomic_int busy;          /* workers with a read or a batch in flight */
    atomic_int ready_workers; /* workers whose connection has the group and the script */
    sk_logic_hb_t *hb;        /* owned by the control thread */
    sk_logic_stats_t stats;
} sk_logic_t;

/** Monotonic ms, comparable across threads. */
int64_t sk_logic_mono_ms(void);
/** Index into stats.decisions for a result code. */
int sk_logic_code_index(int code);

/* ---- consumer.c: one lane, a consumer of one activity's stream ---- */
typedef struct st_sk_logic_worker_t sk_logic_worker_t;
typedef struct st_sk_logic_lane_t sk_logic_lane_t;
/** On a WORKER thread: starts lane `index` of stock bucket `bucket` of the `nbuckets` of activity aid (its own
 * connection). NULL on failure. */
sk_logic_lane_t *sk_logic_lane_new(sk_logic_t *L, sk_thread_t *thr, sk_logic_worker_t *worker, int64_t aid, unsigned bucket,
                                   unsigned nbuckets, unsigned index);
/** The bucket a lane reads and the activity's bucket count when the lane was made. */
unsigned sk_logic_lane_bucket(const sk_logic_lane_t *l, unsigned *nbuckets);
void sk_logic_lane_free(sk_logic_lane_t *l);
int64_t sk_logic_lane_aid(const sk_logic_lane_t *l);

/* ---- worker.c: WORKER threads, the lanes of every live activity ---- */
sk_logic_worker_t *sk_logic_worker_new(sk_logic_t *L, sk_thread_t *thr);
void sk_logic_worker_free(sk_logic_worker_t *w);
/** The thread's snapshot changed: lanes for activities that became live, none for those that are not any more. */
void sk_logic_worker_sync(sk_logic_worker_t *w, const sk_snapshot_t *snap);
/** A lane of the worker became ready (+1) or stopped being ready (-1). */
void sk_logic_worker_lane_ready(sk_logic_worker_t *w, int delta);
/** Pure: true when activity a's stream is read at unix second now (live, or ended less than SK_LOGIC_DRAIN_S ago). */
int sk_logic_stream_live(const sk_activity_t *a, int64_t now);

/* ---- heartbeat.c: the CONTROL thread ---- */
sk_logic_hb_t *sk_logic_hb_new(sk_logic_t *L, sk_thread_t *thr);
void sk_logic_hb_free(sk_logic_hb_t *hb);
/** Control thread: removes this node from sk:logic:alive and stops heartbeating. */
void sk_logic_hb_leave(sk_logic_hb_t *hb);

/* ---- reap.c: the CONTROL thread, on the heartbeat's connection and tick ---- */
typedef struct st_sk_logic_reap_t sk_logic_reap_t;
sk_logic_reap_t *sk_logic_reap_new(sk_logic_t *L, sk_thread_t *thr, sk_redis_t *redis);
/** One reaper pass over the snapshot's activities (those whose last call is still out are skipped). */
void sk_logic_reap_tick(sk_logic_reap_t *rp);
/** After the Redis connection is freed (its callbacks have run). */
void sk_logic_reap_free(sk_logic_reap_t *rp);

/* ---- rebalance.c: the CONTROL thread, on the heartbeat's connection ---- */
typedef struct st_sk_logic_rebal_t sk_logic_rebal_t;
sk_logic_rebal_t *sk_logic_rebal_new(sk_logic_t *L, sk_thread_t *thr, sk_redis_t *redis);
/** Stops starting rounds and moves; before the Redis connection is freed. */
void sk_logic_rebal_close(sk_logic_rebal_t *rb);
/** After the Redis connection is freed (its callbacks have run). */
void sk_logic_rebal_free(sk_logic_rebal_t *rb);

/* ---- stats.c ---- */
void sk_logic_status(sk_logic_t *L, cJSON *obj);
void sk_logic_metrics(sk_logic_t *L, FILE *out);

#endif
