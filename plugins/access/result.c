/*
 * GET|POST /sec/result: the tokens this user holds for the product's activity in effect, for a client that saw 1008.
 * Signed like /sec/kill (scope "result"); its nance is single-use too, checked with the read in one script.
 */
#include "access.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WINS 100

struct st_wait_ref_t;

typedef struct st_result_wait_t {
    sk_access_thread_t *t;
    struct st_wait_ref_t *ref;
    h2o_req_t *req;
    int64_t activity_id, user_id, now, ttl;
    char tag[SK_SHARD_TAG_MAX]; /* the user's stock bucket: its nonces and its users hash */
    char nance[SK_ACCESS_NANCE_MAX + 1];
    int retried;
} result_wait_t;

typedef struct st_wait_ref_t {
    result_wait_t *w;
} wait_ref_t;

static void
on_wait_dispose(void *arg)
{
    wait_ref_t *ref = arg;
    if (ref->w != NULL) {
        ref->w->req = NULL;
        ref->w->ref = NULL;
    }
}

/* Detaches the request from w and returns it (NULL when the client left). */
static h2o_req_t *
take_req(result_wait_t *w)
{
    h2o_req_t *req = w->req;
    if (w->ref != NULL)
        w->ref->w = NULL;
    w->ref = NULL;
    w->req = NULL;
    return req;
}

static void on_result(sk_redis_t *r, redisReply *reply, const char *err, void *data);

static int
send_result(result_wait_t *w, int as_eval)
{
    sk_access_t *a = w->t->a;
    char nonce_key[160], users_key[96], ttl[24], uid[24];
    if (sk_key_bucket_nonce(nonce_key, sizeof(nonce_key), w->tag, w->user_id, w->nance) < 0 ||
        sk_key_bucket(users_key, sizeof(users_key), SK_KEY_USERS, w->tag) < 0)
        return -1;
    snprintf(ttl, sizeof(ttl), "%" PRId64, w->ttl);
    snprintf(uid, sizeof(uid), "%" PRId64, w->user_id);
    const char *argv[] = {
        as_eval ? "EVAL" : "EVALSHA", as_eval ? sk_script_access_result : a->result_sha, "2", nonce_key, users_key, ttl, uid};
    size_t lens[7];
    for (size_t i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    return a->api->redis_cmdargv(w->t->cmd, on_result, w, 0, 7, argv, lens);
}

static void
answer_wins(sk_access_t *a, h2o_req_t *req, const result_wait_t *w, const redisReply *list)
{
    char *buf = malloc(64 + MAX_WINS * 1100);
    if (buf == NULL) {
        a->api->reply(req, SK_E_UNAVAILABLE, "service unavailable: out of memory", NULL);
        return;
    }
    size_t len = (size_t)sprintf(buf, "{\"wins\":[");
    size_t nwins = 0;
    for (size_t i = 0; i < list->elements && i < MAX_WINS; i++) {
        const redisReply *e = list->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        /* "token expires_at" */
        const char *sp = memchr(e->str, ' ', e->len);
        int64_t expires;
        if (sp == NULL || sp == e->str || (size_t)(sp - e->str) > 128 ||
            sk_parse_int64(sp + 1, e->len - (size_t)(sp - e->str) - 1, 0, INT64_MAX, &expires) != 0 || expires <= w->now)
            continue;
        char tok[800];
        if (sk_access_json_escape(tok, sizeof(tok), e->str, (size_t)(sp - e->str)) == (size_t)-1)
            continue;
        len += (size_t)sprintf(buf + len, "%s{\"activity_id\":%" PRId64 ",\"token\":\"%s\",\"expires_at\":%" PRId64 "}",
                               nwins++ > 0 ? "," : "", w->activity_id, tok, expires);
    }
    sprintf(buf + len, "]}");
    a->api->reply(req, SK_OK, "ok", buf);
    free(buf);
}

static void
on_result(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    result_wait_t *w = data;
    sk_access_t *a = w->t->a;
    (void)r;
    if (err == NULL && reply->type == REDIS_REPLY_ERROR && !w->retried && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        w->retried = 1;
        if (send_result(w, 1) == 0)
            return;
    }
    h2o_req_t *req = take_req(w);
    if (req != NULL) {
        if (err != NULL || reply->type == REDIS_REPLY_ERROR)
            a->api->reply(req, SK_E_UNAVAILABLE, "service unavailable: Redis unreachable or too slow", NULL);
        else if (reply->type == REDIS_REPLY_INTEGER)
            a->api->reply(req, SK_E_AUTH, "authentication failed: nance already used", NULL);
        else if (reply->type == REDIS_REPLY_ARRAY)
            answer_wins(a, req, w, reply);
        else
            a->api->reply(req, SK_E_UNAVAILABLE, "service unavailable: unexpected reply", NULL);
    }
    free(w);
}

int
sk_access_result(sk_access_thread_t *t, h2o_req_t *req)
{
    sk_access_t *a = t->a;
    const sk_host_api_t *api = a->api;
    sk_form_t f;
    sk_access_signed_t p;
    uint8_t ip[16];
    if (sk_access_signed_checks(t, req, "result", &f, &p, ip) != 0)
        return 0;
    int64_t now = (int64_t)time(NULL);
    const sk_snapshot_t *snap = api->snapshot(t->thr);
    const sk_activity_t *acts;
    size_t n = sk_access_product_activities(snap, p.product_id, &acts);
    const sk_activity_t *act = sk_access_in_effect(acts, n, now);
    if (act == NULL) {
        api->reply(req, SK_E_NOT_FOUND, "not found: no activity for this product", NULL);
        return 0;
    }
    result_wait_t *w = calloc(1, sizeof(*w));
    if (w == NULL || !api->redis_connected(t->cmd)) {
        free(w);
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: Redis unreachable", NULL);
        return 0;
    }
    int64_t offset = t->live != NULL ? t->live->offset_ms : 0;
    w->t = t;
    w->req = req;
    w->activity_id = act->activity_id;
    w->user_id = p.user_id;
    sk_access_user_bucket(act, p.user_id, w->tag, sizeof(w->tag));
    w->now = now;
    w->ttl = p.time + (int64_t)a->conf->auth_window - (sk_access_unix_ms() + offset) / 1000 + 1;
    if (w->ttl < 1)
        w->ttl = 1;
    memcpy(w->nance, p.nance, p.nance_len);
    w->nance[p.nance_len] = '\0';
    wait_ref_t *ref = h2o_mem_alloc_shared(&req->pool, sizeof(*ref), on_wait_dispose);
    ref->w = w;
    w->ref = ref;
    if (send_result(w, 0) != 0) {
        take_req(w);
        free(w);
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: Redis unreachable", NULL);
    }
    return 0;
}
