/*
 * /blacklist/add, /blacklist/remove, /blacklist/list. The blacklist lives in Redis (sk:blacklist:user and
 * sk:blacklist:ip, value -> reason); a change and its notice on sk:blacklist:notice go out in one script, so access
 * nodes never see the notice without the change.
 *
 * Paging: `offset` is a cursor, not a count. Start with 0 and pass the previous answer's next_offset; next_offset is
 * null on the last page. It reads "C" or "C-S": HSCAN cursor C, then skip S entries of that batch (a batch can hold
 * more than `limit` entries). Every page costs O(limit) whatever the hash size. As with HSCAN itself, an entry present
 * for the whole walk is listed, and entries added or removed meanwhile may be missed or listed twice.
 */
#include <stdlib.h>
#include <string.h>
#include "admin.h"

#define SCAN_COUNT "1000" /* fixed, so that the same cursor yields the same batch on the next page */
#define SCAN_ROUNDS_MAX 64
#define NOTICE_CHANNEL sk_key_const(SK_KEY_BLACKLIST_NOTICE)

typedef struct st_bl_job_t {
    sk_admin_ts_t *ts;
    sk_admin_reqref_t ref;
    int is_add;
    char type[8];
    char value[48];
    /* list */
    char key[32];
    uint64_t cursor;
    uint32_t skip;
    int64_t limit, count;
    int rounds;
    cJSON *entries;
} bl_job_t;

static void
job_free(bl_job_t *job)
{
    cJSON_Delete(job->entries);
    free(job);
}

/* type and value, canonical (an IP in inet_ntop's form, as access nodes print the peer). 0, or replies and -1. */
static int
read_entry(sk_admin_t *inst, h2o_req_t *req, const sk_form_t *f, char *type, char *value, size_t vcap)
{
    const sk_form_param_t *t = sk_form_get(f, "type"), *v = sk_form_get(f, "value");
    int64_t uid;
    if (t == NULL || (strcmp(t->value, "user") != 0 && strcmp(t->value, "ip") != 0)) {
        sk_admin_reply(inst, req, SK_E_INVALID, t == NULL ? "type: missing" : "type: must be user or ip", NULL);
        return -1;
    }
    snprintf(type, 8, "%s", t->value);
    if (v == NULL) {
        sk_admin_reply(inst, req, SK_E_INVALID, "value: missing", NULL);
        return -1;
    }
    if (type[0] == 'u') {
        if (sk_parse_int64(v->value, v->len, 1, INT64_MAX, &uid) != 0) {
            sk_admin_reply(inst, req, SK_E_INVALID, "value: must be a user id from 1 to 9223372036854775807", NULL);
            return -1;
        }
        snprintf(value, vcap, "%lld", (long long)uid);
    } else if (sk_admin_ip_canonical(v->value, v->len, value, vcap) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, "value: must be an IPv4 or IPv6 address", NULL);
        return -1;
    }
    return 0;
}

static void
on_change(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    bl_job_t *job = data;
    (void)r;
    h2o_req_t *req = sk_admin_reqref_take(job->ts->inst, &job->ref);
    if (req == NULL)
        goto out;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        sk_admin_replyf(job->ts->inst, req, SK_E_UNAVAILABLE, NULL, "redis: %s",
                        err != NULL                           ? err
                        : reply != NULL && reply->str != NULL ? reply->str
                                                              : "bad reply");
        goto out;
    }
    cJSON *data_ = cJSON_CreateObject();
    cJSON_AddStringToObject(data_, "type", job->type);
    cJSON_AddStringToObject(data_, "value", job->value);
    if (!job->is_add)
        cJSON_AddBoolToObject(data_, "removed", reply->integer > 0);
    sk_admin_reply(job->ts->inst, req, SK_OK, "ok", data_);
out:
    job_free(job);
}

