/*
 * The host's Redis client against a real 3-master Redis Cluster on free loopback ports (SPEC §9): the blocking start-up
 * client (sk_redis_sync_command), and the async router on both loop kinds (h2o and libev). The cluster is started in a
 * mkdtemp dir and killed with this process whatever happens (PR_SET_PDEATHSIG, atexit, abort handler).
 */
#include <pthread.h>
#include <stdatomic.h>
#include "test_host_redis_cluster_harness.h"

/* Keys of different slots written through any seed reach their own masters, all three of them. */
static void
test_sync_routes_by_slot(void)
{
    char addr[256], err[256];
    seeds(addr, sizeof(addr), 1);
    sk_config_t c;
    fill_conf(&c, addr);
    int seen[NODES] = {0};
    for (int k = 0; k < 30; ++k) {
        char key[32];
        snprintf(key, sizeof(key), "sk:{a%d}:stock", k);
        redisReply *r = sk_redis_sync_command(&c, err, sizeof(err), "SET %s %d", key, k);
        ASSERT(r != NULL);
        ASSERT_EQ(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
        int o = owner_of(key);
        ASSERT(o >= 0);
        seen[o]++;
        /* the owner's slot count agrees with our hash */
        r = direct(ports[o], "CLUSTER COUNTKEYSINSLOT %u", sk_cluster_keyslot(key, strlen(key)));
        ASSERT(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
        freeReplyObject(r);
        r = sk_redis_sync_command(&c, err, sizeof(err), "GET %s", key);
        ASSERT(r != NULL && r->type == REDIS_REPLY_STRING && atoi(r->str) == k);
        freeReplyObject(r);
    }
    for (int i = 0; i < NODES; ++i)
        ASSERT(seen[i] > 0);
    /* an EVAL with a key goes to that key's master; a keyless command to the first seed that answers */
    redisReply *r =
        sk_redis_sync_command(&c, err, sizeof(err), "EVAL %s 1 %s", "return redis.call('GET', KEYS[1])", "sk:{a7}:stock");
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "7");
    freeReplyObject(r);
    r = sk_redis_sync_command(&c, err, sizeof(err), "PING");
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    /* no seed at all */
    fill_conf(&c, "127.0.0.1:1,127.0.0.1:2");
    ASSERT(sk_redis_sync_command(&c, err, sizeof(err), "PING") == NULL);
    ASSERT(strstr(err, "connect") != NULL);
}

/* A slot in migration: a key already moved is reached through ASK (ASKING first), and after SETSLOT NODE through MOVED. */
static void
test_sync_follows_ask_and_moved(void)
{
    char addr[256], err[256];
    const char *moved = "sk:{m1}:moved", *stays = "sk:{m1}:stays";
    unsigned slot = sk_cluster_keyslot(moved, strlen(moved));
    seeds(addr, sizeof(addr), 0);
    sk_config_t c;
    fill_conf(&c, addr);
    redisReply *r = sk_redis_sync_command(&c, err, sizeof(err), "SET %s a", moved);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = sk_redis_sync_command(&c, err, sizeof(err), "SET %s b", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    int src = owner_of(moved), dst = (src + 1) % NODES;
    char *src_id = node_id(src), *dst_id = node_id(dst);
    r = direct(ports[dst], "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = direct(ports[src], "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = direct(ports[src], "MIGRATE 127.0.0.1 %d %s 0 5000 KEYS %s", ports[dst], "", moved);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    /* the source now answers ASK for `moved` */
    r = direct(ports[src], "GET %s", moved);
    ASSERT(r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "ASK ", 4) == 0);
    freeReplyObject(r);
    r = sk_redis_sync_command(&c, err, sizeof(err), "GET %s", moved);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "a");
    freeReplyObject(r);
    r = sk_redis_sync_command(&c, err, sizeof(err), "GET %s", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "b");
    freeReplyObject(r);
    r = direct(ports[src], "MIGRATE 127.0.0.1 %d %s 0 5000 KEYS %s", ports[dst], "", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    for (int i = 0; i < NODES; ++i) {
        r = direct(ports[i], "CLUSTER SETSLOT %u NODE %s", slot, dst_id);
        ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    r = direct(ports[src], "GET %s", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "MOVED ", 6) == 0);
    freeReplyObject(r);
    /* seeds starting at the old owner: MOVED is followed */
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ports[src]);
    fill_conf(&c, addr);
    r = sk_redis_sync_command(&c, err, sizeof(err), "GET %s", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "b");
    freeReplyObject(r);
    ASSERT_EQ(owner_of(stays), dst);
}

/* ---- the async router on a loop thread ---- */

#define NREC 1024

typedef struct st_rec_t {
    int calls;
    int type; /* -1: err */
    char str[64];
    char err[32];
} rec_t;

static struct {
    sk_host_t host;
    sk_thread_t *thr;
    sk_redis_t *r, *sub, *sub2, *freed;
    int free_at; /* the index whose callback frees the router, or -1 */
    pthread_mutex_t mu;
    int connects, done, msgs;
    char msg[64];
    rec_t recs[NREC];
    int flag;
} T;

static uint64_t
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
get_int(int *v)
{
    pthread_mutex_lock(&T.mu);
    int n = *v;
    pthread_mutex_unlock(&T.mu);
    return n;
}

static int
wait_for(int *v, int n, unsigned ms)
{
    uint64_t end = mono() + ms;
    while (get_int(v) < n && mono() < end)
        sleep_ms(5);
    return get_int(v);
}

static void
on_rec(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    ASSERT(r == T.r || (T.r == NULL && r == T.freed));
    int i = (int)(intptr_t)data;
    ASSERT((reply == NULL) != (err == NULL));
    pthread_mutex_lock(&T.mu);
    rec_t *rec = &T.recs[i];
    rec->calls++;
    rec->type = err != NULL ? -1 : reply->type;
    snprintf(rec->err, sizeof(rec->err), "%s", err != NULL ? err : "");
    snprintf(rec->str, sizeof(rec->str), "%s", reply != NULL && reply->str != NULL ? reply->str : "");
    T.done++;
    pthread_mutex_unlock(&T.mu);
    if (i == T.free_at) {
        T.freed = T.r;
        T.r = NULL;
        sk_redis_free(r); /* from inside one of its callbacks: the others still run once, "disconnected" or answered */
    }
}

static void
on_conn(sk_redis_t *r, void *data)
{
    (void)r, (void)data;
    pthread_mutex_lock(&T.mu);
    T.connects++;
    pthread_mutex_unlock(&T.mu);
}

static void
on_msg(sk_redis_t *r, const char *channel, const char *msg, size_t len, void *data)
{
    (void)r, (void)channel, (void)data;
    pthread_mutex_lock(&T.mu);
    T.msgs++;
    snprintf(T.msg, sizeof(T.msg), "%.*s", (int)len, msg);
    pthread_mutex_unlock(&T.mu);
}

static void
run_loop(sk_thread_t *thr)
{
    while (!atomic_load(&thr->stop))
        sk_thread_loop_once(thr, 50);
}

typedef struct st_job_t {
    void (*fn)(void *);
    void *arg;
    int done;
} job_t;

static void
job_task(void *arg)
{
    job_t *j = arg;
    j->fn(j->arg);
    pthread_mutex_lock(&T.mu);
    j->done = 1;
    pthread_mutex_unlock(&T.mu);
}

static void
on_thread(void (*fn)(void *), void *arg)
{
    job_t j = {fn, arg, 0};
    ASSERT_EQ(sk_thread_post(T.thr, job_task, &j), 0);
    ASSERT_EQ(wait_for(&j.done, 1, 10000), 1);
}

/* a command on the loop thread: idx, timeout, route key (or NULL), then argv */
typedef struct st_acmd_t {
    int idx;
    unsigned timeout;
    const char *route;
    int argc;
    const char *argv[8];
    int ret;
} acmd_t;

static void
t_cmd(void *arg)
{
    acmd_t *a = arg;
    a->ret = a->route != NULL ? sk_redis_cmdargv_at(T.r, a->route, strlen(a->route), on_rec, (void *)(intptr_t)a->idx, a->timeout,
                                                    a->argc, a->argv, NULL)
                              : sk_redis_cmdargv(T.r, on_rec, (void *)(intptr_t)a->idx, a->timeout, a->argc, a->argv, NULL);
}

static int
acmd(int idx, unsigned timeout, const char *route, int argc, ...)
{
    acmd_t a = {.idx = idx, .timeout = timeout, .route = route, .argc = argc};
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; ++i)
        a.argv[i] = va_arg(ap, const char *);
    va_end(ap);
    on_thread(t_cmd, &a);
    return a.ret;
}

