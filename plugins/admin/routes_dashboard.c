/*
 * GET /dashboard/data: what the console's live dashboard draws, in one answer.
 *
 * The admin cannot see other processes' counters, so every node publishes its own to Redis (host/stats_publish.c);
 * this reads them back: the index zset gives the live node ids (never KEYS or SCAN), one HGETALL per node gives its
 * counters, and two GETs per recent activity give sold and total. All commands are single-key, sent at once, and
 * answered by one reply when the last of them is back. The counters are cumulative: the page derives rates from two
 * successive answers (ts_ms), so this endpoint keeps no state.
 *
 * data: {"now_ms", "nodes": [{node_id, roles[], ts_ms, started_ms, redis, etcd, wins, p50_us, p99_us, codes{code: n},
 *        paths{path: {code: n}}, lat{le_us[], counts[], listener}, policies[{name, revision, sha256, source, error}]}],
 *        "activities": [{activity_id, activity_name, product_id, status, start_time, end_time, total, sold, left}]}
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "admin.h"
#include "sk_keys.h"

#define SK_DASH_NODES 64         /* at most this many nodes in one answer */
#define SK_DASH_ACTIVITIES 32    /* the most recent activities still running or ended within the hour */
#define SK_DASH_FIELD_MAX 32768  /* a published field larger than this is not ours: skipped */
#define SK_DASH_LIVE_MS 10000    /* a node whose last publication is older is left out (its hash lives 5 s) */
#define SK_DASH_FORGET_MS 600000 /* index entries older than this are removed, so the zset stays small */

typedef struct st_dash_job_t dash_job_t;

typedef struct st_dash_cmd_t {
    dash_job_t *job;
    int kind; /* 0 node hash, 1 sold, 2 total */
    size_t i;
} dash_cmd_t;

struct st_dash_job_t {
    sk_admin_ts_t *ts;
    sk_admin_reqref_t ref;
    unsigned outstanding;
    int64_t now_ms;
    cJSON *nodes;
    sk_activity_t acts[SK_DASH_ACTIVITIES];
    int64_t sold[SK_DASH_ACTIVITIES], total[SK_DASH_ACTIVITIES];
    size_t nacts;
    dash_cmd_t cmds[SK_DASH_NODES + 2 * SK_DASH_ACTIVITIES + 4 * SK_MAX_SHARDS]; /* buckets of sharded activities */
    size_t ncmds;
    int redis_failed;
};

static int64_t
unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int
on_act_row(void *arg, const sk_activity_t *a)
{
    dash_job_t *job = arg;
    if (a->end_time < job->now_ms / 1000 - 3600)
        return 0;
    /* the store lists by id; keep the newest SK_DASH_ACTIVITIES */
    if (job->nacts == SK_DASH_ACTIVITIES) {
        memmove(job->acts, job->acts + 1, (SK_DASH_ACTIVITIES - 1) * sizeof(job->acts[0]));
        job->nacts--;
    }
    job->acts[job->nacts++] = *a;
    return 0;
}

static cJSON *
node_obj(const redisReply *r)
{
    static const char *numbers[] = {"ts_ms", "started_ms", "wins", "p50_us", "p99_us"};
    static const char *jsons[] = {"codes", "paths", "lat", "policies"};
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->elements % 2 != 0 || r->elements > 64)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || v->len > SK_DASH_FIELD_MAX || k->len > 32)
            continue;
        char name[33];
        memcpy(name, k->str, k->len);
        name[k->len] = '\0';
        int done = 0;
        for (size_t j = 0; j < sizeof(numbers) / sizeof(numbers[0]) && !done; ++j) {
            if (strcmp(name, numbers[j]) != 0)
                continue;
            int64_t n;
            if (sk_parse_int64(v->str, v->len, 0, INT64_MAX, &n) == 0)
                cJSON_AddNumberToObject(o, name, (double)n);
            else
                cJSON_AddNullToObject(o, name); /* p50/p99 of an interval without requests: -1 */
            done = 1;
        }
        for (size_t j = 0; j < sizeof(jsons) / sizeof(jsons[0]) && !done; ++j) {
            if (strcmp(name, jsons[j]) != 0)
                continue;
            cJSON *parsed = cJSON_ParseWithLength(v->str, v->len);
            cJSON_AddItemToObject(o, name, parsed != NULL ? parsed : cJSON_CreateNull());
            done = 1;
        }
        if (done)
            continue;
        if (strcmp(name, "roles") == 0) {
            cJSON *roles = cJSON_AddArrayToObject(o, "roles");
            const char *s = v->str, *end = v->str + v->len;
            while (s < end) {
                const char *c = memchr(s, ',', (size_t)(end - s));
                size_t l = c != NULL ? (size_t)(c - s) : (size_t)(end - s);
                char role[64];
                snprintf(role, sizeof(role), "%.*s", (int)l, s);
                cJSON_AddItemToArray(roles, cJSON_CreateString(role));
                s += l + 1;
            }
        } else {
            char *val = malloc(v->len + 1);
            if (val != NULL) {
                memcpy(val, v->str, v->len);
                val[v->len] = '\0';
                cJSON_AddStringToObject(o, name, val);
                free(val);
            }
        }
    }
    return o;
}

