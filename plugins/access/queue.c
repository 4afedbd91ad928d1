/*
 * Steps 9 and 10 of /sec/kill: one script sets the cluster-wide nonce and queues the request (DESIGN.md), then the
 * request waits for its answer on this thread's reply channel, or for its deadline.
 *
 * Lifetime: the pending object belongs to this thread. It is in the id map and the deadline list until it is answered,
 * and it stays allocated while the script's callback is outstanding. The request refers to it only through a small
 * shared chunk in req->pool whose dispose hook detaches it, so a client that goes away frees its slot at once and a
 * late answer never touches a dead request (STACK.md "Request lifetime").
 */
#include "access.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "sk_keys.h"
#include "sk_shard.h"

struct st_pending_ref_t;

struct st_sk_access_pending_t {
    sk_access_pending_t *hnext, *dl_prev, *dl_next;
    sk_access_thread_t *t;
    struct st_pending_ref_t *ref;
    h2o_req_t *req;
    uint64_t seq, deadline_loop_ms;
    int64_t product_id, activity_id, user_id, now, ttl, deadline_redis_ms, script_deadline_ms;
    char nance[SK_ACCESS_NANCE_MAX + 1], ip[48];
    char tag[SK_SHARD_TAG_MAX]; /* the hash tag of the user's stock bucket (sk_shard.h): its stream, nonce and result */
    unsigned bucket;
    /* uncertain: the queue script was sent but its reply was lost with the connection, so the request may be queued;
     * resolving: out of the deadline list, its fate being settled in Redis (see settle()) */
    unsigned answered : 1, in_redis : 1, retried : 1, uncertain : 1, resolving : 1, settling : 1;
};

typedef struct st_pending_ref_t {
    sk_access_pending_t *p;
} pending_ref_t;

void
sk_access_script_sha(const char *src, char out[41])
{
    unsigned char md[20];
    unsigned len = 0;
    if (!EVP_Digest(src, strlen(src), md, &len, EVP_sha1(), NULL) || len != 20)
        memset(md, 0, sizeof(md));
    sk_hex_encode(md, 20, out);
}

/* ---- the id map and the deadline list ---- */

static void
map_insert(sk_access_thread_t *t, sk_access_pending_t *p)
{
    sk_access_pending_t **b = &t->buckets[p->seq & t->mask];
    p->hnext = *b;
    *b = p;
    t->npending++;
}

static sk_access_pending_t *
map_find(sk_access_thread_t *t, uint64_t seq)
{
    for (sk_access_pending_t *p = t->buckets[seq & t->mask]; p != NULL; p = p->hnext)
        if (p->seq == seq)
            return p;
    return NULL;
}

static void
map_remove(sk_access_thread_t *t, sk_access_pending_t *p)
{
    sk_access_pending_t **pp = &t->buckets[p->seq & t->mask];
    while (*pp != NULL && *pp != p)
        pp = &(*pp)->hnext;
    if (*pp == p) {
        *pp = p->hnext;
        t->npending--;
    }
}

static void
dl_append(sk_access_thread_t *t, sk_access_pending_t *p)
{
    p->dl_next = NULL;
    p->dl_prev = t->dl_tail;
    if (t->dl_tail != NULL)
        t->dl_tail->dl_next = p;
    else
        t->dl_head = p;
    t->dl_tail = p;
    if (t->dl_head == p) {
        t->a->api->timer_start(t->timer, p->deadline_loop_ms - t->a->api->now_ms(t->thr));
        t->a->api->timer_start(t->probe_timer, SK_ACCESS_PROBE_MS);
    }
}

static void
dl_unlink(sk_access_thread_t *t, sk_access_pending_t *p)
{
    if (p->dl_prev == NULL && p->dl_next == NULL && t->dl_head != p)
        return; /* not in the list (taken out at its deadline) */
    if (p->dl_prev != NULL)
        p->dl_prev->dl_next = p->dl_next;
    else
        t->dl_head = p->dl_next;
    if (p->dl_next != NULL)
        p->dl_next->dl_prev = p->dl_prev;
    else
        t->dl_tail = p->dl_prev;
    p->dl_prev = p->dl_next = NULL;
}