static void
reset(void)
{
    pthread_mutex_lock(&T.mu);
    memset(T.recs, 0, sizeof(T.recs));
    T.done = 0;
    pthread_mutex_unlock(&T.mu);
}

static void
t_new(void *arg)
{
    (void)arg;
    T.r = sk_redis_new(&T.host, T.thr, "test");
    ASSERT(T.r != NULL);
    sk_redis_on_connect(T.r, on_conn, NULL);
    const char *ping[] = {"PING"};
    T.flag = sk_redis_cmdargv(T.r, on_rec, (void *)0, 0, 1, ping, NULL); /* no map yet: refused */
}

static void
t_connected(void *arg)
{
    *(int *)arg = sk_redis_connected(T.r);
}

static void
t_free(void *arg)
{
    (void)arg;
    sk_redis_free(T.r);
    T.r = NULL;
    sk_redis_free(T.sub);
    T.sub = NULL;
    sk_redis_free(T.sub2);
    T.sub2 = NULL;
}

static void
t_subscribe(void *arg)
{
    T.sub = sk_redis_new(&T.host, T.thr, "sub");
    ASSERT(T.sub != NULL);
    T.flag = sk_redis_subscribe(T.sub, arg, on_msg, NULL);
}

static void
t_subscribe2(void *arg)
{
    T.sub2 = sk_redis_new(&T.host, T.thr, "sub2");
    ASSERT(T.sub2 != NULL);
    T.flag = sk_redis_subscribe(T.sub2, arg, on_msg, NULL);
}

