/*
 * Policies live in etcd (policies/<name>). PUT compiles and validates in the host's sandbox before anything is
 * written; GET answers JSON {name, source, sha256, revision, origin}. Every revision that reaches etcd -- through this
 * API or an etcdctl put -- is mirrored into SQLite: the control thread's etcd event hook posts each policy event to
 * the admin thread, which inserts it (insert-or-ignore on name and revision). At start, the current keys are stored
 * too, so a put made while no admin ran still shows up.
 */
#include <stdlib.h>
#include <string.h>
#include "admin.h"
#include "sk_sign.h"

#define POLICY_EVENTS_MAX 4096
#define POLICY_NAMES "limits.lua, buy_rate.lua, token.lua"

typedef struct st_policy_ev_t {
    sk_admin_t *inst;
    char name[64];
    int64_t revision;
    int is_delete;
    size_t len;
    char src[];
} policy_ev_t;

static void
on_policy_task(void *arg)
{
    policy_ev_t *ev = arg;
    sk_admin_ts_t *ts = ev->inst->ts;
    atomic_fetch_sub(&ev->inst->policy_events, 1);
    if (ts != NULL && ts->store != NULL &&
        sk_admin_store_policy_add(ts->store, ev->name, ev->revision, ev->src, ev->len, ev->is_delete, sk_admin_now()) ==
            SK_ADMIN_STORE_ERR) {
        ev->inst->api->log(ev->inst->self, SK_LOG_ERROR, "policy history of %s@%lld: %s", ev->name, (long long)ev->revision,
                           sk_admin_store_errmsg(ts->store));
        atomic_store(&ev->inst->history_catch_up, 1);
    }
    free(ev);
}

void
sk_admin_policy_event(void *instp, const char *key, const char *value, size_t len, int64_t mod_revision, int is_delete)
{
    sk_admin_t *inst = instp;
    if (strncmp(key, "policies/", 9) != 0 || strlen(key + 9) >= sizeof(((policy_ev_t *)0)->name) || len > (1 << 20))
        return;
    if (atomic_fetch_add(&inst->policy_events, 1) >= POLICY_EVENTS_MAX) {
        atomic_fetch_sub(&inst->policy_events, 1);
        atomic_fetch_add(&inst->history_dropped, 1);
        atomic_store(&inst->history_catch_up, 1);
        return;
    }
    policy_ev_t *ev = malloc(sizeof(*ev) + len + 1);
    sk_thread_t *admin = inst->api->admin_thread(inst->self);
    if (ev == NULL || admin == NULL) {
        free(ev);
        atomic_fetch_sub(&inst->policy_events, 1);
        return;
    }
    ev->inst = inst;
    snprintf(ev->name, sizeof(ev->name), "%s", key + 9);
    ev->revision = mod_revision;
    ev->is_delete = is_delete;
    ev->len = is_delete ? 0 : len;
    if (ev->len > 0)
        memcpy(ev->src, value, ev->len);
    ev->src[ev->len] = '\0';
    if (inst->api->post(admin, on_policy_task, ev) != 0) {
        atomic_fetch_sub(&inst->policy_events, 1);
        free(ev);
    }
}

/* ---- reading policies/ from etcd ---- */

typedef struct st_policy_kv_t {
    char name[64];
    char *src;
    size_t len;
    int64_t revision;
} policy_kv_t;

typedef struct st_policy_kvs_t {
    policy_kv_t v[16];
    size_t n;
} policy_kvs_t;

static void
on_policy_kv(void *arg, const char *key, const char *value, size_t len, int64_t mod_revision)
{
    policy_kvs_t *c = arg;
    if (strncmp(key, "policies/", 9) != 0 || strlen(key + 9) >= sizeof(c->v[0].name) || c->n == 16)
        return;
    policy_kv_t *kv = &c->v[c->n];
    if ((kv->src = malloc(len + 1)) == NULL)
        return;
    snprintf(kv->name, sizeof(kv->name), "%s", key + 9);
    memcpy(kv->src, value, len);
    kv->src[len] = '\0';
    kv->len = len;
    kv->revision = mod_revision;
    c->n++;
}

