/*
 * The etcd client's blocking side: put, delete and range through the JSON gateway with one deadline across every
 * endpoint (used from the admin and control threads), plus the client's lifetime and its /status object.
 */
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "etcd_internal.h"
#include "sk_list.h"

size_t
sk_etcd_rxbuf_append(sk_etcd_rxbuf_t *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->max)
        return 0;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return len;
}

static size_t
on_write(char *data, size_t size, size_t n, void *arg)
{
    return sk_etcd_rxbuf_append(arg, data, size * n);
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
copy_etcd_error(const char *body, size_t len, long status, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");
    if (!cJSON_IsString(m))
        m = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (cJSON_IsString(m))
        snprintf(err, errlen, "etcd answered %ld: %s", status, m->valuestring);
    else
        snprintf(err, errlen, "etcd answered %ld", status);
    cJSON_Delete(root);
}

int
sk_etcd_http_post(sk_etcd_t *e, const char *path, const char *body, unsigned deadline_ms, char **resp, size_t *resplen, char *err,
                  size_t errlen)
{
    uint64_t deadline = mono_ms() + deadline_ms;
    unsigned first = atomic_load(&e->preferred) % (unsigned)e->nendpoints;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");
    snprintf(err, errlen, "etcd: no endpoint tried");
    int ret = -1;
    /* Two rounds: a member that refused at once may be back when the others failed fast too. */
    for (unsigned attempt = 0; attempt < 2 * e->nendpoints; attempt++) {
        uint64_t now = mono_ms();
        if (now >= deadline) {
            if (attempt > 0)
                snprintf(err + strlen(err), errlen - strlen(err), " (deadline %u ms)", deadline_ms);
            break;
        }
        unsigned idx = (first + attempt) % (unsigned)e->nendpoints;
        char url[512];
        snprintf(url, sizeof(url), "%s%s", e->endpoints[idx], path);
        sk_etcd_rxbuf_t b = {.max = SK_ETCD_MAX_RESPONSE};
        CURL *h = curl_easy_init();
        if (h == NULL) {
            snprintf(err, errlen, "curl_easy_init failed");
            break;
        }
        long remaining = (long)(deadline - now);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, remaining);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, remaining < 500 ? remaining : 500L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        if (rc == CURLE_OK && status == 200) {
            atomic_store(&e->preferred, idx);
            *resp = b.p != NULL ? b.p : strdup("");
            *resplen = b.len;
            ret = 0;
            break;
        }
        if (rc != CURLE_OK)
            snprintf(err, errlen, "etcd %s: %s", e->endpoints[idx], curl_easy_strerror(rc));
        else
            copy_etcd_error(b.p != NULL ? b.p : "", b.len, status, err, errlen);
        free(b.p);
        /* An answer other than "unavailable" is etcd's verdict on the request: another member would say the same. */
        if (rc == CURLE_OK && status != 502 && status != 503)
            break;
    }
    curl_slist_free_all(hdrs);
    return ret;
}

int
sk_etcd_full_key(const sk_etcd_t *e, const char *key, char *out, size_t outcap)
{
    int n = snprintf(out, outcap, "%s%s", e->prefix, key);
    return n < 0 || (size_t)n >= outcap ? -1 : 0;
}

const char *
sk_etcd_relative_key(const sk_etcd_t *e, const char *key)
{
    size_t n = strlen(e->prefix);
    return strncmp(key, e->prefix, n) == 0 ? key + n : NULL;
}

void
sk_etcd_range_body(const char *full_prefix, char *out, size_t outcap)
{
    size_t n = strlen(full_prefix);
    char end[1100];
    memcpy(end, full_prefix, n);
    /* range_end = the prefix with its last byte incremented (0xff bytes dropped); "\0" means "to the end". */
    size_t m = n;
    while (m > 0 && (unsigned char)end[m - 1] == 0xff)
        m--;
    if (m > 0)
        end[m - 1] = (char)((unsigned char)end[m - 1] + 1);
    else
        end[m++] = '\0';
    char k64[1500], e64[1500];
    sk_b64_encode(full_prefix, n, k64);
    sk_b64_encode(end, m, e64);
    snprintf(out, outcap, "{\"key\":\"%s\",\"range_end\":\"%s\"}", k64, e64);
}

static int
header_revision(const char *resp, size_t len, int64_t *rev, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(resp, len);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "header");
    int ret = 0;
    int64_t r = 0;
    if (!cJSON_IsObject(h) || sk_etcd_json_i64(h, "revision", &r) != 0) {
        snprintf(err, errlen, "etcd: answer without a header revision");
        ret = -1;
    }
    if (rev != NULL)
        *rev = r;
    cJSON_Delete(root);
    return ret;
}

