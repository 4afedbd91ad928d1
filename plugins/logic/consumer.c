/*
 * A lane: one consumer of one activity's stream, with its own Redis connection on its WORKER thread's libev loop,
 * reading in batches (worker.c runs SK_LOGIC_LANES lanes per live activity; lane.h has the types; wait.c holds wins
 * for redis.wait_replicas).
 *
 * A read (XREADGROUP, or XAUTOCLAIM of entries a dead consumer left pending) returns up to 64 entries; the policies run
 * here for each, then one EVALSHA per activity of the batch decides all of that activity's entries, in stream order,
 * with the next blocking read right behind it. The script PUBLISHes the answers itself, one message per reply channel,
 * so a request is answered in the Redis pass (and the AOF fsync) that decides it; once the last script reply of a
 * batch is in, one XACK leaves. So the critical path of a request is two Redis passes (access queues it; the logic
 * step decides and answers it), and the reading never waits for a batch to finish: up to SK_LOGIC_PIPELINE batches
 * are in flight, and every command that follows a blocking read (an XACK, a retry) is one no answer waits for.
 *
 * An entry whose step failed in transport stays pending and is reclaimed later: the stored result in the activity's
 * result bucket makes a second run harmless.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "lane.h"

static void pump(lane_t *w);

int64_t
sk_logic_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
update_busy(lane_t *w)
{
    int v = w->reading || w->nbatches > 0;
    if (w->busy == v)
        return;
    w->busy = v;
    atomic_fetch_add(&w->L->busy, v ? 1 : -1);
}

static void
set_ready(lane_t *w, int v)
{
    if (w->ready == v)
        return;
    w->ready = v;
    sk_logic_worker_lane_ready(w->worker, v ? 1 : -1);
}

static int
err_is(const redisReply *reply, const char *prefix)
{
    return reply->type == REDIS_REPLY_ERROR && reply->str != NULL && strncmp(reply->str, prefix, strlen(prefix)) == 0;
}

static void
ignore_reply(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    lane_t *w = data;
    if (err != NULL || (reply != NULL && reply->type == REDIS_REPLY_ERROR))
        atomic_fetch_add(&w->L->stats.redis_errors, 1);
}

/* A command sent while a blocking read is in flight runs only when that read returns (up to SK_LOGIC_BLOCK_MS): its
 * deadline must cover that wait, or an idle queue would look like a Redis failure. */
static unsigned
cmd_timeout(const lane_t *w, const sk_redis_t *conn)
{
    return w->reading && conn == w->q ? w->L->conf->redis_timeout_ms + SK_LOGIC_BLOCK_MS + 200 : 0;
}

static int
connected(const lane_t *w)
{
    return w->api->redis_connected(w->redis) && (w->q == w->redis || w->api->redis_connected(w->q));
}

/* ---- connection set-up ---- */

static void
on_group(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    lane_t *w = data;
    w->setup_pending = 0;
    if (w->disposing)
        return;
    if (err != NULL || (reply->type == REDIS_REPLY_ERROR && !err_is(reply, "BUSYGROUP"))) {
        sk_logic_wlog(w, SK_LOG_WARN, "XGROUP CREATE failed: %s", err != NULL ? err : reply->str);
        w->api->timer_start(w->timer, 200);
        return;
    }
    set_ready(w, 1);
    pump(w);
}

static void
on_script_loaded(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    lane_t *w = data;
    if (w->disposing)
        return;
    if (err != NULL || reply->type != REDIS_REPLY_STRING)
        sk_logic_wlog(w, SK_LOG_WARN, "SCRIPT LOAD failed: %s",
                      err != NULL                        ? err
                      : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                         : "?");
    else if (strcmp(reply->str, w->L->sha) != 0)
        sk_logic_wlog(w, SK_LOG_ERROR, "SCRIPT LOAD answered sha %s, expected %s", reply->str, w->L->sha);
}

