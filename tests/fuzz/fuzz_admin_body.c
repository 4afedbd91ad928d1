/*
 * The admin API's parameters (plugins/admin/body.c): the query string plus a form or JSON body, then the field
 * rules of /product/create and /activity/create (model.c), then the etcd value those write (SPEC §6) read back by the
 * node's etcd parser (host/etcd_parse.c).
 *
 * Input: byte 0 picks the Content-Type (none, JSON, form, something else); the rest is "<query>\n<body>".
 *
 * Invariants: the parameters are NUL-terminated, inside the form's buffer, unique, and at most SK_FORM_MAX_PARAMS;
 * a JSON number becomes text that reads back as the same double; a product or activity that admin accepts is
 * written as JSON that every node parses back to the same fields (an id that admin takes but a node refuses or
 * changes would leave the sale half-configured).
 */
#include <math.h>
#include "fuzz_common.h"
#include "etcd_parse.h"
#include "admin/admin.h"

static void
check_form(const sk_form_t *f)
{
    FUZZ_CHECK(f->n <= SK_FORM_MAX_PARAMS && f->used <= sizeof(f->buf));
    for (size_t i = 0; i < f->n; i++) {
        const sk_form_param_t *p = &f->params[i];
        FUZZ_CHECK(fuzz_terminated(p->name, sizeof(p->name)) && p->name[0] != '\0');
        FUZZ_CHECK(p->value >= f->buf && p->value + p->len < f->buf + sizeof(f->buf));
        FUZZ_CHECK(p->value[p->len] == '\0' && strlen(p->value) == p->len);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(f->params[j].name, p->name) != 0);
    }
}

static void
check_product(const sk_form_t *f)
{
    sk_product_t p, back;
    char err[256];
    if (sk_admin_product_from_params(f, &p, err, sizeof(err)) != 0) {
        FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
        return;
    }
    p.product_id = 1; /* the store assigns it (an SQLite rowid) */
    FUZZ_CHECK(p.total >= 1 && p.total <= SK_ADMIN_TOTAL_MAX && (p.status == 0 || p.status == 1));
    char *json = sk_admin_product_json(&p);
    FUZZ_CHECK(json != NULL);
    if (sk_etcd_parse_product(json, strlen(json), &back, err, sizeof(err)) != 0) {
        fprintf(stderr, "admin wrote %s, a node refuses it: %s\n", json, err);
        FUZZ_CHECK(0);
    }
    FUZZ_CHECK(back.product_id == p.product_id && back.total == p.total && back.status == p.status);
    FUZZ_CHECK(strcmp(back.name, p.name) == 0);
    free(json);
}

static void
check_activity(const sk_form_t *f)
{
    sk_activity_t a, back;
    unsigned changed;
    char err[256];
    if (sk_admin_activity_from_params(f, 0, &a, &changed, err, sizeof(err)) != 0) {
        FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
        return;
    }
    FUZZ_CHECK(a.product_id >= 1 && a.total >= 1 && a.total <= SK_ADMIN_TOTAL_MAX && a.buy_limit >= 1);
    FUZZ_CHECK(a.start_time >= 0 && a.end_time <= SK_ADMIN_TIME_MAX && a.speed >= 0);
    FUZZ_CHECK(isfinite(a.buy_rate) && a.buy_rate > 0 && a.buy_rate <= 1);
    sk_product_t p = {.product_id = a.product_id, .total = SK_ADMIN_TOTAL_MAX, .status = 1, .name = "p"};
    if (sk_admin_activity_check(&a, &p, 0, 0, err, sizeof(err)) != 0)
        return;
    a.activity_id = 1; /* the store assigns it */
    char *json = sk_admin_activity_json(&a);
    FUZZ_CHECK(json != NULL);
    if (sk_etcd_parse_activity(json, strlen(json), &back, err, sizeof(err)) != 0) {
        fprintf(stderr, "admin wrote %s, a node refuses it: %s\n", json, err);
        FUZZ_CHECK(0);
    }
    if (back.product_id != a.product_id || back.start_time != a.start_time || back.end_time != a.end_time)
        fprintf(stderr, "admin wrote %s for product_id %lld start_time %lld end_time %lld\n", json, (long long)a.product_id,
                (long long)a.start_time, (long long)a.end_time);
    FUZZ_CHECK(back.activity_id == a.activity_id && back.product_id == a.product_id && back.start_time == a.start_time);
    FUZZ_CHECK(back.end_time == a.end_time && back.total == a.total && back.status == a.status && back.speed == a.speed);
    /* buy_rate goes through cJSON's 15-digit print, which may drop the 16th and 17th digits of a rate in (0, 1] */
    FUZZ_CHECK(back.buy_limit == a.buy_limit && fabs(back.buy_rate - a.buy_rate) <= 1e-15 && strcmp(back.name, a.name) == 0);
    free(json);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const char *const ctypes[4] = {"", "application/json; charset=utf-8", "application/x-www-form-urlencoded", "text/plain"};
    const char *ctype = ctypes[data[0] & 3];
    data++;
    size--;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t qlen = nl != NULL ? (size_t)(nl - data) : size;
    size_t blen = nl != NULL ? size - qlen - 1 : 0;
    /* exact-size copies, so ASan catches a read past either one */
    char *query = malloc(qlen + 1), *body = malloc(blen + 1);
    memcpy(query, data, qlen);
    memcpy(body, data + qlen + (nl != NULL), blen);

    static sk_form_t f;
    char err[256];
    memset(err, 0, sizeof(err));
    if (sk_admin_params_parse(&f, query, qlen, ctype, strlen(ctype), body, blen, err, sizeof(err)) == 0) {
        check_form(&f);
        check_product(&f);
        check_activity(&f);
        /* the blacklist page cursor comes from the same parameters */
        const sk_form_param_t *c = sk_form_get(&f, "cursor");
        uint64_t cur;
        uint32_t skip;
        if (c != NULL && sk_admin_cursor_parse(c->value, c->len, &cur, &skip) == 0) {
            char text[64];
            uint64_t cur2;
            uint32_t skip2;
            sk_admin_cursor_format(cur, skip, text, sizeof(text));
            FUZZ_CHECK(sk_admin_cursor_parse(text, strlen(text), &cur2, &skip2) == 0 && cur2 == cur && skip2 == skip);
        }
    } else {
        FUZZ_CHECK(err[0] != '\0' && fuzz_terminated(err, sizeof(err)));
    }
    free(query);
    free(body);
    return 0;
}
