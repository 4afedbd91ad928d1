/*
 * Parsing for etcd 3.4's JSON gateway: the object splitter, base64, range and watch messages, and the values stored
 * under the prefix. No I/O and no global state, so tests feed it recorded and malformed streams.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "etcd_parse.h"

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n != 0 ? n : 1);
    if (q == NULL)
        abort();
    return q;
}

/* ---- splitter ---- */

void
sk_json_splitter_init(sk_json_splitter_t *s, size_t max_object)
{
    memset(s, 0, sizeof(*s));
    s->max_object = max_object;
}

void
sk_json_splitter_reset(sk_json_splitter_t *s)
{
    s->len = 0;
    s->depth = 0;
    s->in_str = 0;
    s->esc = 0;
}

void
sk_json_splitter_dispose(sk_json_splitter_t *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}

static int
splitter_push(sk_json_splitter_t *s, char c)
{
    if (s->len >= s->max_object)
        return -1;
    if (s->len + 1 >= s->cap) {
        size_t cap = s->cap != 0 ? s->cap * 2 : 4096;
        if (cap > s->max_object + 1)
            cap = s->max_object + 1;
        s->buf = xrealloc(s->buf, cap);
        s->cap = cap;
    }
    s->buf[s->len++] = c;
    return 0;
}

int
sk_json_splitter_feed(sk_json_splitter_t *s, const char *data, size_t len, int (*cb)(void *arg, const char *obj, size_t len),
                      void *arg)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (s->depth == 0) {
            /* Between objects: newlines, chunk padding, or garbage we cannot frame; only '{' opens an object. */
            if (c != '{')
                continue;
            s->len = 0;
            s->in_str = s->esc = 0;
            s->depth = 1;
            if (splitter_push(s, c) != 0)
                return -1;
            continue;
        }
        if (splitter_push(s, c) != 0)
            return -1;
        if (s->in_str) {
            if (s->esc)
                s->esc = 0;
            else if (c == '\\')
                s->esc = 1;
            else if (c == '"')
                s->in_str = 0;
        } else if (c == '"') {
            s->in_str = 1;
        } else if (c == '{' || c == '[') {
            s->depth++;
        } else if (c == '}' || c == ']') {
            if (--s->depth == 0) {
                size_t n = s->len;
                s->buf[n] = '\0';
                s->len = 0;
                if (cb(arg, s->buf, n) != 0)
                    return -1;
            }
        }
    }
    return 0;
}

/* ---- base64 ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
sk_b64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64chars[v >> 18];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = b64chars[(v >> 6) & 63];
        out[o++] = b64chars[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = b64chars[v >> 18];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int
b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int
sk_b64_decode(const char *in, size_t n, char *out, size_t *outlen)
{
    size_t orig = n;
    int pad = 0;
    while (pad < 2 && n > 0 && in[n - 1] == '=') {
        n--;
        pad++;
    }
    if ((pad != 0 && orig % 4 != 0) || n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

/* ---- numbers ---- */