/* Takes p out of the waiting set; it is freed now unless the script's callback still refers to it. */
static void
finish(sk_access_pending_t *p)
{
    sk_access_thread_t *t = p->t;
    p->answered = 1;
    map_remove(t, p);
    dl_unlink(t, p);
    atomic_fetch_sub(&t->a->inflight, 1);
    if (p->ref != NULL)
        p->ref->p = NULL;
    p->ref = NULL;
    p->req = NULL;
    if (!p->in_redis)
        free(p);
}

static void
answer(sk_access_pending_t *p, int code, const char *msg, const char *data)
{
    if (p->answered)
        return;
    h2o_req_t *req = p->req;
    sk_access_t *a = p->t->a;
    /* detach before replying: the reply may dispose the request's pool right away */
    finish(p);
    if (req != NULL)
        a->api->reply(req, code, msg, data);
}

static void
on_ref_dispose(void *arg)
{
    pending_ref_t *ref = arg;
    /* the client went away before its answer: free its slot now; a late answer finds nothing */
    if (ref->p != NULL && !ref->p->answered) {
        ref->p->ref = NULL;
        ref->p->req = NULL;
        finish(ref->p);
    }
}

static int settle(sk_access_pending_t *p, const char *marker);

static void
on_deadline(sk_timer_t *tm, void *data)
{
    sk_access_thread_t *t = data;
    uint64_t now = t->a->api->now_ms(t->thr);
    while (t->dl_head != NULL && t->dl_head->deadline_loop_ms <= now) {
        sk_access_pending_t *p = t->dl_head;
        /* a 1008 must consume no stock: settle it in Redis first, which also catches an answer we never heard (a
         * reply channel that was down); without Redis the logic layer's own earlier deadline covers it */
        dl_unlink(t, p);
        if (p->in_redis && p->settling) {
            p->resolving = 1; /* the settle under way answers */
            continue;
        }
        if (p->in_redis || settle(p, "1008 - 0") != 0) {
            atomic_fetch_add(&t->a->timeouts, 1);
            answer(p, SK_E_TIMEOUT, "timed out waiting for the logic layer", NULL);
        }
    }
    if (t->dl_head != NULL)
        t->a->api->timer_start(tm, t->dl_head->deadline_loop_ms - now);
}

/* A client that closed while it waits frees its slot now, not at its deadline (SPEC §8.7). Its request stays queued:
 * the logic layer still decides it before its deadline, and a win stays readable through /sec/result. Requests are
 * probed oldest first once they have waited SK_ACCESS_PROBE_MS, so the quick answers never pay for a probe. */
static void
on_probe(sk_timer_t *tm, void *data)
{
    sk_access_thread_t *t = data;
    const sk_host_api_t *api = t->a->api;
    uint64_t now = api->now_ms(t->thr), timeout = t->a->conf->access_request_timeout_ms;
    size_t probed = 0;
    sk_access_pending_t *p = t->dl_head;
    while (p != NULL && probed < SK_ACCESS_PROBE_MAX && p->deadline_loop_ms - timeout + SK_ACCESS_PROBE_MS <= now) {
        sk_access_pending_t *next = p->dl_next;
        if (p->req != NULL && !p->answered) {
            probed++;
            if (api->req_peer_closed(p->req) == 1) {
                h2o_req_t *req = p->req;
                atomic_fetch_add(&t->a->gone, 1);
                finish(p);
                /* nobody reads it; writing it makes h2o see the closed socket and free the connection */
                static const char body[] = "client closed the connection\n";
                api->reply_raw(req, 499, "text/plain", body, sizeof(body) - 1);
            }
        }
        p = next;
    }
    if (t->dl_head != NULL)
        api->timer_start(tm, SK_ACCESS_PROBE_MS);
}

/* ---- the queue script: one per loop pass, for every request of that pass ---- */

typedef struct st_qbatch_t {
    sk_access_thread_t *t;
    int retried;
    size_t n;
    sk_access_pending_t *p[SK_ACCESS_SUBMIT_MAX];
} qbatch_t;

#define QARGS_PER 3 /* script deadline, ttl, the entry */

