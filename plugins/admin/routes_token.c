/*
 * POST /token/consume: turns a purchase token into exactly one durable order row (POST /token/cancel, routed here
 * too, is routes_cancel.c).
 *
 * Exactly once, in three steps, with calls for one token handled one at a time on the admin thread (later calls wait
 * for the first to finish, then find its order):
 *   1. SQLite: a done order for the token answers 1014 with its order_id. Otherwise a *pending* row is written (and
 *      fsynced) first; its rowid is the order id. The row is the journal that survives a crash.
 *   2. Redis, one script on the token's field of sk:{a<ID>}:tokens (tried for each activity of the product, newest
 *      first): missing -> next activity; user/product mismatch -> 1002; already marked -> 1014 with the marked
 *      order_id; expired -> 1002; else mark order_id. Only one call can ever mark a token.
 *   3. SQLite: the pending row becomes done; only then the answer is 0.
 * The script also refuses a token whose unit went back (cancelled: 1014; expired or past expires_at: 1002); the pending
 * row is then dropped, so no order ever exists for a returned unit.
 * A crash between 2 and 3 leaves a pending row whose order id Redis holds. The admin re-drives pending rows (at start
 * and every second, those older than 5 s): the script then answers "marked with this very id", and the row becomes
 * done. A row left by a call that never marked is dropped once Redis says the token is missing, expired or not this
 * user's. If Redis holds an order id SQLite does not know (e.g. a restored database), the row is repaired from Redis.
 * The order row's token column is UNIQUE, so there is never a second row.
 */
#include <stdlib.h>
#include <string.h>
#include "admin.h"

#define WAITERS_MAX 64
#define ACTIVITIES_MAX 64
#define REDRIVE_AFTER_S 5

typedef struct st_call_t {
    struct st_call_t *next;
    sk_admin_reqref_t ref;
    int64_t user_id, product_id;
} call_t;

struct st_sk_admin_consume_t {
    sk_admin_consume_t *next;
    sk_admin_ts_t *ts;
    char token[SK_ADMIN_TOKEN_MAX + 1];
    call_t *cur; /* NULL while re-driving a pending row */
    call_t *waiters;
    size_t nwaiters;
    /* the attempt in progress */
    int64_t user_id, product_id, order_id;
    int own_pending; /* the pending row carries this attempt's user and product */
    int64_t ids[ACTIVITIES_MAX];
    int nids, idx;
};

static void start(sk_admin_consume_t *e);

static cJSON *
order_data(const sk_admin_order_t *o)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "order_id", (double)o->order_id);
    cJSON_AddStringToObject(d, "token", o->token);
    cJSON_AddNumberToObject(d, "user_id", (double)o->user_id);
    cJSON_AddNumberToObject(d, "product_id", (double)o->product_id);
    cJSON_AddNumberToObject(d, "activity_id", (double)o->activity_id);
    cJSON_AddNumberToObject(d, "expires_at", (double)o->expires_at);
    cJSON_AddNumberToObject(d, "created_at", (double)o->created_at);
    return d;
}

static void
unlink_entry(sk_admin_consume_t *e)
{
    sk_admin_ts_t *ts = e->ts;
    for (sk_admin_consume_t **p = &ts->consumes; *p != NULL; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            ts->nconsumes--;
            return;
        }
    }
}

/* Answers the current call (if any), then starts the next waiting call for the token, or retires the entry. */
static void
finish(sk_admin_consume_t *e, int code, const char *message, cJSON *data)
{
    sk_admin_t *inst = e->ts->inst;
    if (e->cur != NULL) {
        h2o_req_t *req = sk_admin_reqref_take(inst, &e->cur->ref);
        if (req != NULL) {
            sk_admin_reply(inst, req, code, message, data);
            data = NULL;
        }
        free(e->cur);
        e->cur = NULL;
    }
    cJSON_Delete(data);
    if (e->waiters != NULL && !e->ts->disposing) {
        e->cur = e->waiters;
        e->waiters = e->cur->next;
        e->nwaiters--;
        e->user_id = e->cur->user_id;
        e->product_id = e->cur->product_id;
        start(e);
        return;
    }
    while (e->waiters != NULL) {
        call_t *c = e->waiters;
        e->waiters = c->next;
        sk_admin_reqref_take(inst, &c->ref);
        free(c);
    }
    unlink_entry(e);
    free(e);
}

