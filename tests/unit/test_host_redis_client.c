/*
 * The async Redis client against a real redis-server, on an h2o loop and on a libev loop: order, pipelining, commands
 * issued from callbacks, deadlines through a SIGSTOPped server, reconnects after SIGCONT and after kill + restart, and
 * freeing the client from its own callbacks (reply, "timeout", on_connect).
 */
#include "test_host_redis_harness.h"

static void
t_basic(void)
{
    const char *argv[] = {"SET", "bin", "a\0b"};
    const size_t argvlen[] = {3, 3, 3};
    ASSERT_EQ(cmd(cx->r, 0, "DEL k n bin"), 0);
    ASSERT_EQ(cmd(cx->r, 1, "SET k %s", "hello"), 0);
    ASSERT_EQ(cmd(cx->r, 2, "GET k"), 0);
    for (int i = 0; i < 3; ++i)
        ASSERT_EQ(cmd(cx->r, 3 + i, "INCR n"), 0);
    ASSERT_EQ(sk_redis_cmdargv(cx->r, on_rec, (void *)6, 0, 3, argv, argvlen), 0);
    ASSERT_EQ(cmd(cx->r, 7, "GET bin"), 0);
    ASSERT_EQ(cmd(cx->r, 8, "NOSUCHCOMMAND"), 0);
    /* push-mode commands would break the one-reply-per-callback contract */
    ASSERT_EQ(cmd(cx->r, 9, "SUBSCRIBE x"), -1);
}

static void
test_basic(void)
{
    reset_recs();
    on_thread(t_basic);
    ASSERT_EQ(wait_until(&cx->nrecs, 9, 5000), 9);
    rec_t *r = cx->recs;
    ASSERT_EQ(r[0].type, REDIS_REPLY_INTEGER);
    ASSERT_EQ(r[1].type, REDIS_REPLY_STATUS);
    ASSERT_STREQ(r[1].str, "OK");
    ASSERT_EQ(r[2].type, REDIS_REPLY_STRING);
    ASSERT_STREQ(r[2].str, "hello");
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(r[3 + i].type, REDIS_REPLY_INTEGER);
        ASSERT_EQ(r[3 + i].integer, i + 1);
    }
    ASSERT_EQ(r[7].type, REDIS_REPLY_STRING);
    ASSERT_EQ(r[7].len, 3);
    ASSERT(memcmp(r[7].str, "a\0b", 3) == 0);
    ASSERT_EQ(r[8].type, REDIS_REPLY_ERROR);
    ASSERT_EQ(cx->calls[MAXREC - 1], 0);
}

static void
t_pipeline(void)
{
    ASSERT_EQ(cmd(cx->r, 0, "DEL p"), 0);
    for (int i = 1; i <= 1000; ++i)
        ASSERT_EQ(cmd(cx->r, i, "INCR p"), 0);
}

static void
test_pipeline(void)
{
    reset_recs();
    on_thread(t_pipeline);
    ASSERT_EQ(wait_until(&cx->nrecs, 1001, 10000), 1001);
    for (int i = 1; i <= 1000; ++i) {
        ASSERT_EQ(cx->recs[i].type, REDIS_REPLY_INTEGER);
        ASSERT_EQ(cx->recs[i].integer, i);
        ASSERT_EQ(cx->calls[i], 1);
    }
}

static void
t_stopped_batch(void)
{
    cx->t0 = mono();
    /* the first has a short deadline of its own: when it passes, every command on the connection fails at once */
    const char *argv[] = {"INCR", "t"};
    ASSERT_EQ(sk_redis_cmdargv(cx->r, on_rec, (void *)0, 150, 2, argv, NULL), 0);
    for (int i = 1; i < 50; ++i)
        ASSERT_EQ(cmd(cx->r, i, "INCR t"), 0);
    /* a second client frees itself from its "timeout" callback */
    cx->free_at = 60;
    ASSERT_EQ(cmd(cx->r2, 60, "INCR t2"), 0);
}

static void
t_new2(void)
{
    cx->r2 = sk_redis_new(&cx->host, cx->thr, "test-2");
    sk_redis_on_connect(cx->r2, on_connected, &cx->connects2);
}