static void
change(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f, int is_add)
{
    sk_admin_t *inst = ts->inst;
    bl_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "out of memory", NULL);
        return;
    }
    if (read_entry(inst, req, f, job->type, job->value, sizeof(job->value)) != 0) {
        free(job);
        return;
    }
    const sk_form_param_t *reason = sk_form_get(f, "reason");
    if (reason != NULL && reason->len > 0 && !sk_admin_text_ok(reason->value, reason->len, SK_ADMIN_REASON_MAX)) {
        free(job);
        sk_admin_reply(inst, req, SK_E_INVALID, "reason: must be at most 256 bytes of UTF-8 text", NULL);
        return;
    }
    char key[32], notice[64];
    snprintf(key, sizeof(key), "%s", sk_key_blacklist(job->type) ? sk_key_blacklist(job->type) : "");
    snprintf(notice, sizeof(notice), "%s %s %s", is_add ? "add" : "remove", job->type, job->value);
    job->ts = ts;
    job->is_add = is_add;
    int rc = -1;
    if (ts->redis != NULL) {
        if (is_add) {
            const char *argv[] = {
                "EVAL", sk_script_admin_blacklist_add, "1", key, job->value, reason ? reason->value : "", NOTICE_CHANNEL, notice};
            size_t lens[] = {4,
                             sk_script_admin_blacklist_add_len,
                             1,
                             strlen(key),
                             strlen(job->value),
                             reason ? reason->len : 0,
                             strlen(NOTICE_CHANNEL),
                             strlen(notice)};
            rc = inst->api->redis_cmdargv(ts->redis, on_change, job, 0, 8, argv, lens);
        } else {
            const char *argv[] = {"EVAL", sk_script_admin_blacklist_remove, "1", key, job->value, NOTICE_CHANNEL, notice};
            size_t lens[] = {4,
                             sk_script_admin_blacklist_remove_len,
                             1,
                             strlen(key),
                             strlen(job->value),
                             strlen(NOTICE_CHANNEL),
                             strlen(notice)};
            rc = inst->api->redis_cmdargv(ts->redis, on_change, job, 0, 7, argv, lens);
        }
    }
    if (rc != 0) {
        free(job);
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "redis: unavailable", NULL);
        return;
    }
    sk_admin_reqref_set(inst, &job->ref, req);
}

/* ---- list ---- */

static void on_scan(sk_redis_t *r, redisReply *reply, const char *err, void *data);

static int
scan_next(bl_job_t *job)
{
    char cursor[24];
    snprintf(cursor, sizeof(cursor), "%llu", (unsigned long long)job->cursor);
    const char *argv[] = {"HSCAN", job->key, cursor, "COUNT", SCAN_COUNT};
    size_t lens[] = {5, strlen(job->key), strlen(cursor), 5, strlen(SCAN_COUNT)};
    if (job->ts->redis == NULL)
        return -1;
    return job->ts->inst->api->redis_cmdargv(job->ts->redis, on_scan, job, 0, 5, argv, lens);
}

static void
list_reply(bl_job_t *job, h2o_req_t *req, int more, uint64_t cursor, uint32_t skip)
{
    cJSON *data = cJSON_CreateObject();
    char next[48];
    cJSON_AddStringToObject(data, "type", job->type);
    cJSON_AddItemToObject(data, "entries", job->entries);
    job->entries = NULL;
    cJSON_AddNumberToObject(data, "count", (double)job->count);
    if (more) {
        sk_admin_cursor_format(cursor, skip, next, sizeof(next));
        cJSON_AddStringToObject(data, "next_offset", next);
    } else {
        cJSON_AddNullToObject(data, "next_offset");
    }
    sk_admin_reply(job->ts->inst, req, SK_OK, "ok", data);
}

