/*
 * The insides of a logic lane, shared by consumer.c (reading, batching, the stock script) and wait.c
 * (redis.wait_replicas). Private to the logic plugin.
 */
#ifndef SK_LOGIC_LANE_H
#define SK_LOGIC_LANE_H

#include "logic.h"
#include "sk_shard.h"

/* SLOT_RESULT: decided here (or a held win WAIT confirmed), to publish and ack; SLOT_DONE: the script stored and
 * published it, to ack; SLOT_HELD: a win stored but not published (redis.wait_replicas), waiting for WAIT */
enum { SLOT_WAIT, SLOT_RESULT, SLOT_DONE, SLOT_HELD, SLOT_ACK, SLOT_LEAVE };

typedef struct st_sk_logic_batch_t sk_logic_batch_t;
typedef struct st_sk_logic_lane_t lane_t;

typedef struct st_sk_logic_slot_t {
    sk_logic_entry_t e;
    sk_logic_pre_t pre;
    sk_activity_t act; /* a copy: the snapshot pointer does not outlive this loop pass, and NOSCRIPT rebuilds the call */
    int has_act;
    int state;
    sk_logic_result_t res;
} sk_logic_slot_t;

/* One EVALSHA: the waiting entries of one activity, b->order[first .. first + n) */
typedef struct st_call_t {
    sk_logic_batch_t *b;
    unsigned first, n;
    int retried;
    int64_t wait_until_ms; /* monotonic: how long WAIT is asked again for this call's held wins */
} call_t;

struct st_sk_logic_batch_t {
    lane_t *w;
    int used;
    int reload_sent;
    size_t n, outstanding, ncalls;
    sk_logic_slot_t slots[SK_LOGIC_BATCH];
    unsigned order[SK_LOGIC_BATCH];
    call_t calls[SK_LOGIC_BATCH];
};

#define SOLD_CACHE 16

/* One consumer of one activity's stream: its own connection, reads and batches. A worker thread runs SK_LOGIC_LANES of
 * them per live activity (worker.c), so that while one lane's next read waits behind its scripts, another lane's read
 * takes what access queued meanwhile: each Redis pass then hands entries to some lane, instead of every other pass. A
 * blocking read holds its connection, hence a connection per lane; and separate lanes per activity mean a hot
 * activity never starves another, on one master or many. */
struct st_sk_logic_lane_t {
    sk_logic_t *L;
    sk_logic_worker_t *worker;
    int64_t aid;
    unsigned bucket, nbuckets;  /* the stock bucket whose stream this lane reads (common/sk_shard.h) */
    char tag[SK_SHARD_TAG_MAX]; /* its hash tag */
    char stream[96];            /* the bucket's queue */
    char route[96];             /* a key of the bucket: routes WAIT to the master its scripts ran on */
    const sk_host_api_t *api;
    sk_thread_t *thr;
    sk_redis_t *redis; /* scripts, PUBLISH, WAIT: the durable Redis */
    sk_redis_t *q;     /* the stream (group, reads, claims, acks): redis.queue_addr's connection, or redis */
    sk_timer_t *timer;
    char consumer[224];
    int ready;         /* the group and the script are set up on the current connection */
    int setup_pending; /* SCRIPT LOAD / XGROUP CREATE in flight */
    int reading;       /* a read in flight (one at a time) */
    unsigned nbatches; /* batches in flight */
    int busy;          /* reading || nbatches: what inflight() counts */
    int disposing;
    int drained; /* stopping and nothing more to read */
    uint64_t last_claim_ms;
    char claim_cursor[48];
    int64_t last_log_ms;
    unsigned suppressed;
    struct {
        int64_t aid, sold;
    } sold_cache[SOLD_CACHE];
    sk_logic_batch_t batches[SK_LOGIC_PIPELINE];
    sk_logic_call_t call; /* scratch: hiredis copies a command as it is sent */
};

/** The lane a script or WAIT reply of call c belongs to, or NULL when that lane is being freed (the reply is then
 * only counted off its batch). */
static inline lane_t *
sk_logic_call_lane(call_t *c)
{
    lane_t *w = c->b->w;
    if (w->disposing) {
        c->b->outstanding--;
        return NULL;
    }
    return w;
}

/** Errors repeat per entry when Redis misbehaves: at most one line a second per lane at WARN and above. */
void sk_logic_wlog(lane_t *w, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/** Once every call of the batch is back: publishes what was decided here, acks, frees the batch, reads on. */
void sk_logic_finish_batch(sk_logic_batch_t *b);
/** wait.c: after a call's script reply, holds its wins until WAIT confirms them (redis.wait_replicas > 0). 1 when a
 * WAIT is under way (the call stays outstanding and wait.c finishes it), else 0. */
int sk_logic_hold_wins(lane_t *w, call_t *c);

#endif