static int
send_script_load(lane_t *w)
{
    const char *argv[] = {"SCRIPT", "LOAD", sk_script_logic_stock};
    size_t argvlen[] = {6, 4, sk_script_logic_stock_len};
    return w->api->redis_cmdargv(w->redis, on_script_loaded, w, 0, 3, argv, argvlen);
}

static void
setup(lane_t *w)
{
    set_ready(w, 0);
    if (w->disposing || w->setup_pending || !connected(w))
        return;
    /* the script first: commands on one connection run in order, so any EVALSHA sent later finds it */
    if (send_script_load(w) != 0)
        return;
    /* "0", not "$": entries queued before the first logic node came up are still answered (or expire) */
    const char *argv[] = {"XGROUP", "CREATE", w->stream, SK_LOGIC_GROUP, "0", "MKSTREAM"};
    size_t argvlen[6];
    for (int i = 0; i < 6; ++i)
        argvlen[i] = strlen(argv[i]);
    if (w->api->redis_cmdargv(w->q, on_group, w, 0, 6, argv, argvlen) == 0)
        w->setup_pending = 1;
}

static void
on_connect(sk_redis_t *r, void *data)
{
    (void)r;
    lane_t *w = data;
    w->setup_pending = 0;
    setup(w);
}

static void
on_timer(sk_timer_t *t, void *data)
{
    (void)t;
    lane_t *w = data;
    if (w->disposing)
        return;
    if (!w->ready && !w->setup_pending && connected(w))
        setup(w);
    else
        pump(w);
}

/* ---- deciding one entry ---- */

static int64_t
cached_sold(lane_t *w, int64_t aid)
{
    unsigned i = (unsigned)((uint64_t)aid % SOLD_CACHE);
    return w->sold_cache[i].aid == aid ? w->sold_cache[i].sold : 0;
}

static void
cache_sold(lane_t *w, int64_t aid, int64_t sold)
{
    unsigned i = (unsigned)((uint64_t)aid % SOLD_CACHE);
    w->sold_cache[i].aid = aid;
    w->sold_cache[i].sold = sold;
}

/* Everything decided before the atomic step: the snapshot's activity, then buy_rate.lua and token.lua. */
static void
prepare(lane_t *w, sk_logic_slot_t *s, const sk_snapshot_t *snap)
{
    const sk_activity_t *act = NULL;
    memset(&s->pre, 0, sizeof(s->pre));
    s->pre.code = sk_logic_precheck(snap, &s->e, &act);
    s->has_act = act != NULL;
    if (act != NULL)
        s->act = *act;
    s->state = SLOT_WAIT;
    if (s->pre.code != 0)
        return;
    sk_policy_req_t r = {.user_id = s->e.uid, .product_id = s->e.pid, .now = s->e.now, .ip = s->e.ip};
    /* a lane sees its own bucket's sold; scaled by the bucket count it estimates the activity's for the policy */
    int64_t sold = cached_sold(w, s->e.aid) * (int64_t)w->nbuckets;
    sk_policy_activity_t pa = {.activity = act, .sold = sold, .left = act->total > sold ? act->total - sold : 0};
    int allow = w->api->policy_allow(w->thr, &r, &pa);
    if (allow < 0) {
        atomic_fetch_add(&w->L->stats.policy_errors, 1);
        s->pre.code = SK_E_UNAVAILABLE;
        return;
    }
    if (allow == 0)
        return;
    int64_t ttl = 0;
    if (w->api->policy_issue(w->thr, &r, &pa, s->pre.token, sizeof(s->pre.token), &ttl) != 0 || !sk_logic_token_ok(s->pre.token)) {
        atomic_fetch_add(&w->L->stats.policy_errors, 1);
        s->pre.code = SK_E_UNAVAILABLE;
        return;
    }
    if (ttl <= 0 || ttl > 10 * 365 * 86400)
        ttl = w->L->conf->logic_token_ttl;
    s->pre.ttl = ttl;
    s->pre.allow = 1;
}

static void on_call(sk_redis_t *r, redisReply *reply, const char *err, void *data);