static void
finish_store_error(sk_admin_consume_t *e)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "store: %s", sk_admin_store_errmsg(e->ts->store));
    finish(e, SK_E_UNAVAILABLE, msg, NULL);
}

static int64_t
elem_int(const redisReply *r, size_t i)
{
    int64_t v = 0;
    if (i < r->elements && r->element[i]->type == REDIS_REPLY_STRING)
        sk_parse_int64(r->element[i]->str, r->element[i]->len, 0, INT64_MAX, &v);
    return v;
}

static void send_attempt(sk_admin_consume_t *e);

static void
on_consume(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_admin_consume_t *e = data;
    sk_admin_ts_t *ts = e->ts;
    (void)r;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        /* the pending row stays: a retry or the re-drive settles it */
        char msg[160];
        snprintf(msg, sizeof(msg), "redis: %s", err != NULL ? err : reply != NULL && reply->str != NULL ? reply->str : "bad reply");
        finish(e, SK_E_UNAVAILABLE, msg, NULL);
        return;
    }
    long long code = reply->element[0]->integer;
    const redisReply *what = reply->element[1];
    if (code == SK_E_CONFLICT && what->type == REDIS_REPLY_STRING && strcmp(what->str, "cancelled") == 0) {
        /* cancel won: its unit is already back on sale, so no order may exist */
        if (e->own_pending && sk_admin_store_order_drop_pending(ts->store, e->token) != SK_ADMIN_STORE_OK) {
            finish_store_error(e);
            return;
        }
        finish(e, SK_E_CONFLICT, "token: cancelled", NULL);
        return;
    }
    if (code == SK_E_NOT_FOUND) {
        const char *why = what->type == REDIS_REPLY_STRING ? what->str : "";
        int missing = strcmp(why, "missing") == 0;
        if (missing && ++e->idx < e->nids) {
            send_attempt(e);
            return;
        }
        if (e->own_pending && sk_admin_store_order_drop_pending(ts->store, e->token) != SK_ADMIN_STORE_OK) {
            finish_store_error(e);
            return;
        }
        finish(e, SK_E_NOT_FOUND,
               missing                       ? "token: unknown or expired"
               : strcmp(why, "expired") == 0 ? "token: expired"
                                             : "token: not issued to this user_id and product_id",
               NULL);
        return;
    }
    sk_admin_order_t o = {.user_id = e->user_id, .product_id = e->product_id, .activity_id = e->ids[e->idx]};
    snprintf(o.token, sizeof(o.token), "%s", e->token);
    o.order_id = elem_int(reply, 1);
    o.issued_at = elem_int(reply, 3);
    o.expires_at = elem_int(reply, 4);
    o.created_at = sk_admin_now();
    if (code == SK_E_CONFLICT && o.order_id != e->order_id) {
        /* marked by another order id: make sure that order exists, and drop our pending row */
        if (o.order_id <= 0 || sk_admin_store_order_repair(ts->store, &o) == SK_ADMIN_STORE_ERR) {
            finish_store_error(e);
            return;
        }
        sk_admin_order_t stored;
        if (sk_admin_store_order_by_token(ts->store, e->token, &stored) == SK_ADMIN_STORE_OK)
            o = stored;
        finish(e, SK_E_CONFLICT, "token: already used", order_data(&o));
        return;
    }
    if (code != SK_OK && code != SK_E_CONFLICT) {
        finish(e, SK_E_UNAVAILABLE, "redis: unexpected answer of the consume script", NULL);
        return;
    }
    /* marked now, or by an earlier attempt with this very order id (a re-drive after a crash) */
    o.order_id = e->order_id;
    if (sk_admin_store_order_done(ts->store, e->order_id, &o) != SK_ADMIN_STORE_OK) {
        finish_store_error(e);
        return;
    }
    atomic_fetch_add(&ts->inst->orders_created, 1);
    finish(e, SK_OK, "ok", order_data(&o));
}