static void on_script(sk_redis_t *r, redisReply *reply, const char *err, void *data);
static void remember_unsettled(sk_access_thread_t *t, const sk_access_pending_t *p);

static int
send_batch(qbatch_t *b, int as_eval)
{
    sk_access_thread_t *t = b->t;
    sk_access_t *a = t->a;
    size_t argc = 5 + b->n * (1 + QARGS_PER);
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    /* per request: a nonce key (< 120 bytes), two numbers, and an entry of 6 numbers, the id, channel and ip */
    char *buf = malloc(b->n * (128 + 48 + 6 * 21 + sizeof(t->id_prefix) + sizeof(t->channel) + 64) + 64), *w = buf;
    int rc = -1;
    if (argv == NULL || lens == NULL || buf == NULL)
        goto Exit;
    size_t k = 0;
    argv[k] = as_eval ? "EVAL" : "EVALSHA";
    lens[k++] = as_eval ? 4 : 7;
    argv[k] = as_eval ? sk_script_access_queue : a->queue_sha;
    lens[k] = strlen(argv[k]);
    k++;
#define PUT(...)                                                                                                                   \
    do {                                                                                                                           \
        int n_ = sprintf(w, __VA_ARGS__);                                                                                          \
        argv[k] = w;                                                                                                               \
        lens[k++] = (size_t)n_;                                                                                                    \
        w += n_ + 1;                                                                                                               \
    } while (0)
    PUT("%zu", b->n + 1);
    /* every request of a batch is for one bucket of one activity: the stream and the nonces share its slot */
    int qn = sk_key_bucket(w, 96, SK_KEY_QUEUE, b->p[0]->tag);
    if (qn < 0)
        goto Exit;
    argv[k] = w;
    lens[k++] = (size_t)qn;
    w += qn + 1;
    for (size_t i = 0; i < b->n; ++i) {
        /* the cluster-wide replay guard of one (user_id, nance); /sec/result's script writes the same key */
        int n_ = sk_key_bucket_nonce(w, 128, b->p[i]->tag, b->p[i]->user_id, b->p[i]->nance);
        if (n_ < 0)
            goto Exit;
        argv[k] = w;
        lens[k++] = (size_t)n_;
        w += n_ + 1;
    }
    PUT("%d", SK_ACCESS_QUEUE_MAX);
    for (size_t i = 0; i < b->n; ++i) {
        const sk_access_pending_t *p = b->p[i];
        PUT("%" PRId64, p->script_deadline_ms);
        PUT("%" PRId64, p->ttl);
        PUT("%s%" PRIu64 " %s %" PRId64 " %" PRId64 " %" PRId64 " %s %" PRId64 " %" PRId64, t->id_prefix, p->seq, t->channel,
            p->activity_id, p->product_id, p->user_id, p->ip, p->now, p->deadline_redis_ms);
    }
#undef PUT
    rc = a->api->redis_cmdargv(t->queue, on_script, b, 0, (int)k, argv, lens);
Exit:
    free(argv);
    free(lens);
    free(buf);
    return rc;
}

/* What the script said of one request: a stream id (queued; the answer comes on the reply channel), 1003 or 1013. */
static void
script_result(sk_access_pending_t *p, const redisReply *el, const char *err)
{
    sk_access_t *a = p->t->a;
    p->in_redis = 0;
    if (p->answered) {
        free(p);
        return;
    }
    if (err != NULL) {
        atomic_fetch_add(&a->redis_errors, 1);
        if (strcmp(err, "timeout") == 0) {
            /* the script does nothing when Redis runs it after script_deadline_ms, so a stalled Redis that runs it
             * later cannot queue it; remember it anyway and settle it once Redis answers again */
            remember_unsettled(p->t, p);
            answer(p, SK_E_UNAVAILABLE, "service unavailable: Redis too slow", NULL);
        } else {
            /* the connection dropped with the script sent: it may have run. Wait (up to the deadline) for the
             * connection to return and settle the request there, rather than answer 1013 for a queued request. */
            p->uncertain = 1;
            /* With a separate queue Redis the results live on the durable one, which may still answer: settle there
             * now (a decision already stored stands) instead of holding the client until its deadline. */
            if (p->t->queue != p->t->cmd && a->api->redis_connected(p->t->cmd))
                (void)settle(p, "1013 - 0");
        }
    } else if (el == NULL || el->type == REDIS_REPLY_ERROR) {
        if (el != NULL)
            a->api->log(a->self, SK_LOG_ERROR, "queue script failed: %.200s", el->str);
        answer(p, SK_E_UNAVAILABLE, "service unavailable: queue script failed", NULL);
    } else if (el->type == REDIS_REPLY_INTEGER) {
        if (el->integer == SK_E_AUTH)
            answer(p, SK_E_AUTH, "authentication failed: nance already used", NULL);
        else
            answer(p, SK_E_UNAVAILABLE, "service unavailable: queue full or Redis too slow", NULL);
    } else {
        atomic_fetch_add(&a->queued, 1);
    }
}