static void
call_set_state(call_t *c, int state, int code)
{
    for (unsigned i = 0; i < c->n; ++i) {
        sk_logic_slot_t *s = &c->b->slots[c->b->order[c->first + i]];
        s->state = state;
        if (state == SLOT_RESULT)
            sk_logic_result_set(&s->res, code);
    }
}

static int
send_call(lane_t *w, call_t *c)
{
    const sk_logic_entry_t *e[SK_LOGIC_BATCH];
    const sk_logic_pre_t *pre[SK_LOGIC_BATCH];
    const sk_activity_t *act = NULL;
    for (unsigned i = 0; i < c->n; ++i) {
        sk_logic_slot_t *s = &c->b->slots[c->b->order[c->first + i]];
        e[i] = &s->e;
        pre[i] = &s->pre;
        if (s->has_act)
            act = &s->act;
    }
    sk_logic_bucket_t bk = {.tag = w->tag, .index = w->bucket, .count = w->nbuckets};
    /* an entry of another activity (only a broken writer puts one here) is answered in that activity's own keys */
    int own = e[0]->aid == w->aid;
    if ((own ? sk_logic_call_build_bucket(&w->call, w->L->sha, act, &bk, e, pre, c->n)
             : sk_logic_call_build(&w->call, w->L->sha, act, e, pre, c->n)) != 0 ||
        (w->L->conf->redis_wait_replicas > 0 && sk_logic_call_hold(&w->call) != 0)) {
        call_set_state(c, SLOT_RESULT, SK_E_UNAVAILABLE);
        return -1;
    }
    c->b->outstanding++;
    if (w->api->redis_cmdargv(w->redis, on_call, c, cmd_timeout(w, w->redis), w->call.argc, w->call.argv, w->call.argvlen) != 0) {
        c->b->outstanding--;
        call_set_state(c, SLOT_LEAVE, 0);
        return -1;
    }
    return 0;
}

