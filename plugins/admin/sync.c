/*
 * Keeping etcd and Redis in line with SQLite, the admin's source of truth.
 *
 * etcd: every change marks its key ("products/3") pending in the same SQLite transaction as the change itself. The
 * request then tries to put (or delete) the key once; whatever is left pending, the timer retries every second, so
 * etcd's return is followed within about a second. Each attempt writes SQLite's current view of the whole object,
 * never a read-modify-write of an etcd value. At start, a reconcile compares every key under products/ and
 * activities/ with SQLite and marks the missing, stale and orphaned ones.
 *
 * Redis: sk:{a<ID>}:total is what the logic layer sells against. It is written on create and update (routes), and
 * from SQLite at start, after every reconnect and after a failed write (the "totals" pass below).
 */
#include <stdlib.h>
#include <string.h>
#include "admin.h"

/* Splits "products/3" into its kind and id; the object's current state decides whether the key is put or deleted. */
static int
parse_key(const char *key, int *is_product, int64_t *id)
{
    const char *rest;
    if (strncmp(key, "products/", 9) == 0)
        *is_product = 1, rest = key + 9;
    else if (strncmp(key, "activities/", 11) == 0)
        *is_product = 0, rest = key + 11;
    else
        return -1;
    if (sk_parse_int64(rest, strlen(rest), 1, INT64_MAX, id) != 0)
        return -1;
    return 0;
}

/* The JSON SQLite holds for the key, or NULL when the object does not exist (then the key must go). *err on failure. */
static char *
current_value(sk_admin_ts_t *ts, const char *key, int *err)
{
    int is_product, deleted = 0, rc;
    int64_t id;
    *err = 0;
    if (parse_key(key, &is_product, &id) != 0)
        return NULL;
    if (is_product) {
        sk_product_t p;
        if ((rc = sk_admin_store_product_get(ts->store, id, &p)) == SK_ADMIN_STORE_OK)
            return sk_admin_product_json(&p);
    } else {
        sk_activity_t a;
        if ((rc = sk_admin_store_activity_get(ts->store, id, &a, &deleted)) == SK_ADMIN_STORE_OK && !deleted)
            return sk_admin_activity_json(&a);
    }
    *err = rc == SK_ADMIN_STORE_ERR;
    return NULL;
}

static void
update_gauge(sk_admin_ts_t *ts)
{
    int64_t n = sk_admin_store_sync_count(ts->store);
    if (n >= 0)
        atomic_store(&ts->inst->etcd_pending, (long)n);
}

int
sk_admin_sync_key(sk_admin_ts_t *ts, const char *key, int from_request)
{
    sk_admin_t *inst = ts->inst;
    const sk_host_api_t *api = inst->api;
    char err[256] = "";
    int dberr, rc;
    int64_t rev;

    /* After a failure, requests leave the key to the timer until etcd answers again, so that a stalled etcd does not
     * cost every admin call a full deadline. */
    if (from_request && ts->etcd_failing) {
        update_gauge(ts);
        return 0;
    }
    char *value = current_value(ts, key, &dberr);
    if (dberr) {
        api->log(inst->self, SK_LOG_ERROR, "sync %s: SQLite: %s", key, sk_admin_store_errmsg(ts->store));
        return 0;
    }
    if (value != NULL) {
        rc = api->etcd_put(inst->self, key, value, strlen(value), &rev, err, sizeof(err));
        cJSON_free(value);
    } else {
        rc = api->etcd_delete(inst->self, key, &rev, err, sizeof(err));
    }
    if (rc != 0) {
        atomic_fetch_add(&inst->sync_failures, 1);
        ts->etcd_failing = 1;
        api->log(inst->self, SK_LOG_WARN, "etcd sync of %s failed, will retry: %s", key, err);
        update_gauge(ts);
        return 0;
    }
    ts->etcd_failing = 0;
    if (sk_admin_store_sync_clear(ts->store, key) != SK_ADMIN_STORE_OK)
        api->log(inst->self, SK_LOG_ERROR, "sync %s: SQLite: %s", key, sk_admin_store_errmsg(ts->store));
    update_gauge(ts);
    return 1;
}

/* ---- reconcile ---- */

typedef struct st_etcd_entry_t {
    char key[64];
    char *value;
    int seen;
} etcd_entry_t;

typedef struct st_collect_t {
    etcd_entry_t *v;
    size_t n, cap;
    int overflow;
} collect_t;

