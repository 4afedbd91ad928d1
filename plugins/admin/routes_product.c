/*
 * /product/create, /product/update, /product/delete, /product/list. SQLite first (with the etcd key marked pending in the same
 * transaction), then one attempt to sync the key; the answer's "synced" says whether etcd has it yet.
 */
#include <string.h>
#include "admin.h"

/* Puts products/<id> to etcd after its SQLite change (create, update, delete); true when that sync is done. */
static int
sync_product(sk_admin_ts_t *ts, int64_t id)
{
    char key[64];
    snprintf(key, sizeof(key), "products/%lld", (long long)id);
    return sk_admin_sync_key(ts, key, 1);
}

static void
create(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    sk_product_t p;
    char err[256];
    if (sk_admin_product_from_params(f, &p, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    int rc = sk_admin_store_product_create(ts->store, &p, sk_admin_now());
    if (rc == SK_ADMIN_STORE_CONFLICT) {
        sk_admin_reply(inst, req, SK_E_CONFLICT, "product_name: already exists", NULL);
        return;
    }
    if (rc != SK_ADMIN_STORE_OK) {
        sk_admin_replyf(inst, req, SK_E_UNAVAILABLE, NULL, "store: %s", sk_admin_store_errmsg(ts->store));
        return;
    }
    int synced = sync_product(ts, p.product_id);
    cJSON *data = cJSON_CreateObject();
    cJSON_AddNumberToObject(data, "product_id", (double)p.product_id);
    cJSON_AddBoolToObject(data, "synced", synced);
    sk_admin_reply(inst, req, SK_OK, "ok", data);
}

static void delete (sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    char err[160];
    int64_t id, uses = 0;
    int present;
    if (sk_admin_param_int(f, "product_id", 1, INT64_MAX, &id, &present, err, sizeof(err)) != 0 || !present) {
        sk_admin_reply(inst, req, SK_E_INVALID, present ? err : "product_id: missing", NULL);
        return;
    }
    if (sk_admin_store_product_in_use(ts->store, id, &uses) != SK_ADMIN_STORE_OK) {
        sk_admin_replyf(inst, req, SK_E_UNAVAILABLE, NULL, "store: %s", sk_admin_store_errmsg(ts->store));
        return;
    }
    if (uses > 0) {
        sk_admin_replyf(inst, req, SK_E_CONFLICT, NULL, "product_id: still used by %lld activities", (long long)uses);
        return;
    }
    int rc = sk_admin_store_product_delete(ts->store, id);
    if (rc == SK_ADMIN_STORE_NONE) {
        sk_admin_reply(inst, req, SK_E_NOT_FOUND, "product_id: no such product", NULL);
        return;
    }
    if (rc != SK_ADMIN_STORE_OK) {
        sk_admin_replyf(inst, req, SK_E_UNAVAILABLE, NULL, "store: %s", sk_admin_store_errmsg(ts->store));
        return;
    }
    cJSON *data = cJSON_CreateObject();
    cJSON_AddBoolToObject(data, "synced", sync_product(ts, id));
    sk_admin_reply(inst, req, SK_OK, "ok", data);
}

typedef struct st_largest_t {
    int64_t activity_id, total;
} largest_t;

static int
on_user(void *arg, const sk_activity_t *a)
{
    largest_t *m = arg;
    if (a->total > m->total)
        m->activity_id = a->activity_id, m->total = a->total;
    return 0;
}

/* product_id plus any of product_name, product_total, status (the console's edit and enable/disable). An activity's
 * total may not exceed its product's (the create rule), so a product_total below one is a conflict. */
static void
update(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f)
{
    sk_admin_t *inst = ts->inst;
    char err[256];
    int64_t id, v;
    int present;
    sk_product_t p;
    if (sk_admin_param_int(f, "product_id", 1, INT64_MAX, &id, &present, err, sizeof(err)) != 0 || !present) {
        sk_admin_reply(inst, req, SK_E_INVALID, present ? err : "product_id: missing", NULL);
        return;
    }
    int rc = sk_admin_store_product_get(ts->store, id, &p);
    if (rc != SK_ADMIN_STORE_OK) {
        sk_admin_reply(inst, req, rc == SK_ADMIN_STORE_NONE ? SK_E_NOT_FOUND : SK_E_UNAVAILABLE,
                       rc == SK_ADMIN_STORE_NONE ? "product_id: no such product" : "store: read failed", NULL);
        return;
    }
    const sk_form_param_t *name = sk_form_get(f, "product_name");
    if (name != NULL) {
        if (!sk_admin_text_ok(name->value, name->len, SK_ADMIN_NAME_MAX)) {
            sk_admin_reply(inst, req, SK_E_INVALID, "product_name: must be 1-128 bytes of UTF-8 text without control characters",
                           NULL);
            return;
        }
        memcpy(p.name, name->value, name->len + 1);
    }
    if (sk_admin_param_int(f, "product_total", 1, SK_ADMIN_TOTAL_MAX, &v, &present, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    if (present)
        p.total = v;
    if (sk_admin_param_int(f, "status", 0, 1, &v, &present, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return;
    }
    if (present)
        p.status = (int)v;
    largest_t max = {0, 0};
    if (sk_admin_store_activities(ts->store, id, on_user, &max) != SK_ADMIN_STORE_OK) {
        sk_admin_replyf(inst, req, SK_E_UNAVAILABLE, NULL, "store: %s", sk_admin_store_errmsg(ts->store));
        return;
    }
    if (max.total > p.total) {
        sk_admin_replyf(inst, req, SK_E_CONFLICT, NULL, "product_total: below the total of activity %lld (%lld)",
                        (long long)max.activity_id, (long long)max.total);
        return;
    }
    rc = sk_admin_store_product_update(ts->store, &p, sk_admin_now());
    if (rc == SK_ADMIN_STORE_CONFLICT) {
        sk_admin_reply(inst, req, SK_E_CONFLICT, "product_name: already exists", NULL);
        return;
    }
    if (rc != SK_ADMIN_STORE_OK) {
        sk_admin_replyf(inst, req, SK_E_UNAVAILABLE, NULL, "store: %s", sk_admin_store_errmsg(ts->store));
        return;
    }
    cJSON *data = cJSON_CreateObject();
    cJSON_AddBoolToObject(data, "synced", sync_product(ts, id));
    sk_admin_reply(inst, req, SK_OK, "ok", data);
}

typedef struct st_list_ctx_t {
    sk_admin_ts_t *ts;
    cJSON *arr;
} list_ctx_t;

static int
on_product(void *arg, const sk_product_t *p)
{
    list_ctx_t *c = arg;
    char key[64];
    cJSON *o = sk_admin_product_obj(p);
    if (o == NULL)
        return 1;
    snprintf(key, sizeof(key), "products/%lld", (long long)p->product_id);
    cJSON_AddBoolToObject(o, "synced", sk_admin_store_sync_pending(c->ts->store, key) == 0);
    cJSON_AddItemToArray(c->arr, o);
    return 0;
}

static void
list(sk_admin_ts_t *ts, h2o_req_t *req)
{
    list_ctx_t c = {ts, cJSON_CreateArray()};
    if (sk_admin_store_products(ts->store, on_product, &c) != SK_ADMIN_STORE_OK) {
        cJSON_Delete(c.arr);
        sk_admin_replyf(ts->inst, req, SK_E_UNAVAILABLE, NULL, "store: %s", sk_admin_store_errmsg(ts->store));
        return;
    }
    sk_admin_reply(ts->inst, req, SK_OK, "ok", c.arr);
}

int
sk_admin_route_product(void *instp, void *tstate, h2o_req_t *req)
{
    sk_admin_t *inst = instp;
    sk_admin_ts_t *ts = tstate;
    h2o_iovec_t path = req->path_normalized;
    int is_create = h2o_memis(path.base, path.len, H2O_STRLIT("/product/create")),
        is_delete = h2o_memis(path.base, path.len, H2O_STRLIT("/product/delete")),
        is_list = h2o_memis(path.base, path.len, H2O_STRLIT("/product/list")),
        is_update = h2o_memis(path.base, path.len, H2O_STRLIT("/product/update"));
    if (!is_create && !is_delete && !is_list && !is_update)
        return -1;
    if (sk_admin_check_access(inst, req) != 0)
        return 0;
    if (ts == NULL || ts->store == NULL) {
        sk_admin_reply(inst, req, SK_E_UNAVAILABLE, "admin store not open", NULL);
        return 0;
    }
    if (is_list) {
        list(ts, req);
        return 0;
    }
    if (!sk_admin_method(req, "POST")) {
        sk_admin_reply(inst, req, SK_E_INVALID, "method: use POST", NULL);
        return 0;
    }
    sk_form_t f;
    if (sk_admin_params(inst, req, &f) != 0)
        return 0;
    if (is_create)
        create(ts, req, &f);
    else if (is_update)
        update(ts, req, &f);
    else
        delete (ts, req, &f);
    return 0;
}
