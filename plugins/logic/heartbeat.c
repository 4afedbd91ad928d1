/*
 * The logic layer's CONTROL-thread jobs: the heartbeat access nodes read to know a logic node is alive, and the queue
 * upkeep (trimming acknowledged entries, pending and lag figures for /status), and the reaper's tick (reap.c).
 *
 * The heartbeat is stamped with Redis' clock inside a script, so node clocks never matter. It is sent only while at
 * least one worker has a working connection and the first etcd snapshot has arrived: a node that cannot decide must not
 * look alive.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "logic.h"
#include "sk_shard.h"

struct st_sk_logic_hb_t {
    sk_logic_t *L;
    const sk_host_api_t *api;
    sk_thread_t *thr;
    sk_redis_t *redis;
    sk_redis_t *q; /* the streams' Redis for the trims: redis.queue_addr's connection, or redis */
    sk_timer_t *timer;
    sk_logic_reap_t *reap;
    sk_logic_rebal_t *rebal;
    unsigned ticks;
    int left;
    int hb_inflight;
    unsigned trim_outstanding; /* one trim script per live stream, summed into the stats when all are back */
    int trim_failed;
    long long sum_pending, sum_lag, sum_xlen;
};

static void
on_heartbeat(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    sk_logic_hb_t *hb = data;
    hb->hb_inflight = 0;
    if (err != NULL || reply->type != REDIS_REPLY_INTEGER) {
        atomic_fetch_add(&hb->L->stats.heartbeat_errors, 1);
        return;
    }
    atomic_fetch_add(&hb->L->stats.heartbeats, 1);
    atomic_store(&hb->L->stats.heartbeat_redis_ms, reply->integer);
}

static int eval(sk_logic_hb_t *hb, sk_redis_t *conn, const char *script, sk_redis_cb cb, const char *key, const char *a1,
                const char *a2);

static void
trim_done_one(sk_logic_hb_t *hb)
{
    if (--hb->trim_outstanding != 0)
        return;
    sk_logic_stats_t *st = &hb->L->stats;
    atomic_store(&st->pending, hb->trim_failed ? -1 : hb->sum_pending);
    atomic_store(&st->lag, hb->trim_failed ? -1 : hb->sum_lag);
    atomic_store(&st->xlen, hb->trim_failed ? -1 : hb->sum_xlen);
}

static void
on_trim(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    sk_logic_hb_t *hb = data;
    sk_logic_stats_t *st = &hb->L->stats;
    int ok = err == NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 4;
    for (size_t i = 0; ok && i < 4; ++i)
        ok = reply->element[i]->type == REDIS_REPLY_INTEGER;
    if (!ok) {
        atomic_fetch_add(&st->redis_errors, 1);
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
            hb->api->log(hb->L->self, SK_LOG_WARN, "queue upkeep failed: %s", reply->str);
        hb->trim_failed = 1;
    } else {
        /* -1 (unknown, e.g. no group yet) counts as 0 in the sums */
        hb->sum_pending += reply->element[0]->integer > 0 ? reply->element[0]->integer : 0;
        hb->sum_lag += reply->element[1]->integer > 0 ? reply->element[1]->integer : 0;
        hb->sum_xlen += reply->element[2]->integer > 0 ? reply->element[2]->integer : 0;
        atomic_fetch_add(&st->trimmed, reply->element[3]->integer);
    }
    trim_done_one(hb);
}

/* One trim script per live stream (a bucket of an activity, each in its own slot), at most SK_LOGIC_MAX_STREAMS. */
static void
send_trims(sk_logic_hb_t *hb)
{
    const sk_snapshot_t *snap = hb->api->snapshot(hb->thr);
    int64_t now = (int64_t)time(NULL);
    hb->trim_outstanding = 1; /* held while sending, so an inline failure cannot finish early */
    hb->trim_failed = 0;
    hb->sum_pending = hb->sum_lag = hb->sum_xlen = 0;
    unsigned sent = 0;
    for (size_t i = 0; i < snap->nactivities && sent < SK_LOGIC_MAX_STREAMS; ++i) {
        if (!sk_logic_stream_live(&snap->activities[i], now))
            continue;
        unsigned k = (unsigned)sk_activity_shards(&snap->activities[i]);
        for (unsigned bk = 0; bk < k && sent < SK_LOGIC_MAX_STREAMS; ++bk) {
            char tag[SK_SHARD_TAG_MAX], stream[96];
            if (sk_shard_tag(tag, sizeof(tag), snap->activities[i].activity_id, bk, k) < 0 ||
                sk_key_bucket(stream, sizeof(stream), SK_KEY_QUEUE, tag) < 0)
                continue;
            hb->trim_outstanding++;
            sent++;
            if (eval(hb, hb->q, sk_script_logic_trim, on_trim, stream, SK_LOGIC_GROUP, NULL) != 0) {
                hb->trim_failed = 1;
                hb->trim_outstanding--;
            }
        }
    }
    trim_done_one(hb);
}

