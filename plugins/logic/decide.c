/*
 * What a worker decides on its own before the atomic step (the activity from the etcd snapshot), and the EVALSHA call
 * that hands everything else to the stock script. Pure code.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "logic.h"
#include "sk_keys.h"
#include "sk_shard.h"

int
sk_logic_precheck(const sk_snapshot_t *snap, const sk_logic_entry_t *e, const sk_activity_t **out)
{
    *out = NULL;
    for (size_t i = 0; i < snap->nactivities; ++i) {
        const sk_activity_t *a = &snap->activities[i];
        if (a->activity_id != e->aid)
            continue;
        if (a->product_id != e->pid)
            return SK_E_NOT_FOUND;
        /* the kill switch wins over everything the script would say, including for requests queued before it */
        if (a->status == 0)
            return SK_E_DISABLED;
        *out = a;
        return 0;
    }
    return SK_E_NOT_FOUND;
}

static int __attribute__((format(printf, 2, 3))) put(sk_logic_call_t *c, const char *fmt, ...)
{
    if (c->argc >= SK_LOGIC_CALL_ARGC || c->used >= sizeof(c->buf))
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->buf + c->used, sizeof(c->buf) - c->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(c->buf) - c->used)
        return -1;
    c->argv[c->argc] = c->buf + c->used;
    c->argvlen[c->argc] = (size_t)n;
    c->argc++;
    c->used += (size_t)n + 1;
    return 0;
}

int
sk_logic_call_hold(sk_logic_call_t *c)
{
    if ((size_t)c->argc >= SK_LOGIC_CALL_ARGC)
        return -1;
    return put(c, "1");
}

int
sk_logic_call_build(sk_logic_call_t *c, const char *sha, const sk_activity_t *act, const sk_logic_entry_t *const *e,
                    const sk_logic_pre_t *const *pre, size_t n)
{
    char tag[SK_SHARD_TAG_MAX];
    if (n == 0 || sk_shard_tag(tag, sizeof(tag), e[0]->aid, 0, 1) < 0)
        return -1;
    sk_logic_bucket_t bk = {.tag = tag, .index = 0, .count = 1};
    return sk_logic_call_build_bucket(c, sha, act, &bk, e, pre, n);
}

int
sk_logic_call_build_bucket(sk_logic_call_t *c, const char *sha, const sk_activity_t *act, const sk_logic_bucket_t *bk,
                           const sk_logic_entry_t *const *e, const sk_logic_pre_t *const *pre, size_t n)
{
    c->argc = 0;
    c->used = 0;
    if (n == 0 || n > SK_LOGIC_BATCH || bk->count < 1 || bk->index >= bk->count)
        return -1;
    int64_t a = e[0]->aid;
    for (size_t i = 0; i < n; ++i)
        if (e[i]->aid != a || (pre[i]->code == 0 && act == NULL))
            return -1;
    int rc = 0;
    rc |= put(c, "EVALSHA");
    rc |= put(c, "%s", sha);
    rc |= put(c, "%zu", SK_LOGIC_CALL_NKEYS + n);
    /* every key carries the bucket's hash tag, so the step stays atomic on a Redis Cluster */
    static const sk_key_id_t keys[] = {SK_KEY_TOTAL, SK_KEY_SOLD,   SK_KEY_USERS, SK_KEY_TOKENS,
                                       SK_KEY_WINS,  SK_KEY_EXPIRY, SK_KEY_DRY};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && rc == 0; ++i) {
        char key[128];
        if (sk_key_bucket(key, sizeof(key), keys[i], bk->tag) < 0)
            return -1;
        rc |= put(c, "%s", key);
    }
    for (size_t i = 0; i < n && rc == 0; ++i) {
        char key[128];
        if (sk_result_key_bucket(key, sizeof(key), bk->tag, e[i]->deadline) < 0)
            return -1;
        rc |= put(c, "%s", key);
    }
    rc |= put(c, "%" PRId64, a);
    rc |= put(c, "%" PRId64, act != NULL ? act->product_id : e[0]->pid);
    rc |= put(c, "%" PRId64, act != NULL ? act->buy_limit : 0);
    rc |= put(c, "%" PRId64, act != NULL ? act->speed : 0);
    rc |= put(c, "%" PRId64, act != NULL ? sk_shard_split(act->total, bk->index, bk->count) : 0);
    char sec[128];
    if (sk_key_bucket(sec, sizeof(sec), SK_KEY_SEC_PREFIX, bk->tag) < 0)
        return -1;
    rc |= put(c, "%s", sec);
    rc |= put(c, "%u", bk->index);
    rc |= put(c, "%u", bk->count);
    for (size_t i = 0; i < n && rc == 0; ++i) {
        const sk_logic_pre_t *p = pre[i];
        int allow = p->code == 0 && p->allow;
        rc |= put(c, "%" PRId64, e[i]->deadline);
        rc |= put(c, "%" PRId64, e[i]->sid_ms);
        rc |= put(c, "%d", p->code);
        rc |= put(c, "%d", allow);
        rc |= put(c, "%s", allow ? p->token : "-");
        rc |= put(c, "%" PRId64, allow ? p->ttl : 0);
        rc |= put(c, "%" PRId64, e[i]->uid);
        rc |= put(c, "%s", e[i]->reply);
        rc |= put(c, "%s", e[i]->id);
        rc |= put(c, "%" PRId64, sk_result_keep_until(e[i]->deadline));
    }
    return rc == 0 && (size_t)c->argc == 3 + SK_LOGIC_CALL_NKEYS + n + SK_LOGIC_CALL_NARGS + SK_LOGIC_CALL_ENTRY_ARGS * n ? 0 : -1;
}