static void
send_attempt(sk_admin_consume_t *e)
{
    sk_admin_ts_t *ts = e->ts;
    char tag[SK_SHARD_TAG_MAX], key[128], counts[128], uid[24], pid[24], oid[24];
    /* a token lives in the stock bucket of its user */
    sk_admin_user_tag(ts, e->ids[e->idx], e->user_id, tag, sizeof(tag));
    sk_key_bucket(key, sizeof(key), SK_KEY_TOKENS, tag);
    sk_key_bucket(counts, sizeof(counts), SK_KEY_TOKEN_COUNTS, tag);
    snprintf(uid, sizeof(uid), "%lld", (long long)e->user_id);
    snprintf(pid, sizeof(pid), "%lld", (long long)e->product_id);
    snprintf(oid, sizeof(oid), "%lld", (long long)e->order_id);
    const char *argv[] = {"EVAL", sk_script_admin_token_consume, "2", key, counts, uid, pid, oid, e->token};
    size_t lens[9];
    for (size_t i = 0; i < 9; ++i)
        lens[i] = strlen(argv[i]);
    lens[1] = sk_script_admin_token_consume_len;
    if (ts->redis == NULL || ts->inst->api->redis_cmdargv(ts->redis, on_consume, e, 0, 9, argv, lens) != 0)
        finish(e, SK_E_UNAVAILABLE, "redis: unavailable", NULL);
}

static void
start(sk_admin_consume_t *e)
{
    sk_admin_ts_t *ts = e->ts;
    sk_admin_order_t o;
    int rc = sk_admin_store_order_by_token(ts->store, e->token, &o);
    if (rc == SK_ADMIN_STORE_ERR) {
        finish_store_error(e);
        return;
    }
    int same = rc == SK_ADMIN_STORE_OK && o.user_id == e->user_id && o.product_id == e->product_id;
    if (rc == SK_ADMIN_STORE_OK && o.state == 1) {
        if (same)
            finish(e, SK_E_CONFLICT, "token: already used", order_data(&o));
        else
            finish(e, SK_E_NOT_FOUND, "token: not issued to this user_id and product_id", NULL);
        return;
    }
    if (rc == SK_ADMIN_STORE_OK) {
        e->order_id = o.order_id;
        e->own_pending = same;
    } else {
        if (sk_admin_store_order_pending(ts->store, e->token, e->user_id, e->product_id, sk_admin_now(), &e->order_id) !=
            SK_ADMIN_STORE_OK) {
            finish_store_error(e);
            return;
        }
        e->own_pending = 1;
    }
    e->nids = sk_admin_store_activity_ids(ts->store, e->product_id, e->ids, ACTIVITIES_MAX);
    e->idx = 0;
    if (e->nids <= 0) {
        if (e->own_pending)
            sk_admin_store_order_drop_pending(ts->store, e->token);
        finish(e, SK_E_NOT_FOUND, "token: unknown or expired", NULL);
        return;
    }
    send_attempt(e);
}

static sk_admin_consume_t *
find(sk_admin_ts_t *ts, const char *token)
{
    for (sk_admin_consume_t *e = ts->consumes; e != NULL; e = e->next)
        if (strcmp(e->token, token) == 0)
            return e;
    return NULL;
}

static sk_admin_consume_t *
entry_new(sk_admin_ts_t *ts, const char *token, int64_t user_id, int64_t product_id)
{
    if (ts->nconsumes >= SK_ADMIN_CONSUME_MAX)
        return NULL;
    sk_admin_consume_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->ts = ts;
    snprintf(e->token, sizeof(e->token), "%s", token);
    e->user_id = user_id;
    e->product_id = product_id;
    e->next = ts->consumes;
    ts->consumes = e;
    ts->nconsumes++;
    return e;
}

/* The parameters /token/consume and /token/cancel share: token, user_id, product_id. 0, or -1 after answering 1001. */
int
sk_admin_token_params(sk_admin_t *inst, h2o_req_t *req, const sk_form_t *f, const sk_form_param_t **tokenp, int64_t *uid,
                      int64_t *pid)
{
    const sk_form_param_t *token = sk_form_get(f, "token");
    int present;
    char err[160];
    if (token == NULL || !sk_admin_token_ok(token->value, token->len)) {
        sk_admin_reply(inst, req, SK_E_INVALID,
                       token == NULL ? "token: missing" : "token: must be 16-128 printable characters without spaces", NULL);
        return -1;
    }
    if (sk_admin_param_int(f, "user_id", 1, INT64_MAX, uid, &present, err, sizeof(err)) != 0 || !present) {
        sk_admin_reply(inst, req, SK_E_INVALID, present ? err : "user_id: missing", NULL);
        return -1;
    }
    if (sk_admin_param_int(f, "product_id", 1, INT64_MAX, pid, &present, err, sizeof(err)) != 0 || !present) {
        sk_admin_reply(inst, req, SK_E_INVALID, present ? err : "product_id: missing", NULL);
        return -1;
    }
    *tokenp = token;
    return 0;
}

