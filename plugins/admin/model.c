/*
 * Pure validation and encoding for the admin API: field rules (SPEC §5), the etcd values (SPEC §6), the Origin and
 * Bearer checks, and the blacklist cursor. No I/O, so tests/unit/test_admin_model.c covers it without servers.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "admin.h"

int
sk_admin_text_ok(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return 0;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned c = p[i], n, cp;
        if (c < 0x20 || c == 0x7f)
            return 0;
        if (c < 0x80) {
            ++i;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return 0;
        if (i + n >= len)
            return 0;
        for (unsigned k = 1; k <= n; ++k) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        /* overlong forms, surrogates and C1 controls are not text */
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff) ||
            (cp >= 0x80 && cp < 0xa0))
            return 0;
        i += n + 1;
    }
    return 1;
}

int
sk_admin_ip_canonical(const char *s, size_t len, char *out, size_t outlen)
{
    char buf[64];
    unsigned char addr[16];
    if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1)
        return inet_ntop(AF_INET, addr, out, (socklen_t)outlen) != NULL ? 0 : -1;
    if (inet_pton(AF_INET6, buf, addr) == 1)
        return inet_ntop(AF_INET6, addr, out, (socklen_t)outlen) != NULL ? 0 : -1;
    return -1;
}

int
sk_admin_policy_name_ok(const char *name, size_t len)
{
    static const char *names[] = {"limits.lua", "buy_rate.lua", "token.lua"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
            return 1;
    return 0;
}

int
sk_admin_token_ok(const char *s, size_t len)
{
    if (len < SK_ADMIN_TOKEN_MIN || len > SK_ADMIN_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < len; ++i)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

/* Strips "http://" or "https://" and the scheme's default port, lowercases into out. -1 when not an origin. */
static int
origin_authority(const char *s, size_t len, int with_scheme, int *https, char *out, size_t outlen)
{
    *https = 0;
    if (with_scheme) {
        if (len > 8 && strncasecmp(s, "https://", 8) == 0)
            s += 8, len -= 8, *https = 1;
        else if (len > 7 && strncasecmp(s, "http://", 7) == 0)
            s += 7, len -= 7;
        else
            return -1;
        if (len > 0 && s[len - 1] == '/')
            --len;
    }
    if (len == 0 || len >= outlen)
        return -1;
    for (size_t i = 0; i < len; ++i) {
        if (s[i] == '/' || s[i] == '@' || (unsigned char)s[i] <= 0x20)
            return -1;
        out[i] = (char)tolower((unsigned char)s[i]);
    }
    out[len] = '\0';
    return 0;
}

static void
strip_default_port(char *a, int https)
{
    size_t n = strlen(a);
    const char *port = https ? ":443" : ":80";
    size_t pl = strlen(port);
    if (n > pl && strcmp(a + n - pl, port) == 0)
        a[n - pl] = '\0';
}

int
sk_admin_origin_ok(const char *origin, size_t olen, const char *host, size_t hlen)
{
    char o[256], h[256];
    int https, unused;
    if (origin_authority(origin, olen, 1, &https, o, sizeof(o)) != 0 || origin_authority(host, hlen, 0, &unused, h, sizeof(h)) != 0)
        return 0;
    strip_default_port(o, https);
    strip_default_port(h, https);
    return strcmp(o, h) == 0;
}

int
sk_admin_bearer(const char *hdr, size_t len, const char **tok, size_t *toklen)
{
    if (len < 7 || strncasecmp(hdr, "bearer ", 7) != 0)
        return -1;
    size_t i = 7;
    while (i < len && hdr[i] == ' ')
        ++i;
    size_t end = len;
    while (end > i && (hdr[end - 1] == ' ' || hdr[end - 1] == '\t'))
        --end;
    *tok = hdr + i;
    *toklen = end - i;
    return 0;
}

static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20 || (s[0] == '0' && len > 1))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int
sk_admin_cursor_parse(const char *s, size_t len, uint64_t *cursor, uint32_t *skip)
{
    const char *dash = memchr(s, '-', len);
    uint64_t sk = 0;
    if (dash == NULL) {
        *skip = 0;
        return parse_u64(s, len, cursor);
    }
    if (parse_u64(s, (size_t)(dash - s), cursor) != 0 || parse_u64(dash + 1, len - (size_t)(dash - s) - 1, &sk) != 0 ||
        sk > 1000000)
        return -1;
    *skip = (uint32_t)sk;
    return 0;
}

void
sk_admin_cursor_format(uint64_t cursor, uint32_t skip, char *out, size_t outlen)
{
    if (skip == 0)
        snprintf(out, outlen, "%" PRIu64, cursor);
    else
        snprintf(out, outlen, "%" PRIu64 "-%" PRIu32, cursor, skip);
}

int
sk_admin_param_int(const sk_form_t *f, const char *name, int64_t min, int64_t max, int64_t *out, int *present, char *err,
                   size_t errlen)
{
    const sk_form_param_t *p = sk_form_get(f, name);
    *present = p != NULL;
    if (p == NULL)
        return 0;
    if (sk_parse_int64(p->value, p->len, min, max, out) != 0) {
        snprintf(err, errlen, "%s: must be an integer from %" PRId64 " to %" PRId64, name, min, max);
        return -1;
    }
    return 0;
}

static int
need(int present, const char *name, char *err, size_t errlen)
{
    if (!present)
        snprintf(err, errlen, "%s: missing", name);
    return present ? 0 : -1;
}

int
sk_admin_product_from_params(const sk_form_t *f, sk_product_t *p, char *err, size_t errlen)
{
    int present;
    int64_t v;
    memset(p, 0, sizeof(*p));
    const sk_form_param_t *name = sk_form_get(f, "product_name");
    if (need(name != NULL, "product_name", err, errlen) != 0)
        return -1;
    if (!sk_admin_text_ok(name->value, name->len, SK_ADMIN_NAME_MAX)) {
        snprintf(err, errlen, "product_name: must be 1-128 bytes of UTF-8 text without control characters");
        return -1;
    }
    memcpy(p->name, name->value, name->len + 1);
    if (sk_admin_param_int(f, "product_total", 1, SK_ADMIN_TOTAL_MAX, &p->total, &present, err, errlen) != 0 ||
        need(present, "product_total", err, errlen) != 0)
        return -1;
    if (sk_admin_param_int(f, "status", 0, 1, &v, &present, err, errlen) != 0)
        return -1;
    p->status = present ? (int)v : 1;
    return 0;
}

static int
param_rate(const sk_form_t *f, double *out, int *present, char *err, size_t errlen)
{
    const sk_form_param_t *p = sk_form_get(f, "buy_rate");
    *present = p != NULL;
    if (p == NULL)
        return 0;
    char *end;
    errno = 0;
    double d = p->len > 0 && p->len < 32 && !isspace((unsigned char)p->value[0]) ? strtod(p->value, &end) : NAN;
    if (isnan(d) || errno != 0 || *end != '\0' || !isfinite(d) || !(d > 0) || d > 1) {
        snprintf(err, errlen, "buy_rate: must be a number r with 0 < r <= 1");
        return -1;
    }
    *out = d;
    return 0;
}

int
sk_admin_activity_from_params(const sk_form_t *f, int is_update, sk_activity_t *a, unsigned *changed, char *err, size_t errlen)
{
    int present;
    int64_t v;
    *changed = 0;
    if (!is_update) {
        memset(a, 0, sizeof(*a));
        a->status = 1;
        a->buy_limit = 1;
        a->buy_rate = 1;
        a->shards = 1;
    }
    const sk_form_param_t *name = sk_form_get(f, "activity_name");
    if (name != NULL) {
        if (!sk_admin_text_ok(name->value, name->len, SK_ADMIN_NAME_MAX)) {
            snprintf(err, errlen, "activity_name: must be 1-128 bytes of UTF-8 text without control characters");
            return -1;
        }
        memcpy(a->name, name->value, name->len + 1);
        *changed |= SK_ADMIN_F_NAME;
    } else if (!is_update) {
        return need(0, "activity_name", err, errlen);
    }
    static const struct {
        const char *name;
        int64_t min, max;
        unsigned flag;
        int required;
    } ints[] = {
        {"product_id", 1, INT64_MAX, SK_ADMIN_F_PRODUCT, 1},
        {"start_time", 0, SK_ADMIN_TIME_MAX, SK_ADMIN_F_START, 1},
        {"end_time", 1, SK_ADMIN_TIME_MAX, SK_ADMIN_F_END, 1},
        {"total", 1, SK_ADMIN_TOTAL_MAX, SK_ADMIN_F_TOTAL, 1},
        {"status", 0, 1, SK_ADMIN_F_STATUS, 0},
        {"speed", 0, SK_ADMIN_TOTAL_MAX, SK_ADMIN_F_SPEED, 0},
        {"buy_limit", 1, SK_ADMIN_TOTAL_MAX, SK_ADMIN_F_BUY_LIMIT, 0},
        {"shards", 1, SK_MAX_SHARDS, SK_ADMIN_F_SHARDS, 0},
    };
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); ++i) {
        if (sk_admin_param_int(f, ints[i].name, ints[i].min, ints[i].max, &v, &present, err, errlen) != 0)
            return -1;
        if (!present) {
            if (!is_update && ints[i].required)
                return need(0, ints[i].name, err, errlen);
            continue;
        }
        *changed |= ints[i].flag;
        switch (ints[i].flag) {
        case SK_ADMIN_F_PRODUCT:
            a->product_id = v;
            break;
        case SK_ADMIN_F_START:
            a->start_time = v;
            break;
        case SK_ADMIN_F_END:
            a->end_time = v;
            break;
        case SK_ADMIN_F_TOTAL:
            a->total = v;
            break;
        case SK_ADMIN_F_STATUS:
            a->status = (int)v;
            break;
        case SK_ADMIN_F_SPEED:
            a->speed = v;
            break;
        case SK_ADMIN_F_SHARDS:
            a->shards = (int)v;
            break;
        default:
            a->buy_limit = v;
            break;
        }
    }
    double rate;
    if (param_rate(f, &rate, &present, err, errlen) != 0)
        return -1;
    if (present) {
        a->buy_rate = rate;
        *changed |= SK_ADMIN_F_BUY_RATE;
    }
    return 0;
}

