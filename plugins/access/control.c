/*
 * The control thread's live poll, and what HTTP threads make of it.
 *
 * Every SK_ACCESS_POLL_MS the control thread pipelines TIME (the offset between our clock and Redis'), ZCOUNT of the
 * logic heartbeats, XLEN of the queue and one MGET of sold/total per current activity, then posts one immutable
 * sk_access_live_t to every HTTP thread. The request path reads only its own thread's copy: no lock, no Redis.
 */
#include "control.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct st_mget_ctx_t {
    sk_access_control_t *c;
    sk_access_live_t *live;
    size_t index;
} mget_ctx_t;

#include "sk_shard.h"

sk_access_live_t *
sk_access_live_new(sk_access_t *a, size_t nsold)
{
    sk_access_live_t *l = calloc(1, sizeof(*l) + nsold * sizeof(sk_access_sold_t));
    if (l == NULL)
        return NULL;
    atomic_init(&l->refs, 1);
    l->a = a;
    l->nsold = nsold;
    l->queue_len = -1;
    return l;
}

void
sk_access_live_release(sk_access_live_t *l)
{
    if (l != NULL && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

const sk_access_sold_t *
sk_access_live_sold(const sk_access_live_t *l, int64_t activity_id)
{
    size_t lo = 0, hi = l->nsold;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->sold[mid].activity_id == activity_id)
            return &l->sold[mid];
        if (l->sold[mid].activity_id < activity_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int
sk_access_sold_out(sk_access_thread_t *t, const sk_activity_t *a, int64_t *sold)
{
    const sk_access_sold_t *s = t->live != NULL ? sk_access_live_sold(t->live, a->activity_id) : NULL;
    *sold = s != NULL ? s->sold : 0;
    if (s != NULL && s->sold >= (s->total >= 0 ? s->total : a->total))
        return 1;
    /* a 1007 seen after the last poll was sent is newer news than that poll */
    uint64_t since = t->live != NULL ? t->live->started_ms : 0;
    for (size_t i = 0; i < SK_ACCESS_LEARNED; i++)
        if (t->learned[i].activity_id == a->activity_id && t->learned[i].at_ms >= since)
            return 1;
    return 0;
}

void
sk_access_learn_sold_out(sk_access_thread_t *t, int64_t activity_id)
{
    size_t slot = 0;
    for (size_t i = 0; i < SK_ACCESS_LEARNED; i++) {
        if (t->learned[i].activity_id == activity_id) {
            slot = i;
            break;
        }
        if (t->learned[i].at_ms < t->learned[slot].at_ms)
            slot = i;
    }
    t->learned[slot].activity_id = activity_id;
    t->learned[slot].at_ms = sk_access_mono_ms();
}

/* ---- HTTP side ---- */

static void
on_live_posted(void *arg)
{
    sk_access_live_t *live = arg;
    sk_access_t *a = live->a;
    sk_thread_t *thr = a->api->thread_self();
    sk_access_thread_t *t = thr != NULL ? a->api->tstate(a->self, thr) : NULL;
    if (t == NULL) {
        sk_access_live_release(live);
        return;
    }
    sk_access_live_release(t->live);
    t->live = live;
}

/* ---- control side ---- */

static int
cmp_sold(const void *x, const void *y)
{
    int64_t a = ((const sk_access_sold_t *)x)->activity_id, b = ((const sk_access_sold_t *)y)->activity_id;
    return a < b ? -1 : a > b;
}

static void
publish(sk_access_control_t *c, sk_access_live_t *live)
{
    sk_access_t *a = c->a;
    size_t n = a->api->nhttp_threads(a->self);
    for (size_t i = 0; i < n; i++) {
        atomic_fetch_add_explicit(&live->refs, 1, memory_order_relaxed);
        if (a->api->post(a->api->http_thread(a->self, i), on_live_posted, live) != 0)
            sk_access_live_release(live);
    }
    atomic_store(&a->logic_alive, live->logic_alive);
    atomic_store(&a->queue_len, live->queue_len);
    atomic_store(&a->offset_ms, live->offset_ms);
    sk_access_live_release(c->last);
    c->last = live;
}

static void
poll_finish(sk_access_control_t *c)
{
    sk_access_live_t *live = c->building;
    c->building = NULL;
    if (c->poll_failed) {
        /* keep the last counts; with Redis in doubt no logic node counts as alive */
        sk_access_live_t *prev = c->last;
        size_t n = prev != NULL ? prev->nsold : 0;
        sk_access_live_t *l = sk_access_live_new(c->a, n);
        if (l != NULL) {
            if (n > 0)
                memcpy(l->sold, prev->sold, n * sizeof(sk_access_sold_t));
            l->started_ms = live->started_ms;
            l->offset_ms = c->offset_ms;
            l->redis_ok = 0;
            l->logic_alive = 0;
            sk_access_live_release(live);
            live = l;
        } else {
            live->redis_ok = 0;
            live->logic_alive = 0;
        }
    } else {
        live->redis_ok = 1;
        live->offset_ms = c->offset_ms;
        if (c->alive_failed)
            live->logic_alive = sk_access_mono_ms() - c->alive_ok_ms <= SK_ACCESS_ALIVE_HOLD_MS ? c->alive_last : 0;
    }
    publish(c, live);
}

static void
poll_done_one(sk_access_control_t *c)
{
    if (--c->poll_outstanding != 0 || c->building == NULL)
        return;
    if (c->closing) {
        sk_access_live_release(c->building);
        c->building = NULL;
        return;
    }
    poll_finish(c);
}

static int64_t
reply_int(const redisReply *r, int64_t dflt)
{
    if (r == NULL)
        return dflt;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING) {
        int64_t v;
        if (sk_parse_int64(r->str, r->len, 0, INT64_MAX, &v) == 0)
            return v;
    }
    return dflt;
}

static void
on_time(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_access_control_t *c = data;
    (void)r;
    if (err != NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        c->poll_failed = 1;
    } else {
        int64_t t1 = sk_access_unix_ms(), sec = reply_int(reply->element[0], -1), usec = reply_int(reply->element[1], -1);
        /* a slow round trip says little about the offset: keep the last estimate */
        if (sec >= 0 && usec >= 0 && t1 - c->poll_t0_ms < 100)
            c->offset_ms = sec * 1000 + usec / 1000 - (c->poll_t0_ms + t1) / 2;
    }
    poll_done_one(c);
}

static void
on_zcount(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_access_control_t *c = data;
    (void)r;
    if (err != NULL || reply->type != REDIS_REPLY_INTEGER) {
        c->alive_failed = 1;
    } else {
        c->alive_last = reply->integer;
        c->alive_ok_ms = sk_access_mono_ms();
        if (c->building != NULL)
            c->building->logic_alive = reply->integer;
    }
    poll_done_one(c);
}

/* One activity's queue length; the node's figure is the sum over its activities (unknown ones count 0). */
static void
on_xlen(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_access_control_t *c = data;
    (void)r;
    if (err == NULL && reply->type == REDIS_REPLY_INTEGER && c->building != NULL)
        c->building->queue_len += reply->integer;
    poll_done_one(c);
}

/* A read of one activity that failed (its master may be down or failing over) keeps that activity's last counts; it
 * does not make the whole poll fail, so that the activities on the other masters keep selling. */
static void
keep_previous(sk_access_control_t *c, sk_access_sold_t *s)
{
    const sk_access_live_t *prev = c->last;
    if (prev == NULL)
        return;
    const sk_access_sold_t *found = bsearch(s, prev->sold, prev->nsold, sizeof(prev->sold[0]), cmp_sold);
    if (found != NULL) {
        s->sold = found->sold;
        s->total = found->total;
    }
}

static void
on_mget(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    mget_ctx_t *m = data;
    sk_access_control_t *c = m->c;
    (void)r;
    sk_access_sold_t *s = &m->live->sold[m->index];
    int ok = err == NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2;
    if (s->shards > 1) {
        /* a bucket's sold counts only in the sum; the sum is published only when every bucket answered */
        if (ok)
            s->sold += reply_int(reply->element[0], 0);
        else
            s->failed = 1;
        if (--s->waiting == 0 && s->failed)
            keep_previous(c, s);
    } else if (!ok) {
        keep_previous(c, s);
    } else {
        s->sold = reply_int(reply->element[0], 0);
        s->total = reply_int(reply->element[1], -1);
    }
    free(m);
    poll_done_one(c);
}

/* One bucket's sold/total (an unsharded activity has one, with the activity's own tag) and its queue length. */
static void
poll_bucket(sk_access_control_t *c, sk_access_live_t *live, size_t i, const char *tag)
{
    const sk_host_api_t *api = c->a->api;
    sk_access_sold_t *s = &live->sold[i];
    mget_ctx_t *m = malloc(sizeof(*m));
    if (m == NULL) {
        c->poll_failed = 1;
        return;
    }
    m->c = c;
    m->live = live;
    m->index = i;
    char sold[96], total[96], queue[96];
    sk_key_bucket(sold, sizeof(sold), SK_KEY_SOLD, tag);
    sk_key_bucket(total, sizeof(total), SK_KEY_TOTAL, tag);
    c->poll_outstanding++;
    if (api->redis_cmd(c->redis, on_mget, m, "MGET %s %s", sold, total) != 0) {
        /* this bucket's master is down (a cluster) or Redis is: the last counts stand; TIME tells the rest */
        free(m);
        c->poll_outstanding--;
        if (s->shards > 1) {
            s->failed = 1;
            if (--s->waiting == 0)
                keep_previous(c, s);
        } else {
            keep_previous(c, s);
        }
        return;
    }
    sk_key_bucket(queue, sizeof(queue), SK_KEY_QUEUE, tag);
    c->poll_outstanding++;
    if (api->redis_cmd(c->queue != NULL ? c->queue : c->redis, on_xlen, c, "XLEN %s", queue) != 0)
        c->poll_outstanding--;
}

static void
poll_send(sk_access_control_t *c)
{
    const sk_host_api_t *api = c->a->api;
    const sk_snapshot_t *snap = api->snapshot(c->thr);
    int64_t now_ms = sk_access_unix_ms(), now = now_ms / 1000;
    size_t n = 0;
    for (size_t i = 0; i < snap->nactivities && n < SK_ACCESS_MAX_POLLED; i++)
        if (snap->activities[i].end_time > now - 86400)
            n++;
    sk_access_live_t *live = sk_access_live_new(c->a, n);
    if (live == NULL)
        return;
    size_t k = 0;
    for (size_t i = 0; i < snap->nactivities && k < n; i++) {
        if (snap->activities[i].end_time > now - 86400) {
            live->sold[k].activity_id = snap->activities[i].activity_id;
            live->sold[k].shards = (unsigned)sk_activity_shards(&snap->activities[i]);
            live->sold[k].total = live->sold[k].shards > 1 ? snap->activities[i].total : -1;
            k++;
        }
    }
    qsort(live->sold, n, sizeof(live->sold[0]), cmp_sold);
    live->started_ms = sk_access_mono_ms();
    c->building = live;
    c->poll_failed = 0;
    c->alive_failed = 0;
    c->poll_outstanding = 1; /* held until every command is queued, so that an inline failure cannot finish early */
    c->poll_t0_ms = now_ms;

    c->poll_outstanding++;
    if (api->redis_cmd(c->redis, on_time, c, "TIME") != 0) {
        c->poll_failed = 1;
        c->poll_outstanding--;
    }
    char min[32];
    snprintf(min, sizeof(min), "%" PRId64, now_ms + c->offset_ms - SK_ACCESS_ALIVE_WINDOW_MS);
    c->poll_outstanding++;
    if (api->redis_cmd(c->redis, on_zcount, c, "ZCOUNT %s %s +inf", sk_key_const(SK_KEY_LOGIC_ALIVE), min) != 0) {
        c->alive_failed = 1;
        c->poll_outstanding--;
    }
    live->queue_len = 0;
    for (size_t i = 0; i < n && !c->poll_failed; i++) {
        sk_access_sold_t *s = &live->sold[i];
        s->waiting = s->shards;
        for (unsigned b = 0; b < s->shards && !c->poll_failed; b++) {
            char tag[SK_SHARD_TAG_MAX];
            if (sk_shard_tag(tag, sizeof(tag), s->activity_id, b, s->shards) < 0) {
                c->poll_failed = 1;
                break;
            }
            poll_bucket(c, live, i, tag);
        }
    }
    poll_done_one(c);
}

static void
on_poll_timer(sk_timer_t *tm, void *data)
{
    sk_access_control_t *c = data;
    if (c->closing)
        return;
    if (c->poll_outstanding == 0)
        poll_send(c);
    c->a->api->timer_start(tm, SK_ACCESS_POLL_MS);
}

static void
on_redis_connect(sk_redis_t *r, void *data)
{
    sk_access_control_t *c = data;
    (void)r;
    /* a fresh connection: learn the truth now rather than at the next tick */
    if (!c->closing && c->poll_outstanding == 0)
        poll_send(c);
}

sk_access_control_t *
sk_access_control_new(sk_access_t *a, sk_thread_t *thr)
{
    const sk_host_api_t *api = a->api;
    sk_access_control_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->a = a;
    c->thr = thr;
    if ((c->redis = api->redis_new(a->self, thr)) == NULL || (c->poll_timer = api->timer_new(thr, on_poll_timer, c)) == NULL) {
        sk_access_control_free(c);
        return NULL;
    }
    api->redis_on_connect(c->redis, on_redis_connect, c);
    if (a->conf->redis_queue_addr[0] != '\0' && (c->queue = api->redis_new_queue(a->self, thr)) == NULL) {
        sk_access_control_free(c);
        return NULL;
    }
    api->timer_start(c->poll_timer, SK_ACCESS_POLL_MS);
    if (sk_access_bl_start(c) != 0) {
        sk_access_control_free(c);
        return NULL;
    }
    return c;
}

void
sk_access_control_free(sk_access_control_t *c)
{
    if (c == NULL)
        return;
    const sk_host_api_t *api = c->a->api;
    c->closing = 1;
    sk_access_bl_stop(c);
    if (c->poll_timer != NULL)
        api->timer_free(c->poll_timer);
    /* fails the pending poll callbacks; with closing set they only count down and drop the poll in progress */
    if (c->queue != NULL)
        api->redis_free(c->queue);
    if (c->redis != NULL)
        api->redis_free(c->redis);
    sk_access_live_release(c->last);
    free(c);
}
