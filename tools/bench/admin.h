/*
 * seckill-bench's admin API client (SPEC §5): create the products and activities under test, read them back, relax
 * the limits policy for the run. Every call is one blocking request with a deadline. Included by tools/seckill-bench.c.
 */
#ifndef SK_BENCH_ADMIN_H
#define SK_BENCH_ADMIN_H

#include <inttypes.h>
#include <cjson/cJSON.h>
#include "bench.h"
#include "http.h"

#define BENCH_ADMIN_TIMEOUT_MS 10000

/* The permissive limits policy --relax-limits installs: one client IP sends the whole load, which the shipped default
 * (50 requests per IP per second) would turn into 1010s. */
#define BENCH_RELAXED_LIMITS "-- installed by seckill-bench --relax-limits\nfunction admit(r)\n    return true\nend\n"

/* One admin call. Returns the parsed envelope (caller frees) when the answer is JSON with a numeric code, else NULL
 * with err set. */
static cJSON *
bench_admin_call(bench_t *b, const char *method, const char *path, const char *ctype, const char *body, char *err, size_t errlen)
{
    bench_http_result_t res;
    if (bench_http_call(b->o.admin_ip, b->o.admin_port, method, path, ctype, body, body ? strlen(body) : 0, b->o.admin_token,
                        BENCH_ADMIN_TIMEOUT_MS, &res, err, errlen) != 0)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(res.body, res.body_len);
    if (j == NULL || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "code"))) {
        snprintf(err, errlen, "%s %s: HTTP %d, not a JSON envelope: %.200s", method, path, res.status, res.body);
        cJSON_Delete(j);
        j = NULL;
    }
    bench_http_result_free(&res);
    return j;
}

static int
bench_env_code(const cJSON *j)
{
    return (int)cJSON_GetObjectItemCaseSensitive(j, "code")->valuedouble;
}

static const char *
bench_env_message(const cJSON *j)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
    return cJSON_IsString(m) ? m->valuestring : "";
}

/* A number field that may be sent as a JSON number or a decimal string. */
static int
bench_json_i64(const cJSON *obj, const char *name, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsNumber(v)) {
        *out = (int64_t)v->valuedouble;
        return 0;
    }
    if (cJSON_IsString(v) && v->valuestring[0] != '\0') {
        char *e;
        long long x = strtoll(v->valuestring, &e, 10);
        if (*e == '\0') {
            *out = x;
            return 0;
        }
    }
    return -1;
}

static double
bench_json_num(const cJSON *obj, const char *name, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (cJSON_IsNumber(v))
        return v->valuedouble;
    if (cJSON_IsString(v))
        return strtod(v->valuestring, NULL);
    return def;
}

/* POSTs a form and returns data.<field> of a code-0 answer. */
static int
bench_admin_create(bench_t *b, const char *path, const char *form, const char *field, int64_t *out, char *err, size_t errlen)
{
    cJSON *j = bench_admin_call(b, "POST", path, "application/x-www-form-urlencoded", form, err, errlen);
    if (j == NULL)
        return -1;
    int rc = -1;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    if (bench_env_code(j) != 0)
        snprintf(err, errlen, "POST %s: code %d: %s", path, bench_env_code(j), bench_env_message(j));
    else if (data == NULL || bench_json_i64(data, field, out) != 0)
        snprintf(err, errlen, "POST %s: no data.%s in the answer", path, field);
    else
        rc = 0;
    cJSON_Delete(j);
    return rc;
}