static void
on_range_kv(void *arg, const char *key, const char *value, size_t len, int64_t mod_revision)
{
    collect_t *c = arg;
    (void)mod_revision;
    if (c->n >= 2 * SK_ADMIN_MAX_ACTIVITIES) {
        c->overflow = 1;
        return;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        etcd_entry_t *v = realloc(c->v, cap * sizeof(*v));
        if (v == NULL) {
            c->overflow = 1;
            return;
        }
        c->v = v, c->cap = cap;
    }
    etcd_entry_t *e = &c->v[c->n];
    if (strlen(key) >= sizeof(e->key) || (e->value = malloc(len + 1)) == NULL) {
        /* a key too long for ours is no object of ours: remember nothing, it cannot be deleted by name here */
        return;
    }
    snprintf(e->key, sizeof(e->key), "%s", key);
    memcpy(e->value, value, len);
    e->value[len] = '\0';
    e->seen = 0;
    c->n++;
}

static int
cmp_entry(const void *a, const void *b)
{
    return strcmp(((const etcd_entry_t *)a)->key, ((const etcd_entry_t *)b)->key);
}

typedef struct st_reconcile_t {
    sk_admin_ts_t *ts;
    collect_t *c;
    int failed;
} reconcile_t;

static void
check_one(reconcile_t *r, const char *key, char *json)
{
    etcd_entry_t probe, *e;
    snprintf(probe.key, sizeof(probe.key), "%s", key);
    e = r->c->n > 0 ? bsearch(&probe, r->c->v, r->c->n, sizeof(*e), cmp_entry) : NULL;
    if (e != NULL)
        e->seen = 1;
    if (json == NULL || e == NULL || strcmp(e->value, json) != 0) {
        if (sk_admin_store_sync_mark(r->ts->store, key) != SK_ADMIN_STORE_OK)
            r->failed = 1;
    }
    cJSON_free(json);
}

static int
on_product_row(void *arg, const sk_product_t *p)
{
    char key[64];
    snprintf(key, sizeof(key), "products/%lld", (long long)p->product_id);
    check_one(arg, key, sk_admin_product_json(p));
    return 0;
}

static int
on_activity_row(void *arg, const sk_activity_t *a)
{
    char key[64];
    snprintf(key, sizeof(key), "activities/%lld", (long long)a->activity_id);
    check_one(arg, key, sk_admin_activity_json(a));
    return 0;
}

static int
reconcile(sk_admin_ts_t *ts)
{
    sk_admin_t *inst = ts->inst;
    collect_t c = {NULL, 0, 0, 0};
    char err[256] = "";
    int rc = -1;
    if (inst->api->etcd_range(inst->self, "products/", on_range_kv, &c, err, sizeof(err)) != 0 ||
        inst->api->etcd_range(inst->self, "activities/", on_range_kv, &c, err, sizeof(err)) != 0) {
        inst->api->log(inst->self, SK_LOG_WARN, "reconcile with etcd postponed: %s", err);
        goto out;
    }
    if (c.overflow) {
        inst->api->log(inst->self, SK_LOG_ERROR, "reconcile: too many keys under the prefix");
        goto out;
    }
    if (c.n > 0)
        qsort(c.v, c.n, sizeof(*c.v), cmp_entry);
    reconcile_t r = {ts, &c, 0};
    if (sk_admin_store_products(ts->store, on_product_row, &r) != SK_ADMIN_STORE_OK ||
        sk_admin_store_activities(ts->store, 0, on_activity_row, &r) != SK_ADMIN_STORE_OK || r.failed)
        goto out;
    size_t orphans = 0;
    for (size_t i = 0; i < c.n; ++i) {
        if (c.v[i].seen)
            continue;
        /* a key with no live object behind it: sync_key deletes it */
        if (sk_admin_store_sync_mark(ts->store, c.v[i].key) != SK_ADMIN_STORE_OK)
            goto out;
        ++orphans;
    }
    inst->api->log(inst->self, SK_LOG_INFO, "reconciled etcd with SQLite: %zu keys, %zu orphaned, %lld pending", c.n, orphans,
                   (long long)sk_admin_store_sync_count(ts->store));
    rc = 0;
out:
    for (size_t i = 0; i < c.n; ++i)
        free(c.v[i].value);
    free(c.v);
    return rc;
}

/* ---- Redis totals ---- */