static int
check_key(sk_etcd_t *e, const char *key, char *full, size_t fullcap, char *err, size_t errlen)
{
    if (e == NULL) {
        snprintf(err, errlen, "etcd is not configured");
        return -1;
    }
    if (key == NULL || key[0] == '\0' || sk_etcd_full_key(e, key, full, fullcap) != 0) {
        snprintf(err, errlen, "bad etcd key");
        return -1;
    }
    return 0;
}

int
sk_etcd_put(sk_etcd_t *e, const char *key, const char *value, size_t len, int64_t *rev, char *err, size_t errlen)
{
    char full[1024];
    if (check_key(e, key, full, sizeof(full), err, errlen) != 0)
        return -1;
    if (len > SK_ETCD_MAX_VALUE) {
        snprintf(err, errlen, "value larger than %d bytes", SK_ETCD_MAX_VALUE);
        return -1;
    }
    size_t cap = 64 + (sizeof(full) / 3 + 2) * 4 + (len / 3 + 2) * 4;
    char *body = malloc(cap);
    if (body == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t o = (size_t)snprintf(body, cap, "{\"key\":\"");
    o += sk_b64_encode(full, strlen(full), body + o);
    o += (size_t)snprintf(body + o, cap - o, "\",\"value\":\"");
    o += sk_b64_encode(value, len, body + o);
    snprintf(body + o, cap - o, "\"}");
    char *resp = NULL;
    size_t resplen = 0;
    int ret = sk_etcd_http_post(e, "/v3/kv/put", body, SK_ETCD_CALL_DEADLINE_MS, &resp, &resplen, err, errlen);
    free(body);
    if (ret == 0)
        ret = header_revision(resp, resplen, rev, err, errlen);
    free(resp);
    return ret;
}

int
sk_etcd_delete(sk_etcd_t *e, const char *key, int64_t *rev, char *err, size_t errlen)
{
    char full[1024], k64[1500], body[1600];
    if (check_key(e, key, full, sizeof(full), err, errlen) != 0)
        return -1;
    sk_b64_encode(full, strlen(full), k64);
    snprintf(body, sizeof(body), "{\"key\":\"%s\"}", k64);
    char *resp = NULL;
    size_t resplen = 0;
    int ret = sk_etcd_http_post(e, "/v3/kv/deleterange", body, SK_ETCD_CALL_DEADLINE_MS, &resp, &resplen, err, errlen);
    if (ret == 0)
        ret = header_revision(resp, resplen, rev, err, errlen);
    free(resp);
    return ret;
}

int
sk_etcd_range(sk_etcd_t *e, const char *key_prefix,
              void (*cb)(void *arg, const char *key, const char *value, size_t len, int64_t mod_revision), void *arg, char *err,
              size_t errlen)
{
    char full[1024], body[3200];
    if (e == NULL) {
        snprintf(err, errlen, "etcd is not configured");
        return -1;
    }
    if (sk_etcd_full_key(e, key_prefix != NULL ? key_prefix : "", full, sizeof(full)) != 0) {
        snprintf(err, errlen, "bad etcd key prefix");
        return -1;
    }
    sk_etcd_range_body(full, body, sizeof(body));
    char *resp = NULL;
    size_t resplen = 0;
    if (sk_etcd_http_post(e, "/v3/kv/range", body, SK_ETCD_CALL_DEADLINE_MS, &resp, &resplen, err, errlen) != 0)
        return -1;
    sk_etcd_kvs_t kvs;
    int ret = sk_etcd_parse_range(resp, resplen, &kvs, err, errlen);
    free(resp);
    if (ret != 0)
        return -1;
    for (size_t i = 0; i < kvs.n; i++) {
        const char *rel = sk_etcd_relative_key(e, kvs.kvs[i].key);
        if (rel != NULL && cb != NULL)
            cb(arg, rel, kvs.kvs[i].value, kvs.kvs[i].vlen, kvs.kvs[i].mod_revision);
    }
    sk_etcd_kvs_dispose(&kvs);
    return 0;
}

/* ---- lifetime ---- */

static int
state_validate(void *arg, const char *name, const char *src, size_t len, char *err, size_t errlen)
{
    sk_etcd_t *e = arg;
    return sk_policy_validate(&e->host->conf, name, src, len, err, errlen);
}

static void
state_record(void *arg, const char *name, const char *sha256, int64_t revision, const char *error)
{
    sk_etcd_t *e = arg;
    sk_policy_record(e->host, name, sha256, revision, error);
}

static void
state_log(void *arg, int level, const char *msg)
{
    (void)arg;
    sk_logf(level, "etcd", "%s", msg);
}

static void
add_endpoint(sk_etcd_t *e, const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '/'))
        n--;
    if (n == 0 || e->nendpoints == SK_ETCD_MAX_ENDPOINTS)
        return;
    const char *scheme = strstr(s, "://") != NULL && (size_t)(strstr(s, "://") - s) < n ? "" : "http://";
    snprintf(e->endpoints[e->nendpoints++], sizeof(e->endpoints[0]), "%s%.*s", scheme, (int)n, s);
}

