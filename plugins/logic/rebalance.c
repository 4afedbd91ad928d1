/*
 * The rebalancer of sharded activities (CONTROL thread of every logic node; SPEC §9, README "Hot activities: shards").
 *
 * An activity with shards = K keeps its stock in K buckets on K hash tags (common/sk_shard.h). Every
 * SK_LOGIC_REBALANCE_MS this reads each live sharded activity's buckets (total, sold, flag, outbox) and moves stock to
 * the buckets that run low from the one that holds most. A move is two single-slot steps with a record in between:
 *
 *   1. redis/logic_move_out.lua on the donor: total -= m and outbox[id] = "dst m created_ms", in one step;
 *   2. redis/logic_move_in.lua on the receiver: once per id (its inbox set), total += m;
 *   3. HDEL of the outbox entry.
 *
 * Units are thus always in some bucket's total or in exactly one outbox entry. A node killed anywhere leaves an outbox
 * entry that any logic node finds in its next read and drives on from step 2 once it is SK_LOGIC_MOVE_REDRIVE_MS old;
 * step 2's inbox makes the re-drive apply at most once. Several nodes rebalance at once without harm: step 1 takes no
 * more than the donor has left, and sk_shard_move_amount() keeps racing moves from emptying a donor.
 *
 * Which buckets receive: one that is empty while its buyers are turned away (the stock script flags it 'w') takes
 * from the fullest donor at once; one that is merely below the low-water mark takes only when the move leaves the
 * donor no poorer than itself, so that quiet buckets do not pass units back and forth. A bucket that received a
 * move in the last SK_LOGIC_RECEIVED_MS (step 2 flags it 'r') is no donor: two empty buckets with buyers would
 * otherwise pass the last unit between them every round, faster than either's buyers can reach it. Once every bucket is empty
 * and no move is in flight in two reads running, each bucket's flag is set to '1' and the stock script answers 1007
 * (sold out) instead of 1011 (retry).
 *
 * SK_LOGIC_MOVE_PAUSE_MS (environment, tests only) waits that long between steps 1 and 2, so that a test can kill a
 * node in the middle of moves.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "logic.h"
#include "sk_shard.h"

_Static_assert(SK_SHARD_MAX == SK_MAX_SHARDS, "sk_shard.h and the plugin API agree on the most buckets");

#define MOVES_MAX 256 /* moves in flight on this node */
#define REDRIVE_PER_ROUND 64
#define FLAG_PX "3000" /* the sold-out flag outlives a few missed rounds, not a dead rebalancer */

typedef struct st_round_t round_t;

typedef struct st_bucket_t {
    round_t *r;
    unsigned index;
    int64_t total, sold; /* total -1: not written yet (its initial share) */
    char flag;           /* '1' sold out, 'w' empty with buyers, 'r' just received a move, 0 none */
    char tag[SK_SHARD_TAG_MAX];
} bucket_t;

struct st_round_t {
    sk_logic_rebal_t *rb;
    int64_t aid, total, end_time;
    unsigned k, outstanding, pending_moves;
    int failed;
    bucket_t b[SK_MAX_SHARDS];
};

typedef struct st_move_t {
    struct st_move_t *prev, *next; /* the node's moves in flight: freeing the rebalancer frees the paused ones */
    sk_logic_rebal_t *rb;
    int64_t aid, units, receiver_init, inbox_until;
    char id[192];
    char from_tag[SK_SHARD_TAG_MAX], to_tag[SK_SHARD_TAG_MAX];
    sk_timer_t *pause;
} move_t;

struct st_sk_logic_rebal_t {
    sk_logic_t *L;
    const sk_host_api_t *api;
    sk_thread_t *thr;
    sk_redis_t *redis;
    sk_timer_t *timer;
    unsigned rounds, moves;
    move_t *head;
    uint64_t seq;
    int64_t pause_ms;
    int closing;
    struct {
        int64_t aid;
        unsigned empty_reads;
    } dry[SK_LOGIC_MAX_STREAMS];
};

