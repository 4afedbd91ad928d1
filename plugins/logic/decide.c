/*
 * What a worker decides on its own before the atomic step (the activity from the etcd snapshot), and the EVALSHA call
 * that hands everything else to the stock script. Pure code.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "logic.h"

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
    size_t used = 0;
    if (c->argc > 0)
        used = (size_t)(c->argv[c->argc - 1] - c->buf) + c->argvlen[c->argc - 1] + 1;
    if (c->argc >= SK_LOGIC_CALL_ARGC || used >= sizeof(c->buf))
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->buf + used, sizeof(c->buf) - used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(c->buf) - used)
        return -1;
    c->argv[c->argc] = c->buf + used;
    c->argvlen[c->argc] = (size_t)n;
    c->argc++;
    return 0;
}

int
sk_logic_call_build(sk_logic_call_t *c, const char *sha, const sk_logic_entry_t *e, const sk_activity_t *act,
                    const sk_logic_pre_t *pre)
{
    c->argc = 0;
    int code = pre->code;
    if (code == 0 && act == NULL)
        return -1;
    int allow = code == 0 && pre->allow;
    const char *token = allow ? pre->token : "-";
    int64_t a = e->aid;
    int rc = 0;
    rc |= put(c, "EVALSHA");
    rc |= put(c, "%s", sha);
    rc |= put(c, "%d", SK_LOGIC_CALL_NKEYS);
    /* every key carries the activity's hash tag, so the step stays atomic on a Redis Cluster */
    rc |= put(c, "sk:{a%" PRId64 "}:req:%s", a, e->id);
    rc |= put(c, "sk:{a%" PRId64 "}:total", a);
    rc |= put(c, "sk:{a%" PRId64 "}:sold", a);
    rc |= put(c, "sk:{a%" PRId64 "}:users", a);
    rc |= put(c, "sk:{a%" PRId64 "}:tok:%s", a, token);
    rc |= put(c, "sk:{a%" PRId64 "}:u:%" PRId64, a, e->uid);
    rc |= put(c, "sk:{a%" PRId64 "}:wins", a);
    rc |= put(c, "%" PRId64, e->deadline);
    rc |= put(c, "%" PRId64, e->sid_ms);
    rc |= put(c, "%d", code);
    rc |= put(c, "%d", allow);
    rc |= put(c, "%s", token);
    rc |= put(c, "%" PRId64, allow ? pre->ttl : 0);
    rc |= put(c, "%" PRId64, e->uid);
    rc |= put(c, "%" PRId64, e->pid);
    rc |= put(c, "%" PRId64, a);
    rc |= put(c, "%" PRId64, act != NULL ? act->buy_limit : 0);
    rc |= put(c, "%" PRId64, act != NULL ? act->speed : 0);
    rc |= put(c, "%" PRId64, act != NULL ? act->total : 0);
    rc |= put(c, "sk:{a%" PRId64 "}:sec:", a);
    rc |= put(c, "%s", e->reply);
    rc |= put(c, "%s", e->id);
    return rc == 0 && c->argc == SK_LOGIC_CALL_ARGC ? 0 : -1;
}
