/*
 * GET /activity/winners (SPEC §5): a page of an activity's winners, each with its token's state.
 *
 * An activity with shards = K keeps a winners list per stock bucket (common/sk_shard.h), on K hash tags. The page is
 * the concatenation bucket 0, 1, ... K-1: one LLEN per bucket finds which lists the page [offset, offset + limit)
 * covers, one LRANGE per covered bucket reads it and one HMGET per bucket reads its tokens' states. Every command names
 * one bucket's keys, so with a cluster each goes to its own master. An unsharded activity is the case K = 1.
 */
#include "admin.h"

#include <stdlib.h>
#include <string.h>
#include "sk_shard.h"

typedef struct st_winners_job_t winners_job_t;

typedef struct st_wbucket_t {
    winners_job_t *job;
    char tag[SK_SHARD_TAG_MAX];
    int64_t len;     /* LLEN */
    size_t first, n; /* its winners: job->w[first .. first + n) */
} wbucket_t;

struct st_winners_job_t {
    sk_admin_ts_t *ts;
    sk_admin_reqref_t ref;
    int64_t activity_id, offset, limit;
    unsigned k, outstanding;
    int failed;
    int phase; /* 0 lengths, 1 ranges, 2 states */
    sk_admin_winner_t *w;
    char (*states)[16]; /* per winner, its token's state */
    size_t n;
    wbucket_t b[SK_MAX_SHARDS];
};

static void
job_free(winners_job_t *job)
{
    free(job->w);
    free(job->states);
    free(job);
}

static void
fail(winners_job_t *job, const char *why)
{
    h2o_req_t *req = sk_admin_reqref_take(job->ts->inst, &job->ref);
    if (req != NULL)
        sk_admin_replyf(job->ts->inst, req, SK_E_UNAVAILABLE, NULL, "redis: %s", why);
    job_free(job);
}

static void
answer(winners_job_t *job)
{
    sk_admin_ts_t *ts = job->ts;
    h2o_req_t *req = sk_admin_reqref_take(ts->inst, &job->ref);
    if (req == NULL) {
        job_free(job);
        return;
    }
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < job->n; ++i) {
        const sk_admin_winner_t *w = &job->w[i];
        const char *state = job->states[i];
        sk_admin_order_t o;
        int found = sk_admin_store_order_by_token(ts->store, w->token, &o) == SK_ADMIN_STORE_OK && o.state == 1;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "user_id", (double)w->user_id);
        cJSON_AddStringToObject(x, "token", w->token);
        cJSON_AddNumberToObject(x, "time", (double)w->issued_at);
        cJSON_AddNumberToObject(x, "expires_at", (double)w->expires_at);
        cJSON_AddBoolToObject(x, "consumed", found);
        if (found)
            cJSON_AddNumberToObject(x, "order_id", (double)o.order_id);
        /* live, consumed, cancelled or expired (Redis decides); the last two gave their unit back */
        cJSON_AddStringToObject(x, "state", state);
        cJSON_AddBoolToObject(x, "returned", strcmp(state, "cancelled") == 0 || strcmp(state, "expired") == 0);
        cJSON_AddItemToArray(arr, x);
    }
    sk_admin_reply(ts->inst, req, SK_OK, "ok", arr);
    job_free(job);
}

static void next_phase(winners_job_t *job);

static void
done_one(winners_job_t *job)
{
    if (--job->outstanding != 0)
        return;
    if (job->failed || job->ts->disposing)
        fail(job, "unavailable");
    else
        next_phase(job);
}

static void
on_len(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    wbucket_t *b = data;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_INTEGER)
        b->job->failed = 1;
    else
        b->len = reply->integer;
    done_one(b->job);
}

static void
on_range(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    wbucket_t *b = data;
    winners_job_t *job = b->job;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        job->failed = 1;
    } else {
        /* the ranges were sized from LLEN; a list that grew since gives no more than its slot holds */
        size_t got = 0;
        for (size_t i = 0; i < reply->elements && got < b->n; ++i) {
            const redisReply *e = reply->element[i];
            if (e->type == REDIS_REPLY_STRING && sk_admin_winner_parse(e->str, e->len, &job->w[b->first + got]) == 0)
                got++;
        }
        b->n = got;
    }
    done_one(job);
}

static void
on_states(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    wbucket_t *b = data;
    winners_job_t *job = b->job;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != b->n) {
        job->failed = 1;
    } else {
        for (size_t i = 0; i < b->n; ++i) {
            const redisReply *v = reply->element[i];
            const char *st = v->type == REDIS_REPLY_STRING ? sk_admin_token_state(v->str, v->len) : "unknown";
            strncpy(job->states[b->first + i], st, sizeof(job->states[0]) - 1);
        }
    }
    done_one(job);
}