static void
t_is_connected(void)
{
    cx->flag = sk_redis_connected(cx->r);
}

static void
t_ping(void)
{
    ASSERT_EQ(cmd(cx->r, 100, "PING"), 0);
}

static void
test_deadline_sigstop(void)
{
    reset_recs();
    int before = connects();
    cx->connects2 = 0;
    on_thread(t_new2);
    ASSERT_EQ(wait_until(&cx->connects2, 1, 5000), 1);
    ASSERT_EQ(kill(redis_pid, SIGSTOP), 0);
    on_thread(t_stopped_batch);
    ASSERT_EQ(wait_until(&cx->nrecs, 51, 3000), 51);
    for (int i = 0; i < 51; ++i) {
        ASSERT_EQ(cx->recs[i].type, -1);
        ASSERT_STREQ(cx->recs[i].err, "timeout");
        ASSERT(cx->recs[i].at >= cx->t0 + 140);
        ASSERT(cx->recs[i].at <= cx->t0 + 150 + 1500);
    }
    /* reconnects reach the kernel but no PING answer comes back: still down, and nothing is called twice */
    sleep_ms(1500);
    ASSERT_EQ(cx->nrecs, 51);
    for (int i = 0; i < 50; ++i)
        ASSERT_EQ(cx->calls[i], 1);
    ASSERT_EQ(cx->calls[60], 1);
    ASSERT(cx->r2 == NULL);
    ASSERT_EQ(cx->connects2, 1);
    cx->free_at = -1;
    on_thread(t_is_connected);
    ASSERT_EQ(cx->flag, 0);
    ASSERT_EQ(connects(), before);
    /* the blocking client has its deadline too */
    sk_config_t c;
    fill_conf(&c, redis_pass, 300);
    char err[256] = "";
    uint64_t t = mono();
    ASSERT(sk_redis_sync_command(&c, err, sizeof(err), "PING") == NULL);
    ASSERT(mono() - t < 2000);
    ASSERT(err[0] != '\0');

    ASSERT_EQ(kill(redis_pid, SIGCONT), 0);
    wait_connected(before + 1);
    on_thread(t_ping);
    ASSERT_EQ(wait_until(&cx->nrecs, 52, 3000), 52);
    ASSERT_STREQ(cx->recs[51].str, "PONG");
}

static void
t_blpop(void)
{
    /* a long server-side wait, with a longer deadline: only the connection loss can end it early */
    const char *argv[] = {"BLPOP", "nothing-here", "10"};
    ASSERT_EQ(sk_redis_cmdargv(cx->r, on_rec, (void *)0, 20000, 3, argv, NULL), 0);
}

static void
t_refused_while_down(void)
{
    cx->flag = cmd(cx->r, 1, "PING");
}

static void
test_kill_restart(void)
{
    reset_recs();
    int before = connects();
    on_thread(t_blpop);
    sleep_ms(100);
    uint64_t t = mono();
    kill_redis();
    ASSERT_EQ(wait_until(&cx->nrecs, 1, 3000), 1);
    ASSERT_EQ(cx->recs[0].type, -1);
    ASSERT_STREQ(cx->recs[0].err, "disconnected");
    ASSERT(cx->recs[0].at - t < 2000);
    on_thread(t_refused_while_down);
    ASSERT_EQ(cx->flag, -1);
    sleep_ms(600); /* several failed attempts: the back-off is capped, so the restart is noticed quickly */
    start_redis(redis_pass);
    t = mono();
    wait_connected(before + 1);
    ASSERT(mono() - t < 2000);
    on_thread(t_ping);
    ASSERT_EQ(wait_until(&cx->nrecs, 2, 3000), 2);
    ASSERT_STREQ(cx->recs[1].str, "PONG");
    ASSERT_EQ(cx->calls[1], 0);
}

static void
t_pending_then_free(void)
{
    for (int i = 0; i < 10; ++i)
        ASSERT_EQ(cmd(cx->r, i, "PING"), 0);
    sk_redis_free(cx->r); /* not inside a callback: every pending one fails now */
    cx->r = NULL;
    cx->flag = cx->nrecs;
}

