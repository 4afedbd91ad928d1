/*
 * Loading and following the blacklists on the control thread (see blacklist.h for the sets).
 *
 * A full load walks sk:blacklist:user then sk:blacklist:ip with HSCAN COUNT 1000 (never one huge HGETALL), builds a new
 * immutable set and posts it to every HTTP thread, which swaps it in. Notices on sk:blacklist:notice ("add user 42",
 * "remove ip 1.2.3.4", "reload") are posted as single changes into each thread's overlay. A change that arrives during a
 * load is also replayed onto the load's result, since the scan may or may not have seen it. Full loads also run at
 * every (re)subscription, since notices may have been missed, and every 60 s for edits made without a notice.
 */
#include "control.h"

#include <stdlib.h>
#include <string.h>

/* key names: common/sk_keys.h; bl_kind 0 is the user hash, 1 the IP hash */
#define BL_KEY(kind) sk_key_const((kind) == 0 ? SK_KEY_BLACKLIST_USER : SK_KEY_BLACKLIST_IP)
#define NOTICE_CHANNEL sk_key_const(SK_KEY_BLACKLIST_NOTICE)

typedef struct st_bl_set_msg_t {
    atomic_size_t refs;
    sk_access_t *a;
    sk_blset_t *set;
    size_t nops;
    sk_access_blop_t ops[];
} bl_set_msg_t;

typedef struct st_bl_op_msg_t {
    sk_access_t *a;
    sk_access_blop_t op;
} bl_op_msg_t;

/* ---- HTTP side ---- */

static sk_access_thread_t *
current_tstate(sk_access_t *a)
{
    sk_thread_t *thr = a->api->thread_self();
    return thr != NULL ? a->api->tstate(a->self, thr) : NULL;
}

static void
set_msg_release(bl_set_msg_t *m)
{
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        sk_access_blset_release(m->set);
        free(m);
    }
}

static void
on_set_posted(void *arg)
{
    bl_set_msg_t *m = arg;
    sk_access_thread_t *t = current_tstate(m->a);
    if (t != NULL) {
        sk_access_blset_retain(m->set);
        sk_access_blset_release(t->bl);
        t->bl = m->set;
        sk_access_bloverlay_clear(t->overlay);
        for (size_t i = 0; i < m->nops; i++)
            sk_access_bloverlay_set(t->overlay, m->ops[i].kind, m->ops[i].key, m->ops[i].add);
    }
    set_msg_release(m);
}

static void
on_op_posted(void *arg)
{
    bl_op_msg_t *m = arg;
    sk_access_thread_t *t = current_tstate(m->a);
    if (t != NULL)
        sk_access_bloverlay_set(t->overlay, m->op.kind, m->op.key, m->op.add);
    free(m);
}

int
sk_access_bl_denied(sk_access_thread_t *t, int64_t user_id, const uint8_t ip[16])
{
    uint8_t key[16];
    memset(key, 0, sizeof(key));
    memcpy(key, &user_id, sizeof(user_id));
    return sk_access_blacklisted(t->bl, t->overlay, SK_BL_USER, key) || sk_access_blacklisted(t->bl, t->overlay, SK_BL_IP, ip);
}

/* ---- control side ---- */

static void load_start(sk_access_control_t *c);

static void
request_load(sk_access_control_t *c)
{
    if (c->closing)
        return;
    if (c->bl_loading)
        c->bl_again = 1;
    else
        load_start(c);
}

static void
publish_set(sk_access_control_t *c, sk_blset_t *set)
{
    sk_access_t *a = c->a;
    bl_set_msg_t *m = malloc(sizeof(*m) + c->bl_nops * sizeof(sk_access_blop_t));
    if (m == NULL) {
        sk_access_blset_release(set);
        return;
    }
    atomic_init(&m->refs, 1);
    m->a = a;
    m->set = set;
    m->nops = c->bl_nops;
    memcpy(m->ops, c->bl_ops, c->bl_nops * sizeof(sk_access_blop_t));
    size_t n = a->api->nhttp_threads(a->self);
    for (size_t i = 0; i < n; i++) {
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
        if (a->api->post(a->api->http_thread(a->self, i), on_set_posted, m) != 0)
            set_msg_release(m);
    }
    atomic_store(&a->bl_users, sk_access_blset_size(set, SK_BL_USER));
    atomic_store(&a->bl_ips, sk_access_blset_size(set, SK_BL_IP));
    atomic_fetch_add(&a->bl_loads, 1);
    set_msg_release(m);
}

static void
load_end(sk_access_control_t *c, int ok)
{
    const sk_host_api_t *api = c->a->api;
    c->bl_loading = 0;
    if (ok) {
        sk_blset_t *set = sk_access_blbuild_finish(c->bl_build);
        c->bl_build = NULL;
        if (set != NULL) {
            publish_set(c, set);
            c->bl_ops_since_load = c->bl_nops;
        } else {
            ok = 0;
        }
    } else {
        sk_access_blbuild_free(c->bl_build);
        c->bl_build = NULL;
    }
    c->bl_nops = 0;
    if (c->closing)
        return;
    if (!ok) {
        c->bl_again = 0;
        api->timer_start(c->bl_timer, 1000); /* retry soon; the old set keeps serving */
        return;
    }
    api->timer_start(c->bl_timer, SK_ACCESS_BL_RELOAD_MS);
    if (c->bl_again || c->bl_ops_overflow) {
        c->bl_again = 0;
        c->bl_ops_overflow = 0;
        load_start(c);
    }
}

static void scan_next(sk_access_control_t *c);