static int
send_ranges(winners_job_t *job)
{
    sk_admin_ts_t *ts = job->ts;
    int64_t skip = job->offset, want = job->limit;
    size_t at = 0;
    for (unsigned i = 0; i < job->k && want > 0; ++i) {
        wbucket_t *b = &job->b[i];
        b->first = at;
        if (skip >= b->len) {
            skip -= b->len;
            continue;
        }
        int64_t n = b->len - skip < want ? b->len - skip : want;
        b->n = (size_t)n;
        char key[128];
        if (sk_key_bucket(key, sizeof(key), SK_KEY_WINS, b->tag) < 0)
            return -1;
        job->outstanding++;
        if (ts->inst->api->redis_cmd(ts->redis, on_range, b, "LRANGE %s %lld %lld", key, (long long)skip,
                                     (long long)(skip + n - 1)) != 0) {
            job->outstanding--;
            return -1;
        }
        at += b->n;
        want -= n;
        skip = 0;
    }
    return 0;
}

static int
send_states(winners_job_t *job)
{
    sk_admin_ts_t *ts = job->ts;
    /* the winners of each bucket were read into its slot; close the gaps a shorter reply left */
    size_t at = 0;
    for (unsigned i = 0; i < job->k; ++i) {
        wbucket_t *b = &job->b[i];
        if (b->n > 0 && b->first != at)
            memmove(&job->w[at], &job->w[b->first], b->n * sizeof(job->w[0]));
        b->first = at;
        at += b->n;
    }
    job->n = at;
    if ((job->states = calloc(job->n ? job->n : 1, sizeof(*job->states))) == NULL)
        return -1;
    for (unsigned i = 0; i < job->k; ++i) {
        wbucket_t *b = &job->b[i];
        if (b->n == 0)
            continue;
        const char **argv = calloc(b->n + 2, sizeof(*argv));
        size_t *lens = calloc(b->n + 2, sizeof(*lens));
        char key[128];
        int rc = -1;
        if (argv != NULL && lens != NULL && sk_key_bucket(key, sizeof(key), SK_KEY_TOKENS, b->tag) >= 0) {
            argv[0] = "HMGET";
            argv[1] = key;
            for (size_t j = 0; j < b->n; ++j)
                argv[2 + j] = job->w[b->first + j].token;
            for (size_t j = 0; j < b->n + 2; ++j)
                lens[j] = strlen(argv[j]);
            job->outstanding++;
            if ((rc = ts->inst->api->redis_cmdargv(ts->redis, on_states, b, 0, (int)b->n + 2, argv, lens)) != 0)
                job->outstanding--;
        }
        free(argv);
        free(lens);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static void
next_phase(winners_job_t *job)
{
    job->phase++;
    job->outstanding = 1; /* held while sending */
    int rc = job->phase == 1 ? send_ranges(job) : job->phase == 2 ? send_states(job) : 0;
    if (job->phase == 3) {
        answer(job);
        return;
    }
    if (rc != 0)
        job->failed = 1;
    done_one(job);
}

void
sk_admin_winners(sk_admin_ts_t *ts, h2o_req_t *req, const sk_activity_t *a, int64_t offset, int64_t limit)
{
    sk_admin_t *inst = ts->inst;
    winners_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL || ts->redis == NULL || (job->w = calloc((size_t)limit, sizeof(*job->w))) == NULL) {
        if (job != NULL)
            job_free(job);
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "redis: unavailable", NULL);
        return;
    }
    job->ts = ts;
    job->activity_id = a->activity_id;
    job->offset = offset;
    job->limit = limit;
    job->k = (unsigned)sk_activity_shards(a);
    sk_admin_reqref_set(inst, &job->ref, req);
    job->outstanding = 1;
    for (unsigned i = 0; i < job->k; ++i) {
        wbucket_t *b = &job->b[i];
        b->job = job;
        char key[128];
        if (sk_shard_tag(b->tag, sizeof(b->tag), a->activity_id, i, job->k) < 0 ||
            sk_key_bucket(key, sizeof(key), SK_KEY_WINS, b->tag) < 0) {
            job->failed = 1;
            break;
        }
        job->outstanding++;
        if (inst->api->redis_cmd(ts->redis, on_len, b, "LLEN %s", key) != 0) {
            job->outstanding--;
            job->failed = 1;
            break;
        }
    }
    done_one(job);
}

void
sk_admin_user_tag(sk_admin_ts_t *ts, int64_t aid, int64_t uid, char *tag, size_t cap)
{
    sk_activity_t a;
    int deleted;
    unsigned k = 1;
    /* a deleted activity's tokens still count: its row stays in the store */
    if (ts->store != NULL && sk_admin_store_activity_get(ts->store, aid, &a, &deleted) == SK_ADMIN_STORE_OK)
        k = (unsigned)sk_activity_shards(&a);
    if (sk_shard_tag(tag, cap, aid, sk_shard_of_user(uid, k), k) < 0)
        sk_shard_tag(tag, cap, aid, 0, 1);
}
