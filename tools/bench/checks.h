/*
 * The invariants seckill-bench verifies after a run, through the admin API and Redis (keys of docs/DESIGN.md):
 * every request answered, no 1008 in a fault-free run, codes with their SPEC status, never oversell, never undersell
 * when demand covers the stock, no user over buy_limit, and every won token stored in Redis for its user.
 * Included by tools/seckill-bench.c only.
 */
#ifndef SK_BENCH_CHECKS_H
#define SK_BENCH_CHECKS_H

#include <stdarg.h>
#include <hiredis/hiredis.h>
#include "admin.h"
#include "sk_cluster.h"
#include "bench.h"
#include "sk_keys.h"
#include "sk_shard.h"

#define BENCH_MAX_CHECKS 160
#define BENCH_REDIS_BATCH 1000

typedef struct st_bench_check_t {
    int ok; /* 1 pass, 0 fail, -1 skipped */
    char name[64];
    char detail[240];
} bench_check_t;

typedef struct st_bench_checks_t {
    bench_check_t items[BENCH_MAX_CHECKS];
    int n, failed;
} bench_checks_t;

__attribute__((format(printf, 4, 5))) static void
bench_check(bench_checks_t *cs, int ok, const char *name, const char *fmt, ...)
{
    if (ok == 0)
        cs->failed++;
    if (cs->n == BENCH_MAX_CHECKS)
        return;
    bench_check_t *c = &cs->items[cs->n++];
    c->ok = ok;
    snprintf(c->name, sizeof(c->name), "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
}

static int
bench_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct st_bench_winners_t {
    char **tokens; /* sorted */
    size_t n;
    uint64_t over_limit; /* users listed more than buy_limit times */
} bench_winners_t;

static int
bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* GET /activity/winners: the winners array is data itself, or the first array inside data. */
static int
bench_read_winners(bench_t *b, const bench_product_t *p, bench_winners_t *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    char path[128];
    snprintf(path, sizeof(path), "/activity/winners?activity_id=%" PRId64 "&limit=10000", p->activity_id);
    cJSON *j = bench_admin_call(b, "GET", path, NULL, NULL, err, errlen);
    if (j == NULL)
        return -1;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data"), *arr = data, *e;
    if (bench_env_code(j) != 0 || data == NULL) {
        snprintf(err, errlen, "GET %s: code %d: %s", path, bench_env_code(j), bench_env_message(j));
        cJSON_Delete(j);
        return -1;
    }
    if (!cJSON_IsArray(arr)) {
        arr = NULL;
        cJSON_ArrayForEach(e, data)
        {
            if (cJSON_IsArray(e)) {
                arr = e;
                break;
            }
        }
    }
    size_t n = arr ? (size_t)cJSON_GetArraySize(arr) : 0;
    w->tokens = bench_xcalloc(n, sizeof(char *));
    int64_t *users = bench_xcalloc(n, sizeof(int64_t));
    size_t nu = 0;
    cJSON_ArrayForEach(e, arr)
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "token");
        if (cJSON_IsString(t))
            w->tokens[w->n++] = strdup(t->valuestring);
        if (bench_json_i64(e, "user_id", &users[nu]) == 0 || bench_json_i64(e, "user", &users[nu]) == 0)
            nu++;
    }
    qsort(w->tokens, w->n, sizeof(char *), bench_cmp_str);
    qsort(users, nu, sizeof(int64_t), bench_cmp_i64);
    for (size_t i = 0, run = 1; i < nu; i++) {
        run = i > 0 && users[i] == users[i - 1] ? run + 1 : 1;
        if (run == (size_t)p->buy_limit + 1)
            w->over_limit++;
    }
    free(users);
    cJSON_Delete(j);
    return 0;
}

static void
bench_winners_free(bench_winners_t *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->tokens[i]);
    free(w->tokens);
    memset(w, 0, sizeof(*w));
}