/* Frees the requests of ps[0 .. n) that were answered meanwhile (their clients left; nothing else refers to them) and
 * keeps the others, in order. Returns how many it kept. */
static size_t
drop_answered(sk_access_pending_t **ps, size_t n)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; ++i) {
        if (ps[i]->answered)
            free(ps[i]);
        else
            ps[kept++] = ps[i];
    }
    return kept;
}

static void
on_script(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    qbatch_t *b = data;
    (void)r;
    if (err == NULL && reply->type == REDIS_REPLY_ERROR && !b->retried && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        /* SCRIPT FLUSH or a restarted Redis: once more as EVAL, for those still waiting */
        b->n = drop_answered(b->p, b->n);
        b->retried = 1;
        if (b->n > 0 && send_batch(b, 1) == 0)
            return;
        for (size_t i = 0; i < b->n; ++i)
            script_result(b->p[i], NULL, NULL);
        free(b);
        return;
    }
    int ok = err == NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == b->n;
    for (size_t i = 0; i < b->n; ++i) {
        sk_access_pending_t *p = b->p[i];
        if (ok || err != NULL || reply->type == REDIS_REPLY_ERROR) {
            script_result(p, ok ? reply->element[i] : err == NULL ? reply : NULL, err);
        } else {
            /* a reply of the wrong shape: the script ran, so the request may be queued; settle it in Redis */
            p->in_redis = 0;
            if (p->answered)
                free(p);
            else if (settle(p, "1013 - 0") != 0)
                answer(p, SK_E_UNAVAILABLE, "service unavailable: queue script failed", NULL);
        }
    }
    free(b);
}

/* Queues the requests ps[0 .. n) of one activity with one script, or answers them 1013 when it cannot be sent. */
static void
send_activity(sk_access_thread_t *t, sk_access_pending_t **ps, size_t n)
{
    qbatch_t *b = malloc(sizeof(*b));
    if (b != NULL) {
        b->t = t;
        b->retried = 0;
        b->n = n;
        memcpy(b->p, ps, n * sizeof(b->p[0]));
        if (send_batch(b, 0) == 0)
            return;
        free(b);
    }
    for (size_t i = 0; i < n; ++i) {
        sk_access_pending_t *p = ps[i];
        p->in_redis = 0;
        if (p->answered)
            free(p);
        else
            answer(p, SK_E_UNAVAILABLE, "service unavailable: Redis unreachable", NULL);
    }
}

static void
flush_submits(sk_access_thread_t *t)
{
    if (t->nsubmit == 0)
        return;
    /* a request answered meanwhile (its client left) must not be queued: nobody would hear of its win */
    size_t n = drop_answered(t->submit, t->nsubmit);
    t->nsubmit = 0;
    if (n == 0)
        return;
    /* one script per activity of this pass, each in that activity's slot, requests in arrival order */
    sk_access_pending_t **rest = t->submit;
    while (n > 0) {
        int64_t aid = rest[0]->activity_id;
        unsigned bucket = rest[0]->bucket;
        size_t m = 0, k = 0;
        sk_access_pending_t *mine[SK_ACCESS_SUBMIT_MAX];
        for (size_t i = 0; i < n; ++i) {
            if (rest[i]->activity_id == aid && rest[i]->bucket == bucket)
                mine[m++] = rest[i];
            else
                rest[k++] = rest[i];
        }
        n = k;
        send_activity(t, mine, m);
    }
}