static void
kvs_dispose(policy_kvs_t *c)
{
    for (size_t i = 0; i < c->n; ++i)
        free(c->v[i].src);
    c->n = 0;
}

static const policy_kv_t *
kvs_find(const policy_kvs_t *c, const char *name)
{
    for (size_t i = 0; i < c->n; ++i)
        if (strcmp(c->v[i].name, name) == 0)
            return &c->v[i];
    return NULL;
}

int
sk_admin_policy_catch_up(sk_admin_ts_t *ts)
{
    sk_admin_t *inst = ts->inst;
    policy_kvs_t c = {.n = 0};
    char err[256];
    atomic_store(&inst->history_catch_up, 0);
    if (inst->api->etcd_range(inst->self, "policies/", on_policy_kv, &c, err, sizeof(err)) != 0) {
        atomic_store(&inst->history_catch_up, 1);
        kvs_dispose(&c);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < c.n; ++i)
        if (sk_admin_store_policy_add(ts->store, c.v[i].name, c.v[i].revision, c.v[i].src, c.v[i].len, 0, sk_admin_now()) ==
            SK_ADMIN_STORE_ERR)
            rc = -1;
    kvs_dispose(&c);
    return rc;
}

static const sk_policy_src_t *
in_effect(sk_admin_ts_t *ts, const char *name)
{
    const sk_snapshot_t *snap = ts->inst->api->snapshot(ts->thr);
    for (size_t i = 0; snap != NULL && i < snap->npolicies; ++i)
        if (strcmp(snap->policies[i].name, name) == 0)
            return &snap->policies[i];
    return NULL;
}

/* name, sha256, revision, origin of the etcd value when there is one, else of the file in effect */
static cJSON *
describe(sk_admin_ts_t *ts, const char *name, const policy_kv_t *kv, int with_source)
{
    const sk_policy_src_t *eff = in_effect(ts, name);
    if (kv == NULL && eff == NULL)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    char sha[65];
    cJSON_AddStringToObject(o, "name", name);
    if (kv != NULL) {
        sk_sha256_hex(kv->src, kv->len, sha);
        cJSON_AddStringToObject(o, "origin", "etcd");
        cJSON_AddStringToObject(o, "sha256", sha);
        cJSON_AddNumberToObject(o, "revision", (double)kv->revision);
        if (with_source)
            cJSON_AddStringToObject(o, "source", kv->src);
    } else {
        cJSON_AddStringToObject(o, "origin", eff->revision > 0 ? "etcd" : "file");
        cJSON_AddStringToObject(o, "sha256", eff->sha256);
        cJSON_AddNumberToObject(o, "revision", (double)eff->revision);
        if (with_source) {
            char *src = malloc(eff->len + 1);
            if (src != NULL) {
                memcpy(src, eff->src, eff->len);
                src[eff->len] = '\0';
                cJSON_AddStringToObject(o, "source", src);
                free(src);
            }
        }
    }
    /* what the nodes run: differs from the etcd value when that one failed to compile on the nodes */
    if (eff != NULL) {
        cJSON_AddStringToObject(o, "in_effect_sha256", eff->sha256);
        cJSON_AddNumberToObject(o, "in_effect_revision", (double)eff->revision);
    }
    return o;
}