static void
finish(dash_job_t *job)
{
    h2o_req_t *req = sk_admin_reqref_take(job->ts->inst, &job->ref);
    if (req != NULL) {
        cJSON *data = cJSON_CreateObject();
        cJSON_AddNumberToObject(data, "now_ms", (double)job->now_ms);
        cJSON_AddItemToObject(data, "nodes", job->nodes);
        job->nodes = NULL;
        cJSON *acts = cJSON_AddArrayToObject(data, "activities");
        for (size_t i = 0; i < job->nacts; ++i) {
            const sk_activity_t *a = &job->acts[i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "activity_id", (double)a->activity_id);
            cJSON_AddStringToObject(o, "activity_name", a->name);
            cJSON_AddNumberToObject(o, "product_id", (double)a->product_id);
            cJSON_AddNumberToObject(o, "status", a->status);
            cJSON_AddNumberToObject(o, "start_time", (double)a->start_time);
            cJSON_AddNumberToObject(o, "end_time", (double)a->end_time);
            cJSON_AddNumberToObject(o, "total", (double)a->total);
            if (job->sold[i] >= 0) {
                /* the Redis total is what the logic layer sells against; before it is written nothing can sell */
                int64_t total = job->total[i] >= 0 ? job->total[i] : 0;
                cJSON_AddNumberToObject(o, "sold", (double)job->sold[i]);
                cJSON_AddNumberToObject(o, "left", (double)(total > job->sold[i] ? total - job->sold[i] : 0));
            } else {
                cJSON_AddNullToObject(o, "sold");
                cJSON_AddNullToObject(o, "left");
            }
            cJSON_AddItemToArray(acts, o);
        }
        sk_admin_reply(job->ts->inst, req, SK_OK, job->redis_failed ? "ok (redis unavailable: partial data)" : "ok", data);
    }
    cJSON_Delete(job->nodes);
    free(job);
}

static void
on_cmd(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    dash_cmd_t *c = data;
    dash_job_t *job = c->job;
    (void)r;
    if (err != NULL || reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        job->redis_failed = 1;
    } else if (c->kind == 0) {
        cJSON *o = node_obj(reply);
        if (o != NULL) /* an empty reply: the hash expired since the index named it */
            cJSON_AddItemToArray(job->nodes, o);
    } else {
        int64_t v = 0; /* a missing sold key is 0 sold; a missing total is left at -1 */
        if (reply->type == REDIS_REPLY_STRING && sk_parse_int64(reply->str, reply->len, 0, INT64_MAX, &v) != 0)
            v = 0;
        if (c->kind == 1) /* one GET per stock bucket: summed */
            job->sold[c->i] = (job->sold[c->i] < 0 ? 0 : job->sold[c->i]) + v;
        else if (reply->type == REDIS_REPLY_STRING)
            job->total[c->i] = v;
    }
    if (--job->outstanding == 0)
        finish(job);
}

static void
send_cmd(dash_job_t *job, int kind, size_t i, int argc, const char **argv)
{
    if (job->ncmds == sizeof(job->cmds) / sizeof(job->cmds[0])) {
        job->redis_failed = 1; /* many sharded activities: their counts are missing, said so in the answer */
        return;
    }
    dash_cmd_t *c = &job->cmds[job->ncmds++];
    c->job = job, c->kind = kind, c->i = i;
    if (job->ts->inst->api->redis_cmdargv(job->ts->redis, on_cmd, c, 0, argc, argv, NULL) == 0)
        job->outstanding++;
    else
        job->redis_failed = 1;
}

