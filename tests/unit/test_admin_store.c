/*
 * The admin's SQLite store on a real database file: migrations, constraints, the sync state, the policy history and
 * the order life cycle (pending -> done, repair), and that a reopen keeps everything.
 */
#include <stdlib.h>
#include <unistd.h>
#include "sk_test.h"
#include "admin/admin.h"

static char dir[] = "/tmp/sk-admin-store-XXXXXX";
static char path[256];

static int
count_products(void *arg, const sk_product_t *p)
{
    (void)p;
    ++*(int *)arg;
    return 0;
}

static int
count_activities(void *arg, const sk_activity_t *a)
{
    (void)a;
    ++*(int *)arg;
    return 0;
}

static int
first_rev(void *arg, const sk_admin_policy_rev_t *r)
{
    sk_admin_policy_rev_t *out = arg;
    if (out->revision == 0)
        *out = *r;
    return 0;
}

static sk_admin_store_t *
open_store(void)
{
    char err[256];
    sk_admin_store_t *s = sk_admin_store_open(path, err, sizeof(err));
    if (s == NULL)
        fprintf(stderr, "open: %s\n", err);
    ASSERT(s != NULL);
    return s;
}

static void
test_products_activities(void)
{
    sk_admin_store_t *s = open_store();
    ASSERT_EQ(sk_admin_store_user_version(s), 2);
    sk_product_t p = {.total = 100, .status = 1}, got;
    snprintf(p.name, sizeof(p.name), "pear");
    ASSERT_EQ(sk_admin_store_product_create(s, &p, 1), SK_ADMIN_STORE_OK);
    ASSERT(p.product_id > 0);
    sk_product_t dup = p;
    ASSERT_EQ(sk_admin_store_product_create(s, &dup, 1), SK_ADMIN_STORE_CONFLICT);
    ASSERT_EQ(sk_admin_store_product_get(s, p.product_id, &got), SK_ADMIN_STORE_OK);
    ASSERT_STREQ(got.name, "pear");
    ASSERT_EQ(sk_admin_store_product_get(s, 9999, &got), SK_ADMIN_STORE_NONE);
    ASSERT_EQ(sk_admin_store_sync_pending(s, "products/1"), 1);
    ASSERT_EQ(sk_admin_store_sync_clear(s, "products/1"), SK_ADMIN_STORE_OK);
    ASSERT_EQ(sk_admin_store_sync_pending(s, "products/1"), 0);

    sk_activity_t a = {
        .product_id = p.product_id, .start_time = 10, .end_time = 20, .total = 5, .status = 1, .buy_limit = 1, .buy_rate = 0.25};
    snprintf(a.name, sizeof(a.name), "sale");
    ASSERT_EQ(sk_admin_store_activity_create(s, &a, 1), SK_ADMIN_STORE_OK);
    int64_t uses = 0;
    ASSERT_EQ(sk_admin_store_product_in_use(s, p.product_id, &uses), SK_ADMIN_STORE_OK);
    ASSERT_EQ(uses, 1);
    a.total = 4;
    ASSERT_EQ(sk_admin_store_activity_update(s, &a, 2), SK_ADMIN_STORE_OK);
    ASSERT_EQ(sk_admin_store_activity_delete(s, a.activity_id, 3), SK_ADMIN_STORE_OK);
    ASSERT_EQ(sk_admin_store_activity_delete(s, a.activity_id, 3), SK_ADMIN_STORE_NONE);
    ASSERT_EQ(sk_admin_store_activity_update(s, &a, 4), SK_ADMIN_STORE_NONE);
    /* a tombstone: not live, still found for its tokens */
    int deleted = 0, n = 0;
    sk_activity_t back;
    ASSERT_EQ(sk_admin_store_activity_get(s, a.activity_id, &back, &deleted), SK_ADMIN_STORE_OK);
    ASSERT_EQ(deleted, 1);
    ASSERT_EQ(back.total, 4);
    ASSERT(back.buy_rate == 0.25);
    ASSERT_EQ(sk_admin_store_activities(s, 0, count_activities, &n), SK_ADMIN_STORE_OK);
    ASSERT_EQ(n, 0);
    int64_t ids[4];
    ASSERT_EQ(sk_admin_store_activity_ids(s, p.product_id, ids, 4), 1);
    ASSERT_EQ(ids[0], a.activity_id);
    ASSERT_EQ(sk_admin_store_product_in_use(s, p.product_id, &uses), SK_ADMIN_STORE_OK);
    ASSERT_EQ(uses, 0);
    char keys[8][64];
    ASSERT_EQ(sk_admin_store_sync_list(s, keys, 8), 1);
    ASSERT_STREQ(keys[0], "activities/1");
    sk_admin_store_close(s);
}

