/*
 * GET|POST /sec/kill: the ten steps of SPEC §3, in order. Everything up to step 8 is answered from memory; only a
 * request that passes them all costs a Redis round trip (queue.c).
 */
#include "access.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int
sk_access_signed_checks(sk_access_thread_t *t, h2o_req_t *req, const char *scope, sk_form_t *f, sk_access_signed_t *p,
                        uint8_t ip[16])
{
    sk_access_t *a = t->a;
    const sk_host_api_t *api = a->api;
    char msg[160];

    /* 1. parameters */
    if (sk_access_read_form(t, req, f) != 0)
        return -1;
    if (sk_access_params_signed(f, p, msg, sizeof(msg)) != 0) {
        api->reply(req, SK_E_INVALID, msg, NULL);
        return -1;
    }
    /* the replay and limiter tables are large and each request is mostly a new user: start their cache misses now,
     * so that they overlap the signature's hashing instead of stalling steps 5 and 6 */
    sk_access_replay_prefetch(a->replay, p->user_id, p->nance, p->nance_len);
    uint8_t ukey[16];
    sk_access_limiter_user_key(p->user_id, ukey);
    sk_access_limiter_prefetch(a->limiter, SK_LIMIT_USER, ukey);
    /* 2. referer */
    if (!sk_access_referer_allowed(a, req)) {
        api->reply(req, SK_E_DENIED, "denied: referer not allowed", NULL);
        return -1;
    }
    /* 3. time and signature */
    int64_t now = (int64_t)time(NULL), skew = p->time - now;
    if (skew > (int64_t)a->conf->auth_window || -skew > (int64_t)a->conf->auth_window) {
        api->reply(req, SK_E_AUTH, "authentication failed: time outside the window", NULL);
        return -1;
    }
    if (!sk_sign_verify(t->hmac, a->conf->auth_secret, scope, p->user_id, p->product_id, p->time, p->nance, p->auth_code, 64)) {
        api->reply(req, SK_E_AUTH, "authentication failed: bad auth_code", NULL);
        return -1;
    }
    /* 4. blacklists */
    sk_access_client_addr(a, req, ip);
    if (sk_access_bl_denied(t, p->user_id, ip)) {
        api->reply(req, SK_E_DENIED, "denied: blacklisted", NULL);
        return -1;
    }
    /* 5. a replay this node has seen: before the limits, so that replays never use them up */
    if (sk_access_replay_check(a->replay, p->user_id, p->nance, p->nance_len, p->time + (int64_t)a->conf->auth_window + 1, now)) {
        api->reply(req, SK_E_AUTH, "authentication failed: nance already used", NULL);
        return -1;
    }
    return 0;
}

int
sk_access_kill(sk_access_thread_t *t, h2o_req_t *req)
{
    sk_access_t *a = t->a;
    const sk_host_api_t *api = a->api;
    if (atomic_load_explicit(&a->stopped, memory_order_relaxed)) {
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: shutting down", NULL);
        return 0;
    }
    sk_form_t f;
    sk_access_signed_t p;
    uint8_t ip[16];
    if (sk_access_signed_checks(t, req, "kill", &f, &p, ip) != 0)
        return 0;
    char ipstr[48];
    sk_access_ip_format(ip, ipstr, sizeof(ipstr));
    int64_t now = (int64_t)time(NULL);

    /* 6. the limits policy, fed with this node's exact counts (this request included) */
    sk_policy_req_t r = {.user_id = p.user_id, .product_id = p.product_id, .now = now, .ip = ipstr};
    uint8_t ukey[16];
    sk_access_limiter_user_key(p.user_id, ukey);
    sk_access_limiter_hit(a->limiter, SK_LIMIT_USER, ukey, now, &r.user_sec, &r.user_min);
    sk_access_limiter_hit(a->limiter, SK_LIMIT_IP, ip, now, &r.ip_sec, &r.ip_min);
    char reason[128] = "";
    int admit = api->policy_admit(t->thr, &r, reason, sizeof(reason));
    if (admit < 0) {
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: limits policy failed", NULL);
        return 0;
    }
    if (admit == 0) {
        char msg[192];
        snprintf(msg, sizeof(msg), "rate limited: %s", reason[0] != '\0' ? reason : "limits policy");
        api->reply(req, SK_E_RATE_LIMITED, msg, NULL);
        return 0;
    }

    /* 7. the state of the activity in effect, from memory */
    const sk_snapshot_t *snap = api->snapshot(t->thr);
    const sk_activity_t *acts;
    size_t n = sk_access_product_activities(snap, p.product_id, &acts);
    const sk_activity_t *act = sk_access_in_effect(acts, n, now);
    if (act == NULL) {
        api->reply(req, SK_E_NOT_FOUND, "not found: no activity for this product", NULL);
        return 0;
    }
    const sk_product_t *prod = sk_access_find_product(snap, p.product_id);
    int64_t sold;
    int sold_out = sk_access_sold_out(t, act, &sold);
    sk_access_state_t st = sk_access_state(act, prod == NULL || prod->status != 0, sold_out, now);
    if (st != SK_ST_ACTIVE) {
        static const char *const msgs[] = {"", "activity not started", "activity ended", "sold out", "activity disabled"};
        api->reply(req, sk_access_state_code(st), msgs[st], NULL);
        return 0;
    }

    /* 8. someone must be there to decide */
    if (t->live == NULL || !t->live->redis_ok || t->live->logic_alive <= 0) {
        api->reply(req, SK_E_UNAVAILABLE, "service unavailable: no live logic node", NULL);
        return 0;
    }
    if (p.src != NULL)
        api->log(a->self, SK_LOG_DEBUG, "kill user=%" PRId64 " product=%" PRId64 " src_len=%zu", p.user_id, p.product_id,
                 p.src_len);

    /* 9 and 10 */
    sk_access_queue_submit(t, req, &p, act, ipstr);
    return 0;
}