static void
on_index(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    dash_job_t *job = data;
    (void)r;
    job->outstanding--;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        job->redis_failed = 1;
    } else if (!job->ts->disposing) {
        for (size_t i = 0; i < reply->elements && i < SK_DASH_NODES; ++i) {
            const redisReply *e = reply->element[i];
            char id[160], key[200];
            if (e->type != REDIS_REPLY_STRING || e->len >= sizeof(id))
                continue;
            memcpy(id, e->str, e->len);
            id[e->len] = '\0';
            if (sk_key_node_stats(key, sizeof(key), id) < 0)
                continue;
            const char *argv[] = {"HGETALL", key};
            send_cmd(job, 0, i, 2, argv);
        }
    }
    if (job->outstanding == 0)
        finish(job);
}

static void
on_ignore(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r, (void)reply, (void)err, (void)data;
}

int
sk_admin_route_dashboard(void *instp, void *tstate, h2o_req_t *req)
{
    sk_admin_t *inst = instp;
    sk_admin_ts_t *ts = tstate;
    if (sk_admin_check_access(inst, req) != 0)
        return 0;
    if (!sk_admin_method(req, "GET")) {
        sk_admin_reply(inst, req, SK_E_INVALID, "method: use GET", NULL);
        return 0;
    }
    if (ts == NULL || ts->store == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "admin store not open", NULL);
        return 0;
    }
    if (ts->redis == NULL || !inst->api->redis_connected(ts->redis)) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "redis: unavailable, no node figures", NULL);
        return 0;
    }
    dash_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL || (job->nodes = cJSON_CreateArray()) == NULL) {
        free(job);
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "out of memory", NULL);
        return 0;
    }
    job->ts = ts;
    job->now_ms = unix_ms();
    if (sk_admin_store_activities(ts->store, 0, on_act_row, job) != SK_ADMIN_STORE_OK)
        job->nacts = 0;
    for (size_t i = 0; i < job->nacts; ++i) {
        job->sold[i] = job->total[i] = -1;
        unsigned k = (unsigned)sk_activity_shards(&job->acts[i]);
        if (k > 1) {
            /* stock moving between buckets is in none of them: the activity's total is the stock */
            job->total[i] = job->acts[i].total;
            for (unsigned b = 0; b < k; ++b) {
                char tag[SK_SHARD_TAG_MAX], sold[128];
                if (sk_shard_tag(tag, sizeof(tag), job->acts[i].activity_id, b, k) < 0 ||
                    sk_key_bucket(sold, sizeof(sold), SK_KEY_SOLD, tag) < 0)
                    continue;
                const char *a1[] = {"GET", sold};
                send_cmd(job, 1, i, 2, a1);
            }
            continue;
        }
        char sold[48], total[48];
        sk_key_activity(sold, sizeof(sold), SK_KEY_SOLD, job->acts[i].activity_id);
        sk_key_activity(total, sizeof(total), SK_KEY_TOTAL, job->acts[i].activity_id);
        const char *a1[] = {"GET", sold}, *a2[] = {"GET", total};
        send_cmd(job, 1, i, 2, a1);
        send_cmd(job, 2, i, 2, a2);
    }

    /* The scores are the nodes' own unix ms: a node whose clock is more than SK_DASH_LIVE_MS off the admin's would be
     * missed (README "Console"); its hash's TTL, not the score, is what says it is alive. */
    char idx[64], min_live[24], max_old[24];
    sk_key_node_stats(idx, sizeof(idx), NULL);
    snprintf(max_old, sizeof(max_old), "(%lld", (long long)(job->now_ms - SK_DASH_FORGET_MS));
    snprintf(min_live, sizeof(min_live), "%lld", (long long)(job->now_ms - SK_DASH_LIVE_MS));
    const char *trim[] = {"ZREMRANGEBYSCORE", idx, "-inf", max_old};
    inst->api->redis_cmdargv(ts->redis, on_ignore, NULL, 0, 4, trim, NULL);
    const char *range[] = {"ZRANGEBYSCORE", idx, min_live, "+inf", "LIMIT", "0", "64"};
    if (inst->api->redis_cmdargv(ts->redis, on_index, job, 0, 7, range, NULL) == 0)
        job->outstanding++;
    else
        job->redis_failed = 1;
    if (job->outstanding == 0) {
        sk_admin_reqref_set(inst, &job->ref, req);
        finish(job);
        return 0;
    }
    sk_admin_reqref_set(inst, &job->ref, req);
    return 0;
}
