/*
 * Queue entries, stored results and reply messages: pure parsing and formatting, tested alone.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "logic.h"

/* Strict decimal: optional '-' only when allow_neg, digits only, no overflow. */
static int
parse_i64(const char *s, size_t len, int allow_neg, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (len > 0 && s[0] == '-' && allow_neg) {
        neg = 1;
        i = 1;
    }
    if (i == len || len - i > 19)
        return -1;
    uint64_t v = 0;
    for (; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return 0;
}

static int
copy_str(char *dst, size_t cap, const char *s, size_t len)
{
    if (len == 0 || len >= cap)
        return -1;
    for (size_t i = 0; i < len; ++i)
        /* ids and channels travel inside a space-separated message, so they must be printable and space-free */
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return -1;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

enum { F_ID = 1, F_REPLY = 2, F_AID = 4, F_PID = 8, F_UID = 16, F_IP = 32, F_NOW = 64, F_DEADLINE = 128, F_ALL = 255 };

static int parse_fields(sk_logic_entry_t *e, const char *sid, size_t sidlen, const char *const *fv, const size_t *fvlen, size_t nfv,
                        char *err, size_t errlen);

int
sk_logic_entry_parse(sk_logic_entry_t *e, const char *sid, size_t sidlen, const char *const *fv, const size_t *fvlen, size_t nfv,
                     char *err, size_t errlen)
{
    /* access packs the eight values into one field, "r" (DESIGN.md): a third of the bytes in the stream and the AOF */
    static const char *const names[8] = {"id", "reply", "aid", "pid", "uid", "ip", "now", "deadline"};
    for (size_t i = 0; i + 1 < nfv; i += 2) {
        if (fvlen[i] != 1 || fv[i][0] != 'r')
            continue;
        const char *x[16];
        size_t xlen[16], n = 0;
        const char *v = fv[i + 1], *end = v + fvlen[i + 1];
        while (n < 8 && v <= end) {
            const char *sp = memchr(v, ' ', (size_t)(end - v));
            const char *stop = sp != NULL ? sp : end;
            x[2 * n] = names[n];
            xlen[2 * n] = strlen(names[n]);
            x[2 * n + 1] = v;
            xlen[2 * n + 1] = (size_t)(stop - v);
            n++;
            if (sp == NULL)
                break;
            v = sp + 1;
        }
        /* a value that is missing or has more words than eight arrives empty, and fails as that field */
        if (n == 8 && xlen[15] != (size_t)(end - x[15]))
            xlen[15] = 0;
        return parse_fields(e, sid, sidlen, x, xlen, 2 * n, err, errlen);
    }
    return parse_fields(e, sid, sidlen, fv, fvlen, nfv, err, errlen);
}

static int
parse_fields(sk_logic_entry_t *e, const char *sid, size_t sidlen, const char *const *fv, const size_t *fvlen, size_t nfv, char *err,
             size_t errlen)
{
    memset(e, 0, sizeof(*e));
    unsigned have = 0;
    const char *badname = NULL;
    for (size_t i = 0; i + 1 < nfv; i += 2) {
        const char *f = fv[i], *v = fv[i + 1];
        size_t fl = fvlen[i], vl = fvlen[i + 1];
        unsigned bit = 0;
        int rc = -1;
        if (fl == 2 && memcmp(f, "id", 2) == 0) {
            bit = F_ID;
            rc = copy_str(e->id, sizeof(e->id), v, vl);
        } else if (fl == 5 && memcmp(f, "reply", 5) == 0) {
            bit = F_REPLY;
            rc = copy_str(e->reply, sizeof(e->reply), v, vl);
        } else if (fl == 3 && memcmp(f, "aid", 3) == 0) {
            bit = F_AID;
            rc = parse_i64(v, vl, 0, &e->aid) == 0 && e->aid > 0 ? 0 : -1;
        } else if (fl == 3 && memcmp(f, "pid", 3) == 0) {
            bit = F_PID;
            rc = parse_i64(v, vl, 0, &e->pid) == 0 && e->pid > 0 ? 0 : -1;
        } else if (fl == 3 && memcmp(f, "uid", 3) == 0) {
            bit = F_UID;
            rc = parse_i64(v, vl, 0, &e->uid) == 0 && e->uid > 0 ? 0 : -1;
        } else if (fl == 2 && memcmp(f, "ip", 2) == 0) {
            bit = F_IP;
            rc = copy_str(e->ip, sizeof(e->ip), v, vl);
        } else if (fl == 3 && memcmp(f, "now", 3) == 0) {
            bit = F_NOW;
            rc = parse_i64(v, vl, 0, &e->now);
        } else if (fl == 8 && memcmp(f, "deadline", 8) == 0) {
            bit = F_DEADLINE;
            rc = parse_i64(v, vl, 0, &e->deadline);
        } else {
            continue; /* unknown fields are tolerated so access may add some */
        }
        if (rc == 0) {
            have |= bit;
        } else if (badname == NULL) {
            badname = f;
            if (err != NULL)
                snprintf(err, errlen, "bad field %.*s", (int)(fl > 16 ? 16 : fl), f);
        }
    }
    /* keep id and reply only when both are sound, so a caller never answers on half a route */
    if ((have & (F_ID | F_REPLY)) != (F_ID | F_REPLY)) {
        e->id[0] = '\0';
        e->reply[0] = '\0';
    }
    /* The whole id must be "<ms>-<seq>": it goes back to Redis in XACK as a C string, so a seq that is not a number
     * (or holds a NUL, which would cut it) would acknowledge another id or none, and the entry would be reclaimed
     * again and again. */
    const char *p = memchr(sid, '-', sidlen);
    int64_t seq;
    if (sidlen >= sizeof(e->sid) || p == NULL || parse_i64(sid, (size_t)(p - sid), 0, &e->sid_ms) != 0 ||
        parse_i64(p + 1, sidlen - (size_t)(p + 1 - sid), 0, &seq) != 0) {
        if (err != NULL)
            snprintf(err, errlen, "bad stream id");
        return -1;
    }
    memcpy(e->sid, sid, sidlen);
    e->sid[sidlen] = '\0';
    if (badname != NULL)
        return -1;
    if (have != F_ALL) {
        static const char *const names[] = {"id", "reply", "aid", "pid", "uid", "ip", "now", "deadline"};
        for (unsigned i = 0; i < 8; ++i)
            if (!(have & (1u << i))) {
                if (err != NULL)
                    snprintf(err, errlen, "missing field %s", names[i]);
                break;
            }
        return -1;
    }
    return 0;
}

int
sk_logic_token_ok(const char *token)
{
    size_t n = strlen(token);
    if (n < 16 || n > SK_LOGIC_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < n; ++i)
        if ((unsigned char)token[i] <= ' ' || (unsigned char)token[i] >= 0x7f)
            return 0;
    return 1;
}

void
sk_logic_result_set(sk_logic_result_t *r, int code)
{
    r->code = code;
    strcpy(r->token, "-");
    r->expires_at = 0;
}

int
sk_logic_result_parse(sk_logic_result_t *r, const char *s, size_t len)
{
    const char *end = s + len, *sp1 = memchr(s, ' ', len);
    if (sp1 == NULL)
        return -1;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
    if (sp2 == NULL)
        return -1;
    int64_t code, exp;
    size_t toklen = (size_t)(sp2 - sp1 - 1);
    if (parse_i64(s, (size_t)(sp1 - s), 0, &code) != 0 || code > 9999 || toklen == 0 || toklen > SK_LOGIC_TOKEN_MAX ||
        parse_i64(sp2 + 1, (size_t)(end - sp2 - 1), 0, &exp) != 0)
        return -1;
    r->code = (int)code;
    memcpy(r->token, sp1 + 1, toklen);
    r->token[toklen] = '\0';
    r->expires_at = exp;
    return 0;
}

int
sk_logic_reply_format(char *buf, size_t cap, const char *id, const sk_logic_result_t *r)
{
    int n = snprintf(buf, cap, "%s %d %s %" PRId64, id, r->code, r->token, r->expires_at);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