static void
on_total_set(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_admin_ts_t *ts = data;
    (void)r;
    ts->totals_outstanding--;
    if (err != NULL || reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ts->totals_dirty = 1;
        if (!ts->disposing)
            ts->inst->api->log(ts->inst->self, SK_LOG_WARN, "writing activity totals to Redis failed: %s",
                               err != NULL     ? err
                               : reply != NULL ? reply->str
                                               : "no reply");
    }
}

static int
on_total_row(void *arg, const sk_activity_t *a)
{
    sk_admin_ts_t *ts = arg;
    if (sk_activity_shards(a) > 1 && a->start_time <= sk_admin_now())
        return 0; /* its buckets' totals are the sale's own now (sk_admin_write_total) */
    if (sk_admin_write_total(ts, a, on_total_set, ts) != 0) {
        ts->totals_dirty = 1;
        return 1;
    }
    ts->totals_outstanding++;
    return 0;
}

/* A SET of SQLite's total while an update waits for its own Redis step could land after that step and undo it, so the
 * pass waits until no activity change is between Redis and SQLite. */
static void
totals_resync(sk_admin_ts_t *ts)
{
    if (!ts->totals_dirty || ts->ops_inflight > 0 || ts->totals_outstanding > 0 || ts->redis == NULL ||
        !ts->inst->api->redis_connected(ts->redis))
        return;
    ts->totals_dirty = 0;
    if (sk_admin_store_activities(ts->store, 0, on_total_row, ts) != SK_ADMIN_STORE_OK)
        ts->totals_dirty = 1;
}

/* ---- the timer ---- */

static void
on_tick(sk_timer_t *t, void *data)
{
    sk_admin_ts_t *ts = data;
    sk_admin_t *inst = ts->inst;
    int etcd_answered = 1;
    if (ts->need_reconcile) {
        if (reconcile(ts) == 0 && sk_admin_policy_catch_up(ts) == 0)
            ts->need_reconcile = 0;
        else
            etcd_answered = 0; /* no second deadline in this tick */
    } else if (atomic_load(&inst->history_catch_up)) {
        sk_admin_policy_catch_up(ts);
    }
    char keys[64][64];
    int n = etcd_answered ? sk_admin_store_sync_list(ts->store, keys, 64) : 0, done = 0;
    /* while etcd looks down, one probe per tick: each failing call may block up to its deadline */
    if (n > 1 && !inst->api->etcd_up(inst->self))
        n = 1;
    while (done < n && sk_admin_sync_key(ts, keys[done], 0))
        ++done;
    totals_resync(ts);
    sk_admin_token_redrive(ts);
    update_gauge(ts);
    /* a full batch means more are waiting: come back at once */
    inst->api->timer_start(t, done == 64 ? 1 : SK_ADMIN_SYNC_INTERVAL_MS);
}

static void
on_redis_connect(sk_redis_t *r, void *data)
{
    sk_admin_ts_t *ts = data;
    (void)r;
    ts->totals_dirty = 1;
    sk_admin_sync_kick(ts);
}

void
sk_admin_sync_start(sk_admin_ts_t *ts)
{
    const sk_host_api_t *api = ts->inst->api;
    ts->need_reconcile = 1;
    ts->totals_dirty = 1;
    ts->timer = api->timer_new(ts->thr, on_tick, ts);
    if (ts->redis != NULL)
        api->redis_on_connect(ts->redis, on_redis_connect, ts);
    if (ts->timer != NULL)
        api->timer_start(ts->timer, 10);
}

void
sk_admin_sync_kick(sk_admin_ts_t *ts)
{
    if (ts->timer != NULL && !ts->disposing)
        ts->inst->api->timer_start(ts->timer, 0);
}

void
sk_admin_sync_stop(sk_admin_ts_t *ts)
{
    if (ts->timer != NULL) {
        ts->inst->api->timer_stop(ts->timer);
        ts->inst->api->timer_free(ts->timer);
        ts->timer = NULL;
    }
}

int
sk_admin_write_total(sk_admin_ts_t *ts, const sk_activity_t *a, sk_redis_cb cb, void *data)
{
    char key[64];
    sk_admin_key(key, sizeof(key), SK_KEY_TOTAL, a->activity_id);
    /* With shards > 1 bucket 0 has the activity's own key: removing what an unsharded past wrote there lets the
     * first step give every bucket its share (sk_shard_split). Before the start nothing else writes a bucket. */
    if (sk_activity_shards(a) > 1)
        return ts->inst->api->redis_cmd(ts->redis, cb, data, "DEL %s", key);
    return ts->inst->api->redis_cmd(ts->redis, cb, data, "SET %s %lld", key, (long long)a->total);
}