sk_etcd_t *
sk_etcd_new(sk_host_t *host)
{
    sk_etcd_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->host = host;
    const char *eps = host->conf.etcd_endpoints, *p = eps, *item;
    size_t n;
    while (sk_list_next(&p, &item, &n))
        add_endpoint(e, item, n);
    if (e->nendpoints == 0) {
        sk_logf(SK_LOG_ERROR, "etcd", "no usable endpoint in etcd.endpoints \"%s\"", eps);
        free(e);
        return NULL;
    }
    const char *pre = host->conf.etcd_prefix;
    size_t pl = strlen(pre);
    snprintf(e->prefix, sizeof(e->prefix), "%s%s", pre, pl > 0 && pre[pl - 1] == '/' ? "" : "/");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&e->mu, NULL);
    sk_etcd_state_hooks_t hooks = {.validate = state_validate, .record = state_record, .log = state_log, .arg = e};
    e->st = sk_etcd_state_new(&hooks);
    e->state = "starting";
    snprintf(e->endpoint, sizeof(e->endpoint), "%s", e->endpoints[0]);
    return e;
}

void
sk_etcd_free(sk_etcd_t *e)
{
    if (e == NULL)
        return;
    sk_etcd_state_free(e->st);
    pthread_mutex_destroy(&e->mu);
    free(e);
    curl_global_cleanup();
}

int
sk_etcd_is_up(sk_etcd_t *e)
{
    return e != NULL && atomic_load(&e->up);
}

void
sk_etcd_set_error(sk_etcd_t *e, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&e->mu);
    memcpy(e->last_error, buf, sizeof(buf));
    pthread_mutex_unlock(&e->mu);
}

void
sk_etcd_status(sk_etcd_t *e, cJSON *obj)
{
    if (e == NULL)
        return;
    cJSON *errors = cJSON_CreateArray();
    pthread_mutex_lock(&e->mu);
    cJSON_AddStringToObject(obj, "state", e->state);
    cJSON_AddBoolToObject(obj, "up", atomic_load(&e->up));
    cJSON_AddStringToObject(obj, "endpoint", e->endpoint);
    cJSON_AddStringToObject(obj, "prefix", e->prefix);
    cJSON_AddNumberToObject(obj, "revision", (double)e->revision);
    cJSON_AddStringToObject(obj, "last_error", e->last_error);
    size_t nerr = sk_etcd_state_errors(e->st, errors, 50);
    cJSON_AddNumberToObject(obj, "relists", (double)e->relists);
    cJSON_AddNumberToObject(obj, "reconnects", (double)e->reconnects);
    cJSON_AddNumberToObject(obj, "events", (double)e->events);
    cJSON_AddNumberToObject(obj, "publishes", (double)e->publishes);
    cJSON_AddNumberToObject(obj, "bad_messages", (double)e->bad_messages);
    cJSON_AddNumberToObject(obj, "progress_interval_ms", (double)e->progress_interval_ms);
    pthread_mutex_unlock(&e->mu);
    cJSON_AddNumberToObject(obj, "error_count", (double)nerr);
    cJSON_AddItemToObject(obj, "errors", errors);
    cJSON *eps = cJSON_AddArrayToObject(obj, "endpoints");
    for (size_t i = 0; i < e->nendpoints; i++)
        cJSON_AddItemToArray(eps, cJSON_CreateString(e->endpoints[i]));

    const sk_snapshot_t *s = sk_host_latest_snapshot(e->host);
    cJSON *so = cJSON_AddObjectToObject(obj, "snapshot");
    cJSON_AddNumberToObject(so, "revision", (double)s->revision);
    cJSON_AddNumberToObject(so, "products", (double)s->nproducts);
    cJSON_AddNumberToObject(so, "activities", (double)s->nactivities);
    /* a bounded digest, enough to see that a value change arrived */
    cJSON *acts = cJSON_AddArrayToObject(so, "activity_list");
    for (size_t i = 0; i < s->nactivities && i < 32; i++) {
        const sk_activity_t *a = &s->activities[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "activity_id", (double)a->activity_id);
        cJSON_AddNumberToObject(o, "product_id", (double)a->product_id);
        cJSON_AddNumberToObject(o, "total", (double)a->total);
        cJSON_AddNumberToObject(o, "status", a->status);
        cJSON_AddItemToArray(acts, o);
    }
    cJSON *pols = cJSON_AddArrayToObject(so, "policies");
    for (size_t i = 0; i < s->npolicies; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", s->policies[i].name);
        cJSON_AddNumberToObject(p, "revision", (double)s->policies[i].revision);
        cJSON_AddStringToObject(p, "sha256", s->policies[i].sha256);
        cJSON_AddItemToArray(pols, p);
    }
    sk_snapshot_release(s);
}