static void
on_scan(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    bl_job_t *job = data;
    sk_admin_t *inst = job->ts->inst;
    uint64_t next;
    (void)r;
    if (job->ref.req == NULL || job->ts->disposing)
        goto done;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING || reply->element[1]->type != REDIS_REPLY_ARRAY ||
        sk_admin_cursor_parse(reply->element[0]->str, reply->element[0]->len, &next, &(uint32_t){0}) != 0) {
        h2o_req_t *req = sk_admin_reqref_take(inst, &job->ref);
        if (req != NULL)
            sk_admin_replyf(inst, req, SK_E_UNAVAILABLE, NULL, "redis: %s",
                            err != NULL                           ? err
                            : reply != NULL && reply->str != NULL ? reply->str
                                                                  : "bad reply");
        goto done;
    }
    const redisReply *kv = reply->element[1];
    size_t pairs = kv->elements / 2, i = job->skip;
    for (; i < pairs && job->count < job->limit; ++i) {
        const redisReply *k = kv->element[2 * i], *v = kv->element[2 * i + 1];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "value", cJSON_CreateString(k->type == REDIS_REPLY_STRING ? k->str : ""));
        cJSON_AddItemToObject(o, "reason", cJSON_CreateString(v->type == REDIS_REPLY_STRING ? v->str : ""));
        cJSON_AddItemToArray(job->entries, o);
        job->count++;
    }
    if (job->count >= job->limit) {
        h2o_req_t *req = sk_admin_reqref_take(inst, &job->ref);
        if (req != NULL) {
            if (i < pairs)
                list_reply(job, req, 1, job->cursor, (uint32_t)i);
            else
                list_reply(job, req, next != 0, next, 0);
        }
        goto done;
    }
    if (next == 0 || ++job->rounds >= SCAN_ROUNDS_MAX) {
        /* the end, or a sparse stretch of the table: answer what we have, the cursor resumes */
        h2o_req_t *req = sk_admin_reqref_take(inst, &job->ref);
        if (req != NULL)
            list_reply(job, req, next != 0, next, 0);
        goto done;
    }
    job->cursor = next;
    job->skip = 0;
    if (scan_next(job) == 0)
        return;
    h2o_req_t *req = sk_admin_reqref_take(inst, &job->ref);
    if (req != NULL)
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "redis: unavailable", NULL);
done:
    sk_admin_reqref_take(inst, &job->ref);
    job_free(job);
}

static void
list(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    const sk_form_param_t *t = sk_form_get(f, "type"), *off = sk_form_get(f, "offset");
    int present;
    char err[160];
    bl_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "out of memory", NULL);
        return;
    }
    job->ts = ts;
    job->limit = 100;
    if (t == NULL || (strcmp(t->value, "user") != 0 && strcmp(t->value, "ip") != 0)) {
        sk_admin_reply(inst, req, SK_E_INVALID, t == NULL ? "type: missing" : "type: must be user or ip", NULL);
        goto fail;
    }
    if (off != NULL && sk_admin_cursor_parse(off->value, off->len, &job->cursor, &job->skip) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, "offset: must be 0 or the next_offset of the previous page", NULL);
        goto fail;
    }
    if (sk_admin_param_int(f, "limit", 1, SK_ADMIN_LIST_MAX, &job->limit, &present, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        goto fail;
    }
    snprintf(job->type, sizeof(job->type), "%s", t->value);
    snprintf(job->key, sizeof(job->key), "%s", sk_key_blacklist(t->value) ? sk_key_blacklist(t->value) : "");
    job->entries = cJSON_CreateArray();
    if (scan_next(job) != 0) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "redis: unavailable", NULL);
        goto fail;
    }
    sk_admin_reqref_set(inst, &job->ref, req);
    return;
fail:
    job_free(job);
}

int
sk_admin_route_blacklist(void *instp, void *tstate, h2o_req_t *req)
{
    sk_admin_t *inst = instp;
    sk_admin_ts_t *ts = tstate;
    h2o_iovec_t path = req->path_normalized;
    int is_add = h2o_memis(path.base, path.len, H2O_STRLIT("/blacklist/add")),
        is_remove = h2o_memis(path.base, path.len, H2O_STRLIT("/blacklist/remove")),
        is_list = h2o_memis(path.base, path.len, H2O_STRLIT("/blacklist/list"));
    if (!is_add && !is_remove && !is_list)
        return -1;
    if (sk_admin_check_access(inst, req) != 0)
        return 0;
    if (ts == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "admin thread not ready", NULL);
        return 0;
    }
    if (!is_list && !sk_admin_method(req, "POST")) {
        sk_admin_reply(inst, req, SK_E_INVALID, "method: use POST", NULL);
        return 0;
    }
    sk_form_t f;
    if (sk_admin_params(inst, req, &f) != 0)
        return 0;
    if (is_list)
        list(ts, req, &f);
    else
        change(ts, req, &f, is_add);
    return 0;
}