static int
transient(const redisReply *reply)
{
    static const char *const prefixes[] = {"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); ++i)
        if (err_is(reply, prefixes[i]))
            return 1;
    return 0;
}

static void
on_call(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    call_t *c = data;
    sk_logic_batch_t *b = c->b;
    lane_t *w = sk_logic_call_lane(c);
    if (w == NULL)
        return;
    if (err != NULL) {
        atomic_fetch_add(&w->L->stats.redis_errors, 1);
        call_set_state(c, SLOT_LEAVE, 0);
    } else if (err_is(reply, "NOSCRIPT") && !c->retried) {
        /* SCRIPT FLUSH or a Redis that restarted under the same connection: load again, then retry once */
        c->retried = 1;
        if (!b->reload_sent && send_script_load(w) == 0) {
            b->reload_sent = 1;
            atomic_fetch_add(&w->L->stats.reloads, 1);
        }
        if (send_call(w, c) == 0) {
            b->outstanding--; /* the new call now carries these slots */
            return;
        }
    } else if (reply->type == REDIS_REPLY_ERROR) {
        if (transient(reply)) {
            atomic_fetch_add(&w->L->stats.redis_errors, 1);
            call_set_state(c, SLOT_LEAVE, 0);
        } else {
            atomic_fetch_add(&w->L->stats.script_errors, 1);
            sk_logic_wlog(w, SK_LOG_ERROR, "stock script failed for %u entries: %s", c->n, reply->str);
            call_set_state(c, SLOT_RESULT, SK_E_UNAVAILABLE);
        }
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == (size_t)c->n + 1) {
        for (unsigned i = 0; i < c->n; ++i) {
            sk_logic_slot_t *s = &b->slots[b->order[c->first + i]];
            const redisReply *el = reply->element[i];
            if (el->type == REDIS_REPLY_STRING && sk_logic_result_parse(&s->res, el->str, el->len) == 0) {
                s->state = SLOT_DONE;
            } else {
                atomic_fetch_add(&w->L->stats.script_errors, 1);
                sk_logic_wlog(w, SK_LOG_ERROR, "stock script gave an unexpected result for %s", s->e.id);
                sk_logic_result_set(&s->res, SK_E_UNAVAILABLE);
                s->state = SLOT_RESULT;
            }
        }
        const redisReply *sold = reply->element[c->n];
        if (sold->type == REDIS_REPLY_INTEGER && sold->integer >= 0 && c->n > 0)
            cache_sold(w, b->slots[b->order[c->first]].e.aid, sold->integer);
        if (sk_logic_hold_wins(w, c))
            return; /* on_wait finishes the call */
    } else {
        atomic_fetch_add(&w->L->stats.script_errors, 1);
        sk_logic_wlog(w, SK_LOG_ERROR, "stock script gave an unexpected reply for %u entries", c->n);
        call_set_state(c, SLOT_RESULT, SK_E_UNAVAILABLE);
    }
    if (--b->outstanding == 0)
        sk_logic_finish_batch(b);
}

/* ---- batches ---- */

/* Answers decided here (a malformed entry, a script error): one PUBLISH per reply channel, as the script does. */
static void
publish_results(lane_t *w, sk_logic_batch_t *b)
{
    int done[SK_LOGIC_BATCH] = {0};
    char *msg = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < b->n; ++i) {
        if (b->slots[i].state != SLOT_RESULT || done[i])
            continue;
        const char *channel = b->slots[i].e.reply;
        size_t len = 0;
        for (size_t j = i; j < b->n; ++j) {
            sk_logic_slot_t *s = &b->slots[j];
            if (s->state != SLOT_RESULT || done[j] || strcmp(s->e.reply, channel) != 0)
                continue;
            done[j] = 1;
            if (cap - len < 512) {
                char *m = realloc(msg, cap + 8192);
                if (m == NULL)
                    break; /* the access node answers 1008 at its deadline */
                msg = m;
                cap += 8192;
            }
            if (len > 0)
                msg[len++] = '\n';
            int n = sk_logic_reply_format(msg + len, cap - len, s->e.id, &s->res);
            if (n > 0)
                len += (size_t)n;
            else if (len > 0)
                len--;
        }
        if (len > 0) {
            const char *pargv[] = {"PUBLISH", channel, msg};
            size_t pargvlen[] = {7, strlen(channel), len};
            /* publish before the ack: a crash in between only makes another node answer again, from the stored result */
            w->api->redis_cmdargv(w->redis, ignore_reply, w, cmd_timeout(w, w->redis), 3, pargv, pargvlen);
        }
    }
    free(msg);
}

void
sk_logic_finish_batch(sk_logic_batch_t *b)
{
    lane_t *w = b->w;
    const char *argv[3 + SK_LOGIC_BATCH];
    size_t argvlen[3 + SK_LOGIC_BATCH];
    int argc = 3;
    argv[0] = "XACK";
    argv[1] = w->stream;
    argv[2] = SK_LOGIC_GROUP;
    for (int i = 0; i < 3; ++i)
        argvlen[i] = strlen(argv[i]);
    publish_results(w, b);
    for (size_t i = 0; i < b->n; ++i) {
        sk_logic_slot_t *s = &b->slots[i];
        if (s->state == SLOT_LEAVE) {
            atomic_fetch_add(&w->L->stats.left_pending, 1);
            continue;
        }
        if (s->state == SLOT_DONE || s->state == SLOT_RESULT || s->state == SLOT_HELD)
            atomic_fetch_add(&w->L->stats.decisions[sk_logic_code_index(s->res.code)], 1);
        argv[argc] = s->e.sid;
        argvlen[argc] = strlen(s->e.sid);
        argc++;
    }
    if (argc > 3)
        w->api->redis_cmdargv(w->q, ignore_reply, w, cmd_timeout(w, w->q), argc, argv, argvlen);
    b->used = 0;
    b->n = 0;
    b->reload_sent = 0;
    w->nbatches--;
    update_busy(w);
    pump(w);
}

