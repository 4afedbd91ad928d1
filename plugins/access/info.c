/*
 * GET /sec/info and /sec/list: views of activities, answered from the snapshot and the last poll, with no Redis.
 */
#include "access.h"
#include "sk_fmt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VIEW_MAX 1200 /* a view with the longest escaped name fits */

static char *
put_str(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

#define PUT_LIT(p, lit) put_str((p), (lit), sizeof(lit) - 1)

/* One activity's view (SPEC §3). Returns its length, 0 when it does not fit. Built by hand: the snprintf of thirteen
 * fields (a double among them) cost more than the rest of a /sec/info request. */
static size_t
view_json(sk_access_thread_t *t, const sk_snapshot_t *snap, const sk_activity_t *act, int64_t now, char *buf, size_t cap)
{
    const sk_product_t *prod = sk_access_find_product(snap, act->product_id);
    int64_t sold;
    int sold_out = sk_access_sold_out(t, act, &sold);
    sk_access_state_t st = sk_access_state(act, prod == NULL || prod->status != 0, sold_out, now);
    int64_t left = act->total - sold;
    if (left < 0 || sold_out)
        left = 0;
    char name[800];
    size_t nl = sk_access_json_escape(name, sizeof(name), act->name, strnlen(act->name, sizeof(act->name)));
    if (nl == (size_t)-1)
        nl = 0;
    char rate[32];
    int rl = snprintf(rate, sizeof(rate), "%.15g", act->buy_rate);
    /* fixed text under 190 bytes, 9 numbers of at most 20 bytes, the NUL */
    if (rl <= 0 || (size_t)rl >= sizeof(rate) || nl + (size_t)rl + 370 > cap)
        return 0;
    const char *stn = sk_access_state_name(st);
    char *p = buf;
    p = sk_put_i64(PUT_LIT(p, "{\"product_id\":"), act->product_id);
    p = sk_put_i64(PUT_LIT(p, ",\"activity_id\":"), act->activity_id);
    p = put_str(PUT_LIT(p, ",\"activity_name\":\""), name, nl);
    p = sk_put_i64(PUT_LIT(p, "\",\"start_time\":"), act->start_time);
    p = sk_put_i64(PUT_LIT(p, ",\"end_time\":"), act->end_time);
    p = now >= act->start_time ? PUT_LIT(p, ",\"start\":true") : PUT_LIT(p, ",\"start\":false");
    p = now >= act->end_time ? PUT_LIT(p, ",\"end\":true") : PUT_LIT(p, ",\"end\":false");
    p = put_str(PUT_LIT(p, ",\"status\":\""), stn, strlen(stn));
    p = sk_put_i64(PUT_LIT(p, "\",\"total\":"), act->total);
    p = sk_put_i64(PUT_LIT(p, ",\"left\":"), left);
    p = sk_put_i64(PUT_LIT(p, ",\"buy_limit\":"), act->buy_limit);
    p = put_str(PUT_LIT(p, ",\"buy_rate\":"), rate, (size_t)rl);
    p = sk_put_i64(PUT_LIT(p, ",\"speed\":"), act->speed);
    p = sk_put_i64(PUT_LIT(p, ",\"shards\":"), sk_activity_shards(act));
    *p++ = '}';
    *p = '\0';
    return (size_t)(p - buf);
}

int
sk_access_info(sk_access_thread_t *t, h2o_req_t *req)
{
    const sk_host_api_t *api = t->a->api;
    sk_form_t f;
    char msg[160];
    int64_t product_id;
    if (sk_access_read_form(t, req, &f) != 0)
        return 0;
    if (sk_access_params_product(&f, &product_id, msg, sizeof(msg)) != 0) {
        api->reply(req, SK_E_INVALID, msg, NULL);
        return 0;
    }
    int64_t now = (int64_t)time(NULL);
    const sk_snapshot_t *snap = api->snapshot(t->thr);
    const sk_activity_t *acts;
    size_t n = sk_access_product_activities(snap, product_id, &acts);
    const sk_activity_t *act = sk_access_in_effect(acts, n, now);
    if (act == NULL) {
        api->reply(req, SK_E_NOT_FOUND, "not found: no activity for this product", NULL);
        return 0;
    }
    char buf[VIEW_MAX];
    if (view_json(t, snap, act, now, buf, sizeof(buf)) == 0) {
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: view too large", NULL);
        return 0;
    }
    api->reply(req, SK_OK, "ok", buf);
    return 0;
}

int
sk_access_list(sk_access_thread_t *t, h2o_req_t *req)
{
    const sk_host_api_t *api = t->a->api;
    int64_t now = (int64_t)time(NULL);
    const sk_snapshot_t *snap = api->snapshot(t->thr);
    size_t cap = 4 + snap->nactivities * (VIEW_MAX + 1), len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: out of memory", NULL);
        return 0;
    }
    buf[len++] = '[';
    for (size_t i = 0; i < snap->nactivities;) {
        /* one product at a time: its disabled activities show only when it has no enabled one */
        const sk_activity_t *acts;
        size_t n = sk_access_product_activities(snap, snap->activities[i].product_id, &acts);
        int any_enabled = 0;
        for (size_t k = 0; k < n; k++)
            any_enabled |= acts[k].status != 0;
        for (size_t k = 0; k < n; k++) {
            const sk_activity_t *act = &acts[k];
            if (act->end_time <= now - 86400 || (act->status == 0 && any_enabled))
                continue;
            if (len > 1)
                buf[len++] = ',';
            len += view_json(t, snap, act, now, buf + len, cap - len);
        }
        i += n > 0 ? n : 1;
    }
    buf[len++] = ']';
    buf[len] = '\0';
    api->reply(req, SK_OK, "ok", buf);
    free(buf);
    return 0;
}
