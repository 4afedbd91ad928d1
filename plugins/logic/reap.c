/*
 * The reaper (CONTROL thread of every logic node): tokens past expires_at give their unit back (SPEC §7 *Tokens*).
 *
 * Every heartbeat tick (SK_LOGIC_HEARTBEAT_MS) it sends redis/logic_reap.lua once per stock bucket of each activity of
 * the snapshot (one for an unsharded activity): the
 * script pops at most SK_LOGIC_REAP_BATCH due tokens from the activity's expiry index and returns the units of those
 * that nobody consumed or cancelled. A full batch means more are due, so that activity is reaped again at once
 * instead of a tick later: a backlog drains at Redis speed, in short scripts that let the sale's own scripts in
 * between. Every node runs it; the script's atomicity and the token's state word keep a unit from coming back twice,
 * and a node killed mid-way leaves either a whole script's effects or none.
 *
 * Ended activities are reaped too: a token can outlive its sale, and its count and the user's buy_limit still matter.
 *
 * The call is EVALSHA: every tick sends it once per activity, and the script's text (several KB) in every call cost
 * Redis a copy and a SHA1 of it each time. A NOSCRIPT (a Redis restarted or flushed) is answered with one EVAL of the
 * text, which also puts the script back in Redis' cache for the next tick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "logic.h"
#include "sk_shard.h"

typedef struct st_reap_call_t {
    sk_logic_reap_t *rp;
    int64_t aid;
    char tag[SK_SHARD_TAG_MAX]; /* the bucket: a token's unit goes back to the bucket that sold it */
    int busy;
    int as_eval; /* the next send carries the script text: the last EVALSHA found no script */
} reap_call_t;

struct st_sk_logic_reap_t {
    sk_logic_t *L;
    sk_thread_t *thr;
    sk_redis_t *redis;
    char sha[41]; /* of redis/logic_reap.lua */
    reap_call_t calls[SK_LOGIC_MAX_STREAMS];
};

static int send_reap(reap_call_t *c);

static void
on_reap(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r;
    reap_call_t *c = data;
    sk_logic_t *L = c->rp->L;
    c->busy = 0;
    if (err == NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR && !c->as_eval &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        c->as_eval = 1;
        if (!atomic_load(&L->stopping) && send_reap(c) != 0)
            atomic_fetch_add(&L->stats.reap_errors, 1);
        return;
    }
    c->as_eval = 0;
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_INTEGER) {
        atomic_fetch_add(&L->stats.reap_errors, 1);
        if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
            L->api->log(L->self, SK_LOG_WARN, "reaper, activity %lld (bucket %s): %s", (long long)c->aid, c->tag, reply->str);
        return;
    }
    atomic_fetch_add(&L->stats.returned, (unsigned long long)reply->element[0]->integer);
    if (reply->element[1]->integer >= SK_LOGIC_REAP_BATCH && !atomic_load(&L->stopping))
        send_reap(c);
}

static int
send_reap(reap_call_t *c)
{
    sk_logic_t *L = c->rp->L;
    static const sk_key_id_t ids[] = {SK_KEY_TOKENS, SK_KEY_SOLD, SK_KEY_USERS, SK_KEY_EXPIRY, SK_KEY_TOKEN_COUNTS};
    char keys[5][128], batch[16];
    for (size_t i = 0; i < 5; ++i)
        if (sk_key_bucket(keys[i], sizeof(keys[i]), ids[i], c->tag) < 0)
            return -1;
    snprintf(batch, sizeof(batch), "%d", SK_LOGIC_REAP_BATCH);
    int as_eval = c->as_eval || c->rp->sha[0] == '\0';
    const char *argv[] = {as_eval ? "EVAL" : "EVALSHA",
                          as_eval ? sk_script_logic_reap : c->rp->sha,
                          "5",
                          keys[0],
                          keys[1],
                          keys[2],
                          keys[3],
                          keys[4],
                          batch};
    size_t lens[9];
    for (size_t i = 0; i < 9; ++i)
        lens[i] = strlen(argv[i]);
    if (as_eval)
        lens[1] = sk_script_logic_reap_len;
    if (L->api->redis_cmdargv(c->rp->redis, on_reap, c, 0, 9, argv, lens) != 0)
        return -1;
    c->busy = 1;
    return 0;
}

sk_logic_reap_t *
sk_logic_reap_new(sk_logic_t *L, sk_thread_t *thr, sk_redis_t *redis)
{
    sk_logic_reap_t *rp = calloc(1, sizeof(*rp));
    if (rp == NULL)
        return NULL;
    rp->L = L;
    rp->thr = thr;
    rp->redis = redis;
    sk_logic_script_sha(sk_script_logic_reap, rp->sha); /* empty on failure: then every call is an EVAL */
    for (size_t i = 0; i < SK_LOGIC_MAX_STREAMS; ++i)
        rp->calls[i].rp = rp;
    return rp;
}

void
sk_logic_reap_tick(sk_logic_reap_t *rp)
{
    if (rp == NULL || atomic_load(&rp->L->stopping) || !rp->L->api->redis_connected(rp->redis))
        return;
    const sk_snapshot_t *snap = rp->L->api->snapshot(rp->thr);
    /* slot j reaps the j-th bucket of the snapshot's activities (an unsharded activity has one); a slot still waiting
     * for its reply is skipped this tick */
    size_t j = 0;
    for (size_t i = 0; i < snap->nactivities && j < SK_LOGIC_MAX_STREAMS; ++i) {
        unsigned k = (unsigned)sk_activity_shards(&snap->activities[i]);
        for (unsigned b = 0; b < k && j < SK_LOGIC_MAX_STREAMS; ++b, ++j) {
            reap_call_t *c = &rp->calls[j];
            if (c->busy)
                continue;
            c->aid = snap->activities[i].activity_id;
            if (sk_shard_tag(c->tag, sizeof(c->tag), c->aid, b, k) < 0 || send_reap(c) != 0)
                atomic_fetch_add(&rp->L->stats.reap_errors, 1);
        }
    }
}

void
sk_logic_reap_free(sk_logic_reap_t *rp)
{
    free(rp);
}