static redisContext *
bench_redis_connect_to(bench_t *b, const char *ip, int port, char *err, size_t errlen)
{
    struct timeval tv = {.tv_sec = 3};
    redisContext *c = redisConnectWithTimeout(ip, port, tv);
    if (c == NULL || c->err) {
        snprintf(err, errlen, "redis %s:%d: %s", ip, port, c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (b->o.redis_password != NULL && *b->o.redis_password) {
        redisReply *r = redisCommand(c, "AUTH %s", b->o.redis_password);
        int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
        freeReplyObject(r);
        if (!ok) {
            snprintf(err, errlen, "redis AUTH failed");
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

static redisContext *
bench_redis_connect(bench_t *b, char *err, size_t errlen)
{
    return bench_redis_connect_to(b, b->o.redis_ip, b->o.redis_port, err, errlen);
}

/* With --redis-cluster: a connection to the master that serves `key`'s hash slot, found with CLUSTER SLOTS on the
 * seed. Every key the checks of one bucket of an activity read carries that bucket's tag, so one connection serves
 * them all. */
static redisContext *
bench_redis_connect_key(bench_t *b, const char *key, char *err, size_t errlen)
{
    redisContext *seed = bench_redis_connect(b, err, errlen);
    if (seed == NULL || !b->o.redis_cluster)
        return seed;
    unsigned slot = sk_cluster_keyslot(key, strlen(key));
    redisReply *r = redisCommand(seed, "CLUSTER SLOTS");
    char ip[64] = "";
    int port = 0;
    for (size_t i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *range = r->element[i];
        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 || range->element[2]->type != REDIS_REPLY_ARRAY ||
            range->element[2]->elements < 2 || range->element[2]->element[0]->type != REDIS_REPLY_STRING)
            continue;
        if ((long long)slot >= range->element[0]->integer && (long long)slot <= range->element[1]->integer) {
            snprintf(ip, sizeof(ip), "%s", range->element[2]->element[0]->str);
            port = (int)range->element[2]->element[1]->integer;
        }
    }
    freeReplyObject(r);
    redisFree(seed);
    if (port == 0) {
        snprintf(err, errlen, "redis cluster: no master serves slot %u of %s", slot, key);
        return NULL;
    }
    return bench_redis_connect_to(b, ip, port, err, errlen);
}

/* What the Redis side of one activity adds up to over its buckets. */
typedef struct st_bench_redis_sum_t {
    long long sold;
    unsigned long long users, over;
    uint64_t checked, bad;
    char first_bad[200];
} bench_redis_sum_t;

/* Bucket `bucket` of activity pi (its keys under `tag`, all on rc): adds its sold counter and per-user counts to s, and
 * checks the tokens the bench won from the users of this bucket (sk_shard_of_user). -1 on a Redis error (a failed
 * check is recorded). */
static int
bench_check_redis_bucket(bench_t *b, redisContext *rc, int pi, unsigned bucket, const char *tag, bench_redis_sum_t *s,
                         bench_checks_t *cs)
{
    bench_product_t *p = &b->prods[pi];
    char name[64];
    snprintf(name, sizeof(name), "redis a%" PRId64, p->activity_id);
    char sold_key[96], users_key[96], tokens_key[96];
    sk_key_bucket(sold_key, sizeof(sold_key), SK_KEY_SOLD, tag);
    sk_key_bucket(users_key, sizeof(users_key), SK_KEY_USERS, tag);
    sk_key_bucket(tokens_key, sizeof(tokens_key), SK_KEY_TOKENS, tag);
    redisReply *r = redisCommand(rc, "GET %s", sold_key);
    if (r == NULL) {
        bench_check(cs, 0, name, "GET %s: %s", sold_key, rc->errstr);
        return -1;
    }
    s->sold += r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);

    /* per-user buy limit over every user of the bucket (HSCAN: bounded replies) */
    unsigned long long cursor = 0;
    do {
        r = redisCommand(rc, "HSCAN %s %llu COUNT 1000", users_key, cursor);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            bench_check(cs, 0, name, "HSCAN %s: %s", users_key, r == NULL ? rc->errstr : "unexpected reply");
            freeReplyObject(r);
            return -1;
        }
        cursor = strtoull(r->element[0]->str, NULL, 10);
        redisReply *kv = r->element[1];
        for (size_t i = 1; i < kv->elements; i += 2) {
            s->users++;
            s->over += strtoll(kv->element[i]->str, NULL, 10) > p->buy_limit;
        }
        freeReplyObject(r);
    } while (cursor != 0);

    /* every token the bench won from this bucket's users exists, for the user who won it */
    unsigned k = (unsigned)p->shards;
    for (size_t i = 0; i < b->ntokens;) {
        size_t batch[BENCH_REDIS_BATCH], nb = 0;
        for (; i < b->ntokens && nb < BENCH_REDIS_BATCH; i++) {
            const bench_token_t *t = &b->tokens[i];
            if (t->prod != pi || (k > 1 && sk_shard_of_user(b->o.user_base + (int64_t)t->user, k) != bucket))
                continue;
            redisAppendCommand(rc, "HGET %s %s", tokens_key, t->tok);
            batch[nb++] = i;
        }
        for (size_t j = 0; j < nb; j++) {
            if (redisGetReply(rc, (void **)&r) != REDIS_OK) {
                bench_check(cs, 0, "tokens (redis)", "HGET %s: %s", tokens_key, rc->errstr);
                return -1;
            }
            const bench_token_t *t = &b->tokens[batch[j]];
            int64_t want = b->o.user_base + (int64_t)t->user;
            int ok = r->type == REDIS_REPLY_STRING && strtoll(r->str, NULL, 10) == want;
            if (!ok && s->bad++ == 0)
                snprintf(s->first_bad, sizeof(s->first_bad), "first: token %.12s... of user %" PRId64 " in %s -> %s", t->tok, want,
                         tokens_key, r->type == REDIS_REPLY_STRING ? r->str : "missing");
            s->checked++;
            freeReplyObject(r);
        }
    }
    return 0;
}

/* Redis side of one activity: sold counter, per-user counts and the stored tokens of the wins the bench saw, summed
 * over its buckets (one with shards = 1), each read on the master of its bucket's tag. */
static void
bench_check_redis(bench_t *b, int pi, bench_checks_t *cs)
{
    bench_product_t *p = &b->prods[pi];
    unsigned k = p->shards > 1 ? (unsigned)p->shards : 1;
    bench_redis_sum_t s = {0};
    char name[64], err[256];
    snprintf(name, sizeof(name), "redis a%" PRId64, p->activity_id);
    for (unsigned bucket = 0; bucket < k; bucket++) {
        char tag[SK_SHARD_TAG_MAX], key[96];
        if (sk_shard_tag(tag, sizeof(tag), p->activity_id, bucket, k) < 0) {
            bench_check(cs, 0, name, "no hash tag for bucket %u of %u", bucket, k);
            return;
        }
        sk_key_bucket(key, sizeof(key), SK_KEY_SOLD, tag);
        redisContext *rc = bench_redis_connect_key(b, key, err, sizeof(err));
        if (rc == NULL) {
            bench_check(cs, 0, "redis", "%s", err);
            return;
        }
        int rc_ = bench_check_redis_bucket(b, rc, pi, bucket, tag, &s, cs);
        redisFree(rc);
        if (rc_ != 0)
            return;
    }
    char sold_key[64];
    sk_key_activity(sold_key, sizeof(sold_key), SK_KEY_SOLD, p->activity_id);
    if (k > 1)
        bench_check(cs, s.sold == p->sold_after, name, "%s and the other %u buckets' sold = %lld, admin sold = %" PRId64, sold_key,
                    k - 1, s.sold, p->sold_after);
    else
        bench_check(cs, s.sold == p->sold_after, name, "%s = %lld, admin sold = %" PRId64, sold_key, s.sold, p->sold_after);
    bench_check(cs, s.over == 0, "buy_limit (redis)", "activity %" PRId64 ": %llu of %llu users over buy_limit %d", p->activity_id,
                s.over, s.users, p->buy_limit);
    bench_check(cs, s.bad == 0, "tokens (redis)", "activity %" PRId64 ": %" PRIu64 " of %" PRIu64 " won tokens valid%s%s",
                p->activity_id, s.checked - s.bad, s.checked, s.bad ? "; " : "", s.first_bad);
}

/* The invariants of one activity through the admin API (and the bench's own counts). */
static void
bench_check_product(bench_t *b, int pi, int all_answered, bench_checks_t *cs)
{
    bench_product_t *p = &b->prods[pi];
    char err[512];
    if (bench_read_activity(b, p, 0, err, sizeof(err)) != 0) {
        bench_check(cs, 0, "activity list", "%s", err);
        return;
    }
    int64_t sold = p->sold_after - p->sold_before, avail = p->total - p->sold_before;
    bench_check(cs, p->sold_after <= p->total, "never oversell", "activity %" PRId64 ": sold %" PRId64 " <= total %" PRId64,
                p->activity_id, p->sold_after, p->total);
    if (all_answered)
        bench_check(cs, (uint64_t)sold == p->wins, "wins == sold", "activity %" PRId64 ": %" PRIu64 " wins seen, %" PRId64 " sold",
                    p->activity_id, p->wins, sold);
    else
        bench_check(cs, -1, "wins == sold", "skipped: some requests were not answered");
    if (p->buy_rate >= 1 && p->speed == 0 && p->demand >= (uint64_t)avail)
        bench_check(cs, p->sold_after == p->total, "never undersell",
                    "activity %" PRId64 ": demand %" PRIu64 " >= stock %" PRId64 ", sold %" PRId64 " of total %" PRId64,
                    p->activity_id, p->demand, avail, p->sold_after, p->total);
    else
        bench_check(cs, -1, "never undersell",
                    "activity %" PRId64 ": not applicable (demand %" PRIu64 ", stock %" PRId64 ", buy_rate %g, speed %d)",
                    p->activity_id, p->demand, avail, p->buy_rate, p->speed);

    uint64_t over = 0;
    for (int u = 0; u < b->o.users; u++)
        over += b->wins[(size_t)pi * (size_t)b->o.users + (size_t)u] > p->buy_limit;
    bench_check(cs, over == 0, "buy_limit (bench)", "activity %" PRId64 ": %" PRIu64 " users won more than %d times",
                p->activity_id, over, p->buy_limit);

    bench_winners_t w;
    if (bench_read_winners(b, p, &w, err, sizeof(err)) != 0) {
        bench_check(cs, 0, "winners", "%s", err);
        return;
    }
    bench_check(cs, w.over_limit == 0, "buy_limit (winners)", "activity %" PRId64 ": %" PRIu64 " users listed over %d",
                p->activity_id, w.over_limit, p->buy_limit);
    if (w.n < 10000 && p->sold_after < 10000) {
        bench_check(cs, (int64_t)w.n == p->sold_after, "winners == sold", "activity %" PRId64 ": %zu winners, sold %" PRId64,
                    p->activity_id, w.n, p->sold_after);
        uint64_t missing = 0, seen = 0;
        for (size_t i = 0; i < b->ntokens; i++) {
            if (b->tokens[i].prod != pi)
                continue;
            const char *key = b->tokens[i].tok;
            seen++;
            missing += bsearch(&key, w.tokens, w.n, sizeof(char *), bench_cmp_str) == NULL;
        }
        bench_check(cs, missing == 0, "tokens (winners)", "activity %" PRId64 ": %" PRIu64 " of %" PRIu64 " won tokens listed",
                    p->activity_id, seen - missing, seen);
    } else {
        bench_check(cs, -1, "winners == sold", "skipped: more than one page of winners");
    }
    bench_winners_free(&w);
}

/* Runs every check; returns how many failed. */
static int
bench_run_checks(bench_t *b, const bench_run_t *run, bench_checks_t *cs)
{
    const bench_counts_t *c = &run->c;
    int all = c->answered == c->sent && c->unsent == 0 && c->errors == 0 && c->timeouts == 0;
    bench_check(cs, all, "every request answered",
                "%" PRIu64 " of %" PRIu64 " answered; %" PRIu64 " errors, %" PRIu64 " timeouts, %" PRIu64 " never sent",
                c->answered, c->sent, c->errors, c->timeouts, c->unsent);
    if (b->o.faults)
        bench_check(cs, -1, "no 1008", "skipped (--faults): %" PRIu64 " answers were 1008", c->codes[8]);
    else
        bench_check(cs, c->codes[8] == 0, "no 1008", "%" PRIu64 " answers were 1008", c->codes[8]);
    bench_check(cs, c->nocode == 0 && c->mismatches == 0, "envelopes",
                "%" PRIu64 " answers without a JSON code (or a win without a token), %" PRIu64 " with the wrong HTTP status",
                c->nocode, c->mismatches);
    for (int i = 0; i < b->nprods; i++)
        bench_check_product(b, i, all, cs);
    for (int i = 0; i < b->nprods; i++)
        bench_check_redis(b, i, cs);
    if (run->tokens_dropped)
        bench_check(cs, -1, "tokens", "%" PRIu64 " wins beyond --max-tokens were not checked", run->tokens_dropped);
    return cs->failed;
}

#endif