int
sk_admin_activity_check(const sk_activity_t *a, const sk_product_t *p, int64_t now, int check_end, char *err, size_t errlen)
{
    if (a->start_time >= a->end_time) {
        snprintf(err, errlen, "start_time: must be before end_time (%" PRId64 ")", a->end_time);
        return -1;
    }
    if (check_end && a->end_time <= now) {
        snprintf(err, errlen, "end_time: must be in the future (now is %" PRId64 ")", now);
        return -1;
    }
    if (a->total > p->total) {
        snprintf(err, errlen, "total: must be from 1 to the product's product_total (%" PRId64 ")", p->total);
        return -1;
    }
    return 0;
}

int
sk_admin_activities_overlap(const sk_activity_t *a, const sk_activity_t *b)
{
    return a->activity_id != b->activity_id && a->product_id == b->product_id && a->status == 1 && b->status == 1 &&
           a->start_time < b->end_time && b->start_time < a->end_time;
}

/* cJSON prints a number with 15 significant digits and keeps them when they read back merely close, so an integer of 16
 * or more digits came out rounded (9007199254740992 as 9.00719925474099e+15, which a node reads as ...990: found by
 * tests/fuzz/fuzz_admin_body). Integers are written as exact decimal text instead; from 2^53 on, where the reader's
 * double cannot hold them, as a decimal string, which the node's parser takes (etcd_parse.c json_item_i64). */