static int64_t
unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
key(char *buf, size_t cap, sk_key_id_t id, const char *tag)
{
    return sk_key_bucket(buf, cap, id, tag) < 0 ? -1 : 0;
}

/* ---- one move ---- */

static void
move_free(move_t *mv)
{
    sk_logic_rebal_t *rb = mv->rb;
    if (mv->pause != NULL)
        rb->api->timer_free(mv->pause);
    if (mv->prev != NULL)
        mv->prev->next = mv->next;
    else
        rb->head = mv->next;
    if (mv->next != NULL)
        mv->next->prev = mv->prev;
    rb->moves--;
    free(mv);
}

static void
ignore_reply(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    (void)reply;
    (void)err;
    (void)data;
}

static void
on_outbox_deleted(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    move_t *mv = data;
    if (err != NULL || reply->type == REDIS_REPLY_ERROR)
        atomic_fetch_add(&mv->rb->L->stats.move_errors, 1); /* the entry stays: a re-drive finds the id applied */
    else
        atomic_fetch_add(&mv->rb->L->stats.moves_done, 1);
    move_free(mv);
}

static void
on_moved_in(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    move_t *mv = data;
    sk_logic_rebal_t *rb = mv->rb;
    if (err != NULL || reply->type != REDIS_REPLY_INTEGER) {
        atomic_fetch_add(&rb->L->stats.move_errors, 1);
        move_free(mv);
        return;
    }
    if (reply->integer == 1)
        atomic_fetch_add(&rb->L->stats.units_moved, (unsigned long long)mv->units);
    char outbox[128];
    if (rb->closing || key(outbox, sizeof(outbox), SK_KEY_MOVE_OUT, mv->from_tag) != 0) {
        move_free(mv);
        return;
    }
    const char *argv[] = {"HDEL", outbox, mv->id};
    size_t lens[] = {4, strlen(outbox), strlen(mv->id)};
    if (rb->api->redis_cmdargv(rb->redis, on_outbox_deleted, mv, 0, 3, argv, lens) != 0) {
        atomic_fetch_add(&rb->L->stats.move_errors, 1);
        move_free(mv);
    }
}

/* Step 2, also the start of a re-drive. */
static void
move_in(move_t *mv)
{
    sk_logic_rebal_t *rb = mv->rb;
    char total[128], inbox[128], flag[128], units[24], init[24], until[24], hold[24];
    if (rb->closing || key(total, sizeof(total), SK_KEY_TOTAL, mv->to_tag) != 0 ||
        key(inbox, sizeof(inbox), SK_KEY_MOVE_IN, mv->to_tag) != 0 || key(flag, sizeof(flag), SK_KEY_DRY, mv->to_tag) != 0) {
        move_free(mv);
        return;
    }
    snprintf(units, sizeof(units), "%" PRId64, mv->units);
    snprintf(init, sizeof(init), "%" PRId64, mv->receiver_init);
    snprintf(until, sizeof(until), "%" PRId64, mv->inbox_until);
    snprintf(hold, sizeof(hold), "%d", SK_LOGIC_RECEIVED_MS);
    const char *argv[] = {"EVAL", sk_script_logic_move_in, "3", total, inbox, flag, mv->id, units, init, until, hold};
    size_t lens[11];
    for (size_t i = 0; i < 11; ++i)
        lens[i] = strlen(argv[i]);
    lens[1] = sk_script_logic_move_in_len;
    if (rb->api->redis_cmdargv(rb->redis, on_moved_in, mv, 0, 11, argv, lens) != 0) {
        atomic_fetch_add(&rb->L->stats.move_errors, 1);
        move_free(mv);
    }
}

static void
on_pause_over(sk_timer_t *t, void *data)
{
    (void)t;
    move_in(data);
}