/* Creates product and activity k for this run (active now, until well after the run). */
static int
bench_create_product(bench_t *b, int k, bench_product_t *p, char *err, size_t errlen)
{
    char form[512];
    int64_t now = (int64_t)time(NULL);
    snprintf(form, sizeof(form), "product_name=bench-%s-%d&product_total=%" PRId64 "&status=1", b->run_id, k, b->o.total);
    if (bench_admin_create(b, "/product/create", form, "product_id", &p->product_id, err, errlen) != 0)
        return -1;
    /* %g keeps buy_rate short and exact for the usual values (1, 0.5, 0.2) */
    snprintf(form, sizeof(form),
             "activity_name=bench-%s-%d&product_id=%" PRId64 "&start_time=%" PRId64 "&end_time=%" PRId64 "&total=%" PRId64
             "&status=1&speed=%d&buy_limit=%d&buy_rate=%.6g",
             b->run_id, k, p->product_id, now - 5, now + (int64_t)(3 * b->o.duration) + 3600, b->o.total, b->o.speed,
             b->o.buy_limit, b->o.buy_rate);
    if (b->o.shards > 0) {
        size_t l = strlen(form);
        snprintf(form + l, sizeof(form) - l, "&shards=%d", b->o.shards);
    }
    if (bench_admin_create(b, "/activity/create", form, "activity_id", &p->activity_id, err, errlen) != 0)
        return -1;
    p->created = 1;
    p->total = b->o.total;
    p->buy_limit = b->o.buy_limit;
    p->buy_rate = b->o.buy_rate;
    p->speed = b->o.speed;
    p->shards = b->o.shards > 0 ? b->o.shards : 1;
    return 0;
}

/* Reads activity p->activity_id from GET /activity/list into p (total, rules, shards, sold, left). With before, sold goes to
 * sold_before, else to sold_after/left_after. */
static int
bench_read_activity(bench_t *b, bench_product_t *p, int before, char *err, size_t errlen)
{
    cJSON *j = bench_admin_call(b, "GET", "/activity/list", NULL, NULL, err, errlen);
    if (j == NULL)
        return -1;
    int rc = -1;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data"), *a;
    if (bench_env_code(j) != 0) {
        snprintf(err, errlen, "GET /activity/list: code %d: %s", bench_env_code(j), bench_env_message(j));
        goto Exit;
    }
    cJSON_ArrayForEach(a, data)
    {
        int64_t id, sold = 0, left = -1, total = 0, bl = 1, sp = 0, shards = 1;
        if (bench_json_i64(a, "activity_id", &id) != 0 || id != p->activity_id)
            continue;
        bench_json_i64(a, "sold", &sold);
        bench_json_i64(a, "left", &left);
        bench_json_i64(a, "total", &total);
        bench_json_i64(a, "buy_limit", &bl);
        bench_json_i64(a, "speed", &sp);
        bench_json_i64(a, "shards", &shards);
        p->total = total;
        p->buy_limit = (int)bl;
        p->speed = (int)sp;
        p->shards = shards >= 1 && shards <= BENCH_MAX_SHARDS ? (int)shards : 1;
        p->buy_rate = bench_json_num(a, "buy_rate", 1);
        if (before) {
            p->sold_before = sold;
        } else {
            p->sold_after = sold;
            p->left_after = left;
        }
        rc = 0;
        goto Exit;
    }
    snprintf(err, errlen, "activity %" PRId64 " is not in GET /activity/list", p->activity_id);
Exit:
    cJSON_Delete(j);
    return rc;
}

/* GET /sec/info on the access port: the activity in effect for the product and its status. */
static int
bench_sec_info(bench_t *b, int64_t product_id, int64_t *activity_id, char *status, size_t slen, char *err, size_t errlen)
{
    char path[96];
    snprintf(path, sizeof(path), "/sec/info?product_id=%" PRId64, product_id);
    bench_http_result_t res;
    if (bench_http_call(b->o.access_ip, b->o.access_port, "GET", path, NULL, NULL, 0, NULL, 3000, &res, err, errlen) != 0)
        return -1;
    cJSON *j = cJSON_ParseWithLength(res.body, res.body_len);
    const cJSON *data = j ? cJSON_GetObjectItemCaseSensitive(j, "data") : NULL;
    const cJSON *st = data ? cJSON_GetObjectItemCaseSensitive(data, "status") : NULL;
    int rc = -1;
    if (data != NULL && bench_json_i64(data, "activity_id", activity_id) == 0 && cJSON_IsString(st)) {
        snprintf(status, slen, "%s", st->valuestring);
        rc = 0;
    } else {
        snprintf(err, errlen, "GET %s: HTTP %d: %.200s", path, res.status, res.body);
    }
    cJSON_Delete(j);
    bench_http_result_free(&res);
    return rc;
}