/* Groups the waiting slots by activity, each group in stream order: one call per activity. */
static void
plan_calls(sk_logic_batch_t *b)
{
    int placed[SK_LOGIC_BATCH] = {0};
    unsigned norder = 0;
    b->ncalls = 0;
    for (size_t i = 0; i < b->n; ++i) {
        if (b->slots[i].state != SLOT_WAIT || placed[i])
            continue;
        call_t *c = &b->calls[b->ncalls++];
        c->b = b;
        c->first = norder;
        c->n = 0;
        c->retried = 0;
        for (size_t j = i; j < b->n; ++j)
            if (b->slots[j].state == SLOT_WAIT && !placed[j] && b->slots[j].e.aid == b->slots[i].e.aid) {
                placed[j] = 1;
                b->order[norder++] = (unsigned)j;
                c->n++;
            }
    }
}

static void
run_batch(sk_logic_batch_t *b)
{
    lane_t *w = b->w;
    const sk_snapshot_t *snap = w->api->snapshot(w->thr);
    for (size_t i = 0; i < b->n; ++i) {
        sk_logic_slot_t *s = &b->slots[i];
        if (s->state == SLOT_WAIT)
            prepare(w, s, snap);
    }
    plan_calls(b);
    /* the count goes up before each send so that no reply can finish the batch while it is still being sent */
    b->outstanding = 1;
    for (size_t i = 0; i < b->ncalls; ++i)
        send_call(w, &b->calls[i]);
    if (--b->outstanding == 0)
        sk_logic_finish_batch(b);
}

/* Takes a free batch (pump() reads only when there is one) and runs the entries, an array of [id, [field, value, ...]].
 * The next read goes out right behind this batch's scripts, never before them: it may block, and a blocked read holds
 * back every later command on the connection. */
static void
load_entries(lane_t *w, const redisReply *entries)
{
    sk_logic_batch_t *b = NULL;
    for (unsigned i = 0; i < SK_LOGIC_PIPELINE && b == NULL; ++i)
        if (!w->batches[i].used)
            b = &w->batches[i];
    if (b == NULL) { /* cannot happen; the entries stay pending and are reclaimed */
        sk_logic_wlog(w, SK_LOG_ERROR, "no free batch");
        return;
    }
    b->used = 1;
    b->n = 0;
    b->reload_sent = 0;
    w->nbatches++;
    update_busy(w);
    for (size_t i = 0; i < entries->elements && b->n < SK_LOGIC_BATCH; ++i) {
        const redisReply *en = entries->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements < 2 || en->element[0]->type != REDIS_REPLY_STRING)
            continue;
        sk_logic_slot_t *s = &b->slots[b->n++];
        s->state = SLOT_ACK;
        s->has_act = 0;
        const redisReply *fields = en->element[1];
        const char *fv[64];
        size_t fvlen[64], nfv = 0;
        if (fields->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j < fields->elements && nfv < 64; ++j) {
                if (fields->element[j]->type != REDIS_REPLY_STRING)
                    break;
                fv[nfv] = fields->element[j]->str;
                fvlen[nfv++] = fields->element[j]->len;
            }
        char err[64] = "";
        if (sk_logic_entry_parse(&s->e, en->element[0]->str, en->element[0]->len, fv, fvlen, nfv, err, sizeof(err)) == 0) {
            s->state = SLOT_WAIT;
            continue;
        }
        atomic_fetch_add(&w->L->stats.malformed, 1);
        if (s->e.sid[0] == '\0') { /* cannot even be acknowledged */
            b->n--;
            continue;
        }
        if (fields->type != REDIS_REPLY_ARRAY) { /* deleted while pending: only the ack is left to do */
            s->state = SLOT_ACK;
            continue;
        }
        sk_logic_wlog(w, SK_LOG_WARN, "malformed queue entry %s: %s", s->e.sid, err);
        if (s->e.id[0] != '\0') {
            sk_logic_result_set(&s->res, SK_E_UNAVAILABLE);
            s->state = SLOT_RESULT;
        } else {
            s->state = SLOT_ACK;
        }
    }
    atomic_fetch_add(&w->L->stats.batches, 1);
    run_batch(b);
}