static void
on_submit_timer(sk_timer_t *tm, void *data)
{
    (void)tm;
    flush_submits(data);
}

/* Whether answers can be heard. On a Redis Cluster the subscriber moves to another master when its own dies (any node
 * hears every PUBLISH); for that moment requests are still queued: one whose answer is missed is settled at its
 * deadline from the stored result, so the activities on the masters still up keep selling instead of answering
 * 1013. On one Redis a subscriber that is down means Redis is. */
static int
sub_usable(sk_access_thread_t *t)
{
    const sk_host_api_t *api = t->a->api;
    if (api->redis_connected(t->sub)) {
        t->sub_down_ms = 0;
        return 1;
    }
    uint64_t now = api->now_ms(t->thr);
    if (t->sub_down_ms == 0)
        t->sub_down_ms = now;
    return t->a->conf->redis_cluster && now - t->sub_down_ms < SK_ACCESS_SUB_GRACE_MS;
}

void
sk_access_queue_submit(sk_access_thread_t *t, h2o_req_t *req, const sk_access_signed_t *sp, const sk_activity_t *act,
                       const char *ip)
{
    sk_access_t *a = t->a;
    const sk_host_api_t *api = a->api;
    const sk_config_t *conf = a->conf;
    if (atomic_fetch_add(&a->inflight, 1) >= conf->access_max_inflight) {
        atomic_fetch_sub(&a->inflight, 1);
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: too many requests in flight", NULL);
        return;
    }
    if (!api->redis_connected(t->cmd) || !api->redis_connected(t->queue) || !sub_usable(t)) {
        atomic_fetch_sub(&a->inflight, 1);
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: Redis unreachable", NULL);
        return;
    }
    sk_access_pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        atomic_fetch_sub(&a->inflight, 1);
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: out of memory", NULL);
        return;
    }
    int64_t now_ms = sk_access_unix_ms(), offset = t->live != NULL ? t->live->offset_ms : 0, redis_now = now_ms + offset;
    /* Deadlines in Redis' clock (STACK.md): logic drops the entry after deadline_redis_ms, a margin before we stop
     * waiting, so that an answer still in flight at our deadline cannot be a win the client never hears of; and the
     * script does nothing once we may have given up on it (redis.timeout_ms after sending). */
    int64_t timeout = conf->access_request_timeout_ms, rto = conf->redis_timeout_ms;
    int64_t guard = timeout / 5 < 500 ? timeout / 5 : 500, sguard = rto / 4 < 100 ? rto / 4 : 100;
    p->t = t;
    p->req = req;
    p->seq = ++t->seq;
    p->product_id = sp->product_id;
    p->activity_id = act->activity_id;
    p->user_id = sp->user_id;
    p->bucket = sk_access_user_bucket(act, sp->user_id, p->tag, sizeof(p->tag));
    p->now = now_ms / 1000;
    p->deadline_redis_ms = redis_now + timeout - guard;
    p->script_deadline_ms = redis_now + rto - sguard;
    p->deadline_loop_ms = api->now_ms(t->thr) + (uint64_t)timeout;
    /* the nonce is kept until time + auth.window (SPEC §3), counted in Redis' clock */
    p->ttl = sp->time + (int64_t)conf->auth_window - redis_now / 1000 + 1;
    if (p->ttl < 1)
        p->ttl = 1;
    memcpy(p->nance, sp->nance, sp->nance_len);
    p->nance[sp->nance_len] = '\0';
    snprintf(p->ip, sizeof(p->ip), "%s", ip);

    pending_ref_t *ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), on_ref_dispose);
    ref->p = p;
    p->ref = ref;
    map_insert(t, p);
    dl_append(t, p);
    /* in_redis from here on: a client that leaves before the flush leaves p for the flush to free */
    p->in_redis = 1;
    t->submit[t->nsubmit++] = p;
    if (t->nsubmit == SK_ACCESS_SUBMIT_MAX)
        flush_submits(t);
    else if (t->nsubmit == 1)
        api->timer_start(t->submit_timer, 0);
}