static void
t_sub2_connected(void *arg)
{
    *(int *)arg = sk_redis_connected(T.sub2);
}

static void
t_sub_connected(void *arg)
{
    *(int *)arg = sk_redis_connected(T.sub);
}

static void
check_all_once(int n)
{
    pthread_mutex_lock(&T.mu);
    for (int i = 0; i < n; ++i)
        ASSERT_EQ(T.recs[i].calls, 1);
    pthread_mutex_unlock(&T.mu);
}

/* keys of different slots reach their masters; EVAL by its key; cmdargv_at by its route key; SCRIPT LOAD everywhere */
static void
suite_routing(void)
{
    reset();
    char keys[30][32], vals[30][8];
    for (int k = 0; k < 30; ++k) {
        snprintf(keys[k], sizeof(keys[k]), "sk:{r%d}:x", k);
        snprintf(vals[k], sizeof(vals[k]), "v%d", k);
        ASSERT_EQ(acmd(k, 2000, NULL, 3, "SET", keys[k], vals[k]), 0);
    }
    ASSERT_EQ(wait_for(&T.done, 30, 5000), 30);
    check_all_once(30);
    int seen[NODES] = {0};
    for (int k = 0; k < 30; ++k) {
        ASSERT_EQ(T.recs[k].type, REDIS_REPLY_STATUS);
        int o = owner_of(keys[k]);
        redisReply *r = direct(ports[o], "GET %s", keys[k]);
        ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
        ASSERT_STREQ(r->str, vals[k]);
        freeReplyObject(r);
        seen[o]++;
    }
    for (int i = 0; i < NODES; ++i)
        ASSERT(seen[i] > 0);
    reset();
    ASSERT_EQ(acmd(0, 2000, NULL, 4, "EVAL", "return redis.call('GET', KEYS[1])", "1", keys[5]), 0);
    ASSERT_EQ(acmd(1, 2000, keys[5], 2, "CLUSTER", "MYID"), 0);
    ASSERT_EQ(acmd(2, 2000, keys[6], 2, "CLUSTER", "MYID"), 0);
    ASSERT_EQ(acmd(3, 2000, keys[6], 3, "WAIT", "0", "10"), 0);
    ASSERT_EQ(acmd(4, 2000, NULL, 1, "PING"), 0);
    ASSERT_EQ(acmd(5, 2000, NULL, 3, "SCRIPT", "LOAD", "return 'sk-cluster-test'"), 0);
    ASSERT_EQ(wait_for(&T.done, 6, 5000), 6);
    check_all_once(6);
    ASSERT_STREQ(T.recs[0].str, vals[5]);
    ASSERT_STREQ(T.recs[1].str, node_id(owner_of(keys[5])));
    ASSERT_STREQ(T.recs[2].str, node_id(owner_of(keys[6])));
    ASSERT_EQ(T.recs[3].type, REDIS_REPLY_INTEGER);
    ASSERT_EQ(T.recs[4].type, REDIS_REPLY_STATUS);
    ASSERT_EQ(T.recs[5].type, REDIS_REPLY_STRING);
    for (int i = 0; i < NODES; ++i) {
        redisReply *r = direct(ports[i], "SCRIPT EXISTS %s", T.recs[5].str);
        ASSERT(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->integer == 1);
        freeReplyObject(r);
    }
}