static int
read_failed(lane_t *w, redisReply *reply, const char *err, const char *what)
{
    if (err == NULL && reply->type != REDIS_REPLY_ERROR)
        return 0;
    atomic_fetch_add(&w->L->stats.redis_errors, 1);
    sk_logic_wlog(w, SK_LOG_WARN, "%s failed: %s", what, err != NULL ? err : reply->str);
    /* the group or the stream went away (FLUSHALL, a Redis without its AOF): set them up again */
    if (err == NULL && err_is(reply, "NOGROUP"))
        set_ready(w, 0);
    w->api->timer_start(w->timer, 100);
    return 1;
}

static void
on_read(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    lane_t *w = data;
    w->reading = 0;
    update_busy(w);
    if (w->disposing || read_failed(w, reply, err, "XREADGROUP"))
        return;
    /* [[stream, [entries]]], or nil when nothing came within the block time */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 && reply->element[0]->type == REDIS_REPLY_ARRAY &&
        reply->element[0]->elements >= 2 && reply->element[0]->element[1]->type == REDIS_REPLY_ARRAY &&
        reply->element[0]->element[1]->elements > 0) {
        const redisReply *entries = reply->element[0]->element[1];
        atomic_fetch_add(&w->L->stats.read, entries->elements);
        load_entries(w, entries);
    } else {
        if (atomic_load(&w->L->stopping) && w->nbatches == 0)
            w->drained = 1;
    }
    pump(w);
}

static void
on_claim(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    lane_t *w = data;
    w->reading = 0;
    update_busy(w);
    if (w->disposing || read_failed(w, reply, err, "XAUTOCLAIM"))
        return;
    /* [next cursor, [entries], [deleted ids] (Redis 7)] */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 && reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *cur = reply->element[0];
        snprintf(w->claim_cursor, sizeof(w->claim_cursor), "%s", cur->len < sizeof(w->claim_cursor) ? cur->str : "0-0");
        /* more of the pending list to scan: go on at once, a dead node's entries are close to their deadline */
        if (strcmp(w->claim_cursor, "0-0") != 0)
            w->last_claim_ms = 0;
        const redisReply *entries = reply->element[1];
        if (entries->elements > 0) {
            atomic_fetch_add(&w->L->stats.claimed, entries->elements);
            sk_logic_wlog(w, SK_LOG_INFO, "reclaimed %zu pending entries", entries->elements);
            load_entries(w, entries);
        }
    }
    pump(w);
}

/* Always BLOCK: with a backlog it answers at once; without one, Redis hands over the first entry queued. A blocked
 * read holds back every later command on the connection, which is why scripts are sent before it, never after. */
static int
send_read(lane_t *w)
{
    const char *argv[] = {"XREADGROUP",        "GROUP",   SK_LOGIC_GROUP, w->consumer, "COUNT", SK_LOGIC_BATCH_S, "BLOCK",
                          SK_LOGIC_BLOCK_MS_S, "STREAMS", w->stream,      ">"};
    size_t argvlen[11];
    for (int i = 0; i < 11; ++i)
        argvlen[i] = strlen(argv[i]);
    /* the host's deadline must exceed the block time, or every idle read would count as a Redis failure */
    unsigned timeout = w->L->conf->redis_timeout_ms + SK_LOGIC_BLOCK_MS + 200;
    return w->api->redis_cmdargv(w->q, on_read, w, timeout, 11, argv, argvlen);
}