static int
parse_dec_i64(const char *s, int64_t *out)
{
    if (*s == '\0' || (s[0] == '-' && s[1] == '\0'))
        return -1;
    const char *p = s;
    if (*p == '-')
        p++;
    for (const char *q = p; *q != '\0'; q++)
        if (*q < '0' || *q > '9')
            return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int
json_item_i64(const cJSON *it, int64_t *out)
{
    if (cJSON_IsString(it))
        return parse_dec_i64(it->valuestring, out);
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        /* 2^53 itself is refused too: 2^53 + 1 reads as the same double, so that number may not be what was sent */
        if (!isfinite(d) || d != floor(d) || fabs(d) >= 9007199254740992.0)
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

int
sk_etcd_json_i64(const cJSON *parent, const char *name, int64_t *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(parent, name);
    if (it == NULL || cJSON_IsNull(it)) {
        *out = 0;
        return 0;
    }
    return json_item_i64(it, out);
}

/* ---- range and watch ---- */

static cJSON *
parse_object(const char *json, size_t len, char *err, size_t errlen)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root == NULL || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "bad JSON");
        cJSON_Delete(root);
        return NULL;
    }
    for (; end != NULL && end < json + len; end++) {
        if (*end != ' ' && *end != '\n' && *end != '\r' && *end != '\t' && *end != '\0') {
            snprintf(err, errlen, "bad JSON: trailing bytes");
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

static int
decode_b64_field(const cJSON *obj, const char *name, int required, char **out, size_t *outlen, char *err, size_t errlen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (it == NULL || cJSON_IsNull(it)) {
        if (required) {
            snprintf(err, errlen, "missing %s", name);
            return -1;
        }
        *out = xrealloc(NULL, 1);
        (*out)[0] = '\0';
        *outlen = 0;
        return 0;
    }
    if (!cJSON_IsString(it)) {
        snprintf(err, errlen, "%s is not a string", name);
        return -1;
    }
    size_t n = strlen(it->valuestring);
    char *buf = xrealloc(NULL, n / 4 * 3 + 3);
    if (sk_b64_decode(it->valuestring, n, buf, outlen) != 0) {
        free(buf);
        snprintf(err, errlen, "bad base64 in %s", name);
        return -1;
    }
    *out = buf;
    return 0;
}

static int
parse_kv(const cJSON *kv, sk_etcd_kv_t *out, int is_delete, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->is_delete = is_delete;
    if (!cJSON_IsObject(kv)) {
        snprintf(err, errlen, "kv is not an object");
        return -1;
    }
    if (decode_b64_field(kv, "key", 1, &out->key, &out->keylen, err, errlen) != 0)
        return -1;
    if (strlen(out->key) != out->keylen) {
        snprintf(err, errlen, "key contains a NUL byte");
        goto fail;
    }
    if (decode_b64_field(kv, "value", 0, &out->value, &out->vlen, err, errlen) != 0)
        goto fail;
    /* etcd revisions start at 1; a negative one would reach the policy status (where 0 means "the file") and the
     * snapshot's revision as if it were real (found by tests/fuzz/fuzz_etcd_watch) */
    if (sk_etcd_json_i64(kv, "mod_revision", &out->mod_revision) != 0 || out->mod_revision < 0) {
        snprintf(err, errlen, "bad mod_revision");
        goto fail;
    }
    return 0;
fail:
    free(out->key);
    free(out->value);
    out->key = out->value = NULL;
    return -1;
}

void
sk_etcd_kvs_dispose(sk_etcd_kvs_t *k)
{
    for (size_t i = 0; i < k->n; i++) {
        free(k->kvs[i].key);
        free(k->kvs[i].value);
    }
    free(k->kvs);
    k->kvs = NULL;
    k->n = 0;
}

static void
copy_error_message(const cJSON *root, char *err, size_t errlen)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");
    if (cJSON_IsObject(e))
        m = cJSON_GetObjectItemCaseSensitive(e, "message");
    if (cJSON_IsString(m))
        snprintf(err, errlen, "etcd: %s", m->valuestring);
    else if (cJSON_IsString(e))
        snprintf(err, errlen, "etcd: %s", e->valuestring);
    else
        snprintf(err, errlen, "etcd: error");
}

static int
parse_header_revision(const cJSON *obj, int64_t *rev, char *err, size_t errlen)
{
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(obj, "header");
    *rev = 0;
    if (h == NULL)
        return 0;
    if (!cJSON_IsObject(h) || sk_etcd_json_i64(h, "revision", rev) != 0) {
        snprintf(err, errlen, "bad header");
        return -1;
    }
    return 0;
}

int
sk_etcd_parse_range(const char *json, size_t len, sk_etcd_kvs_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = parse_object(json, len, err, errlen);
    if (root == NULL)
        return -1;
    int ret = -1;
    if (cJSON_GetObjectItemCaseSensitive(root, "error") != NULL) {
        copy_error_message(root, err, errlen);
        goto done;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "header") == NULL) {
        snprintf(err, errlen, "range answer without header");
        goto done;
    }
    if (parse_header_revision(root, &out->revision, err, errlen) != 0)
        goto done;
    const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(root, "kvs");
    if (kvs != NULL && !cJSON_IsArray(kvs)) {
        snprintf(err, errlen, "kvs is not an array");
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(kvs);
    out->kvs = xrealloc(NULL, (n != 0 ? n : 1) * sizeof(*out->kvs));
    const cJSON *kv;
    cJSON_ArrayForEach(kv, kvs)
    {
        if (parse_kv(kv, &out->kvs[out->n], 0, err, errlen) != 0)
            goto done;
        out->n++;
    }
    ret = 0;
done:
    if (ret != 0)
        sk_etcd_kvs_dispose(out);
    cJSON_Delete(root);
    return ret;
}

void
sk_watch_msg_dispose(sk_watch_msg_t *msg)
{
    sk_etcd_kvs_dispose(&msg->events);
}

static int
parse_events(const cJSON *events, sk_etcd_kvs_t *out, char *err, size_t errlen)
{
    size_t n = (size_t)cJSON_GetArraySize(events);
    out->kvs = xrealloc(NULL, (n != 0 ? n : 1) * sizeof(*out->kvs));
    const cJSON *ev;
    cJSON_ArrayForEach(ev, events)
    {
        if (!cJSON_IsObject(ev)) {
            snprintf(err, errlen, "event is not an object");
            return -1;
        }
        /* PUT is the zero value of the type enum, so the gateway omits it. */
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
        int is_delete = 0;
        if (type != NULL) {
            if (cJSON_IsString(type) && strcmp(type->valuestring, "DELETE") == 0)
                is_delete = 1;
            else if (!(cJSON_IsString(type) && strcmp(type->valuestring, "PUT") == 0) &&
                     !(cJSON_IsNumber(type) && (type->valueint == 0 || type->valueint == 1))) {
                snprintf(err, errlen, "unknown event type");
                return -1;
            } else if (cJSON_IsNumber(type)) {
                is_delete = type->valueint == 1;
            }
        }
        if (parse_kv(cJSON_GetObjectItemCaseSensitive(ev, "kv"), &out->kvs[out->n], is_delete, err, errlen) != 0)
            return -1;
        out->n++;
    }
    return 0;
}

static int
json_true(const cJSON *obj, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, name));
}