static void
on_moved_out(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    move_t *mv = data;
    sk_logic_rebal_t *rb = mv->rb;
    if (err != NULL || reply->type != REDIS_REPLY_INTEGER) {
        /* a lost reply may still have recorded the move: its outbox entry is re-driven, nothing is lost */
        atomic_fetch_add(&rb->L->stats.move_errors, 1);
        move_free(mv);
        return;
    }
    if (reply->integer <= 0) {
        move_free(mv); /* the donor had nothing left by now */
        return;
    }
    mv->units = reply->integer;
    atomic_fetch_add(&rb->L->stats.moves_started, 1);
    if (rb->pause_ms > 0 && (mv->pause = rb->api->timer_new(rb->thr, on_pause_over, mv)) != NULL) {
        rb->api->timer_start(mv->pause, (uint64_t)rb->pause_ms);
        return;
    }
    move_in(mv);
}

static move_t *
move_new(round_t *r, unsigned from, unsigned to)
{
    sk_logic_rebal_t *rb = r->rb;
    if (rb->moves >= MOVES_MAX)
        return NULL;
    move_t *mv = calloc(1, sizeof(*mv));
    if (mv == NULL)
        return NULL;
    rb->moves++;
    mv->rb = rb;
    mv->next = rb->head;
    if (rb->head != NULL)
        rb->head->prev = mv;
    rb->head = mv;
    mv->aid = r->aid;
    memcpy(mv->from_tag, r->b[from].tag, sizeof(mv->from_tag));
    memcpy(mv->to_tag, r->b[to].tag, sizeof(mv->to_tag));
    mv->receiver_init = sk_shard_split(r->total, to, r->k);
    /* the inbox must outlive every re-drive of its moves: those stop once the stream is no longer read */
    mv->inbox_until = r->end_time + SK_LOGIC_DRAIN_S + 86400;
    return mv;
}

static void
move_start(round_t *r, unsigned from, unsigned to, int64_t units)
{
    sk_logic_rebal_t *rb = r->rb;
    move_t *mv = move_new(r, from, to);
    if (mv == NULL)
        return;
    int64_t now = unix_ms();
    snprintf(mv->id, sizeof(mv->id), "%s.%" PRIu64 ".%" PRId64, rb->L->conf->node_id, ++rb->seq, now);
    char total[128], sold[128], outbox[128], want[24], dst[16], created[24], init[24];
    if (key(total, sizeof(total), SK_KEY_TOTAL, mv->from_tag) != 0 || key(sold, sizeof(sold), SK_KEY_SOLD, mv->from_tag) != 0 ||
        key(outbox, sizeof(outbox), SK_KEY_MOVE_OUT, mv->from_tag) != 0) {
        move_free(mv);
        return;
    }
    snprintf(want, sizeof(want), "%" PRId64, units);
    snprintf(dst, sizeof(dst), "%u", to);
    snprintf(created, sizeof(created), "%" PRId64, now);
    snprintf(init, sizeof(init), "%" PRId64, sk_shard_split(r->total, from, r->k));
    const char *argv[] = {"EVAL", sk_script_logic_move_out, "3", total, sold, outbox, mv->id, want, dst, created, init};
    size_t lens[11];
    for (size_t i = 0; i < 11; ++i)
        lens[i] = strlen(argv[i]);
    lens[1] = sk_script_logic_move_out_len;
    if (rb->api->redis_cmdargv(rb->redis, on_moved_out, mv, 0, 11, argv, lens) != 0) {
        atomic_fetch_add(&rb->L->stats.move_errors, 1);
        move_free(mv);
    }
}

/* An outbox entry "dst units created_ms" left by a move that has not finished: step 2 again, then step 3. */
static void
redrive(round_t *r, unsigned from, const char *id, size_t idlen, const char *v, int64_t now_ms)
{
    unsigned dst;
    long long units, created;
    if (idlen == 0 || idlen >= sizeof(((move_t *)0)->id) || sscanf(v, "%u %lld %lld", &dst, &units, &created) != 3 || dst >= r->k ||
        units <= 0)
        return; /* not ours to touch: a malformed entry stays for a human to read */
    if (now_ms - created < SK_LOGIC_MOVE_REDRIVE_MS)
        return; /* its own mover is probably still at it */
    move_t *mv = move_new(r, from, dst);
    if (mv == NULL)
        return;
    memcpy(mv->id, id, idlen);
    mv->id[idlen] = '\0';
    mv->units = units;
    atomic_fetch_add(&r->rb->L->stats.moves_redriven, 1);
    /* rare (its mover stopped between the steps), and the trace of a crash that cost nothing */
    r->rb->api->log(r->rb->L->self, SK_LOG_INFO, "re-driving move %s: %lld units from bucket %u to bucket %u", mv->id, units, from,
                    dst);
    move_in(mv);
}

