/*
 * Redis subscriptions (messages, re-subscribe after a restart, freeing from a message callback) and AUTH, against a
 * real redis-server, on an h2o loop and on a libev loop.
 */
#include "test_host_redis_harness.h"

/* ---- AUTH ---- */

static void
t_auth_clients(void)
{
    cx->free_at = -1;
    sk_redis_free(cx->r);
    snprintf(cx->host.conf.redis_password, sizeof(cx->host.conf.redis_password), "s3cret");
    cx->r = sk_redis_new(&cx->host, cx->thr, "test");
    sk_redis_on_connect(cx->r, on_connected, &cx->connects);
    snprintf(cx->host.conf.redis_password, sizeof(cx->host.conf.redis_password), "wrong");
    cx->r2 = sk_redis_new(&cx->host, cx->thr, "test-wrong");
    sk_redis_on_connect(cx->r2, on_connected, &cx->connects2);
    snprintf(cx->host.conf.redis_password, sizeof(cx->host.conf.redis_password), "s3cret");
}

static void
t_auth_cmds(void)
{
    ASSERT_EQ(cmd(cx->r, 0, "SET a %s", "1"), 0);
    ASSERT_EQ(cmd(cx->r, 1, "GET a"), 0);
    cx->flag = sk_redis_connected(cx->r2);
    sk_redis_free(cx->r2);
    cx->r2 = NULL;
}

static void
test_auth(void)
{
    reset_recs();
    kill_redis();
    start_redis("s3cret");
    int before = connects();
    cx->connects2 = 0;
    on_thread(t_auth_clients);
    wait_connected(before + 1);
    sleep_ms(700);
    on_thread(t_auth_cmds);
    ASSERT_EQ(cx->flag, 0);
    ASSERT_EQ(cx->connects2, 0);
    ASSERT_EQ(wait_until(&cx->nrecs, 2, 3000), 2);
    ASSERT_STREQ(cx->recs[0].str, "OK");
    ASSERT_STREQ(cx->recs[1].str, "1");
    sk_config_t c;
    char err[256] = "";
    fill_conf(&c, "wrong", 500);
    ASSERT(sk_redis_sync_command(&c, err, sizeof(err), "PING") == NULL);
    ASSERT(strstr(err, "AUTH") != NULL);
    fill_conf(&c, "", 500);
    redisReply *rep = sk_redis_sync_command(&c, err, sizeof(err), "PING");
    ASSERT(rep != NULL && rep->type == REDIS_REPLY_ERROR); /* NOAUTH: an error reply is a reply */
    freeReplyObject(rep);
}

/* ---- subscriptions ---- */

static void
on_msg(sk_redis_t *r, const char *channel, const char *msg, size_t len, void *data)
{
    (void)r;
    pthread_mutex_lock(&cx->mu);
    rec_t *rec = &cx->recs[cx->nrecs < MAXREC ? cx->nrecs++ : MAXREC - 1];
    memset(rec, 0, sizeof(*rec));
    rec->type = (int)(intptr_t)data;
    snprintf(rec->err, sizeof(rec->err), "%s", channel);
    memcpy(rec->str, msg, len < sizeof(rec->str) - 1 ? len : sizeof(rec->str) - 1);
    rec->len = len;
    ctx_signal();
    pthread_mutex_unlock(&cx->mu);
    if (strcmp(rec->str, "bye") == 0) {
        sk_redis_free(r);
        cx->r2 = NULL;
    }
}

static void
t_sub_new(void)
{
    cx->r2 = sk_redis_new(&cx->host, cx->thr, "test-sub");
    sk_redis_on_connect(cx->r2, on_connected, &cx->connects2);
    ASSERT_EQ(sk_redis_subscribe(cx->r2, "ch1", on_msg, (void *)1), 0);
    ASSERT_EQ(sk_redis_subscribe(cx->r2, "ch2", on_msg, (void *)2), 0);
    ASSERT_EQ(sk_redis_subscribe(cx->r2, "ch1", on_msg, (void *)3), -1);
}

static void
t_sub_cmd_refused(void)
{
    cx->flag = cmd(cx->r2, 0, "PING");
}

static void
t_publish(void)
{
    ASSERT_EQ(cmd(cx->r, 10, "PUBLISH ch1 %s", "hello"), 0);
    ASSERT_EQ(cmd(cx->r, 11, "PUBLISH ch2 %b", "wo\0rld", (size_t)6), 0);
}

static void
t_publish_again(void)
{
    ASSERT_EQ(cmd(cx->r, 12, "PUBLISH ch2 %s", "again"), 0);
    /* and the other way round: a connection that ran commands does not subscribe */
    ASSERT_EQ(sk_redis_subscribe(cx->r, "x", on_msg, NULL), -1);
}

static void
t_publish_bye(void)
{
    ASSERT_EQ(cmd(cx->r, 13, "PUBLISH ch1 %s", "bye"), 0);
}

static void
t_check_r2_gone(void)
{
    cx->flag = cx->r2 == NULL;
}

static void
wait_numsub(const char *ch)
{
    for (int i = 0; i < 500; ++i) {
        if (sync_int("PUBSUB NUMSUB %s", ch) == 1)
            return;
        sleep_ms(10);
    }
    ASSERT(!"subscription did not show up");
}

static int
count_msgs(int *n)
{
    pthread_mutex_lock(&cx->mu);
    int k = 0;
    for (int i = 0; i < cx->nrecs; ++i)
        if (cx->recs[i].type == 1 || cx->recs[i].type == 2)
            ++k;
    *n = k;
    pthread_mutex_unlock(&cx->mu);
    return k;
}

static void
wait_msgs(int n)
{
    int k = 0;
    for (int i = 0; i < 300 && count_msgs(&k) < n; ++i)
        sleep_ms(10);
    ASSERT_EQ(k, n);
}

static const rec_t *
find_msg(const char *text)
{
    for (int i = 0; i < cx->nrecs; ++i)
        if ((cx->recs[i].type == 1 || cx->recs[i].type == 2) && strcmp(cx->recs[i].str, text) == 0)
            return &cx->recs[i];
    return NULL;
}

static void
test_subscribe(void)
{
    reset_recs();
    cx->connects2 = 0;
    on_thread(t_sub_new);
    ASSERT_EQ(wait_until(&cx->connects2, 1, 5000), 1);
    on_thread(t_sub_cmd_refused);
    ASSERT_EQ(cx->flag, -1);
    wait_numsub("ch1");
    wait_numsub("ch2");
    on_thread(t_publish);
    wait_msgs(2);
    const rec_t *m = find_msg("hello");
    ASSERT(m != NULL && m->type == 1);
    ASSERT_STREQ(m->err, "ch1");
    m = find_msg("wo");
    ASSERT(m != NULL && m->type == 2 && m->len == 6);

    /* a restart: the subscriber comes back and subscribes again by itself */
    int before = connects();
    kill_redis();
    sleep_ms(200);
    start_redis(redis_pass);
    wait_connected(before + 1);
    ASSERT_EQ(wait_until(&cx->connects2, 2, 5000), 2);
    wait_numsub("ch2");
    on_thread(t_publish_again);
    wait_msgs(3);
    m = find_msg("again");
    ASSERT(m != NULL && m->type == 2);
    /* the subscriber frees itself from a message callback */
    on_thread(t_publish_bye);
    wait_msgs(4);
    on_thread(t_check_r2_gone);
    ASSERT_EQ(cx->flag, 1);
}

static void
suite(void)
{
    RUN(test_subscribe);
    RUN(test_auth);
}

int
main(void)
{
    harness_main(suite);
    DONE();
}
