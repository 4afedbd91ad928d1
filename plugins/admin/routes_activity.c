/*
 * /activity/create, /activity/update, /activity/delete, /activity/list, /activity/winners (with each token's state:
 * live, consumed, cancelled or expired).
 *
 * Order of a change: validate (fields, product, overlap of enabled windows) -> SQLite (with the etcd key marked
 * pending) -> Redis total -> one etcd attempt -> answer. The Redis total is written before etcd, so that when nodes see
 * the activity the stock is already there to sell against.
 *
 * An update that changes total runs one Redis script first: it sets the new total only if sold does not exceed it, so
 * "total below sold" is decided atomically against the logic layer's sales; SQLite follows, and the total is put back
 * if SQLite then refuses.
 */
#include <stdlib.h>
#include <string.h>
#include "admin.h"
#include "sk_shard.h"

typedef struct st_act_job_t {
    sk_admin_ts_t *ts;
    sk_admin_reqref_t ref;
    sk_activity_t a, old;
} act_job_t;

static void
reply_store_error(sk_admin_ts_t *ts, h2o_req_t *req)
{
    sk_admin_replyf(ts->inst, req, SK_E_UNAVAILABLE, NULL, "store: %s", sk_admin_store_errmsg(ts->store));
}

typedef struct st_overlap_ctx_t {
    const sk_activity_t *a;
    int64_t with;
} overlap_ctx_t;

static int
on_overlap_row(void *arg, const sk_activity_t *b)
{
    overlap_ctx_t *c = arg;
    if (sk_admin_activities_overlap(c->a, b)) {
        c->with = b->activity_id;
        return 1;
    }
    return 0;
}

/* 0 when no enabled activity of the product overlaps a; replies and returns -1 otherwise. */
static int
check_overlap(sk_admin_ts_t *ts, h2o_req_t *req, const sk_activity_t *a)
{
    overlap_ctx_t c = {a, 0};
    if (a->status != 1)
        return 0;
    if (sk_admin_store_activities(ts->store, a->product_id, on_overlap_row, &c) != SK_ADMIN_STORE_OK) {
        if (req != NULL)
            reply_store_error(ts, req);
        return -1;
    }
    if (c.with != 0) {
        if (req != NULL)
            sk_admin_replyf(ts->inst, req, SK_E_CONFLICT, NULL,
                            "start_time/end_time: overlaps enabled activity %lld of product %lld", (long long)c.with,
                            (long long)a->product_id);
        return -1;
    }
    return 0;
}

static void
reply_synced(sk_admin_ts_t *ts, h2o_req_t *req, int64_t activity_id, int with_id)
{
    char key[64];
    snprintf(key, sizeof(key), "activities/%lld", (long long)activity_id);
    int synced = sk_admin_sync_key(ts, key, 1);
    if (req == NULL)
        return;
    cJSON *data = cJSON_CreateObject();
    if (with_id)
        cJSON_AddNumberToObject(data, "activity_id", (double)activity_id);
    cJSON_AddBoolToObject(data, "synced", synced);
    sk_admin_reply(ts->inst, req, SK_OK, "ok", data);
}

static void
on_restored(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_admin_ts_t *ts = data;
    (void)r;
    if (err != NULL || reply == NULL || reply->type == REDIS_REPLY_ERROR)
        ts->totals_dirty = 1;
}

/* Puts back what SQLite still holds: a SET for one bucket, a DEL with shards (sk_admin_write_total). */
static void
restore_total(sk_admin_ts_t *ts, const sk_activity_t *old)
{
    if (ts->redis == NULL || sk_admin_write_total(ts, old, on_restored, ts) != 0)
        ts->totals_dirty = 1;
}

/* ---- create ---- */

static void
on_create_total(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    act_job_t *job = data;
    sk_admin_ts_t *ts = job->ts;
    (void)r;
    ts->ops_inflight--;
    if (err != NULL || reply == NULL || reply->type == REDIS_REPLY_ERROR)
        ts->totals_dirty = 1; /* the resync pass writes it once Redis answers */
    h2o_req_t *req = sk_admin_reqref_take(ts->inst, &job->ref);
    if (!ts->disposing)
        reply_synced(ts, req, job->a.activity_id, 1);
    free(job);
}