static void
t_free_in_callback(void)
{
    cx->free_at = 3;
    for (int i = 0; i < 10; ++i)
        ASSERT_EQ(cmd(cx->r, i, "PING"), 0);
}

static void
on_connect_free(sk_redis_t *r, void *data)
{
    on_connected(r, data);
    sk_redis_free(r);
}

static void
t_new_self_freeing(void)
{
    sk_redis_t *r = sk_redis_new(&cx->host, cx->thr, "test-3");
    sk_redis_on_connect(r, on_connect_free, &cx->connects2);
}

static void
test_free(void)
{
    cx->connects2 = 0;
    on_thread(t_new_self_freeing);
    ASSERT_EQ(wait_until(&cx->connects2, 1, 5000), 1);

    reset_recs();
    on_thread(t_pending_then_free);
    ASSERT_EQ(cx->flag, 10);
    for (int i = 0; i < 10; ++i) {
        ASSERT_STREQ(cx->recs[i].err, "disconnected");
        ASSERT_EQ(cx->calls[i], 1);
    }
    reset_recs();
    int before = connects();
    on_thread(t_new);
    wait_connected(before + 1);
    on_thread(t_free_in_callback);
    ASSERT_EQ(wait_until(&cx->nrecs, 10, 3000), 10);
    sleep_ms(100);
    ASSERT_EQ(cx->nrecs, 10);
    for (int i = 0; i < 4; ++i)
        ASSERT_STREQ(cx->recs[i].str, "PONG");
    for (int i = 4; i < 10; ++i)
        ASSERT_STREQ(cx->recs[i].err, "disconnected");
    for (int i = 0; i < 10; ++i)
        ASSERT_EQ(cx->calls[i], 1);
    /* a fresh client for the next scenarios */
    before = connects();
    on_thread(t_new);
    wait_connected(before + 1);
}

/* ---- commands issued from callbacks, 64 in flight ---- */

#define NFLOW 50000

static int flow_sent, flow_done, flow_bad;
static int flow_next(sk_redis_t *r);

static void
on_flow(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)data;
    if (err != NULL || reply->type != REDIS_REPLY_INTEGER)
        flow_bad++;
    flow_done++;
    if (flow_sent < NFLOW && flow_next(r) == 0)
        flow_sent++;
    if (flow_done == NFLOW) {
        pthread_mutex_lock(&cx->mu);
        cx->flag = 1;
        ctx_signal();
        pthread_mutex_unlock(&cx->mu);
    }
}

static int
flow_next(sk_redis_t *r)
{
    const char *argv[] = {"INCR", "flow"};
    return sk_redis_cmdargv(r, on_flow, NULL, 0, 2, argv, NULL);
}

static void
t_flow(void)
{
    flow_sent = flow_done = flow_bad = 0;
    cx->flag = 0;
    for (int i = 0; i < 64; ++i)
        if (flow_next(cx->r) == 0)
            flow_sent++;
}

static void
test_flow(void)
{
    ASSERT_EQ(sync_int("DEL %s", "flow") >= 0, 1);
    uint64_t t = mono();
    on_thread(t_flow);
    ASSERT_EQ(wait_until(&cx->flag, 1, 60000), 1);
    uint64_t ms = mono() - t;
    ASSERT_EQ(flow_bad, 0);
    ASSERT_EQ(flow_done, NFLOW);
    ASSERT_EQ(sync_int("GET %s", "flow"), NFLOW);
    fprintf(stderr, "  %d INCRs, 64 in flight, in %llu ms (%.0f/s)\n", NFLOW, (unsigned long long)ms,
            NFLOW * 1000.0 / (double)(ms ? ms : 1));
}

static void
suite(void)
{
    RUN(test_basic);
    RUN(test_pipeline);
    RUN(test_flow);
    RUN(test_deadline_sigstop);
    RUN(test_kill_restart);
    RUN(test_free);
}

int
main(void)
{
    harness_main(suite);
    DONE();
}
