/*
 * Immutable refcounted snapshots. The public sk_snapshot_t is the first member of a private box that owns the arrays,
 * so a reader on any thread holds one pointer and never takes a lock.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"
#include "snapshot.h"

typedef struct st_sk_snapshot_box_t {
    sk_snapshot_t pub; /* first: the public pointer is the box's address */
    atomic_int refs;
    int is_static;
    sk_product_t *products;
    sk_activity_t *activities;
    sk_policy_src_t *policies;
    char *sources; /* the policy sources, NUL-terminated one after another */
} sk_snapshot_box_t;

static sk_snapshot_box_t empty_box = {.is_static = 1};

static void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n != 0 ? n : 1, size);
    if (p == NULL)
        abort();
    return p;
}

const sk_snapshot_t *
sk_snapshot_empty(void)
{
    return &empty_box.pub;
}

void
sk_snapshot_retain(const sk_snapshot_t *s)
{
    sk_snapshot_box_t *b = (sk_snapshot_box_t *)s;
    if (b == NULL || b->is_static)
        return;
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void
sk_snapshot_release(const sk_snapshot_t *s)
{
    sk_snapshot_box_t *b = (sk_snapshot_box_t *)s;
    if (b == NULL || b->is_static)
        return;
    /* acq_rel: the last releaser must see every write made through the other references before it frees. */
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(b->products);
    free(b->activities);
    free(b->policies);
    free(b->sources);
    free(b);
}

int
sk_snapshot_refcount(const sk_snapshot_t *s)
{
    const sk_snapshot_box_t *b = (const sk_snapshot_box_t *)s;
    if (b->is_static)
        return -1;
    return atomic_load(&((sk_snapshot_box_t *)b)->refs);
}

static int
cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int
cmp_product(const void *x, const void *y)
{
    const sk_product_t *a = x, *b = y;
    return cmp_i64(a->product_id, b->product_id);
}

static int
cmp_activity(const void *x, const void *y)
{
    const sk_activity_t *a = x, *b = y;
    int c = cmp_i64(a->product_id, b->product_id);
    if (c == 0)
        c = cmp_i64(a->start_time, b->start_time);
    if (c == 0)
        c = cmp_i64(a->activity_id, b->activity_id);
    return c;
}

static int
cmp_policy(const void *x, const void *y)
{
    const sk_policy_src_t *a = x, *b = y;
    return strcmp(a->name, b->name);
}

const sk_snapshot_t *
sk_snapshot_new(int64_t revision, const sk_product_t *products, size_t nproducts, const sk_activity_t *activities,
                size_t nactivities, const sk_policy_src_t *policies, size_t npolicies)
{
    sk_snapshot_box_t *b = xcalloc(1, sizeof(*b));
    atomic_init(&b->refs, 1);
    b->products = xcalloc(nproducts, sizeof(*b->products));
    if (nproducts != 0)
        memcpy(b->products, products, nproducts * sizeof(*products));
    qsort(b->products, nproducts, sizeof(*b->products), cmp_product);
    b->activities = xcalloc(nactivities, sizeof(*b->activities));
    if (nactivities != 0)
        memcpy(b->activities, activities, nactivities * sizeof(*activities));
    qsort(b->activities, nactivities, sizeof(*b->activities), cmp_activity);

    size_t total = 0;
    for (size_t i = 0; i < npolicies; i++)
        total += policies[i].len + 1;
    b->sources = xcalloc(total, 1);
    b->policies = xcalloc(npolicies, sizeof(*b->policies));
    char *p = b->sources;
    for (size_t i = 0; i < npolicies; i++) {
        b->policies[i] = policies[i];
        if (policies[i].len != 0)
            memcpy(p, policies[i].src, policies[i].len);
        p[policies[i].len] = '\0';
        b->policies[i].src = p;
        p += policies[i].len + 1;
    }
    qsort(b->policies, npolicies, sizeof(*b->policies), cmp_policy);

    b->pub.revision = revision;
    b->pub.nproducts = nproducts;
    b->pub.products = b->products;
    b->pub.nactivities = nactivities;
    b->pub.activities = b->activities;
    b->pub.npolicies = npolicies;
    b->pub.policies = b->policies;
    return &b->pub;
}
