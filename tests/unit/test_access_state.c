/*
 * The activity in effect and the state precedence disabled > ended > not_started > sold_out > active.
 */
#include "sk_test.h"
#include "access/state.h"

static sk_activity_t
act(int64_t id, int64_t pid, int64_t start, int64_t end, int status)
{
    sk_activity_t a;
    memset(&a, 0, sizeof(a));
    a.activity_id = id;
    a.product_id = pid;
    a.start_time = start;
    a.end_time = end;
    a.status = status;
    a.total = 10;
    return a;
}

static void
test_in_effect(void)
{
    /* sorted by (product, start, id) as in a snapshot */
    sk_activity_t acts[] = {act(1, 5, 100, 200, 1), act(2, 5, 300, 400, 1), act(3, 5, 500, 600, 1), act(9, 5, 700, 800, 0)};
    ASSERT_EQ(sk_access_in_effect(acts, 4, 150)->activity_id, 1); /* running */
    ASSERT_EQ(sk_access_in_effect(acts, 4, 250)->activity_id, 2); /* next to start */
    ASSERT_EQ(sk_access_in_effect(acts, 4, 50)->activity_id, 1);
    ASSERT_EQ(sk_access_in_effect(acts, 4, 450)->activity_id, 3);
    ASSERT_EQ(sk_access_in_effect(acts, 4, 200)->activity_id, 2); /* end is exclusive */
    ASSERT_EQ(sk_access_in_effect(acts, 4, 300)->activity_id, 2); /* start is inclusive */
    /* after all: the last enabled one to end, though a disabled one ends later */
    ASSERT_EQ(sk_access_in_effect(acts, 4, 900)->activity_id, 3);
    /* disabled ones only when no enabled one exists */
    sk_activity_t off[] = {act(4, 6, 100, 200, 0), act(5, 6, 300, 400, 0)};
    ASSERT_EQ(sk_access_in_effect(off, 2, 150)->activity_id, 4);
    ASSERT_EQ(sk_access_in_effect(off, 2, 250)->activity_id, 5);
    ASSERT_EQ(sk_access_in_effect(off, 2, 999)->activity_id, 5);
    ASSERT(sk_access_in_effect(off, 0, 1) == NULL);
    /* an enabled, ended one is preferred over a disabled running one */
    sk_activity_t mix[] = {act(6, 7, 100, 200, 1), act(7, 7, 250, 400, 0)};
    ASSERT_EQ(sk_access_in_effect(mix, 2, 300)->activity_id, 6);
}

static void
test_lookup(void)
{
    sk_activity_t acts[] = {act(1, 2, 0, 10, 1), act(2, 5, 0, 10, 1), act(3, 5, 20, 30, 1), act(4, 9, 0, 10, 1)};
    sk_product_t prods[3];
    memset(prods, 0, sizeof(prods));
    prods[0].product_id = 2;
    prods[1].product_id = 5;
    prods[2].product_id = 9;
    sk_snapshot_t snap;
    memset(&snap, 0, sizeof(snap));
    snap.activities = acts;
    snap.nactivities = 4;
    snap.products = prods;
    snap.nproducts = 3;
    const sk_activity_t *first;
    ASSERT_EQ(sk_access_product_activities(&snap, 5, &first), 2);
    ASSERT_EQ(first->activity_id, 2);
    ASSERT_EQ(sk_access_product_activities(&snap, 9, &first), 1);
    ASSERT_EQ(sk_access_product_activities(&snap, 3, &first), 0);
    ASSERT(first == NULL);
    ASSERT_EQ(sk_access_product_activities(&snap, 100, &first), 0);
    ASSERT_EQ(sk_access_find_product(&snap, 9)->product_id, 9);
    ASSERT(sk_access_find_product(&snap, 4) == NULL);
}

static void
test_precedence(void)
{
    sk_activity_t a = act(1, 1, 100, 200, 1);
    ASSERT_EQ(sk_access_state(&a, 1, 0, 150), SK_ST_ACTIVE);
    ASSERT_EQ(sk_access_state(&a, 1, 1, 150), SK_ST_SOLD_OUT);
    ASSERT_EQ(sk_access_state(&a, 1, 1, 50), SK_ST_NOT_STARTED); /* not_started > sold_out */
    ASSERT_EQ(sk_access_state(&a, 1, 1, 200), SK_ST_ENDED);      /* ended > sold_out */
    ASSERT_EQ(sk_access_state(&a, 0, 1, 200), SK_ST_DISABLED);   /* product off */
    a.status = 0;
    ASSERT_EQ(sk_access_state(&a, 1, 1, 250), SK_ST_DISABLED); /* disabled > ended */
    ASSERT_EQ(sk_access_state(&a, 1, 0, 50), SK_ST_DISABLED);
    /* a window that ends before it starts (never from the admin) reads ended, the stronger state */
    sk_activity_t odd = act(2, 1, 300, 100, 1);
    ASSERT_EQ(sk_access_state(&odd, 1, 0, 200), SK_ST_ENDED);
    ASSERT_STREQ(sk_access_state_name(SK_ST_NOT_STARTED), "not_started");
    ASSERT_STREQ(sk_access_state_name(SK_ST_SOLD_OUT), "sold_out");
    ASSERT_EQ(sk_access_state_code(SK_ST_ACTIVE), 0);
    ASSERT_EQ(sk_access_state_code(SK_ST_NOT_STARTED), 1005);
    ASSERT_EQ(sk_access_state_code(SK_ST_ENDED), 1006);
    ASSERT_EQ(sk_access_state_code(SK_ST_SOLD_OUT), 1007);
    ASSERT_EQ(sk_access_state_code(SK_ST_DISABLED), 1009);
}

int
main(void)
{
    RUN(test_in_effect);
    RUN(test_lookup);
    RUN(test_precedence);
    DONE();
}
