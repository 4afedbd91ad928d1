/*
 * redis.wait_replicas = N > 0: Redis replication is asynchronous, so a master that dies can take its last writes with
 * it. A win is therefore told to its client only once `WAIT N` has confirmed that N replicas hold it (SPEC §9): the
 * stock script stores the win but does not publish it (the hold flag), and the lane publishes it after WAIT.
 *
 * WAIT counts the writes of its own connection, so it goes on the lane's connection, routed by the activity's key to
 * the master the script ran on. While it is short of N replicas it is asked again for up to one request timeout; after
 * that the wins stay untold here, and the access node settles each request at its deadline from the stored result.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "lane.h"

/* Errors repeat per entry when Redis misbehaves; one line a second is enough to see it. */
void
sk_logic_wlog(lane_t *w, int level, const char *fmt, ...)
{
    int64_t now = sk_logic_mono_ms();
    if (level >= SK_LOG_WARN && now - w->last_log_ms < 1000) {
        w->suppressed++;
        return;
    }
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (level >= SK_LOG_WARN) {
        w->last_log_ms = now;
        if (w->suppressed > 0) {
            w->api->log(w->L->self, level, "%s: %s (%u similar suppressed)", w->consumer, buf, w->suppressed);
            w->suppressed = 0;
            return;
        }
    }
    w->api->log(w->L->self, level, "%s: %s", w->consumer, buf);
}

static void on_wait(sk_redis_t *r, redisReply *reply, const char *err, void *data);

static int
send_wait(lane_t *w, call_t *c)
{
    char n[16];
    snprintf(n, sizeof(n), "%u", w->L->conf->redis_wait_replicas);
    const char *argv[] = {"WAIT", n, SK_LOGIC_WAIT_MS_S};
    size_t argvlen[] = {4, strlen(n), strlen(SK_LOGIC_WAIT_MS_S)};
    /* routed by the activity's key: the same connection as the script, so WAIT covers its writes */
    unsigned timeout = w->L->conf->redis_timeout_ms + SK_LOGIC_BLOCK_MS + SK_LOGIC_WAIT_MS + 200;
    return w->api->redis_cmdargv_at(w->redis, w->route, strlen(w->route), on_wait, c, timeout, 3, argv, argvlen);
}

/* Holds the call's wins back until WAIT confirms them. Returns 1 when a WAIT is under way (the call stays
 * outstanding), 0 when there is nothing to hold or WAIT cannot be sent (the wins stay held: unpublished, acked). */
int
sk_logic_hold_wins(lane_t *w, call_t *c)
{
    if (w->L->conf->redis_wait_replicas == 0)
        return 0;
    unsigned held = 0;
    for (unsigned i = 0; i < c->n; ++i) {
        sk_logic_slot_t *s = &c->b->slots[c->b->order[c->first + i]];
        if (s->state == SLOT_DONE && s->res.code == SK_OK) {
            s->state = SLOT_HELD;
            held++;
        }
    }
    if (held == 0)
        return 0;
    c->wait_until_ms = sk_logic_mono_ms() + w->L->conf->access_request_timeout_ms;
    return send_wait(w, c) == 0;
}

static void
on_wait(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    call_t *c = data;
    sk_logic_batch_t *b = c->b;
    lane_t *w = sk_logic_call_lane(c);
    if (w == NULL)
        return;
    if (err == NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer >= (long long)w->L->conf->redis_wait_replicas) {
        for (unsigned i = 0; i < c->n; ++i) {
            sk_logic_slot_t *s = &b->slots[b->order[c->first + i]];
            if (s->state == SLOT_HELD)
                s->state = SLOT_RESULT; /* published by finish_batch, from the stored result */
        }
    } else {
        atomic_fetch_add(&w->L->stats.wait_short, 1);
        /* not confirmed yet: ask again while the clients may still be waiting; after that the wins stay untold here
         * (access settles each request at its deadline) */
        if (err == NULL && sk_logic_mono_ms() < c->wait_until_ms && send_wait(w, c) == 0)
            return;
        sk_logic_wlog(w, SK_LOG_WARN, "WAIT %u did not confirm %u decisions: %s", w->L->conf->redis_wait_replicas, c->n,
                      err != NULL                          ? err
                      : reply->type == REDIS_REPLY_INTEGER ? "too few replicas"
                                                           : "unexpected reply");
    }
    if (--b->outstanding == 0)
        sk_logic_finish_batch(b);
}