static void
add_int(cJSON *o, const char *name, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    if (v > -9007199254740992LL && v < 9007199254740992LL)
        cJSON_AddRawToObject(o, name, buf);
    else
        cJSON_AddStringToObject(o, name, buf);
}

cJSON *
sk_admin_product_obj(const sk_product_t *p)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    add_int(o, "product_id", p->product_id);
    cJSON_AddStringToObject(o, "product_name", p->name);
    add_int(o, "product_total", p->total);
    cJSON_AddNumberToObject(o, "status", p->status);
    return o;
}

cJSON *
sk_admin_activity_obj(const sk_activity_t *a)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    add_int(o, "activity_id", a->activity_id);
    cJSON_AddStringToObject(o, "activity_name", a->name);
    add_int(o, "product_id", a->product_id);
    add_int(o, "start_time", a->start_time);
    add_int(o, "end_time", a->end_time);
    add_int(o, "total", a->total);
    cJSON_AddNumberToObject(o, "status", a->status);
    add_int(o, "speed", a->speed);
    add_int(o, "buy_limit", a->buy_limit);
    cJSON_AddNumberToObject(o, "buy_rate", a->buy_rate);
    cJSON_AddNumberToObject(o, "shards", sk_activity_shards(a));
    return o;
}

static char *
print_free(cJSON *o)
{
    if (o == NULL)
        return NULL;
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

char *
sk_admin_product_json(const sk_product_t *p)
{
    return print_free(sk_admin_product_obj(p));
}

char *
sk_admin_activity_json(const sk_activity_t *a)
{
    return print_free(sk_admin_activity_obj(a));
}

/* Reads one space-separated field: [*pos, end of field). */
static int
next_field(const char *s, size_t len, size_t *pos, const char **f, size_t *flen)
{
    while (*pos < len && s[*pos] == ' ')
        ++*pos;
    size_t start = *pos;
    while (*pos < len && s[*pos] != ' ')
        ++*pos;
    *f = s + start;
    *flen = *pos - start;
    return *flen > 0 ? 0 : -1;
}

int
sk_admin_winner_parse(const char *s, size_t len, sk_admin_winner_t *w)
{
    size_t pos = 0, flen;
    const char *f;
    if (next_field(s, len, &pos, &f, &flen) != 0 || sk_parse_int64(f, flen, 1, INT64_MAX, &w->user_id) != 0)
        return -1;
    if (next_field(s, len, &pos, &f, &flen) != 0 || flen > SK_ADMIN_TOKEN_MAX)
        return -1;
    memcpy(w->token, f, flen);
    w->token[flen] = '\0';
    if (next_field(s, len, &pos, &f, &flen) != 0 || sk_parse_int64(f, flen, 0, INT64_MAX, &w->issued_at) != 0)
        return -1;
    if (next_field(s, len, &pos, &f, &flen) != 0 || sk_parse_int64(f, flen, 0, INT64_MAX, &w->expires_at) != 0)
        return -1;
    return 0;
}

const char *
sk_admin_token_state(const char *s, size_t len)
{
    /* "user_id product_id activity_id issued_at expires_at[ state]": the sixth field is written once, by whichever of
     * consume (an order id), cancel or the reaper decided the token */
    size_t pos = 0, flen = 0;
    const char *f = NULL;
    if (s == NULL)
        return "unknown";
    for (int i = 0; i < 5; ++i)
        if (next_field(s, len, &pos, &f, &flen) != 0)
            return "unknown";
    if (next_field(s, len, &pos, &f, &flen) != 0)
        return "live";
    if (flen == 9 && memcmp(f, "cancelled", 9) == 0)
        return "cancelled";
    if (flen == 7 && memcmp(f, "expired", 7) == 0)
        return "expired";
    int64_t oid;
    return sk_parse_int64(f, flen, 1, INT64_MAX, &oid) == 0 ? "consumed" : "unknown";
}