/* Answers p with a logic-layer result: code, token ("-" when none) and expires_at. */
static void
deliver(sk_access_pending_t *p, int64_t code, const char *token, const char *exp_s)
{
    sk_access_thread_t *t = p->t;
    sk_access_t *a = t->a;
    switch (code) {
    case SK_OK: {
        int64_t expires = 0;
        size_t tlen = token != NULL ? strlen(token) : 0;
        if (tlen < 1 || tlen > 128 || exp_s == NULL || sk_parse_int64(exp_s, strlen(exp_s), 0, INT64_MAX, &expires) != 0) {
            a->api->log(a->self, SK_LOG_ERROR, "malformed win on %s", t->channel);
            answer(p, SK_E_UNAVAILABLE, "service unavailable: malformed answer from the logic layer", NULL);
            return;
        }
        char esc[800], json[1024];
        if (sk_access_json_escape(esc, sizeof(esc), token, tlen) == (size_t)-1)
            esc[0] = '\0';
        snprintf(json, sizeof(json),
                 "{\"product_id\":%" PRId64 ",\"activity_id\":%" PRId64 ",\"user_id\":%" PRId64
                 ",\"token\":\"%s\",\"expires_at\":%" PRId64 "}",
                 p->product_id, p->activity_id, p->user_id, esc, expires);
        answer(p, SK_OK, "ok", json);
        return;
    }
    case SK_E_SOLD_OUT:
        sk_access_learn_sold_out(t, p->activity_id);
        answer(p, SK_E_SOLD_OUT, "sold out", NULL);
        return;
    case SK_E_TIMEOUT:
        answer(p, SK_E_TIMEOUT, "timed out waiting for the logic layer", NULL);
        return;
    case SK_E_DISABLED:
        answer(p, SK_E_DISABLED, "activity disabled", NULL);
        return;
    case SK_E_NOT_SELECTED:
        answer(p, SK_E_NOT_SELECTED, "not selected this time, retry with a fresh nance", NULL);
        return;
    case SK_E_ALREADY_BOUGHT:
        answer(p, SK_E_ALREADY_BOUGHT, "already bought: buy limit reached", NULL);
        return;
    case SK_E_NOT_FOUND:
    case SK_E_NOT_STARTED:
    case SK_E_ENDED:
        answer(p, (int)code,
               code == SK_E_NOT_FOUND ? "activity not found"
               : code == SK_E_ENDED   ? "activity ended"
                                      : "activity not started",
               NULL);
        return;
    default:
        answer(p, SK_E_UNAVAILABLE, "service unavailable", NULL);
        return;
    }
}

/* ---- settling requests whose fate this node does not know ---- */

static void
on_settled(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_access_pending_t *p = data;
    (void)r;
    p->in_redis = 0;
    p->settling = 0;
    if (p->answered) {
        free(p);
        return;
    }
    char buf[512];
    int64_t code;
    if (err == NULL && reply->type == REDIS_REPLY_STRING && reply->len < sizeof(buf)) {
        memcpy(buf, reply->str, reply->len);
        buf[reply->len] = '\0';
        char *save = NULL, *code_s = strtok_r(buf, " ", &save), *token = strtok_r(NULL, " ", &save),
             *exp_s = strtok_r(NULL, " ", &save);
        if (code_s != NULL && sk_parse_int64(code_s, strlen(code_s), 0, 9999, &code) == 0) {
            p->uncertain = 0;
            if (code == SK_E_UNAVAILABLE)
                answer(p, SK_E_UNAVAILABLE, "service unavailable: Redis connection lost, request cancelled", NULL);
            else
                deliver(p, code, token, exp_s);
            return;
        }
    }
    /* still unknown: past the deadline the logic layer's earlier Redis-clock deadline covers it; before, the next
     * reconnect or the deadline tries again */
    if (p->resolving) {
        atomic_fetch_add(&p->t->a->timeouts, 1);
        answer(p, SK_E_TIMEOUT, "timed out waiting for the logic layer", NULL);
    }
}

/* Sends the settle script for request seq of this thread: stores `marker` in its result bucket unless a result is
 * there. 0, or -1 when Redis is not reachable. */