static void
setslot_all(unsigned slot, const char *id)
{
    for (int i = 0; i < NODES; ++i) {
        redisReply *r = direct(ports[i], "CLUSTER SETSLOT %u NODE %s", slot, id);
        ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
}

static void
migrate(int src, int dst, const char *key)
{
    redisReply *r = direct(ports[src], "MIGRATE 127.0.0.1 %d %s 0 5000 KEYS %s", ports[dst], "", key);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

/* a slot moves mid-test: ASK while it moves, TRYAGAIN for a multi-key command split across the two, MOVED after */
static void
suite_migration(const char *tag)
{
    char a[32], b[32];
    snprintf(a, sizeof(a), "sk:{%s}:a", tag);
    snprintf(b, sizeof(b), "sk:{%s}:b", tag);
    unsigned slot = sk_cluster_keyslot(a, strlen(a));
    reset();
    ASSERT_EQ(acmd(0, 2000, NULL, 3, "SET", a, "A"), 0);
    ASSERT_EQ(acmd(1, 2000, NULL, 3, "SET", b, "B"), 0);
    ASSERT_EQ(wait_for(&T.done, 2, 5000), 2);
    int src = owner_of(a), dst = (src + 1) % NODES;
    char src_id[64], dst_id[64];
    snprintf(src_id, sizeof(src_id), "%s", node_id(src));
    snprintf(dst_id, sizeof(dst_id), "%s", node_id(dst));
    redisReply *r = direct(ports[dst], "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = direct(ports[src], "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    migrate(src, dst, a);
    reset();
    ASSERT_EQ(acmd(0, 2000, NULL, 2, "GET", a), 0);     /* ASK */
    ASSERT_EQ(acmd(1, 2000, NULL, 2, "GET", b), 0);     /* still on the source */
    ASSERT_EQ(acmd(2, 4000, NULL, 3, "MGET", a, b), 0); /* TRYAGAIN until the slot has moved */
    ASSERT_EQ(wait_for(&T.done, 2, 5000), 2);
    sleep_ms(150);
    migrate(src, dst, b);
    setslot_all(slot, dst_id);
    ASSERT_EQ(wait_for(&T.done, 3, 5000), 3);
    ASSERT_STREQ(T.recs[0].str, "A");
    ASSERT_STREQ(T.recs[1].str, "B");
    if (T.recs[2].type != REDIS_REPLY_ARRAY)
        fprintf(stderr, "MGET: %s %s\n", T.recs[2].str, T.recs[2].err);
    ASSERT_EQ(T.recs[2].type, REDIS_REPLY_ARRAY);
    ASSERT_EQ(acmd(3, 2000, NULL, 2, "GET", b), 0); /* MOVED (or a refreshed map) */
    ASSERT_EQ(acmd(4, 2000, NULL, 3, "SET", a, "A2"), 0);
    ASSERT_EQ(wait_for(&T.done, 5, 5000), 5);
    ASSERT_STREQ(T.recs[3].str, "B");
    ASSERT_EQ(T.recs[4].type, REDIS_REPLY_STATUS);
    sleep_ms(300);
    check_all_once(5);
    ASSERT_EQ(owner_of(a), dst);
}

static void
suite_pubsub(void)
{
    on_thread(t_subscribe, "sk-cluster-ch");
    ASSERT_EQ(T.flag, 0);
    int up = 0;
    for (int i = 0; i < 200 && !up; ++i) {
        sleep_ms(10);
        on_thread(t_sub_connected, &up);
    }
    ASSERT(up);
    sleep_ms(100);
    /* from every node: PUBLISH crosses the cluster bus */
    for (int i = 0; i < NODES; ++i) {
        int want = get_int(&T.msgs) + 1;
        redisReply *r = direct(ports[i], "PUBLISH sk-cluster-ch hello%d", i);
        ASSERT(r != NULL);
        freeReplyObject(r);
        ASSERT_EQ(wait_for(&T.msgs, want, 3000), want);
    }
}

/* A key on node `n`, found by trying tags. */
static void
key_on(int n, char *buf, size_t len, const char *prefix)
{
    for (int k = 0;; ++k) {
        snprintf(buf, len, "%s{f%d}", prefix, k);
        redisReply *r = direct(ports[n], "SET %s 1", buf);
        int mine = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (r != NULL)
            freeReplyObject(r);
        if (mine)
            return;
    }
}

/* SIGSTOP of one master: only its commands time out */
static void
suite_stop(void)
{
    char on0[32], on1[32];
    key_on(0, on0, sizeof(on0), "s");
    key_on(1, on1, sizeof(on1), "s");
    reset();
    kill(pids[0], SIGSTOP);
    ASSERT_EQ(acmd(0, 400, NULL, 2, "GET", on0), 0);
    for (int i = 1; i <= 10; ++i)
        ASSERT_EQ(acmd(i, 1000, NULL, 2, "GET", on1), 0);
    ASSERT_EQ(wait_for(&T.done, 11, 5000), 11);
    kill(pids[0], SIGCONT);
    check_all_once(11);
    ASSERT_STREQ(T.recs[0].err, "timeout");
    for (int i = 1; i <= 10; ++i)
        ASSERT_STREQ(T.recs[i].str, "1");
    /* it comes back */
    uint64_t end = mono() + 8000;
    for (int ok = 0; !ok && mono() < end;) {
        reset();
        if (acmd(0, 500, NULL, 2, "GET", on0) == 0 && wait_for(&T.done, 1, 2000) == 1)
            ok = T.recs[0].type == REDIS_REPLY_STRING;
        else
            sleep_ms(50);
    }
    ASSERT_EQ(T.recs[0].type, REDIS_REPLY_STRING);
}

/* kill -9 of master 1: its replica takes over; the router learns it from the map and a subscriber on it moves */
static void
suite_failover(void)
{
    char key[32], ch[32];
    key_on(1, key, sizeof(key), "fo");
    key_on(1, ch, sizeof(ch), "ch");
    redisReply *r = direct(ports[1], "WAIT 1 2000");
    ASSERT(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    on_thread(t_subscribe2, ch);
    ASSERT_EQ(T.flag, 0);
    int up = 0;
    for (int i = 0; i < 300 && !up; ++i) {
        sleep_ms(10);
        on_thread(t_sub2_connected, &up);
    }
    ASSERT(up);
    kill(pids[1], SIGKILL);
    waitpid(pids[1], NULL, 0);
    pids[1] = 0;
    uint64_t t0 = mono(), took = 0;
    for (int n = 0; took == 0 && mono() - t0 < 15000; ++n) {
        reset();
        if (acmd(0, 500, NULL, 2, "GET", key) == 0) {
            ASSERT_EQ(wait_for(&T.done, 1, 3000), 1);
            if (T.recs[0].type == REDIS_REPLY_STRING && strcmp(T.recs[0].str, "1") == 0)
                took = mono() - t0;
        }
        sleep_ms(50);
    }
    fprintf(stderr, "failover learned after %llu ms\n", (unsigned long long)took);
    ASSERT(took > 0);
    /* the subscriber moved to the new owner of its channel's slot */
    int got = 0;
    for (int i = 0; i < 100 && !got; ++i) {
        int want = get_int(&T.msgs) + 1;
        r = direct(ports[0], "PUBLISH %s after-failover", ch);
        ASSERT(r != NULL);
        freeReplyObject(r);
        got = wait_for(&T.msgs, want, 100) >= want;
    }
    ASSERT(got);
}

/* kill -9 of one master (no replica): its commands fail, then fail fast; the others keep answering */
static void
suite_kill(void)
{
    char on2[32], on1[32];
    key_on(2, on2, sizeof(on2), "k");
    key_on(0, on1, sizeof(on1), "k"); /* master 1 is gone after the failover */
    kill(pids[2], SIGKILL);
    waitpid(pids[2], NULL, 0);
    pids[2] = 0;
    sleep_ms(300);
    reset();
    int ret = acmd(0, 500, NULL, 2, "GET", on2);
    ASSERT_EQ(acmd(1, 1000, NULL, 2, "GET", on1), 0);
    ASSERT_EQ(wait_for(&T.done, ret == 0 ? 2 : 1, 3000), ret == 0 ? 2 : 1);
    if (ret == 0)
        ASSERT_EQ(T.recs[0].type, -1);
    ASSERT_STREQ(T.recs[1].str, "1");
    sleep_ms(200);
    ASSERT_EQ(acmd(2, 500, NULL, 2, "GET", on2), -1); /* known down: refused at once */
    ASSERT_EQ(acmd(3, 1000, NULL, 2, "GET", on1), 0);
    ASSERT_EQ(wait_for(&T.done, ret == 0 ? 3 : 2, 3000), ret == 0 ? 3 : 2);
    ASSERT_STREQ(T.recs[3].str, "1");
    int up = 0;
    on_thread(t_connected, &up);
    ASSERT(up); /* the other masters still serve */
}

static void
t_batch(void *arg)
{
    (void)arg;
    T.flag = 0;
    for (int k = 0; k < 20; ++k) {
        char key[32];
        snprintf(key, sizeof(key), "sk:{r%d}:x", k);
        const char *argv[] = {"GET", key};
        T.flag |= sk_redis_cmdargv(T.r, on_rec, (void *)(intptr_t)k, 2000, 2, argv, NULL);
    }
}

/* sk_redis_free from inside a callback, with commands pending on every master */
static void
suite_free_inside(void)
{
    reset();
    T.free_at = 0;
    on_thread(t_batch, NULL); /* in one loop pass, so that all are pending when the first answer frees the router */
    ASSERT_EQ(T.flag, 0);
    ASSERT_EQ(wait_for(&T.done, 20, 5000), 20);
    sleep_ms(100);
    check_all_once(20);
    ASSERT(T.r == NULL);
    T.free_at = -1;
    on_thread(t_new, NULL); /* a fresh router for what follows */
    int up = 0;
    for (int i = 0; i < 300 && !up; ++i) {
        sleep_ms(10);
        on_thread(t_connected, &up);
    }
    ASSERT(up);
}

static void
run_async(sk_thread_kind_t kind, const char *name, int last)
{
    fprintf(stderr, "== on %s\n", name);
    memset(&T.host, 0, sizeof(T.host));
    T.connects = 0;
    T.free_at = -1;
    pthread_mutex_init(&T.host.snap_mu, NULL);
    char addr[256];
    seeds(addr, sizeof(addr), 1);
    fill_conf(&T.host.conf, addr);
    T.host.conf.redis_timeout_ms = 1000;
    T.thr = sk_thread_new(&T.host, kind, 0);
    ASSERT(T.thr != NULL);
    ASSERT_EQ(sk_thread_start(T.thr, run_loop), 0);
    on_thread(t_new, NULL);
    ASSERT_EQ(T.flag, -1);
    ASSERT(wait_for(&T.connects, 1, 5000) >= 1);
    int up = 0;
    on_thread(t_connected, &up);
    ASSERT(up);
    RUN(suite_routing);
    if (kind == SK_THREAD_HTTP)
        suite_migration("mh");
    else
        suite_migration("ml");
    RUN(suite_pubsub);
    RUN(suite_free_inside);
    RUN(suite_stop);
    if (last) {
        RUN(suite_failover);
        RUN(suite_kill);
    }
    on_thread(t_free, NULL);
    sk_thread_request_stop(T.thr);
    sk_thread_join_free(T.thr);
    pthread_mutex_destroy(&T.host.snap_mu);
}

int
main(void)
{
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    ASSERT(mkdtemp(tmpdir) != NULL);
    atexit(at_exit);
    signal(SIGABRT, on_fatal);
    signal(SIGALRM, on_fatal);
    signal(SIGSEGV, on_fatal);
    signal(SIGPIPE, SIG_IGN);
    alarm(110);
    start_cluster();
    RUN(test_sync_routes_by_slot);
    RUN(test_sync_follows_ask_and_moved);
    pthread_mutex_init(&T.mu, NULL);
    run_async(SK_THREAD_HTTP, "h2o", 0);
    run_async(SK_THREAD_WORKER, "libev", 1);
    DONE();
}
