/*
 * Building immutable, refcounted snapshots (the release and retain side is declared in host.h).
 */
#ifndef SK_SNAPSHOT_H
#define SK_SNAPSHOT_H

#include "seckill/plugin.h"

/** Copies the arrays and the policy sources into one new snapshot, sorted as plugin.h promises (products by id,
 * activities by (product_id, start_time, activity_id), policies by name). The caller owns the one reference. Aborts on
 * out-of-memory. */
const sk_snapshot_t *sk_snapshot_new(int64_t revision, const sk_product_t *products, size_t nproducts,
                                     const sk_activity_t *activities, size_t nactivities, const sk_policy_src_t *policies,
                                     size_t npolicies);
/** The current reference count (tests and debugging); -1 for the static empty snapshot. */
int sk_snapshot_refcount(const sk_snapshot_t *s);

#endif