/* Waits (up to 15 s) until the access node serves activity p as the one in effect, and as "active" when want_active:
 * etcd carries a new activity there within about 1 s. */
static int
bench_wait_active(bench_t *b, const bench_product_t *p, int want_active, char *err, size_t errlen)
{
    uint64_t deadline = bench_now_ns() + 15000000000u;
    char status[32] = "";
    int64_t aid = 0;
    err[0] = '\0';
    for (;;) {
        if (bench_sec_info(b, p->product_id, &aid, status, sizeof(status), err, errlen) == 0) {
            err[0] = '\0';
            if (aid == p->activity_id && (!want_active || strcmp(status, "active") == 0))
                return 0;
        }
        if (bench_now_ns() > deadline) {
            size_t l = strlen(err);
            snprintf(err + l, errlen - l,
                     "%sproduct %" PRId64 " activity %" PRId64 " not %s on the access node after 15 s: activity %" PRId64
                     " status \"%s\"",
                     l ? "; " : "", p->product_id, p->activity_id, want_active ? "active" : "in effect", aid, status);
            return -1;
        }
        usleep(100000);
    }
}

/* The limits.lua in effect as the admin serves it: its source (raw, or data / data.source) and whether it came from
 * policies.dir (data.origin "file": then restoring means deleting the etcd key, so that the file serves again).
 * NULL when unknown. */
static char *
bench_get_limits(bench_t *b, int *from_file)
{
    char err[256];
    bench_http_result_t res;
    *from_file = 0;
    if (bench_http_call(b->o.admin_ip, b->o.admin_port, "GET", "/policy/limits.lua", NULL, NULL, 0, b->o.admin_token,
                        BENCH_ADMIN_TIMEOUT_MS, &res, err, sizeof(err)) != 0 ||
        res.status != 200) {
        bench_http_result_free(&res);
        return NULL;
    }
    char *src = NULL;
    cJSON *j = cJSON_ParseWithLength(res.body, res.body_len);
    const cJSON *data = j ? cJSON_GetObjectItemCaseSensitive(j, "data") : NULL;
    const cJSON *s = cJSON_IsString(data) ? data : data ? cJSON_GetObjectItemCaseSensitive(data, "source") : NULL;
    const cJSON *origin = cJSON_IsObject(data) ? cJSON_GetObjectItemCaseSensitive(data, "origin") : NULL;
    if (j == NULL)
        src = strdup(res.body);
    else if (cJSON_IsString(s))
        src = strdup(s->valuestring);
    *from_file = cJSON_IsString(origin) && strcmp(origin->valuestring, "file") == 0;
    cJSON_Delete(j);
    bench_http_result_free(&res);
    return src;
}

/* PUT src as limits.lua, or with src NULL, DELETE the etcd override (the policies.dir file serves again). */
static int
bench_put_limits(bench_t *b, const char *src, char *err, size_t errlen)
{
    const char *method = src != NULL ? "PUT" : "DELETE";
    cJSON *j = bench_admin_call(b, method, "/policy/limits.lua", src != NULL ? "text/plain" : NULL, src, err, errlen);
    if (j == NULL)
        return -1;
    int rc = bench_env_code(j) == 0 ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "%s /policy/limits.lua: code %d: %s", method, bench_env_code(j), bench_env_message(j));
    cJSON_Delete(j);
    return rc;
}

#endif
