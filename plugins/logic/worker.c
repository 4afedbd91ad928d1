/*
 * A logic WORKER thread: SK_LOGIC_LANES lanes (consumer.c) for every live activity, created and freed as the snapshot
 * changes and, once a second, as end times pass.
 *
 * Each activity has its own stream so that every step touches one Redis Cluster slot; a lane blocks on one stream, so
 * the lanes of one activity never wait behind another's. A stream is still read SK_LOGIC_DRAIN_S after its activity
 * ends, so that what was queued before the end is answered (or expires) rather than left pending.
 *
 * A worker counts as ready (heartbeat, "ready_workers") while one of its lanes is, or while it has no lane at all:
 * with nothing live there is nothing to decide, and a node that just learned of a new activity must not look dead
 * for the moment its lanes take to connect.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "logic.h"

#define RESYNC_MS 1000

struct st_sk_logic_worker_t {
    sk_logic_t *L;
    sk_thread_t *thr;
    sk_timer_t *timer;
    sk_logic_lane_t **lanes; /* SK_LOGIC_LANES per activity, grouped by activity */
    size_t nlanes, cap;
    size_t nstreams;
    unsigned nready;
    int counted; /* this worker is counted in L->ready_workers */
    int over_logged;
};

int
sk_logic_stream_live(const sk_activity_t *a, int64_t now)
{
    return a->end_time > now - SK_LOGIC_DRAIN_S;
}

static void
update_ready(sk_logic_worker_t *w)
{
    int v = w->nlanes == 0 || w->nready > 0;
    if (v == w->counted)
        return;
    w->counted = v;
    atomic_fetch_add(&w->L->ready_workers, v ? 1 : -1);
}

void
sk_logic_worker_lane_ready(sk_logic_worker_t *w, int delta)
{
    w->nready = (unsigned)((int)w->nready + delta);
    update_ready(w);
}

static int
has_lanes(const sk_logic_worker_t *w, int64_t aid, unsigned bucket)
{
    for (size_t i = 0; i < w->nlanes; i += SK_LOGIC_LANES) {
        unsigned k;
        if (sk_logic_lane_aid(w->lanes[i]) == aid && sk_logic_lane_bucket(w->lanes[i], &k) == bucket)
            return 1;
    }
    return 0;
}

/* A lane stays while its activity is live with the bucket count it was made for (shards changes only before the
 * start, and then the lanes of the old layout go). */
static int
is_live(const sk_snapshot_t *snap, const sk_logic_lane_t *l, int64_t now)
{
    int64_t aid = sk_logic_lane_aid(l);
    unsigned k;
    sk_logic_lane_bucket(l, &k);
    for (size_t i = 0; i < snap->nactivities; ++i)
        if (snap->activities[i].activity_id == aid)
            return (unsigned)sk_activity_shards(&snap->activities[i]) == k && sk_logic_stream_live(&snap->activities[i], now);
    return 0;
}

/* The lanes of one stream: bucket `bucket` of activity aid's k buckets. */
static void
add_stream(sk_logic_worker_t *w, int64_t aid, unsigned bucket, unsigned k)
{
    if (w->nstreams >= SK_LOGIC_MAX_STREAMS) {
        if (!w->over_logged)
            w->L->api->log(
                w->L->self, SK_LOG_ERROR,
                "worker %u: more than %d live streams (a sharded activity has one per bucket); activity %lld is not read here",
                w->L->api->thread_index(w->thr), SK_LOGIC_MAX_STREAMS, (long long)aid);
        /* streams count buckets: a sharded activity takes one per bucket */
        w->over_logged = 1;
        return;
    }
    if (w->nlanes + SK_LOGIC_LANES > w->cap) {
        size_t cap = w->cap == 0 ? 8 * SK_LOGIC_LANES : w->cap * 2;
        sk_logic_lane_t **l = realloc(w->lanes, cap * sizeof(*l));
        if (l == NULL)
            return;
        w->lanes = l;
        w->cap = cap;
    }
    sk_logic_lane_t *made[SK_LOGIC_LANES];
    for (unsigned i = 0; i < SK_LOGIC_LANES; ++i) {
        if ((made[i] = sk_logic_lane_new(w->L, w->thr, w, aid, bucket, k, i)) == NULL) {
            while (i > 0)
                sk_logic_lane_free(made[--i]);
            w->L->api->log(w->L->self, SK_LOG_ERROR, "worker %u: cannot start the lanes of activity %lld",
                           w->L->api->thread_index(w->thr), (long long)aid);
            return; /* the next resync tries again */
        }
    }
    memcpy(w->lanes + w->nlanes, made, sizeof(made));
    w->nlanes += SK_LOGIC_LANES;
    w->nstreams++;
    atomic_fetch_add(&w->L->stats.streams, 1);
}

void
sk_logic_worker_sync(sk_logic_worker_t *w, const sk_snapshot_t *snap)
{
    if (w == NULL)
        return;
    int64_t now = (int64_t)time(NULL);
    /* the lanes of activities no longer live go; their pending entries, if any, are past their deadlines */
    size_t kept = 0;
    for (size_t i = 0; i < w->nlanes; i += SK_LOGIC_LANES) {
        if (is_live(snap, w->lanes[i], now)) {
            memmove(w->lanes + kept, w->lanes + i, SK_LOGIC_LANES * sizeof(w->lanes[0]));
            kept += SK_LOGIC_LANES;
        } else {
            for (unsigned j = 0; j < SK_LOGIC_LANES; ++j)
                sk_logic_lane_free(w->lanes[i + j]);
            w->nstreams--;
            atomic_fetch_sub(&w->L->stats.streams, 1);
        }
    }
    w->nlanes = kept;
    /* a stopping node takes no new stream: it drains what it reads */
    if (!atomic_load(&w->L->stopping))
        for (size_t i = 0; i < snap->nactivities; ++i)
            if (sk_logic_stream_live(&snap->activities[i], now)) {
                unsigned k = (unsigned)sk_activity_shards(&snap->activities[i]);
                for (unsigned b = 0; b < k; ++b)
                    if (!has_lanes(w, snap->activities[i].activity_id, b))
                        add_stream(w, snap->activities[i].activity_id, b, k);
            }
    update_ready(w);
}

static void
on_resync(sk_timer_t *t, void *data)
{
    sk_logic_worker_t *w = data;
    sk_logic_worker_sync(w, w->L->api->snapshot(w->thr));
    w->L->api->timer_start(t, RESYNC_MS);
}

sk_logic_worker_t *
sk_logic_worker_new(sk_logic_t *L, sk_thread_t *thr)
{
    sk_logic_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->L = L;
    w->thr = thr;
    if ((w->timer = L->api->timer_new(thr, on_resync, w)) == NULL) {
        free(w);
        return NULL;
    }
    update_ready(w);
    /* the snapshot hook syncs on every change; the timer covers end times passing and a failed lane start */
    L->api->timer_start(w->timer, 0);
    return w;
}

void
sk_logic_worker_free(sk_logic_worker_t *w)
{
    if (w == NULL)
        return;
    w->L->api->timer_stop(w->timer);
    w->L->api->timer_free(w->timer);
    for (size_t i = 0; i < w->nlanes; ++i)
        sk_logic_lane_free(w->lanes[i]);
    atomic_fetch_sub(&w->L->stats.streams, (long long)w->nstreams);
    free(w->lanes);
    w->nlanes = 0;
    update_ready(w);
    free(w);
}