/* ---- one read of one activity's buckets, then the decision ---- */

static unsigned *
empty_reads(sk_logic_rebal_t *rb, int64_t aid)
{
    size_t i = (size_t)((uint64_t)aid % SK_LOGIC_MAX_STREAMS);
    if (rb->dry[i].aid != aid) {
        rb->dry[i].aid = aid;
        rb->dry[i].empty_reads = 0;
    }
    return &rb->dry[i].empty_reads;
}

static void
set_flags(round_t *r, int sold_out)
{
    sk_logic_rebal_t *rb = r->rb;
    for (unsigned i = 0; i < r->k; ++i) {
        char flag[128];
        if (key(flag, sizeof(flag), SK_KEY_DRY, r->b[i].tag) != 0)
            continue;
        if (sold_out)
            rb->api->redis_cmd(rb->redis, ignore_reply, NULL, "SET %s 1 PX %s", flag, FLAG_PX);
        else if (r->b[i].flag == '1')
            rb->api->redis_cmd(rb->redis, ignore_reply, NULL, "DEL %s", flag);
    }
}

static void
decide(round_t *r)
{
    int64_t left[SK_MAX_SHARDS], sum = 0;
    for (unsigned i = 0; i < r->k; ++i) {
        int64_t total = r->b[i].total >= 0 ? r->b[i].total : sk_shard_split(r->total, i, r->k);
        left[i] = total > r->b[i].sold ? total - r->b[i].sold : 0;
        sum += left[i];
    }
    unsigned *empty = empty_reads(r->rb, r->aid);
    if (sum == 0 && r->pending_moves == 0) {
        if (++*empty >= 2)
            set_flags(r, 1);
        return;
    }
    *empty = 0;
    set_flags(r, 0);
    if ((int64_t)time(NULL) >= r->end_time || atomic_load(&r->rb->L->stopping))
        return;
    unsigned char flags[SK_MAX_SHARDS];
    for (unsigned i = 0; i < r->k; ++i)
        flags[i] = r->b[i].flag == 'w' ? SK_SHARD_WANTED : r->b[i].flag == 'r' ? SK_SHARD_RECEIVED : 0;
    sk_shard_move_t plan[SK_MAX_SHARDS];
    size_t n = sk_shard_plan(left, flags, r->k, r->total, plan);
    for (size_t i = 0; i < n; ++i)
        move_start(r, plan[i].from, plan[i].to, plan[i].units);
}

static void
round_done_one(round_t *r)
{
    if (--r->outstanding != 0)
        return;
    if (!r->failed && !r->rb->closing)
        decide(r);
    r->rb->rounds--;
    free(r);
}

static void
on_counts(sk_redis_t *rd, redisReply *reply, const char *err, void *data)
{
    (void)rd;
    bucket_t *b = data;
    if (err != NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        b->r->failed = 1;
    } else {
        const redisReply *t = reply->element[0], *s = reply->element[1], *f = reply->element[2];
        b->total = t->type == REDIS_REPLY_STRING ? strtoll(t->str, NULL, 10) : -1;
        b->sold = s->type == REDIS_REPLY_STRING ? strtoll(s->str, NULL, 10) : 0;
        b->flag = f->type == REDIS_REPLY_STRING && f->len == 1 ? f->str[0] : 0;
    }
    round_done_one(b->r);
}

static void
on_outbox(sk_redis_t *rd, redisReply *reply, const char *err, void *data)
{
    (void)rd;
    bucket_t *b = data;
    round_t *r = b->r;
    if (err != NULL || reply->type != REDIS_REPLY_ARRAY) {
        r->failed = 1;
    } else {
        int64_t now = unix_ms();
        unsigned redriven = 0;
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            const redisReply *id = reply->element[i], *v = reply->element[i + 1];
            r->pending_moves++;
            if (id->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING && redriven < REDRIVE_PER_ROUND &&
                !r->rb->closing) {
                redrive(r, b->index, id->str, id->len, v->str, now);
                redriven++;
            }
        }
    }
    round_done_one(r);
}

