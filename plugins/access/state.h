/*
 * The activity in effect for a product and its state (SPEC §3). Pure code over the etcd snapshot.
 */
#ifndef SK_ACCESS_STATE_H
#define SK_ACCESS_STATE_H

#include <stddef.h>
#include <stdint.h>
#include "seckill/plugin.h"

typedef enum en_sk_access_state_t {
    SK_ST_ACTIVE = 0,
    SK_ST_NOT_STARTED,
    SK_ST_ENDED,
    SK_ST_SOLD_OUT,
    SK_ST_DISABLED,
} sk_access_state_t;

/** The activities of `product_id` in the snapshot: *first and the count (0 when none). */
size_t sk_access_product_activities(const sk_snapshot_t *snap, int64_t product_id, const sk_activity_t **first);
/** The product record, or NULL. */
const sk_product_t *sk_access_find_product(const sk_snapshot_t *snap, int64_t product_id);
/** The activity in effect among `n` activities of one product at unix second `now`: the enabled one whose window
 * contains now, else the next enabled one to start, else the last enabled one to end; disabled ones are considered only
 * when none is enabled. NULL when n is 0. */
const sk_activity_t *sk_access_in_effect(const sk_activity_t *acts, size_t n, int64_t now);
/** The state by precedence disabled > ended > not_started > sold_out > active. `enabled` is 0 when the activity or its
 * product is switched off. */
sk_access_state_t sk_access_state(const sk_activity_t *a, int product_enabled, int sold_out, int64_t now);
/** The stock bucket of user uid in activity a (common/sk_shard.h) and its hash tag in tag (cap >= SK_SHARD_TAG_MAX):
 * "a<aid>" and 0 for an unsharded activity. */
unsigned sk_access_user_bucket(const sk_activity_t *a, int64_t uid, char *tag, size_t cap);
/** "active", "not_started", ... as in SPEC §3. */
const char *sk_access_state_name(sk_access_state_t st);
/** The SPEC §2 code of a state: 0 for active, else 1005/1006/1007/1009. */
int sk_access_state_code(sk_access_state_t st);

#endif