static void
consume(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    const sk_form_param_t *token;
    int64_t uid, pid;
    if (sk_admin_token_params(inst, req, f, &token, &uid, &pid) != 0)
        return;
    call_t *call = calloc(1, sizeof(*call));
    if (call == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "out of memory", NULL);
        return;
    }
    call->user_id = uid;
    call->product_id = pid;
    sk_admin_consume_t *e = find(ts, token->value);
    if (e != NULL) {
        if (e->nwaiters >= WAITERS_MAX) {
            free(call);
            sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "token: too many concurrent calls for this token", NULL);
            return;
        }
        call_t **tail = &e->waiters;
        while (*tail != NULL)
            tail = &(*tail)->next;
        *tail = call;
        e->nwaiters++;
        sk_admin_reqref_set(inst, &call->ref, req);
        return;
    }
    if ((e = entry_new(ts, token->value, uid, pid)) == NULL) {
        free(call);
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "too many tokens being consumed", NULL);
        return;
    }
    e->cur = call;
    sk_admin_reqref_set(inst, &call->ref, req);
    start(e);
}

void
sk_admin_token_redrive(sk_admin_ts_t *ts)
{
    sk_admin_order_t rows[16];
    if (ts->store == NULL || ts->redis == NULL || !ts->inst->api->redis_connected(ts->redis))
        return;
    int n = sk_admin_store_orders_stale(ts->store, sk_admin_now() - REDRIVE_AFTER_S, rows, 16);
    for (int i = 0; i < n; ++i) {
        if (find(ts, rows[i].token) != NULL)
            continue;
        sk_admin_consume_t *e = entry_new(ts, rows[i].token, rows[i].user_id, rows[i].product_id);
        if (e == NULL)
            return;
        ts->inst->api->log(ts->inst->self, SK_LOG_INFO, "re-driving pending order %lld", (long long)rows[i].order_id);
        start(e);
    }
}

void
sk_admin_token_dispose(sk_admin_ts_t *ts)
{
    /* Redis was freed first, so every attempt already finished; anything left has no callback to wait for. */
    while (ts->consumes != NULL) {
        sk_admin_consume_t *e = ts->consumes;
        ts->consumes = e->next;
        if (e->cur != NULL) {
            sk_admin_reqref_take(ts->inst, &e->cur->ref);
            free(e->cur);
        }
        while (e->waiters != NULL) {
            call_t *c = e->waiters;
            e->waiters = c->next;
            sk_admin_reqref_take(ts->inst, &c->ref);
            free(c);
        }
        free(e);
    }
    ts->nconsumes = 0;
}

int
sk_admin_route_token(void *instp, void *tstate, h2o_req_t *req)
{
    sk_admin_t *inst = instp;
    sk_admin_ts_t *ts = tstate;
    h2o_iovec_t path = req->path_normalized;
    int is_cancel = h2o_memis(path.base, path.len, H2O_STRLIT("/token/cancel"));
    if (!is_cancel && !h2o_memis(path.base, path.len, H2O_STRLIT("/token/consume")))
        return -1;
    if (sk_admin_check_access(inst, req) != 0)
        return 0;
    if (ts == NULL || ts->store == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "admin store not open", NULL);
        return 0;
    }
    if (!sk_admin_method(req, "POST")) {
        sk_admin_reply(inst, req, SK_E_INVALID, "method: use POST", NULL);
        return 0;
    }
    sk_form_t f;
    if (sk_admin_params(inst, req, &f) == 0) {
        if (is_cancel)
            sk_admin_token_cancel(ts, req, &f);
        else
            consume(ts, req, &f);
    }
    return 0;
}
