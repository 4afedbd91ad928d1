/*
 * Choice of the activity in effect and its state (see state.h).
 */
#include "state.h"

#include "sk_shard.h"

size_t
sk_access_product_activities(const sk_snapshot_t *snap, int64_t product_id, const sk_activity_t **first)
{
    /* activities are sorted by (product_id, start_time, activity_id): find the first of the product */
    size_t lo = 0, hi = snap->nactivities;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (snap->activities[mid].product_id < product_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < snap->nactivities && snap->activities[end].product_id == product_id)
        end++;
    *first = end > lo ? &snap->activities[lo] : NULL;
    return end - lo;
}

const sk_product_t *
sk_access_find_product(const sk_snapshot_t *snap, int64_t product_id)
{
    size_t lo = 0, hi = snap->nproducts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (snap->products[mid].product_id == product_id)
            return &snap->products[mid];
        if (snap->products[mid].product_id < product_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const sk_activity_t *
choose(const sk_activity_t *acts, size_t n, int64_t now, int want_status)
{
    const sk_activity_t *running = NULL, *next = NULL, *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const sk_activity_t *a = &acts[i];
        if ((a->status != 0) != want_status)
            continue;
        if (a->start_time <= now && now < a->end_time) {
            /* overlaps are refused by the admin; should one slip through, the latest start wins */
            if (running == NULL || a->start_time >= running->start_time)
                running = a;
        } else if (a->start_time > now) {
            if (next == NULL || a->start_time < next->start_time)
                next = a;
        } else if (last == NULL || a->end_time > last->end_time) {
            last = a;
        }
    }
    return running != NULL ? running : next != NULL ? next : last;
}

const sk_activity_t *
sk_access_in_effect(const sk_activity_t *acts, size_t n, int64_t now)
{
    const sk_activity_t *a = choose(acts, n, now, 1);
    return a != NULL ? a : choose(acts, n, now, 0);
}

sk_access_state_t
sk_access_state(const sk_activity_t *a, int product_enabled, int sold_out, int64_t now)
{
    if (a->status == 0 || !product_enabled)
        return SK_ST_DISABLED;
    if (now >= a->end_time)
        return SK_ST_ENDED;
    if (now < a->start_time)
        return SK_ST_NOT_STARTED;
    if (sold_out)
        return SK_ST_SOLD_OUT;
    return SK_ST_ACTIVE;
}

const char *
sk_access_state_name(sk_access_state_t st)
{
    switch (st) {
    case SK_ST_ACTIVE:
        return "active";
    case SK_ST_NOT_STARTED:
        return "not_started";
    case SK_ST_ENDED:
        return "ended";
    case SK_ST_SOLD_OUT:
        return "sold_out";
    case SK_ST_DISABLED:
        return "disabled";
    }
    return "unknown";
}

int
sk_access_state_code(sk_access_state_t st)
{
    switch (st) {
    case SK_ST_ACTIVE:
        return SK_OK;
    case SK_ST_NOT_STARTED:
        return SK_E_NOT_STARTED;
    case SK_ST_ENDED:
        return SK_E_ENDED;
    case SK_ST_SOLD_OUT:
        return SK_E_SOLD_OUT;
    case SK_ST_DISABLED:
        return SK_E_DISABLED;
    }
    return SK_E_UNAVAILABLE;
}

unsigned
sk_access_user_bucket(const sk_activity_t *a, int64_t uid, char *tag, size_t cap)
{
    unsigned k = (unsigned)sk_activity_shards(a), b = sk_shard_of_user(uid, k);
    if (sk_shard_tag(tag, cap, a->activity_id, b, k) < 0) {
        /* cannot happen with cap >= SK_SHARD_TAG_MAX; bucket 0's tag always fits */
        b = 0;
        sk_shard_tag(tag, cap, a->activity_id, 0, 1);
    }
    return b;
}