static void
pump(lane_t *w)
{
    if (w->disposing || w->reading)
        return;
    if (!w->ready || !connected(w)) {
        if (!connected(w))
            set_ready(w, 0);
        if (w->nbatches == 0)
            w->api->timer_start(w->timer, 100);
        return;
    }
    /* Until the first etcd snapshot arrives every activity looks unknown: answering now would store 1002 for
     * requests that are fine. Leave them queued; access answers 1008 if no node can take them in time. */
    if (w->api->snapshot(w->thr)->revision <= 0) {
        w->api->timer_start(w->timer, 100);
        return;
    }
    int stopping = atomic_load(&w->L->stopping);
    if (stopping && (w->drained || sk_logic_mono_ms() >= w->L->stop_deadline_ms)) {
        w->drained = 1;
        return;
    }
    if (w->nbatches >= SK_LOGIC_PIPELINE)
        return; /* finish_batch() pumps again */
    uint64_t now = w->api->now_ms(w->thr);
    int rc;
    if (!stopping && now - w->last_claim_ms >= SK_LOGIC_CLAIM_EVERY_MS) {
        w->last_claim_ms = now;
        const char *argv[] = {"XAUTOCLAIM", w->stream, SK_LOGIC_GROUP, w->consumer, "1000", w->claim_cursor, "COUNT", "64"};
        size_t argvlen[8];
        for (int i = 0; i < 8; ++i)
            argvlen[i] = strlen(argv[i]);
        rc = w->api->redis_cmdargv(w->q, on_claim, w, 0, 8, argv, argvlen);
    } else {
        rc = send_read(w);
    }
    if (rc != 0) {
        set_ready(w, 0);
        if (w->nbatches == 0)
            w->api->timer_start(w->timer, 100);
        return;
    }
    w->reading = 1;
    update_busy(w);
}

lane_t *
sk_logic_lane_new(sk_logic_t *L, sk_thread_t *thr, sk_logic_worker_t *worker, int64_t aid, unsigned bucket, unsigned nbuckets,
                  unsigned index)
{
    lane_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->L = L;
    w->worker = worker;
    w->api = L->api;
    w->thr = thr;
    w->aid = aid;
    w->bucket = bucket;
    w->nbuckets = nbuckets;
    if (sk_shard_tag(w->tag, sizeof(w->tag), aid, bucket, nbuckets) < 0 ||
        sk_key_bucket(w->stream, sizeof(w->stream), SK_KEY_QUEUE, w->tag) < 0 ||
        sk_key_bucket(w->route, sizeof(w->route), SK_KEY_SOLD, w->tag) < 0) {
        free(w);
        return NULL;
    }
    for (unsigned i = 0; i < SK_LOGIC_PIPELINE; ++i)
        w->batches[i].w = w;
    /* unique per node, thread, activity and lane: a consumer's pending entries are its own */
    snprintf(w->consumer, sizeof(w->consumer), "%s-%u.%s.%u", L->conf->node_id, L->api->thread_index(thr), w->tag, index);
    strcpy(w->claim_cursor, "0-0");
    w->timer = L->api->timer_new(thr, on_timer, w);
    w->redis = L->api->redis_new(L->self, thr);
    w->q = L->conf->redis_queue_addr[0] != '\0' ? L->api->redis_new_queue(L->self, thr) : w->redis;
    if (w->timer == NULL || w->redis == NULL || w->q == NULL) {
        if (w->timer != NULL)
            L->api->timer_free(w->timer);
        if (w->q != NULL && w->q != w->redis)
            L->api->redis_free(w->q);
        if (w->redis != NULL)
            L->api->redis_free(w->redis);
        free(w);
        return NULL;
    }
    L->api->redis_on_connect(w->redis, on_connect, w);
    if (w->q != w->redis)
        L->api->redis_on_connect(w->q, on_connect, w);
    /* also covers a connection that came up before the hook was in place */
    L->api->timer_start(w->timer, 50);
    return w;
}

int64_t
sk_logic_lane_aid(const lane_t *w)
{
    return w->aid;
}

unsigned
sk_logic_lane_bucket(const lane_t *w, unsigned *nbuckets)
{
    *nbuckets = w->nbuckets;
    return w->bucket;
}

void
sk_logic_lane_free(lane_t *w)
{
    if (w == NULL)
        return;
    w->disposing = 1;
    w->api->timer_stop(w->timer);
    w->api->timer_free(w->timer);
    if (w->q != w->redis)
        w->api->redis_free(w->q);
    w->api->redis_free(w->redis); /* fails what is pending; the callbacks see `disposing` */
    set_ready(w, 0);
    w->reading = 0;
    w->nbatches = 0;
    update_busy(w);
    free(w);
}
