/*
 * Parameter rules (see params.h). Messages name the parameter so that a client can fix its request.
 */
#include "params.h"

#include <stdio.h>

static int
missing(const char *name, char *msg, size_t msglen)
{
    snprintf(msg, msglen, "missing parameter: %s", name);
    return -1;
}

static int
invalid(const char *name, const char *why, char *msg, size_t msglen)
{
    snprintf(msg, msglen, "invalid parameter: %s (%s)", name, why);
    return -1;
}

static int
get_int(const sk_form_t *f, const char *name, int64_t min, int64_t *out, char *msg, size_t msglen)
{
    const sk_form_param_t *p = sk_form_get(f, name);
    if (p == NULL)
        return missing(name, msg, msglen);
    if (sk_parse_int64(p->value, p->len, min, INT64_MAX, out) != 0)
        return invalid(name, min > 0 ? "a decimal integer from 1 to 2^63-1" : "unix seconds", msg, msglen);
    return 0;
}

int
sk_access_params_product(const sk_form_t *f, int64_t *product_id, char *msg, size_t msglen)
{
    return get_int(f, "product_id", 1, product_id, msg, msglen);
}

static int
nance_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static int
hex_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int
sk_access_params_signed(const sk_form_t *f, sk_access_signed_t *p, char *msg, size_t msglen)
{
    if (get_int(f, "product_id", 1, &p->product_id, msg, msglen) != 0 || get_int(f, "user_id", 1, &p->user_id, msg, msglen) != 0 ||
        get_int(f, "time", 0, &p->time, msg, msglen) != 0)
        return -1;

    const sk_form_param_t *n = sk_form_get(f, "nance");
    if (n == NULL)
        return missing("nance", msg, msglen);
    if (n->len < SK_ACCESS_NANCE_MIN || n->len > SK_ACCESS_NANCE_MAX)
        return invalid("nance", "8 to 64 characters", msg, msglen);
    for (size_t i = 0; i < n->len; i++)
        if (!nance_char((unsigned char)n->value[i]))
            return invalid("nance", "characters A-Z a-z 0-9 _ - only", msg, msglen);
    p->nance = n->value;
    p->nance_len = n->len;

    const sk_form_param_t *a = sk_form_get(f, "auth_code");
    if (a == NULL)
        return missing("auth_code", msg, msglen);
    if (a->len != 64)
        return invalid("auth_code", "64 hex characters", msg, msglen);
    for (size_t i = 0; i < a->len; i++)
        if (!hex_char((unsigned char)a->value[i]))
            return invalid("auth_code", "64 hex characters", msg, msglen);
    p->auth_code = a->value;

    const sk_form_param_t *s = sk_form_get(f, "src");
    p->src = NULL;
    p->src_len = 0;
    if (s != NULL) {
        if (s->len > SK_ACCESS_SRC_MAX)
            return invalid("src", "at most 64 bytes", msg, msglen);
        for (size_t i = 0; i < s->len; i++) {
            unsigned char c = (unsigned char)s->value[i];
            if (c < 0x20 || c == 0x7f)
                return invalid("src", "no control bytes", msg, msglen);
        }
        p->src = s->value;
        p->src_len = s->len;
    }
    return 0;
}
