/*
 * POST /token/cancel: the buyer gives a purchase up, and its unit goes back to the sale at once (SPEC §7 *Tokens*).
 *
 * One script (redis/admin_token_cancel.lua) on the token's activity decides, against the same state word that
 * /token/consume and the logic reaper write: only a token without one is marked 'cancelled', and the same step gives
 * its unit back (sold - 1, the user's count toward buy_limit - 1, the cancelled count + 1). A second cancel, a consume
 * that lost, or a crash anywhere leaves nothing to redo: the unit is returned in that one atomic step or not at all.
 * No order exists for a cancelled token, so SQLite has nothing to follow; a consume whose pending row lost the race
 * drops the row (routes_token.c), now or when re-driven after a crash.
 *
 * Like consume, the activities of the product are tried newest first until one holds the token.
 */
#include <stdlib.h>
#include <string.h>
#include "admin.h"

#define CANCEL_ACTIVITIES_MAX 64

typedef struct st_cancel_job_t {
    sk_admin_ts_t *ts;
    sk_admin_reqref_t ref;
    char token[SK_ADMIN_TOKEN_MAX + 1];
    int64_t user_id, product_id;
    int64_t ids[CANCEL_ACTIVITIES_MAX];
    int nids, idx;
} cancel_job_t;

static void send_cancel(cancel_job_t *job);

static void
job_finish(cancel_job_t *job, int code, const char *message, cJSON *data)
{
    h2o_req_t *req = sk_admin_reqref_take(job->ts->inst, &job->ref);
    if (req != NULL)
        sk_admin_reply(job->ts->inst, req, code, message, data);
    else
        cJSON_Delete(data);
    free(job);
}

static int64_t
elem_int(const redisReply *r, size_t i)
{
    int64_t v = 0;
    if (i < r->elements && r->element[i]->type == REDIS_REPLY_STRING)
        sk_parse_int64(r->element[i]->str, r->element[i]->len, 0, INT64_MAX, &v);
    return v;
}

static void
on_cancel(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    cancel_job_t *job = data;
    (void)r;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        /* nothing to clean up: the script either ran whole or not at all, and a retry finds out which */
        char msg[160];
        snprintf(msg, sizeof(msg), "redis: %s", err != NULL ? err : reply != NULL && reply->str != NULL ? reply->str : "bad reply");
        job_finish(job, SK_E_UNAVAILABLE, msg, NULL);
        return;
    }
    long long code = reply->element[0]->integer;
    const redisReply *what = reply->element[1];
    const char *why = what->type == REDIS_REPLY_STRING ? what->str : "";
    if (code == SK_E_NOT_FOUND) {
        if (strcmp(why, "missing") == 0 && ++job->idx < job->nids) {
            send_cancel(job);
            return;
        }
        job_finish(job, SK_E_NOT_FOUND,
                   strcmp(why, "missing") == 0   ? "token: unknown or expired"
                   : strcmp(why, "expired") == 0 ? "token: expired"
                                                 : "token: not issued to this user_id and product_id",
                   NULL);
        return;
    }
    if (code == SK_E_CONFLICT) {
        job_finish(job, SK_E_CONFLICT, strcmp(why, "cancelled") == 0 ? "token: already cancelled" : "token: already used", NULL);
        return;
    }
    if (code != SK_OK) {
        job_finish(job, SK_E_UNAVAILABLE, "redis: unexpected answer of the cancel script", NULL);
        return;
    }
    atomic_fetch_add(&job->ts->inst->tokens_cancelled, 1);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "token", job->token);
    cJSON_AddNumberToObject(d, "user_id", (double)job->user_id);
    cJSON_AddNumberToObject(d, "product_id", (double)job->product_id);
    cJSON_AddNumberToObject(d, "activity_id", (double)job->ids[job->idx]);
    cJSON_AddNumberToObject(d, "expires_at", (double)elem_int(reply, 3));
    job_finish(job, SK_OK, "ok", d);
}

static void
send_cancel(cancel_job_t *job)
{
    sk_admin_ts_t *ts = job->ts;
    int64_t aid = job->ids[job->idx];
    char tag[SK_SHARD_TAG_MAX], tokens[128], sold[128], users[128], counts[128], uid[24], pid[24];
    /* a token lives in the stock bucket of its user, and its unit goes back there */
    sk_admin_user_tag(ts, aid, job->user_id, tag, sizeof(tag));
    sk_key_bucket(tokens, sizeof(tokens), SK_KEY_TOKENS, tag);
    sk_key_bucket(sold, sizeof(sold), SK_KEY_SOLD, tag);
    sk_key_bucket(users, sizeof(users), SK_KEY_USERS, tag);
    sk_key_bucket(counts, sizeof(counts), SK_KEY_TOKEN_COUNTS, tag);
    snprintf(uid, sizeof(uid), "%lld", (long long)job->user_id);
    snprintf(pid, sizeof(pid), "%lld", (long long)job->product_id);
    const char *argv[] = {"EVAL", sk_script_admin_token_cancel, "4", tokens, sold, users, counts, uid, pid, job->token};
    size_t lens[10];
    for (size_t i = 0; i < 10; ++i)
        lens[i] = strlen(argv[i]);
    lens[1] = sk_script_admin_token_cancel_len;
    if (ts->redis == NULL || ts->inst->api->redis_cmdargv(ts->redis, on_cancel, job, 0, 10, argv, lens) != 0)
        job_finish(job, SK_E_UNAVAILABLE, "redis: unavailable", NULL);
}

void
sk_admin_token_cancel(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    const sk_form_param_t *token;
    int64_t uid, pid;
    if (sk_admin_token_params(inst, req, f, &token, &uid, &pid) != 0)
        return;
    /* a durable order means consumed, whatever Redis says (e.g. a Redis restored from an older snapshot) */
    sk_admin_order_t o;
    int rc = sk_admin_store_order_by_token(ts->store, token->value, &o);
    if (rc == SK_ADMIN_STORE_OK && o.state == 1) {
        if (o.user_id == uid && o.product_id == pid)
            sk_admin_reply(inst, req, SK_E_CONFLICT, "token: already used", NULL);
        else
            sk_admin_reply(inst, req, SK_E_NOT_FOUND, "token: not issued to this user_id and product_id", NULL);
        return;
    }
    cancel_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "out of memory", NULL);
        return;
    }
    job->ts = ts;
    snprintf(job->token, sizeof(job->token), "%s", token->value);
    job->user_id = uid;
    job->product_id = pid;
    job->nids = sk_admin_store_activity_ids(ts->store, pid, job->ids, CANCEL_ACTIVITIES_MAX);
    if (job->nids <= 0) {
        free(job);
        sk_admin_reply(inst, req, SK_E_NOT_FOUND, "token: unknown or expired", NULL);
        return;
    }
    sk_admin_reqref_set(inst, &job->ref, req);
    send_cancel(job);
}
