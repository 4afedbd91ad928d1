/*
 * Query-string and x-www-form-urlencoded parsing with hard bounds. Pure code: no allocation, no I/O.
 */
#include "sk_form.h"

#include <stdio.h>
#include <string.h>

void
sk_form_init(sk_form_t *f)
{
    f->n = 0;
    f->used = 0;
    f->error[0] = '\0';
}

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX and '+' from src into dst (capacity cap, without the NUL). Returns the decoded length, -1 on malformed
 * percent-encoding, -2 when the result does not fit, -3 on a decoded NUL byte (it would silently cut the value). */
static long
decode(const char *src, size_t len, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            if ((hi = hexval((unsigned char)src[i + 1])) < 0 || (lo = hexval((unsigned char)src[i + 2])) < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == '\0')
            return -3;
        if (o >= cap)
            return -2;
        dst[o++] = (char)c;
    }
    return (long)o;
}

static int
name_ok(const char *name, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        /* printable ASCII except quote and backslash, so that an error message can name it as is */
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return 1;
}

static int
fail(sk_form_t *f, const char *name, const char *what)
{
    if (name != NULL)
        snprintf(f->error, sizeof(f->error), "%s: %s", name, what);
    else
        snprintf(f->error, sizeof(f->error), "%s", what);
    return -1;
}

static int
parse_pair(sk_form_t *f, const char *s, size_t len)
{
    const char *eq = memchr(s, '=', len);
    size_t nlen = eq != NULL ? (size_t)(eq - s) : len;
    const char *v = eq != NULL ? eq + 1 : s + len;
    size_t vlen = eq != NULL ? len - nlen - 1 : 0;
    char name[sizeof(f->params[0].name)];

    long n = decode(s, nlen, name, sizeof(name) - 1);
    if (n == -1 || n == -3)
        return fail(f, NULL, "malformed parameter name");
    if (n == -2)
        return fail(f, NULL, "parameter name too long");
    name[n] = '\0';
    if (!name_ok(name, (size_t)n))
        return fail(f, NULL, "malformed parameter name");
    if (sk_form_get(f, name) != NULL)
        return fail(f, name, "duplicate parameter");
    if (f->n >= SK_FORM_MAX_PARAMS)
        return fail(f, NULL, "too many parameters");

    size_t room = sizeof(f->buf) - f->used;
    if (room == 0)
        return fail(f, name, "value too long");
    long vl = decode(v, vlen, f->buf + f->used, room - 1);
    if (vl == -1)
        return fail(f, name, "malformed percent-encoding");
    if (vl == -2)
        return fail(f, name, "value too long");
    if (vl == -3)
        return fail(f, name, "NUL byte in value");

    sk_form_param_t *p = &f->params[f->n++];
    memcpy(p->name, name, (size_t)n + 1);
    p->value = f->buf + f->used;
    p->len = (size_t)vl;
    p->value[vl] = '\0';
    f->used += (size_t)vl + 1;
    return 0;
}

int
sk_form_parse(sk_form_t *f, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        const char *amp = memchr(s + i, '&', len - i);
        size_t end = amp != NULL ? (size_t)(amp - s) : len;
        if (end > i && parse_pair(f, s + i, end - i) != 0)
            return -1;
        i = end + 1;
    }
    return 0;
}

const sk_form_param_t *
sk_form_get(const sk_form_t *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->params[i].name[0] == name[0] && strcmp(f->params[i].name, name) == 0)
            return &f->params[i];
    return NULL;
}

int
sk_parse_int64(const char *s, size_t len, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || len == 0 || len > 19)
        return -1;
    if (s[0] == '0' && len > 1)
        return -1; /* no padding: the signature signs the canonical decimal form */
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits fit in uint64 */
    }
    if (v > (uint64_t)INT64_MAX)
        return -1;
    if ((int64_t)v < min || (int64_t)v > max)
        return -1;
    *out = (int64_t)v;
    return 0;
}
