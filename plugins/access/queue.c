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

const char sk_access_queue_lua[] =
    "local t = redis.call('TIME')\n"
    "if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[3]) then return 1013 end\n"
    "if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 1003 end\n"
    "if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return 1013 end\n"
    "return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))\n";

/* Settles a request whose outcome this node does not know: stores `ARGV[1]` as its result unless the logic layer
 * already stored one, and returns whichever is in effect. The logic script returns a stored result as is, so once this
 * ran the request can never win behind the client's back (SPEC §8.5). */
static const char settle_lua[] = "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', 3600) then return ARGV[1] end\n"
                                 "return redis.call('GET', KEYS[1])\n";

struct st_pending_ref_t;

struct st_sk_access_pending_t {
    sk_access_pending_t *hnext, *dl_prev, *dl_next;
    sk_access_thread_t *t;
    struct st_pending_ref_t *ref;
    h2o_req_t *req;
    uint64_t seq, deadline_loop_ms;
    int64_t product_id, activity_id, user_id, now, ttl, deadline_redis_ms, script_deadline_ms;
    char nance[SK_ACCESS_NANCE_MAX + 1], ip[48];
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
    if (t->dl_head == p)
        t->a->api->timer_start(t->timer, p->deadline_loop_ms - t->a->api->now_ms(t->thr));
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

/* ---- the script ---- */

static void on_script(sk_redis_t *r, redisReply *reply, const char *err, void *data);
static void remember_unsettled(sk_access_thread_t *t, int64_t activity_id, uint64_t seq);

static int
send_script(sk_access_pending_t *p, int as_eval)
{
    sk_access_thread_t *t = p->t;
    sk_access_t *a = t->a;
    char nonce_key[128], ttl[24], maxlen[24], sdl[24], id[256], aid[24], pid[24], uid[24], now[24], dl[24];
    snprintf(nonce_key, sizeof(nonce_key), "sk:nonce:%" PRId64 ":%s", p->user_id, p->nance);
    snprintf(ttl, sizeof(ttl), "%" PRId64, p->ttl);
    snprintf(maxlen, sizeof(maxlen), "%d", SK_ACCESS_QUEUE_MAX);
    snprintf(sdl, sizeof(sdl), "%" PRId64, p->script_deadline_ms);
    snprintf(id, sizeof(id), "%s%" PRIu64, t->id_prefix, p->seq);
    snprintf(aid, sizeof(aid), "%" PRId64, p->activity_id);
    snprintf(pid, sizeof(pid), "%" PRId64, p->product_id);
    snprintf(uid, sizeof(uid), "%" PRId64, p->user_id);
    snprintf(now, sizeof(now), "%" PRId64, p->now);
    snprintf(dl, sizeof(dl), "%" PRId64, p->deadline_redis_ms);
    const char *argv[] = {as_eval ? "EVAL" : "EVALSHA",
                          as_eval ? sk_access_queue_lua : a->queue_sha,
                          "2",
                          nonce_key,
                          "sk:queue",
                          ttl,
                          maxlen,
                          sdl,
                          "id",
                          id,
                          "reply",
                          t->channel,
                          "aid",
                          aid,
                          "pid",
                          pid,
                          "uid",
                          uid,
                          "ip",
                          p->ip,
                          "now",
                          now,
                          "deadline",
                          dl};
    size_t n = sizeof(argv) / sizeof(argv[0]), lens[sizeof(argv) / sizeof(argv[0])];
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    if (a->api->redis_cmdargv(t->cmd, on_script, p, 0, (int)n, argv, lens) != 0)
        return -1;
    p->in_redis = 1;
    return 0;
}

static void
on_script(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_access_pending_t *p = data;
    sk_access_t *a = p->t->a;
    (void)r;
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
            remember_unsettled(p->t, p->activity_id, p->seq);
            answer(p, SK_E_UNAVAILABLE, "service unavailable: Redis too slow", NULL);
        } else {
            /* the connection dropped with the script sent: it may have run. Wait (up to the deadline) for the
             * connection to return and settle the request there, rather than answer 1013 for a queued request. */
            p->uncertain = 1;
        }
    } else if (reply->type == REDIS_REPLY_ERROR) {
        if (!p->retried && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            p->retried = 1;
            if (send_script(p, 1) == 0)
                return;
        } else {
            a->api->log(a->self, SK_LOG_ERROR, "queue script failed: %.200s", reply->str);
        }
        answer(p, SK_E_UNAVAILABLE, "service unavailable: queue script failed", NULL);
    } else if (reply->type == REDIS_REPLY_INTEGER) {
        if (reply->integer == SK_E_AUTH)
            answer(p, SK_E_AUTH, "authentication failed: nance already used", NULL);
        else
            answer(p, SK_E_UNAVAILABLE, "service unavailable: queue full or Redis too slow", NULL);
    } else {
        atomic_fetch_add(&a->queued, 1);
    }
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
    if (!api->redis_connected(t->cmd) || !api->redis_connected(t->sub)) {
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
    if (send_script(p, 0) != 0)
        answer(p, SK_E_UNAVAILABLE, "service unavailable: Redis unreachable", NULL);
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

/* Sends the settle script for p with `marker` ("1008 - 0" or "1013 - 0"). 0, or -1 when Redis is not reachable. */
static int
settle(sk_access_pending_t *p, const char *marker)
{
    sk_access_thread_t *t = p->t;
    char key[256];
    snprintf(key, sizeof(key), "sk:{a%" PRId64 "}:req:%s%" PRIu64, p->activity_id, t->id_prefix, p->seq);
    const char *argv[] = {"EVAL", settle_lua, "1", key, marker};
    size_t lens[] = {4, strlen(settle_lua), 1, strlen(key), strlen(marker)};
    if (t->a->api->redis_cmdargv(t->cmd, on_settled, p, 0, 5, argv, lens) != 0)
        return -1;
    p->in_redis = 1;
    p->settling = 1;
    if (p->dl_prev == NULL && p->dl_next == NULL && t->dl_head != p)
        p->resolving = 1; /* taken out of the deadline list: this is its last chance */
    return 0;
}

static void
remember_unsettled(sk_access_thread_t *t, int64_t activity_id, uint64_t seq)
{
    size_t cap = sizeof(t->unsettled) / sizeof(t->unsettled[0]);
    if (t->nunsettled == cap) {
        memmove(t->unsettled, t->unsettled + 1, (cap - 1) * sizeof(t->unsettled[0]));
        t->nunsettled--;
    }
    t->unsettled[t->nunsettled].activity_id = activity_id;
    t->unsettled[t->nunsettled].seq = seq;
    t->nunsettled++;
}

/* ---- answers on the reply channel: "<id> <code> <token> <expires_at>" ---- */

static void
on_reply_msg(sk_redis_t *r, const char *channel, const char *msg, size_t len, void *data)
{
    sk_access_thread_t *t = data;
    (void)r;
    (void)channel;
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
    t->a->api->redis_cmd(r, on_script_loaded, NULL, "SCRIPT LOAD %s", sk_access_queue_lua);
    t->a->api->redis_cmd(r, on_script_loaded, NULL, "SCRIPT LOAD %s", sk_access_result_lua);
    for (sk_access_pending_t *p = t->dl_head; p != NULL; p = p->dl_next)
        if (p->uncertain && !p->in_redis && !p->answered)
            settle(p, "1013 - 0");
    /* requests answered 1013 on a timeout: make sure a late run of their script can never turn into a win */
    for (size_t i = 0; i < t->nunsettled; ++i) {
        char key[256];
        snprintf(key, sizeof(key), "sk:{a%" PRId64 "}:req:%s%" PRIu64, t->unsettled[i].activity_id, t->id_prefix,
                 t->unsettled[i].seq);
        t->a->api->redis_cmd(r, on_script_loaded, NULL, "SET %s %s NX EX 3600", key, "1013 - 0");
    }
    t->nunsettled = 0;
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
    snprintf(t->channel, sizeof(t->channel), "sk:reply:%s:%u", a->conf->node_id, t->index);
    snprintf(t->id_prefix, sizeof(t->id_prefix), "%s:%u:", a->conf->node_id, t->index);
    if ((t->timer = api->timer_new(t->thr, on_deadline, t)) == NULL || (t->cmd = api->redis_new(a->self, t->thr)) == NULL ||
        (t->sub = api->redis_new(a->self, t->thr)) == NULL)
        return -1;
    api->redis_on_connect(t->cmd, on_cmd_connect, t);
    if (api->redis_subscribe(t->sub, t->channel, on_reply_msg, t) != 0)
        return -1;
    return 0;
}

void
sk_access_queue_dispose(sk_access_thread_t *t)
{
    const sk_host_api_t *api = t->a->api;
    /* the loop has stopped, so whoever still waits (only after a forced stop) is dropped without an answer */
    while (t->dl_head != NULL)
        finish(t->dl_head);
    /* and those out of the deadline list, being settled */
    for (size_t i = 0; t->buckets != NULL && i <= t->mask; ++i)
        while (t->buckets[i] != NULL)
            finish(t->buckets[i]);
    if (t->sub != NULL)
        api->redis_free(t->sub);
    if (t->cmd != NULL)
        api->redis_free(t->cmd); /* fails outstanding scripts, which free their pending objects */
    if (t->timer != NULL)
        api->timer_free(t->timer);
    free(t->buckets);
    t->sub = t->cmd = NULL;
    t->timer = NULL;
    t->buckets = NULL;
}