static void
read_activity(sk_logic_rebal_t *rb, const sk_activity_t *a)
{
    round_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    r->rb = rb;
    r->aid = a->activity_id;
    r->total = a->total;
    r->end_time = a->end_time;
    r->k = (unsigned)sk_activity_shards(a);
    r->outstanding = 1; /* held while sending */
    rb->rounds++;
    for (unsigned i = 0; i < r->k; ++i) {
        bucket_t *b = &r->b[i];
        b->r = r;
        b->index = i;
        char total[128], sold[128], flag[128], outbox[128];
        if (sk_shard_tag(b->tag, sizeof(b->tag), a->activity_id, i, r->k) < 0 ||
            key(total, sizeof(total), SK_KEY_TOTAL, b->tag) != 0 || key(sold, sizeof(sold), SK_KEY_SOLD, b->tag) != 0 ||
            key(flag, sizeof(flag), SK_KEY_DRY, b->tag) != 0 || key(outbox, sizeof(outbox), SK_KEY_MOVE_OUT, b->tag) != 0) {
            r->failed = 1;
            break;
        }
        r->outstanding += 2;
        if (rb->api->redis_cmd(rb->redis, on_counts, b, "MGET %s %s %s", total, sold, flag) != 0) {
            r->failed = 1;
            r->outstanding--;
        }
        if (rb->api->redis_cmd(rb->redis, on_outbox, b, "HGETALL %s", outbox) != 0) {
            r->failed = 1;
            r->outstanding--;
        }
    }
    round_done_one(r);
}

static void
on_tick(sk_timer_t *t, void *data)
{
    sk_logic_rebal_t *rb = data;
    if (rb->closing)
        return;
    /* one round at a time: a slow Redis makes rounds rarer, never piles them up */
    if (rb->rounds == 0 && rb->api->redis_connected(rb->redis)) {
        const sk_snapshot_t *snap = rb->api->snapshot(rb->thr);
        int64_t now = (int64_t)time(NULL);
        for (size_t i = 0; i < snap->nactivities; ++i) {
            const sk_activity_t *a = &snap->activities[i];
            /* moves of an ended activity are still driven to completion while its streams are read */
            if (sk_activity_shards(a) > 1 && a->start_time <= now + 1 && sk_logic_stream_live(a, now))
                read_activity(rb, a);
        }
    }
    rb->api->timer_start(t, SK_LOGIC_REBALANCE_MS);
}

sk_logic_rebal_t *
sk_logic_rebal_new(sk_logic_t *L, sk_thread_t *thr, sk_redis_t *redis)
{
    sk_logic_rebal_t *rb = calloc(1, sizeof(*rb));
    if (rb == NULL)
        return NULL;
    rb->L = L;
    rb->api = L->api;
    rb->thr = thr;
    rb->redis = redis;
    const char *p = getenv("SK_LOGIC_MOVE_PAUSE_MS");
    rb->pause_ms = p != NULL ? strtoll(p, NULL, 10) : 0;
    if (rb->pause_ms < 0 || rb->pause_ms > 60000)
        rb->pause_ms = 0;
    if ((rb->timer = L->api->timer_new(thr, on_tick, rb)) == NULL) {
        free(rb);
        return NULL;
    }
    L->api->timer_start(rb->timer, SK_LOGIC_REBALANCE_MS);
    return rb;
}

void
sk_logic_rebal_close(sk_logic_rebal_t *rb)
{
    if (rb == NULL)
        return;
    rb->closing = 1;
    rb->api->timer_stop(rb->timer);
}

void
sk_logic_rebal_free(sk_logic_rebal_t *rb)
{
    if (rb == NULL)
        return;
    rb->api->timer_free(rb->timer);
    while (rb->head != NULL)
        move_free(rb->head); /* paused between the steps: their outbox entries are re-driven by whoever reads them */
    free(rb);
}