static void
on_leave(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    (void)reply;
    sk_logic_hb_t *hb = data;
    if (err != NULL)
        hb->api->log(hb->L->self, SK_LOG_WARN, "could not leave %s: %s", SK_LOGIC_ALIVE, err);
}

static int
eval(sk_logic_hb_t *hb, sk_redis_t *conn, const char *script, sk_redis_cb cb, const char *key, const char *a1, const char *a2)
{
    const char *argv[] = {"EVAL", script, "1", key, a1, a2};
    size_t argvlen[6];
    int argc = a2 != NULL ? 6 : 5;
    for (int i = 0; i < argc; ++i)
        argvlen[i] = strlen(argv[i]);
    return hb->api->redis_cmdargv(conn, cb, hb, 0, argc, argv, argvlen);
}

static void
on_tick(sk_timer_t *t, void *data)
{
    sk_logic_hb_t *hb = data;
    sk_logic_t *L = hb->L;
    hb->ticks++;
    if (!hb->left && !atomic_load(&L->stopping) && hb->api->redis_connected(hb->redis)) {
        if (!hb->hb_inflight && atomic_load(&L->ready_workers) > 0 && hb->api->snapshot(hb->thr)->revision > 0) {
            char stale[24];
            snprintf(stale, sizeof(stale), "%d", SK_LOGIC_STALE_MS);
            if (eval(hb, hb->redis, sk_script_logic_heartbeat, on_heartbeat, SK_LOGIC_ALIVE, L->conf->node_id, stale) == 0)
                hb->hb_inflight = 1;
        }
        /* once a second is plenty: access bounds the stream length, this only returns the memory */
        if (hb->ticks % 2 == 0 && hb->trim_outstanding == 0)
            send_trims(hb);
        /* every tick: a token is back on sale within SK_LOGIC_HEARTBEAT_MS of expires_at (SPEC: within 2 s) */
        if (hb->api->snapshot(hb->thr)->revision > 0)
            sk_logic_reap_tick(hb->reap);
    }
    hb->api->timer_start(t, SK_LOGIC_HEARTBEAT_MS);
}

sk_logic_hb_t *
sk_logic_hb_new(sk_logic_t *L, sk_thread_t *thr)
{
    sk_logic_hb_t *hb = calloc(1, sizeof(*hb));
    if (hb == NULL)
        return NULL;
    hb->L = L;
    hb->api = L->api;
    hb->thr = thr;
    hb->redis = L->api->redis_new(L->self, thr);
    hb->q = L->conf->redis_queue_addr[0] != '\0' ? L->api->redis_new_queue(L->self, thr) : hb->redis;
    hb->timer = L->api->timer_new(thr, on_tick, hb);
    hb->reap = hb->redis != NULL ? sk_logic_reap_new(L, thr, hb->redis) : NULL;
    hb->rebal = hb->redis != NULL ? sk_logic_rebal_new(L, thr, hb->redis) : NULL;
    if (hb->redis == NULL || hb->q == NULL || hb->timer == NULL || hb->reap == NULL || hb->rebal == NULL) {
        sk_logic_rebal_close(hb->rebal);
        if (hb->q != NULL && hb->q != hb->redis)
            L->api->redis_free(hb->q);
        if (hb->redis != NULL)
            L->api->redis_free(hb->redis);
        if (hb->timer != NULL)
            L->api->timer_free(hb->timer);
        sk_logic_reap_free(hb->reap);
        sk_logic_rebal_free(hb->rebal);
        free(hb);
        return NULL;
    }
    /* the first beat soon after the workers are up, so a fresh node takes traffic quickly */
    L->api->timer_start(hb->timer, 100);
    return hb;
}

void
sk_logic_hb_leave(sk_logic_hb_t *hb)
{
    if (hb == NULL || hb->left)
        return;
    hb->left = 1;
    const char *argv[] = {"ZREM", SK_LOGIC_ALIVE, hb->L->conf->node_id};
    size_t argvlen[] = {4, strlen(SK_LOGIC_ALIVE), strlen(hb->L->conf->node_id)};
    if (hb->api->redis_cmdargv(hb->redis, on_leave, hb, 0, 3, argv, argvlen) != 0)
        hb->api->log(hb->L->self, SK_LOG_WARN, "could not leave %s: Redis not connected", SK_LOGIC_ALIVE);
}

void
sk_logic_hb_free(sk_logic_hb_t *hb)
{
    if (hb == NULL)
        return;
    hb->left = 1;
    hb->api->timer_stop(hb->timer);
    hb->api->timer_free(hb->timer);
    sk_logic_rebal_close(hb->rebal);
    if (hb->q != hb->redis)
        hb->api->redis_free(hb->q);
    hb->api->redis_free(hb->redis);
    sk_logic_reap_free(hb->reap); /* after the connection: its callbacks use the reaper */
    sk_logic_rebal_free(hb->rebal);
    free(hb);
}