static int
send_settle(sk_access_thread_t *t, const char *tag, int64_t deadline_redis_ms, uint64_t seq, const char *marker, sk_redis_cb cb,
            void *data)
{
    char key[128], id[256], until[24];
    if (sk_result_key_bucket(key, sizeof(key), tag, deadline_redis_ms) < 0)
        return -1;
    snprintf(id, sizeof(id), "%s%" PRIu64, t->id_prefix, seq);
    snprintf(until, sizeof(until), "%" PRId64, sk_result_keep_until(deadline_redis_ms));
    const char *argv[] = {"EVAL", sk_script_access_settle, "1", key, id, marker, until};
    size_t lens[7];
    for (size_t i = 0; i < 7; ++i)
        lens[i] = strlen(argv[i]);
    return t->a->api->redis_cmdargv(t->cmd, cb, data, 0, 7, argv, lens);
}

/* Sends the settle script for p with `marker` ("1008 - 0" or "1013 - 0"). 0, or -1 when Redis is not reachable. */
static int
settle(sk_access_pending_t *p, const char *marker)
{
    sk_access_thread_t *t = p->t;
    if (send_settle(t, p->tag, p->deadline_redis_ms, p->seq, marker, on_settled, p) != 0)
        return -1;
    p->in_redis = 1;
    p->settling = 1;
    if (p->dl_prev == NULL && p->dl_next == NULL && t->dl_head != p)
        p->resolving = 1; /* taken out of the deadline list: this is its last chance */
    return 0;
}

static void
remember_unsettled(sk_access_thread_t *t, const sk_access_pending_t *p)
{
    size_t cap = sizeof(t->unsettled) / sizeof(t->unsettled[0]);
    if (t->nunsettled == cap) {
        memmove(t->unsettled, t->unsettled + 1, (cap - 1) * sizeof(t->unsettled[0]));
        t->nunsettled--;
    }
    memcpy(t->unsettled[t->nunsettled].tag, p->tag, sizeof(p->tag));
    t->unsettled[t->nunsettled].deadline_redis_ms = p->deadline_redis_ms;
    t->unsettled[t->nunsettled].seq = p->seq;
    t->nunsettled++;
}

/* ---- answers on the reply channel: lines of "<id> <code> <token> <expires_at>" ---- */

static void
on_reply_line(sk_access_thread_t *t, const char *msg, size_t len)
{
    char buf[512];
    if (len >= sizeof(buf))
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    char *save = NULL, *id = strtok_r(buf, " ", &save), *code_s = strtok_r(NULL, " ", &save), *token = strtok_r(NULL, " ", &save),
         *exp_s = strtok_r(NULL, " ", &save);
    size_t plen = strlen(t->id_prefix);
    int64_t seq, code;
    if (id == NULL || code_s == NULL || strncmp(id, t->id_prefix, plen) != 0 ||
        sk_parse_int64(id + plen, strlen(id + plen), 1, INT64_MAX, &seq) != 0 ||
        sk_parse_int64(code_s, strlen(code_s), 0, 9999, &code) != 0)
        return;
    sk_access_pending_t *p = map_find(t, (uint64_t)seq);
    if (p == NULL)
        return; /* answered already (deadline, or the client left) */
    deliver(p, code, token, exp_s);
}

static void
on_reply_msg(sk_redis_t *r, const char *channel, const char *msg, size_t len, void *data)
{
    (void)r;
    (void)channel;
    /* the logic script answers a whole batch in one message, a line per request */
    while (len > 0) {
        const char *nl = memchr(msg, '\n', len);
        size_t n = nl != NULL ? (size_t)(nl - msg) : len;
        on_reply_line(data, msg, n);
        if (nl == NULL)
            break;
        msg += n + 1;
        len -= n + 1;
    }
}

static void
on_script_loaded(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    (void)reply;
    (void)err;
    (void)data;
}

