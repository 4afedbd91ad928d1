/*
 * Admin request parameters: the query string plus a form-encoded or JSON body, into one sk_form_t so that every route
 * reads its fields one way. JSON numbers become their decimal text; integers beyond 2^53 must come as strings because
 * a double cannot carry them exactly (a user id of 2^63-1 would silently change).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "admin.h"

static int
add_param(sk_form_t *f, const char *name, const char *value, size_t vlen, char *err, size_t errlen)
{
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen >= sizeof(f->params[0].name)) {
        snprintf(err, errlen, "malformed parameter name");
        return -1;
    }
    if (sk_form_get(f, name) != NULL) {
        snprintf(err, errlen, "%s: duplicate parameter", name);
        return -1;
    }
    if (f->n >= SK_FORM_MAX_PARAMS) {
        snprintf(err, errlen, "too many parameters");
        return -1;
    }
    if (vlen + 1 > sizeof(f->buf) - f->used) {
        snprintf(err, errlen, "%s: value too long", name);
        return -1;
    }
    sk_form_param_t *p = &f->params[f->n++];
    memcpy(p->name, name, nlen + 1);
    p->value = f->buf + f->used;
    memcpy(p->value, value, vlen);
    p->value[vlen] = '\0';
    p->len = vlen;
    f->used += vlen + 1;
    return 0;
}

static int
number_text(const cJSON *item, char *out, size_t outlen, char *err, size_t errlen)
{
    double d = item->valuedouble;
    if (!isfinite(d)) {
        snprintf(err, errlen, "%s: not a finite number", item->string);
        return -1;
    }
    /* every double from 2^53 on is an integer that JSON may not have carried exactly (2^53 + 1 reads as 2^53) */
    if (d >= 9007199254740992.0 || d <= -9007199254740992.0) {
        snprintf(err, errlen, "%s: integers above 2^53 must be sent as JSON strings", item->string);
        return -1;
    }
    if (d == (double)(long long)d) {
        snprintf(out, outlen, "%lld", (long long)d);
        return 0;
    }
    /* the shortest text that reads back as the same double */
    for (int prec = 15; prec <= 17; ++prec) {
        snprintf(out, outlen, "%.*g", prec, d);
        double back;
        if (sscanf(out, "%lf", &back) == 1 && back == d)
            break;
    }
    return 0;
}

static int
parse_json(sk_form_t *f, const char *body, size_t blen, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(body, blen);
    int rc = -1;
    if (root == NULL || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "body: must be a JSON object");
        goto out;
    }
    for (const cJSON *it = root->child; it != NULL; it = it->next) {
        char num[64];
        if (it->string == NULL)
            goto out;
        if (cJSON_IsNull(it))
            continue;
        if (cJSON_IsString(it)) {
            if (add_param(f, it->string, it->valuestring, strlen(it->valuestring), err, errlen) != 0)
                goto out;
        } else if (cJSON_IsNumber(it)) {
            if (number_text(it, num, sizeof(num), err, errlen) != 0 || add_param(f, it->string, num, strlen(num), err, errlen) != 0)
                goto out;
        } else if (cJSON_IsBool(it)) {
            if (add_param(f, it->string, cJSON_IsTrue(it) ? "1" : "0", 1, err, errlen) != 0)
                goto out;
        } else {
            snprintf(err, errlen, "%.31s: must be a string or a number", it->string);
            goto out;
        }
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

static int
is_json(const char *ctype, size_t ctlen, const char *body, size_t blen)
{
    if (ctlen > 0) {
        for (size_t i = 0; i + 4 <= ctlen; ++i)
            if (strncasecmp(ctype + i, "json", 4) == 0)
                return 1;
        return 0;
    }
    size_t i = 0;
    while (i < blen && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
        ++i;
    return i < blen && body[i] == '{';
}

int
sk_admin_params_parse(sk_form_t *f, const char *query, size_t qlen, const char *ctype, size_t ctlen, const char *body, size_t blen,
                      char *err, size_t errlen)
{
    sk_form_init(f);
    if (qlen > 0 && sk_form_parse(f, query, qlen) != 0) {
        snprintf(err, errlen, "%s", f->error);
        return -1;
    }
    if (blen == 0)
        return 0;
    if (is_json(ctype, ctlen, body, blen))
        return parse_json(f, body, blen, err, errlen);
    if (sk_form_parse(f, body, blen) != 0) {
        snprintf(err, errlen, "%s", f->error);
        return -1;
    }
    return 0;
}