static void
test_policies(void)
{
    sk_admin_store_t *s = open_store();
    ASSERT_EQ(sk_admin_store_policy_add(s, "limits.lua", 5, "return 1", 8, 0, 1), SK_ADMIN_STORE_OK);
    ASSERT_EQ(sk_admin_store_policy_add(s, "limits.lua", 5, "return 1", 8, 0, 2), SK_ADMIN_STORE_OK); /* ignored */
    ASSERT_EQ(sk_admin_store_policy_add(s, "limits.lua", 9, "", 0, 1, 3), SK_ADMIN_STORE_OK);
    sk_admin_policy_rev_t r = {.revision = 0};
    ASSERT_EQ(sk_admin_store_policy_list(s, "limits.lua", 10, first_rev, &r), SK_ADMIN_STORE_OK);
    ASSERT_EQ(r.revision, 9);
    ASSERT_EQ(r.deleted, 1);
    char *src = NULL;
    size_t len = 0;
    ASSERT_EQ(sk_admin_store_policy_get(s, "limits.lua", 5, &src, &len, &r), SK_ADMIN_STORE_OK);
    ASSERT_EQ(len, 8);
    ASSERT_STREQ(src, "return 1");
    free(src);
    ASSERT_EQ(sk_admin_store_policy_get(s, "limits.lua", 6, &src, &len, &r), SK_ADMIN_STORE_NONE);
    sk_admin_store_close(s);
}

static void
test_orders(void)
{
    sk_admin_store_t *s = open_store();
    int64_t id = 0, id2 = 0;
    sk_admin_order_t o;
    ASSERT_EQ(sk_admin_store_order_pending(s, "tok-aaaaaaaaaaaaaaaa", 7, 1, 100, &id), SK_ADMIN_STORE_OK);
    ASSERT_EQ(sk_admin_store_order_pending(s, "tok-aaaaaaaaaaaaaaaa", 8, 1, 100, &id2), SK_ADMIN_STORE_CONFLICT);
    ASSERT_EQ(sk_admin_store_orders_stale(s, 100, &o, 1), 1);
    ASSERT_EQ(o.order_id, id);
    ASSERT_EQ(sk_admin_store_orders_stale(s, 99, &o, 1), 0);
    sk_admin_order_t done = {.user_id = 7, .product_id = 1, .activity_id = 3, .issued_at = 5, .expires_at = 6, .created_at = 101};
    ASSERT_EQ(sk_admin_store_order_done(s, id, &done), SK_ADMIN_STORE_OK);
    ASSERT_EQ(sk_admin_store_order_by_token(s, "tok-aaaaaaaaaaaaaaaa", &o), SK_ADMIN_STORE_OK);
    ASSERT_EQ(o.state, 1);
    ASSERT_EQ(o.activity_id, 3);
    ASSERT_EQ(sk_admin_store_order_drop_pending(s, "tok-aaaaaaaaaaaaaaaa"), SK_ADMIN_STORE_OK); /* done rows stay */
    ASSERT_EQ(sk_admin_store_order_by_token(s, "tok-aaaaaaaaaaaaaaaa", &o), SK_ADMIN_STORE_OK);
    /* repair: a pending row is replaced by the order Redis holds */
    ASSERT_EQ(sk_admin_store_order_pending(s, "tok-bbbbbbbbbbbbbbbb", 9, 1, 100, &id2), SK_ADMIN_STORE_OK);
    sk_admin_order_t rep = {.order_id = 500, .user_id = 9, .product_id = 1, .activity_id = 3, .created_at = 102};
    snprintf(rep.token, sizeof(rep.token), "tok-bbbbbbbbbbbbbbbb");
    ASSERT_EQ(sk_admin_store_order_repair(s, &rep), SK_ADMIN_STORE_OK);
    ASSERT_EQ(sk_admin_store_order_by_token(s, "tok-bbbbbbbbbbbbbbbb", &o), SK_ADMIN_STORE_OK);
    ASSERT_EQ(o.order_id, 500);
    ASSERT_EQ(o.state, 1);
    sk_admin_store_close(s);
}

static void
test_reopen_keeps_everything(void)
{
    sk_admin_store_t *s = open_store();
    int n = 0;
    ASSERT_EQ(sk_admin_store_products(s, count_products, &n), SK_ADMIN_STORE_OK);
    ASSERT_EQ(n, 1);
    sk_admin_order_t o;
    ASSERT_EQ(sk_admin_store_order_by_token(s, "tok-bbbbbbbbbbbbbbbb", &o), SK_ADMIN_STORE_OK);
    ASSERT_EQ(sk_admin_store_sync_count(s), 1);
    sk_admin_store_close(s);
    char err[256];
    ASSERT(sk_admin_store_open("/proc/nonexistent/dir/x.db", err, sizeof(err)) == NULL);
    ASSERT(strstr(err, "admin.db") != NULL);
}

int
main(void)
{
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/sub/admin.db", dir); /* the parent directory is created */
    RUN(test_products_activities);
    RUN(test_policies);
    RUN(test_orders);
    RUN(test_reopen_keeps_everything);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    DONE();
}