static void
put(sk_admin_ts_t *ts, h2o_req_t *req, const char *name)
{
    sk_admin_t *inst = ts->inst;
    h2o_iovec_t body = h2o_iovec_init(NULL, 0);
    char err[512], key[80], sha[65];
    int64_t rev = 0;
    if (inst->api->req_body(req, &body) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, "source: larger than http.max_body", NULL);
        return;
    }
    if (body.len == 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, "source: empty body (send the Lua source as the raw body)", NULL);
        return;
    }
    if (body.len > SK_ADMIN_POLICY_MAX) {
        sk_admin_reply(inst, req, SK_E_INVALID, "source: larger than 65536 bytes", NULL);
        return;
    }
    err[0] = '\0';
    if (inst->api->policy_validate(inst->self, name, body.base, body.len, err, sizeof(err)) != 0) {
        sk_admin_replyf(inst, req, SK_E_INVALID, NULL, "source: %s", err[0] ? err : "does not compile");
        return;
    }
    snprintf(key, sizeof(key), "policies/%s", name);
    if (inst->api->etcd_put(inst->self, key, body.base, body.len, &rev, err, sizeof(err)) != 0) {
        sk_admin_replyf(inst, req, SK_E_UNAVAILABLE, NULL, "etcd: %s", err);
        return;
    }
    if (ts->store != NULL)
        sk_admin_store_policy_add(ts->store, name, rev, body.base, body.len, 0, sk_admin_now());
    sk_sha256_hex(body.base, body.len, sha);
    cJSON *data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "name", name);
    cJSON_AddNumberToObject(data, "revision", (double)rev);
    cJSON_AddStringToObject(data, "sha256", sha);
    sk_admin_reply(inst, req, SK_OK, "ok", data);
}

static void
del(sk_admin_ts_t *ts, h2o_req_t *req, const char *name)
{
    sk_admin_t *inst = ts->inst;
    char err[256], key[80];
    int64_t rev = 0;
    snprintf(key, sizeof(key), "policies/%s", name);
    if (inst->api->etcd_delete(inst->self, key, &rev, err, sizeof(err)) != 0) {
        sk_admin_replyf(inst, req, SK_E_UNAVAILABLE, NULL, "etcd: %s", err);
        return;
    }
    cJSON *data = cJSON_CreateObject();
    cJSON_AddNumberToObject(data, "revision", (double)rev);
    sk_admin_reply(inst, req, SK_OK, "ok (the file in policies.dir serves again)", data);
}