static void
create(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    sk_activity_t a;
    sk_product_t p;
    unsigned changed;
    char err[256];
    if (sk_admin_activity_from_params(f, 0, &a, &changed, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    int rc = sk_admin_store_product_get(ts->store, a.product_id, &p);
    if (rc != SK_ADMIN_STORE_OK) {
        if (rc == SK_ADMIN_STORE_NONE)
            sk_admin_reply(inst, req, SK_E_NOT_FOUND, "product_id: no such product", NULL);
        else
            reply_store_error(ts, req);
        return;
    }
    if (sk_admin_activity_check(&a, &p, sk_admin_now(), 1, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    if (check_overlap(ts, req, &a) != 0)
        return;
    if (sk_admin_store_activity_create(ts->store, &a, sk_admin_now()) != SK_ADMIN_STORE_OK) {
        reply_store_error(ts, req);
        return;
    }
    act_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL || ts->redis == NULL || sk_admin_write_total(ts, &a, on_create_total, job) != 0) {
        free(job);
        ts->totals_dirty = 1;
        reply_synced(ts, req, a.activity_id, 1);
        return;
    }
    job->ts = ts;
    job->a = a;
    ts->ops_inflight++;
    sk_admin_reqref_set(inst, &job->ref, req);
}

/* ---- update ---- */

/* The tail of an update, once Redis (if it had a say) agreed. req may be NULL (the client left). */
static void
update_commit(sk_admin_ts_t *ts, h2o_req_t *req, const sk_activity_t *a, const sk_activity_t *old, int total_set)
{
    int rc = check_overlap(ts, req, a) == 0 ? sk_admin_store_activity_update(ts->store, a, sk_admin_now()) : -2;
    if (rc != SK_ADMIN_STORE_OK) {
        if (total_set)
            restore_total(ts, old);
        if (req != NULL && rc == SK_ADMIN_STORE_NONE)
            sk_admin_reply(ts->inst, req, SK_E_NOT_FOUND, "activity_id: no such activity", NULL);
        else if (req != NULL && rc != -2)
            reply_store_error(ts, req);
        return;
    }
    reply_synced(ts, req, a->activity_id, 0);
}

static void
on_update_total(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    act_job_t *job = data;
    sk_admin_ts_t *ts = job->ts;
    (void)r;
    ts->ops_inflight--;
    h2o_req_t *req = sk_admin_reqref_take(ts->inst, &job->ref);
    if (ts->disposing) {
        free(job);
        return;
    }
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        /* the script may still have run (a deadline is no rollback): rewrite SQLite's totals soon */
        ts->totals_dirty = 1;
        if (req != NULL)
            sk_admin_replyf(ts->inst, req, SK_E_UNAVAILABLE, NULL, "redis: %s",
                            err != NULL                           ? err
                            : reply != NULL && reply->str != NULL ? reply->str
                                                                  : "bad reply");
    } else if (reply->integer >= 0) {
        if (req != NULL) {
            cJSON *data = cJSON_CreateObject();
            cJSON_AddNumberToObject(data, "sold", (double)reply->integer);
            sk_admin_replyf(ts->inst, req, SK_E_CONFLICT, data, "total: below sold (%lld)", (long long)reply->integer);
        }
    } else {
        update_commit(ts, req, &job->a, &job->old, 1);
    }
    free(job);
}

/* A write of a total with shards on either side: it cannot be refused (no sale has begun), so it only orders the
 * reply after Redis; a failed write is left to the resync pass. */
static void
on_shards_total(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    act_job_t *job = data;
    sk_admin_ts_t *ts = job->ts;
    (void)r;
    ts->ops_inflight--;
    h2o_req_t *req = sk_admin_reqref_take(ts->inst, &job->ref);
    int ok = err == NULL && reply != NULL && reply->type != REDIS_REPLY_ERROR;
    if (!ok)
        ts->totals_dirty = 1;
    if (!ts->disposing)
        update_commit(ts, req, &job->a, &job->old, ok);
    free(job);
}

static void
update(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    sk_activity_t a, old;
    sk_product_t p;
    unsigned changed;
    int present, deleted, rc;
    int64_t id;
    char err[256];
    if (sk_admin_param_int(f, "activity_id", 1, INT64_MAX, &id, &present, err, sizeof(err)) != 0 || !present) {
        sk_admin_reply(inst, req, SK_E_INVALID, present ? err : "activity_id: missing", NULL);
        return;
    }
    if ((rc = sk_admin_store_activity_get(ts->store, id, &old, &deleted)) != SK_ADMIN_STORE_OK || deleted) {
        if (rc == SK_ADMIN_STORE_ERR)
            reply_store_error(ts, req);
        else
            sk_admin_reply(inst, req, SK_E_NOT_FOUND, "activity_id: no such activity", NULL);
        return;
    }
    a = old;
    if (sk_admin_activity_from_params(f, 1, &a, &changed, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    /* once the sale has begun its stock already sits in buckets laid out for the old count; re-splitting it live could
     * create or strand units, so the count is frozen at the start */
    if (sk_activity_shards(&a) != sk_activity_shards(&old) && old.start_time <= sk_admin_now()) {
        sk_admin_replyf(inst, req, SK_E_CONFLICT, NULL, "shards: cannot change once the activity has started (start_time %lld)",
                        (long long)old.start_time);
        return;
    }
    if ((rc = sk_admin_store_product_get(ts->store, a.product_id, &p)) != SK_ADMIN_STORE_OK) {
        if (rc == SK_ADMIN_STORE_NONE)
            sk_admin_reply(inst, req, SK_E_NOT_FOUND, "product_id: no such product", NULL);
        else
            reply_store_error(ts, req);
        return;
    }
    if (sk_admin_activity_check(&a, &p, sk_admin_now(), (changed & SK_ADMIN_F_END) != 0, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    if (check_overlap(ts, req, &a) != 0)
        return;
    if (a.total == old.total && sk_activity_shards(&a) == sk_activity_shards(&old)) {
        update_commit(ts, req, &a, &old, 0);
        return;
    }
    if (sk_activity_shards(&a) > 1 || sk_activity_shards(&old) > 1) {
        /* the buckets' totals move as the sale runs; each bucket starts from its share of the total, written by the
         * first step that touches it, so only a sale that has not begun can take a new total */
        if (old.start_time <= sk_admin_now() && a.total != old.total) {
            sk_admin_replyf(inst, req, SK_E_CONFLICT, NULL,
                            "total: cannot change once an activity with shards > 1 has started (start_time %lld)",
                            (long long)old.start_time);
            return;
        }
        /* the reply waits for Redis: a client that reads the total back right after must see the new one */
        act_job_t *job = calloc(1, sizeof(*job));
        if (job == NULL || ts->redis == NULL || sk_admin_write_total(ts, &a, on_shards_total, job) != 0) {
            free(job);
            ts->totals_dirty = 1;
            update_commit(ts, req, &a, &old, 0);
            return;
        }
        job->ts = ts;
        job->a = a;
        job->old = old;
        ts->ops_inflight++;
        sk_admin_reqref_set(inst, &job->ref, req);
        return;
    }
    act_job_t *job = calloc(1, sizeof(*job));
    char sold_key[64], total_key[64], total[32];
    sk_admin_key(sold_key, sizeof(sold_key), SK_KEY_SOLD, id);
    sk_admin_key(total_key, sizeof(total_key), SK_KEY_TOTAL, id);
    snprintf(total, sizeof(total), "%lld", (long long)a.total);
    const char *argv[] = {"EVAL", sk_script_admin_total, "2", sold_key, total_key, total};
    size_t lens[] = {4, sk_script_admin_total_len, 1, strlen(sold_key), strlen(total_key), strlen(total)};
    if (job == NULL || ts->redis == NULL || inst->api->redis_cmdargv(ts->redis, on_update_total, job, 0, 6, argv, lens) != 0) {
        free(job);
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "redis: unavailable, cannot check total against sold", NULL);
        return;
    }
    job->ts = ts;
    job->a = a;
    job->old = old;
    ts->ops_inflight++;
    sk_admin_reqref_set(inst, &job->ref, req);
}

/* ---- delete ---- */

static void delete (sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    int64_t id;
    int present;
    char err[160];
    if (sk_admin_param_int(f, "activity_id", 1, INT64_MAX, &id, &present, err, sizeof(err)) != 0 || !present) {
        sk_admin_reply(ts->inst, req, SK_E_INVALID, present ? err : "activity_id: missing", NULL);
        return;
    }
    int rc = sk_admin_store_activity_delete(ts->store, id, sk_admin_now());
    if (rc == SK_ADMIN_STORE_NONE)
        sk_admin_reply(ts->inst, req, SK_E_NOT_FOUND, "activity_id: no such activity", NULL);
    else if (rc != SK_ADMIN_STORE_OK)
        reply_store_error(ts, req);
    else
        reply_synced(ts, req, id, 0);
}

/* ---- list ---- */

typedef struct st_list_job_t list_job_t;

/* One activity's MGET sold total: the two keys share its tag, so on a Redis Cluster each read is one slot (one MGET of
 * every activity would be refused with CROSSSLOT). */
typedef struct st_list_get_t {
    list_job_t *job;
    size_t i;
    int counts;      /* the HMGET of the token counts, not the MGET */
    unsigned bucket; /* with shards > 1, one read per stock bucket, summed */
} list_get_t;

struct st_list_job_t {
    sk_admin_ts_t *ts;
    sk_admin_reqref_t ref;
    sk_activity_t *v;
    size_t n, cap;
    list_get_t *gets;
    int64_t *sold, *total; /* per activity, from its MGET */
    int64_t (*counts)[3];  /* per activity: consumed, cancelled, expired (HMGET of its token counts) */
    size_t outstanding;
    int failed; /* a read failed: sold and left are reported unknown for all, as when Redis is down */
};

static int
on_list_row(void *arg, const sk_activity_t *a)
{
    list_job_t *job = arg;
    if (job->n == job->cap) {
        size_t cap = job->cap ? job->cap * 2 : 16;
        sk_activity_t *v = realloc(job->v, cap * sizeof(*v));
        if (v == NULL)
            return 1;
        job->v = v, job->cap = cap;
    }
    job->v[job->n++] = *a;
    return 0;
}

static int64_t
reply_int(const redisReply *r, int64_t dflt)
{
    int64_t v;
    if (r != NULL && r->type == REDIS_REPLY_STRING && sk_parse_int64(r->str, r->len, 0, INT64_MAX, &v) == 0)
        return v;
    return dflt;
}

static void
list_reply(list_job_t *job, h2o_req_t *req, int have_redis)
{
    sk_admin_ts_t *ts = job->ts;
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < job->n; ++i) {
        const sk_activity_t *a = &job->v[i];
        char key[64];
        cJSON *o = sk_admin_activity_obj(a);
        if (o == NULL)
            break;
        snprintf(key, sizeof(key), "activities/%lld", (long long)a->activity_id);
        cJSON_AddBoolToObject(o, "synced", sk_admin_store_sync_pending(ts->store, key) == 0);
        if (have_redis) {
            /* with shards > 1 units in flight between buckets are in no bucket: the stock is the activity's */
            int64_t sold = job->sold[i], total = sk_activity_shards(a) > 1 ? a->total : job->total[i];
            if (total < 0)
                total = 0; /* not written yet: nothing can be sold */
            cJSON_AddNumberToObject(o, "sold", (double)sold);
            cJSON_AddNumberToObject(o, "left", (double)(total > sold ? total - sold : 0));
            cJSON_AddNumberToObject(o, "redis_total", (double)total);
            /* sold counts live and consumed tokens; returned ones (cancelled + expired) are on sale again */
            cJSON_AddNumberToObject(o, "consumed", (double)job->counts[i][0]);
            cJSON_AddNumberToObject(o, "cancelled", (double)job->counts[i][1]);
            cJSON_AddNumberToObject(o, "expired", (double)job->counts[i][2]);
            cJSON_AddNumberToObject(o, "returned", (double)(job->counts[i][1] + job->counts[i][2]));
        } else {
            cJSON_AddNullToObject(o, "sold");
            cJSON_AddNullToObject(o, "left");
        }
        cJSON_AddItemToArray(arr, o);
    }
    sk_admin_reply(ts->inst, req, SK_OK, have_redis ? "ok" : "ok (redis unavailable: sold and left unknown)", arr);
}

static void
list_job_free(list_job_t *job)
{
    free(job->v);
    free(job->gets);
    free(job->sold);
    free(job->total);
    free(job->counts);
    free(job);
}

static void
list_finish(list_job_t *job)
{
    h2o_req_t *req = sk_admin_reqref_take(job->ts->inst, &job->ref);
    if (req != NULL)
        list_reply(job, req, !job->failed);
    list_job_free(job);
}

static void
on_list_mget(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    list_get_t *g = data;
    list_job_t *job = g->job;
    (void)r;
    if (g->counts && err == NULL && reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3) {
        for (size_t k = 0; k < 3; ++k)
            job->counts[g->i][k] += reply_int(reply->element[k], 0);
    } else if (g->counts) {
        job->failed = 1;
    } else if (err == NULL && reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        const sk_activity_t *a = &job->v[g->i];
        unsigned k = (unsigned)sk_activity_shards(a);
        if (k > 1) {
            /* a bucket not written yet holds its initial share */
            job->sold[g->i] += reply_int(reply->element[0], 0);
            job->total[g->i] += reply_int(reply->element[1], sk_shard_split(a->total, g->bucket, k));
        } else {
            job->sold[g->i] = reply_int(reply->element[0], 0);
            job->total[g->i] = reply_int(reply->element[1], -1);
        }
    } else {
        job->failed = 1;
    }
    if (--job->outstanding == 0)
        list_finish(job);
}

static void
list(sk_admin_ts_t *ts, h2o_req_t *req)
{
    list_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        sk_admin_reply(ts->inst, req, SK_E_UNAVAILABLE, "out of memory", NULL);
        return;
    }
    job->ts = ts;
    if (sk_admin_store_activities(ts->store, 0, on_list_row, job) != SK_ADMIN_STORE_OK) {
        list_job_free(job);
        reply_store_error(ts, req);
        return;
    }
    size_t nb = 0;
    for (size_t i = 0; i < job->n; ++i)
        nb += (size_t)sk_activity_shards(&job->v[i]);
    job->gets = calloc(nb ? 2 * nb : 1, sizeof(*job->gets));
    job->counts = calloc(job->n ? job->n : 1, sizeof(*job->counts));
    job->sold = calloc(job->n ? job->n : 1, sizeof(*job->sold));
    job->total = calloc(job->n ? job->n : 1, sizeof(*job->total));
    if (job->n == 0 || ts->redis == NULL || job->gets == NULL || job->sold == NULL || job->total == NULL || job->counts == NULL) {
        list_reply(job, req, 0);
        list_job_free(job);
        return;
    }
    /* one MGET and one HMGET per bucket of each activity, all pipelined on the one connection: a round trip for the
     * list, one slot per command */
    sk_admin_reqref_set(ts->inst, &job->ref, req);
    job->outstanding = 1; /* held until every read is sent, so that no reply finishes the job meanwhile */
    size_t g = 0;
    for (size_t i = 0; i < job->n && !job->failed; ++i) {
        unsigned k = (unsigned)sk_activity_shards(&job->v[i]);
        for (unsigned bk = 0; bk < k && !job->failed; ++bk, ++g) {
            char tag[SK_SHARD_TAG_MAX], sold[128], total[128], counts[128];
            if (sk_shard_tag(tag, sizeof(tag), job->v[i].activity_id, bk, k) < 0) {
                job->failed = 1;
                break;
            }
            sk_key_bucket(sold, sizeof(sold), SK_KEY_SOLD, tag);
            sk_key_bucket(total, sizeof(total), SK_KEY_TOTAL, tag);
            sk_key_bucket(counts, sizeof(counts), SK_KEY_TOKEN_COUNTS, tag);
            const char *argv[] = {"MGET", sold, total};
            size_t lens[] = {4, strlen(sold), strlen(total)};
            job->gets[2 * g] = (list_get_t){job, i, 0, bk};
            if (ts->inst->api->redis_cmdargv(ts->redis, on_list_mget, &job->gets[2 * g], 0, 3, argv, lens) == 0)
                job->outstanding++;
            else
                job->failed = 1;
            const char *hargv[] = {"HMGET", counts, "consumed", "cancelled", "expired"};
            size_t hlens[] = {5, strlen(counts), 8, 9, 7};
            job->gets[2 * g + 1] = (list_get_t){job, i, 1, bk};
            if (!job->failed &&
                ts->inst->api->redis_cmdargv(ts->redis, on_list_mget, &job->gets[2 * g + 1], 0, 5, hargv, hlens) == 0)
                job->outstanding++;
            else
                job->failed = 1;
        }
    }
    if (--job->outstanding == 0)
        list_finish(job);
}

/* ---- winners (routes_winners.c) ---- */

static void
winners(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    int64_t id, offset = 0, limit = 1000;
    int present, deleted;
    char err[160];
    sk_activity_t a;
    if (sk_admin_param_int(f, "activity_id", 1, INT64_MAX, &id, &present, err, sizeof(err)) != 0 || !present) {
        sk_admin_reply(inst, req, SK_E_INVALID, present ? err : "activity_id: missing", NULL);
        return;
    }
    if (sk_admin_param_int(f, "offset", 0, 1000000000, &offset, &present, err, sizeof(err)) != 0 ||
        sk_admin_param_int(f, "limit", 1, SK_ADMIN_WINNERS_MAX, &limit, &present, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    int rc = sk_admin_store_activity_get(ts->store, id, &a, &deleted);
    if (rc != SK_ADMIN_STORE_OK) {
        if (rc == SK_ADMIN_STORE_NONE)
            sk_admin_reply(inst, req, SK_E_NOT_FOUND, "activity_id: no such activity", NULL);
        else
            reply_store_error(ts, req);
        return;
    }
    sk_admin_winners(ts, req, &a, offset, limit);
}

int
sk_admin_route_activity(void *instp, void *tstate, h2o_req_t *req)
{
    static const struct {
        const char *path;
        int post;
    } calls[] = {
        {"/activity/create", 1}, {"/activity/update", 1}, {"/activity/delete", 1}, {"/activity/list", 0}, {"/activity/winners", 0}};
    sk_admin_t *inst = instp;
    sk_admin_ts_t *ts = tstate;
    h2o_iovec_t path = req->path_normalized;
    size_t which = 0;
    while (which < sizeof(calls) / sizeof(calls[0]) &&
           !h2o_memis(path.base, path.len, calls[which].path, strlen(calls[which].path)))
        ++which;
    if (which == sizeof(calls) / sizeof(calls[0]))
        return -1;
    if (sk_admin_check_access(inst, req) != 0)
        return 0;
    if (ts == NULL || ts->store == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "admin store not open", NULL);
        return 0;
    }
    if (calls[which].post && !sk_admin_method(req, "POST")) {
        sk_admin_reply(inst, req, SK_E_INVALID, "method: use POST", NULL);
        return 0;
    }
    sk_form_t f;
    if (sk_admin_params(inst, req, &f) != 0)
        return 0;
    switch (which) {
    case 0:
        create(ts, req, &f);
        break;
    case 1:
        update(ts, req, &f);
        break;
    case 2:
        delete (ts, req, &f);
        break;
    case 3:
        list(ts, req);
        break;
    default:
        winners(ts, req, &f);
        break;
    }
    return 0;
}