int
sk_etcd_parse_watch(const char *json, size_t len, sk_watch_msg_t *msg, char *err, size_t errlen)
{
    memset(msg, 0, sizeof(*msg));
    cJSON *root = parse_object(json, len, err, errlen);
    if (root == NULL)
        return -1;
    int ret = -1;
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result");
    if (res == NULL) {
        if (cJSON_GetObjectItemCaseSensitive(root, "error") != NULL) {
            msg->kind = SK_WATCH_ERROR;
            copy_error_message(root, msg->reason, sizeof(msg->reason));
            ret = 0;
            goto done;
        }
        if (cJSON_GetObjectItemCaseSensitive(root, "header") == NULL) {
            snprintf(err, errlen, "not a watch message");
            goto done;
        }
        res = root; /* tolerate an unwrapped WatchResponse */
    }
    if (!cJSON_IsObject(res)) {
        snprintf(err, errlen, "result is not an object");
        goto done;
    }
    if (parse_header_revision(res, &msg->revision, err, errlen) != 0)
        goto done;
    if (sk_etcd_json_i64(res, "watch_id", &msg->watch_id) != 0 ||
        sk_etcd_json_i64(res, "compact_revision", &msg->compact_revision) != 0) {
        snprintf(err, errlen, "bad watch_id or compact_revision");
        goto done;
    }
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(res, "events");
    if (events != NULL && !cJSON_IsArray(events)) {
        snprintf(err, errlen, "events is not an array");
        goto done;
    }
    if (json_true(res, "created")) {
        msg->kind = SK_WATCH_CREATED;
    } else if (json_true(res, "canceled")) {
        msg->kind = SK_WATCH_CANCELED;
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(res, "cancel_reason");
        if (cJSON_IsString(r))
            snprintf(msg->reason, sizeof(msg->reason), "%s", r->valuestring);
    } else if (cJSON_GetArraySize(events) > 0) {
        msg->kind = SK_WATCH_EVENTS;
        if (parse_events(events, &msg->events, err, errlen) != 0)
            goto done;
    } else {
        msg->kind = SK_WATCH_PROGRESS;
    }
    ret = 0;
done:
    if (ret != 0)
        sk_watch_msg_dispose(msg);
    cJSON_Delete(root);
    return ret;
}

/* ---- values ---- */

static int
field_i64(const cJSON *root, const char *name, int64_t min, int64_t max, int64_t *out, char *err, size_t errlen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    if (it == NULL) {
        snprintf(err, errlen, "missing %s", name);
        return -1;
    }
    if (json_item_i64(it, out) != 0) {
        snprintf(err, errlen, "%s is not an integer", name);
        return -1;
    }
    if (*out < min || *out > max) {
        snprintf(err, errlen, "%s out of range [%lld, %lld]", name, (long long)min, (long long)max);
        return -1;
    }
    return 0;
}