static void
get_revision(sk_admin_ts_t *ts, h2o_req_t *req, const char *name, int64_t revision)
{
    char *src = NULL;
    size_t len = 0;
    sk_admin_policy_rev_t r;
    int rc = sk_admin_store_policy_get(ts->store, name, revision, &src, &len, &r);
    if (rc != SK_ADMIN_STORE_OK) {
        sk_admin_reply(ts->inst, req, rc == SK_ADMIN_STORE_NONE ? SK_E_NOT_FOUND : SK_E_UNAVAILABLE,
                       rc == SK_ADMIN_STORE_NONE ? "revision: not in the history of this policy" : "store error", NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "origin", "history");
    cJSON_AddNumberToObject(o, "revision", (double)r.revision);
    cJSON_AddStringToObject(o, "sha256", r.sha256);
    cJSON_AddBoolToObject(o, "deleted", r.deleted);
    cJSON_AddStringToObject(o, "source", src);
    free(src);
    sk_admin_reply(ts->inst, req, SK_OK, "ok", o);
}

static void
get(sk_admin_ts_t *ts, h2o_req_t *req, const char *name, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    policy_kvs_t c = {.n = 0};
    char err[256];
    int64_t revision;
    int present;
    if (sk_admin_param_int(f, "revision", 1, INT64_MAX, &revision, &present, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    if (present) {
        get_revision(ts, req, name, revision);
        return;
    }
    char key[80];
    snprintf(key, sizeof(key), "policies/%s", name);
    int etcd_ok = inst->api->etcd_range(inst->self, key, on_policy_kv, &c, err, sizeof(err)) == 0;
    cJSON *o = describe(ts, name, etcd_ok ? kvs_find(&c, name) : NULL, 1);
    kvs_dispose(&c);
    if (o == NULL) {
        sk_admin_reply(inst, req, SK_E_NOT_FOUND, "name: no such policy", NULL);
        return;
    }
    sk_admin_reply(inst, req, SK_OK, etcd_ok ? "ok" : "ok (etcd unavailable: the version in effect)", o);
}

static void
list(sk_admin_ts_t *ts, h2o_req_t *req)
{
    static const char *names[] = {"buy_rate.lua", "limits.lua", "token.lua"};
    sk_admin_t *inst = ts->inst;
    policy_kvs_t c = {.n = 0};
    char err[256];
    int etcd_ok = inst->api->etcd_range(inst->self, "policies/", on_policy_kv, &c, err, sizeof(err)) == 0;
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
        cJSON *o = describe(ts, names[i], kvs_find(&c, names[i]), 0);
        if (o != NULL)
            cJSON_AddItemToArray(arr, o);
    }
    /* keys no node loads (unknown names) are shown too, so an operator sees them */
    for (size_t i = 0; i < c.n; ++i)
        if (!sk_admin_policy_name_ok(c.v[i].name, strlen(c.v[i].name)))
            cJSON_AddItemToArray(arr, describe(ts, c.v[i].name, &c.v[i], 0));
    kvs_dispose(&c);
    sk_admin_reply(inst, req, SK_OK, etcd_ok ? "ok" : "ok (etcd unavailable: the versions in effect)", arr);
}

static int
on_history_row(void *arg, const sk_admin_policy_rev_t *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", r->name);
    cJSON_AddNumberToObject(o, "revision", (double)r->revision);
    cJSON_AddStringToObject(o, "sha256", r->sha256);
    cJSON_AddBoolToObject(o, "deleted", r->deleted);
    cJSON_AddNumberToObject(o, "seen_at", (double)r->seen_at);
    cJSON_AddItemToArray(arg, o);
    return 0;
}

static void
history(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    const sk_form_param_t *name = sk_form_get(f, "name");
    int64_t limit = 100;
    int present;
    char err[160];
    if (name == NULL || !sk_admin_policy_name_ok(name->value, name->len)) {
        sk_admin_reply(ts->inst, req, SK_E_INVALID, "name: must be one of " POLICY_NAMES, NULL);
        return;
    }
    if (sk_admin_param_int(f, "limit", 1, 1000, &limit, &present, err, sizeof(err)) != 0) {
        sk_admin_reply(ts->inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    cJSON *arr = cJSON_CreateArray();
    if (sk_admin_store_policy_list(ts->store, name->value, (int)limit, on_history_row, arr) != SK_ADMIN_STORE_OK) {
        cJSON_Delete(arr);
        sk_admin_reply(ts->inst, req, SK_E_UNAVAILABLE, "store error", NULL);
        return;
    }
    sk_admin_reply(ts->inst, req, SK_OK, "ok", arr);
}

int
sk_admin_route_policy(void *instp, void *tstate, h2o_req_t *req)
{
    sk_admin_t *inst = instp;
    sk_admin_ts_t *ts = tstate;
    h2o_iovec_t path = req->path_normalized;
    if (path.len <= 8 || memcmp(path.base, "/policy/", 8) != 0)
        return -1;
    char name[64];
    size_t nlen = path.len - 8;
    if (nlen >= sizeof(name) || memchr(path.base + 8, '/', nlen) != NULL)
        return -1;
    memcpy(name, path.base + 8, nlen);
    name[nlen] = '\0';
    if (sk_admin_check_access(inst, req) != 0)
        return 0;
    if (ts == NULL || ts->store == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "admin store not open", NULL);
        return 0;
    }
    int is_get = sk_admin_method(req, "GET") || sk_admin_method(req, "HEAD");
    if (is_get && (strcmp(name, "list") == 0 || strcmp(name, "history") == 0)) {
        sk_form_t f;
        if (sk_admin_params(inst, req, &f) != 0)
            return 0;
        if (name[0] == 'l')
            list(ts, req);
        else
            history(ts, req, &f);
        return 0;
    }
    if (!sk_admin_policy_name_ok(name, nlen)) {
        sk_admin_reply(inst, req, SK_E_INVALID, "name: must be one of " POLICY_NAMES, NULL);
        return 0;
    }
    if (sk_admin_method(req, "PUT") || sk_admin_method(req, "POST")) {
        put(ts, req, name);
    } else if (sk_admin_method(req, "DELETE")) {
        del(ts, req, name);
    } else if (is_get) {
        sk_form_t f;
        if (sk_admin_params(inst, req, &f) == 0)
            get(ts, req, name, &f);
    } else {
        sk_admin_reply(inst, req, SK_E_INVALID, "method: use GET, PUT or DELETE", NULL);
    }
    return 0;
}