static void
on_hscan(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_access_control_t *c = data;
    (void)r;
    if (c->closing || !c->bl_loading) {
        if (c->bl_loading)
            load_end(c, 0);
        return;
    }
    if (err != NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        c->a->api->log(c->a->self, SK_LOG_WARN, "blacklist load failed: %s", err != NULL ? err : "unexpected reply");
        load_end(c, 0);
        return;
    }
    redisReply *items = reply->element[1];
    for (size_t i = 0; i + 1 < items->elements; i += 2) {
        redisReply *field = items->element[i];
        if (field->type == REDIS_REPLY_STRING)
            sk_access_blbuild_add(c->bl_build, c->bl_kind, field->str, field->len);
    }
    size_t clen = reply->element[0]->len < sizeof(c->bl_cursor) - 1 ? reply->element[0]->len : sizeof(c->bl_cursor) - 1;
    memcpy(c->bl_cursor, reply->element[0]->str, clen);
    c->bl_cursor[clen] = '\0';
    if (strcmp(c->bl_cursor, "0") == 0) {
        if (++c->bl_kind == 2) {
            load_end(c, 1);
            return;
        }
    }
    scan_next(c);
}

static void
scan_next(sk_access_control_t *c)
{
    if (c->a->api->redis_cmd(c->redis, on_hscan, c, "HSCAN %s %s COUNT 1000", BL_KEY(c->bl_kind), c->bl_cursor) != 0)
        load_end(c, 0);
}

static void
load_start(sk_access_control_t *c)
{
    if ((c->bl_build = sk_access_blbuild_new()) == NULL) {
        c->a->api->timer_start(c->bl_timer, 1000);
        return;
    }
    c->bl_loading = 1;
    c->bl_again = 0;
    c->bl_kind = SK_BL_USER;
    c->bl_nops = 0;
    c->bl_ops_overflow = 0;
    strcpy(c->bl_cursor, "0");
    scan_next(c);
}

static void
on_bl_timer(sk_timer_t *tm, void *data)
{
    (void)tm;
    request_load(data);
}

static void
post_op(sk_access_control_t *c, const sk_access_blop_t *op)
{
    sk_access_t *a = c->a;
    size_t n = a->api->nhttp_threads(a->self);
    for (size_t i = 0; i < n; i++) {
        bl_op_msg_t *m = malloc(sizeof(*m));
        if (m == NULL)
            continue;
        m->a = a;
        m->op = *op;
        if (a->api->post(a->api->http_thread(a->self, i), on_op_posted, m) != 0)
            free(m);
    }
}

static void
on_notice(sk_redis_t *r, const char *channel, const char *msg, size_t len, void *data)
{
    sk_access_control_t *c = data;
    (void)r;
    (void)channel;
    char buf[160];
    if (len >= sizeof(buf))
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    char *save = NULL, *verb = strtok_r(buf, " ", &save), *type = strtok_r(NULL, " ", &save), *value = strtok_r(NULL, " ", &save);
    if (verb != NULL && strcmp(verb, "reload") == 0) {
        request_load(c);
        return;
    }
    sk_access_blop_t op;
    memset(&op, 0, sizeof(op));
    if (verb == NULL || type == NULL || value == NULL || (strcmp(verb, "add") != 0 && strcmp(verb, "remove") != 0) ||
        (strcmp(type, "user") != 0 && strcmp(type, "ip") != 0)) {
        c->a->api->log(c->a->self, SK_LOG_WARN, "ignoring malformed blacklist notice (%zu bytes)", len);
        return;
    }
    op.add = strcmp(verb, "add") == 0;
    op.kind = strcmp(type, "ip") == 0 ? SK_BL_IP : SK_BL_USER;
    if (sk_access_bl_key(op.kind, value, strlen(value), op.key) != 0) {
        c->a->api->log(c->a->self, SK_LOG_WARN, "ignoring blacklist notice with a bad %s value", type);
        return;
    }
    post_op(c, &op);
    if (c->bl_loading) {
        if (c->bl_nops < SK_ACCESS_OPS_BEFORE_RELOAD)
            c->bl_ops[c->bl_nops++] = op;
        else
            c->bl_ops_overflow = 1;
    }
    /* overlays are small by design: past a bound, a full load is cheaper than growing them */
    if (++c->bl_ops_since_load >= SK_ACCESS_OPS_BEFORE_RELOAD) {
        c->bl_ops_since_load = 0;
        request_load(c);
    }
}

static void
on_sub_connect(sk_redis_t *r, void *data)
{
    (void)r;
    request_load(data);
}

int
sk_access_bl_start(sk_access_control_t *c)
{
    const sk_host_api_t *api = c->a->api;
    if ((c->bl_ops = calloc(SK_ACCESS_OPS_BEFORE_RELOAD, sizeof(sk_access_blop_t))) == NULL ||
        (c->bl_timer = api->timer_new(c->thr, on_bl_timer, c)) == NULL || (c->sub = api->redis_new(c->a->self, c->thr)) == NULL)
        return -1;
    api->redis_on_connect(c->sub, on_sub_connect, c);
    if (api->redis_subscribe(c->sub, NOTICE_CHANNEL, on_notice, c) != 0)
        return -1;
    return 0;
}

void
sk_access_bl_stop(sk_access_control_t *c)
{
    const sk_host_api_t *api = c->a->api;
    if (c->sub != NULL)
        api->redis_free(c->sub);
    c->sub = NULL;
    if (c->bl_timer != NULL)
        api->timer_free(c->bl_timer);
    c->bl_timer = NULL;
    free(c->bl_ops);
    c->bl_ops = NULL;
    sk_access_blbuild_free(c->bl_build);
    c->bl_build = NULL;
}