static void
on_cmd_connect(sk_redis_t *r, void *data)
{
    sk_access_thread_t *t = data;
    /* loading ahead saves the NOSCRIPT round trip after a Redis restart */
    if (t->queue == r)
        t->a->api->redis_cmd(r, on_script_loaded, NULL, "SCRIPT LOAD %s", sk_script_access_queue);
    t->a->api->redis_cmd(r, on_script_loaded, NULL, "SCRIPT LOAD %s", sk_script_access_result);
    for (sk_access_pending_t *p = t->dl_head; p != NULL; p = p->dl_next)
        if (p->uncertain && !p->in_redis && !p->answered)
            settle(p, "1013 - 0");
    /* requests answered 1013 on a timeout: make sure a late run of their script can never turn into a win */
    for (size_t i = 0; i < t->nunsettled; ++i)
        send_settle(t, t->unsettled[i].tag, t->unsettled[i].deadline_redis_ms, t->unsettled[i].seq, "1013 - 0", on_script_loaded,
                    NULL);
    t->nunsettled = 0;
}

static void
on_queue_connect(sk_redis_t *r, void *data)
{
    sk_access_thread_t *t = data;
    t->a->api->redis_cmd(r, on_script_loaded, NULL, "SCRIPT LOAD %s", sk_script_access_queue);
}

int
sk_access_queue_init(sk_access_thread_t *t)
{
    sk_access_t *a = t->a;
    const sk_host_api_t *api = a->api;
    size_t nb = 1024;
    while (nb < a->conf->access_max_inflight && nb < (1u << 16))
        nb <<= 1;
    if ((t->buckets = calloc(nb, sizeof(*t->buckets))) == NULL)
        return -1;
    t->mask = nb - 1;
    if (sk_key_reply(t->channel, sizeof(t->channel), a->conf->node_id, t->index) < 0)
        return -1;
    snprintf(t->id_prefix, sizeof(t->id_prefix), "%s:%u:", a->conf->node_id, t->index);
    if ((t->timer = api->timer_new(t->thr, on_deadline, t)) == NULL ||
        (t->submit_timer = api->timer_new(t->thr, on_submit_timer, t)) == NULL ||
        (t->probe_timer = api->timer_new(t->thr, on_probe, t)) == NULL || (t->cmd = api->redis_new(a->self, t->thr)) == NULL ||
        (t->sub = api->redis_new(a->self, t->thr)) == NULL)
        return -1;
    api->redis_on_connect(t->cmd, on_cmd_connect, t);
    if ((t->queue = api->redis_new_queue(a->self, t->thr)) == NULL) {
        if (a->conf->redis_queue_addr[0] != '\0')
            return -1;
        t->queue = t->cmd;
    } else {
        api->redis_on_connect(t->queue, on_queue_connect, t);
    }
    if (api->redis_subscribe(t->sub, t->channel, on_reply_msg, t) != 0)
        return -1;
    return 0;
}

void
sk_access_queue_dispose(sk_access_thread_t *t)
{
    const sk_host_api_t *api = t->a->api;
    /* never sent: nothing else refers to them, so finish() below frees them */
    for (size_t i = 0; i < t->nsubmit; ++i)
        t->submit[i]->in_redis = 0;
    t->nsubmit = 0;
    /* the loop has stopped, so whoever still waits (only after a forced stop) is dropped without an answer */
    while (t->dl_head != NULL)
        finish(t->dl_head);
    /* and those out of the deadline list, being settled */
    for (size_t i = 0; t->buckets != NULL && i <= t->mask; ++i)
        while (t->buckets[i] != NULL)
            finish(t->buckets[i]);
    if (t->sub != NULL)
        api->redis_free(t->sub);
    if (t->queue != NULL && t->queue != t->cmd)
        api->redis_free(t->queue); /* fails outstanding queue scripts, which free their pending objects */
    if (t->cmd != NULL)
        api->redis_free(t->cmd); /* fails outstanding scripts, which free their pending objects */
    if (t->timer != NULL)
        api->timer_free(t->timer);
    if (t->submit_timer != NULL)
        api->timer_free(t->submit_timer);
    if (t->probe_timer != NULL)
        api->timer_free(t->probe_timer);
    free(t->buckets);
    t->sub = t->cmd = t->queue = NULL;
    t->timer = t->submit_timer = t->probe_timer = NULL;
    t->buckets = NULL;
}