static int
field_name(const cJSON *root, const char *name, char *out, size_t outcap, char *err, size_t errlen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    if (it == NULL) {
        snprintf(err, errlen, "missing %s", name);
        return -1;
    }
    if (!cJSON_IsString(it)) {
        snprintf(err, errlen, "%s is not a string", name);
        return -1;
    }
    size_t n = strlen(it->valuestring);
    if (n < 1 || n > 128 || n >= outcap) {
        snprintf(err, errlen, "%s must be 1-128 bytes", name);
        return -1;
    }
    memcpy(out, it->valuestring, n + 1);
    return 0;
}

static int
field_rate(const cJSON *root, const char *name, double *out, char *err, size_t errlen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    if (it == NULL) {
        snprintf(err, errlen, "missing %s", name);
        return -1;
    }
    double d;
    if (cJSON_IsNumber(it)) {
        d = it->valuedouble;
    } else if (cJSON_IsString(it) && it->valuestring[0] != '\0') {
        char *end;
        errno = 0;
        d = strtod(it->valuestring, &end);
        if (errno != 0 || *end != '\0') {
            snprintf(err, errlen, "%s is not a number", name);
            return -1;
        }
    } else {
        snprintf(err, errlen, "%s is not a number", name);
        return -1;
    }
    if (!isfinite(d) || !(d > 0) || d > 1) {
        snprintf(err, errlen, "%s must be in (0, 1]", name);
        return -1;
    }
    *out = d;
    return 0;
}

static cJSON *
parse_value(const char *value, size_t len, char *err, size_t errlen)
{
    if (len > SK_ETCD_MAX_VALUE) {
        snprintf(err, errlen, "value larger than %d bytes", SK_ETCD_MAX_VALUE);
        return NULL;
    }
    return parse_object(value, len, err, errlen);
}

#define SK_MAX_ID INT64_MAX
#define SK_MAX_COUNT 1000000000LL

int
sk_etcd_parse_activity(const char *value, size_t len, sk_activity_t *a, char *err, size_t errlen)
{
    cJSON *root = parse_value(value, len, err, errlen);
    if (root == NULL)
        return -1;
    memset(a, 0, sizeof(*a));
    int64_t status = 0;
    int ret = -1;
    if (field_i64(root, "activity_id", 1, SK_MAX_ID, &a->activity_id, err, errlen) != 0 ||
        field_name(root, "activity_name", a->name, sizeof(a->name), err, errlen) != 0 ||
        field_i64(root, "product_id", 1, SK_MAX_ID, &a->product_id, err, errlen) != 0 ||
        field_i64(root, "start_time", 0, INT64_MAX, &a->start_time, err, errlen) != 0 ||
        field_i64(root, "end_time", 0, INT64_MAX, &a->end_time, err, errlen) != 0 ||
        field_i64(root, "total", 1, SK_MAX_COUNT, &a->total, err, errlen) != 0 ||
        field_i64(root, "status", 0, 1, &status, err, errlen) != 0 ||
        field_i64(root, "speed", 0, SK_MAX_COUNT, &a->speed, err, errlen) != 0 ||
        field_i64(root, "buy_limit", 1, SK_MAX_COUNT, &a->buy_limit, err, errlen) != 0 ||
        field_rate(root, "buy_rate", &a->buy_rate, err, errlen) != 0)
        goto done;
    /* optional: activities written before shards existed are unsharded */
    int64_t shards = 1;
    if (cJSON_GetObjectItemCaseSensitive(root, "shards") != NULL &&
        field_i64(root, "shards", 1, SK_MAX_SHARDS, &shards, err, errlen) != 0)
        goto done;
    a->shards = (int)shards;
    if (a->start_time >= a->end_time) {
        snprintf(err, errlen, "start_time must be before end_time");
        goto done;
    }
    a->status = (int)status;
    ret = 0;
done:
    cJSON_Delete(root);
    return ret;
}

int
sk_etcd_parse_product(const char *value, size_t len, sk_product_t *p, char *err, size_t errlen)
{
    cJSON *root = parse_value(value, len, err, errlen);
    if (root == NULL)
        return -1;
    memset(p, 0, sizeof(*p));
    int64_t status = 0;
    int ret = -1;
    if (field_i64(root, "product_id", 1, SK_MAX_ID, &p->product_id, err, errlen) != 0 ||
        field_name(root, "product_name", p->name, sizeof(p->name), err, errlen) != 0 ||
        field_i64(root, "product_total", 1, SK_MAX_COUNT, &p->total, err, errlen) != 0 ||
        field_i64(root, "status", 0, 1, &status, err, errlen) != 0)
        goto done;
    p->status = (int)status;
    ret = 0;
done:
    cJSON_Delete(root);
    return ret;
}
