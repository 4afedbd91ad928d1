/*
 * The async Redis client: one hiredis connection bound to one host thread, on either loop kind.
 *
 * Contracts kept here, because hiredis 0.14 keeps none of them:
 *  - Every command has a deadline. hiredis cannot cancel one command, so when the oldest deadline passes the whole
 *    connection is dropped with redisAsyncFree(), which fails every pending callback at once ("timeout"), and the client
 *    reconnects. A deadline is not a rollback: the command may still run on the server.
 *  - Every user callback is called exactly once: hiredis calls each reply callback once, with a reply or with NULL
 *    when the context is freed, and that is the only place user callbacks are called from.
 *  - A connection is usable only after a real reply (AUTH, else PING): a SIGSTOPped Redis still accepts TCP. The
 *    reconnect back-off (50 ms doubling to 500 ms) is reset only then.
 *  - sk_redis_free() may be called from inside any callback of the same connection: `depth` counts the frames of this
 *    client on the stack, and the struct is freed when the outermost one returns and hiredis has let go of the context.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <hiredis/async.h>
#include "redis_adapter.h"
#include "redis_cluster.h"

#define MAX_PENDING (1u << 18) /* commands waiting for a reply on one connection */
#define MAX_SUBS 64
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 500
#define DEFAULT_TIMEOUT_MS 500

typedef enum en_state_t { ST_DOWN, ST_CONNECTING, ST_HANDSHAKE, ST_READY } state_t;

typedef struct st_cmd_t {
    struct st_cmd_t *prev, *next;
    sk_redis_t *r;
    sk_redis_cb cb;
    void *data;
    uint64_t deadline;
    int internal; /* the AUTH / PING handshake */
} cmd_t;

typedef struct st_sub_t {
    sk_redis_t *r;
    char *channel;
    size_t len;
    sk_redis_msg_cb cb;
    void *data;
} sub_t;

struct st_sk_redis_t {
    sk_redis_cluster_t *cluster; /* redis.cluster: this is the router's face, and the calls go to redis_cluster.c */
    sk_host_t *host;
    sk_thread_t *thr;
    char who[64];
    char ip[48];
    int port;
    char password[256];
    unsigned timeout_ms;

    redisAsyncContext *ac;
    state_t state;
    const char *fail_reason; /* what NULL replies of the current context mean, when we dropped it */
    cmd_t pending;           /* circular list in send order; the sentinel */
    size_t npending;
    uint64_t connect_deadline; /* while connecting or in the handshake */
    sk_timer_t *deadline_timer;
    uint64_t timer_at; /* 0 = not armed */
    sk_timer_t *retry_timer;
    unsigned backoff_ms;

    sub_t subs[MAX_SUBS];
    size_t nsubs;
    int used_for_commands;

    void (*on_connect)(sk_redis_t *r, void *data);
    void *on_connect_data;

    int depth;
    int free_requested;
    int outage_logged;
};

static void start_connect(sk_redis_t *r);

static uint64_t
now_ms(sk_redis_t *r)
{
    return sk_thread_now_ms(r->thr);
}

static void
destroy(sk_redis_t *r)
{
    sk_timer_free(r->deadline_timer);
    sk_timer_free(r->retry_timer);
    for (size_t i = 0; i < r->nsubs; ++i)
        free(r->subs[i].channel);
    free(r);
}

static void
enter(sk_redis_t *r)
{
    r->depth++;
}

static void
leave(sk_redis_t *r)
{
    if (--r->depth == 0 && r->free_requested && r->ac == NULL)
        destroy(r);
}

static void
link_cmd(sk_redis_t *r, cmd_t *c)
{
    c->prev = r->pending.prev;
    c->next = &r->pending;
    c->prev->next = c;
    r->pending.prev = c;
    r->npending++;
}

static void
unlink_cmd(sk_redis_t *r, cmd_t *c)
{
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->prev = c->next = NULL;
    r->npending--;
}

/* ---- deadlines ---- */

static void
arm_deadline(sk_redis_t *r, uint64_t at)
{
    if (r->timer_at != 0 && r->timer_at <= at)
        return;
    r->timer_at = at;
    uint64_t now = now_ms(r);
    sk_timer_start(r->deadline_timer, at > now ? at - now : 0);
}

/* hiredis cannot cancel one command: drop the connection, every pending callback fails now with `reason`. */
static void
drop(sk_redis_t *r, const char *reason)
{
    if (r->ac == NULL)
        return;
    r->fail_reason = reason;
    r->state = ST_DOWN;
    redisAsyncFree(r->ac); /* inside a hiredis callback this only marks it; hiredis frees on the way out */
}

/* The timer is armed at the earliest deadline known when it was set; replies do not disarm it. When it fires, one
 * pass over the pending list either finds an expired command or re-arms at the new earliest. */
static void
on_deadline_timer(sk_timer_t *t, void *data)
{
    (void)t;
    sk_redis_t *r = data;
    enter(r);
    r->timer_at = 0;
    uint64_t now = now_ms(r), min = UINT64_MAX;
    const char *what = NULL;
    if (r->connect_deadline != 0) {
        if (r->connect_deadline <= now)
            what = r->state == ST_CONNECTING ? "connect" : "handshake";
        else
            min = r->connect_deadline;
    }
    for (cmd_t *c = r->pending.next; what == NULL && c != &r->pending; c = c->next) {
        if (c->deadline <= now)
            what = "command";
        else if (c->deadline < min)
            min = c->deadline;
    }
    if (what != NULL) {
        if (!r->outage_logged)
            sk_logf(SK_LOG_WARN, r->who, "redis %s:%d: a %s passed its deadline (%zu commands pending); reconnecting", r->ip,
                    r->port, what, r->npending);
        r->outage_logged = 1;
        drop(r, "timeout");
    } else if (min != UINT64_MAX) {
        arm_deadline(r, min);
    }
    leave(r);
}

/* ---- connection life cycle ---- */

static void
schedule_retry(sk_redis_t *r)
{
    if (r->free_requested)
        return;
    r->backoff_ms = r->backoff_ms == 0 ? BACKOFF_MIN_MS : r->backoff_ms * 2;
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    sk_timer_start(r->retry_timer, r->backoff_ms);
}

static void
on_retry(sk_timer_t *t, void *data)
{
    (void)t;
    sk_redis_t *r = data;
    enter(r);
    if (!r->free_requested && r->ac == NULL)
        start_connect(r);
    leave(r);
}

/* hiredis' cleanup hook: every callback of `ac` has run, hiredis frees it next. */
static void
on_dead(redisAsyncContext *ac)
{
    sk_redis_t *r = ac->data;
    if (r == NULL)
        return;
    ac->data = NULL;
    if (r->ac == ac) {
        r->ac = NULL;
        r->state = ST_DOWN;
        r->connect_deadline = 0;
    }
    if (r->free_requested) {
        /* freed from a callback and hiredis let go from its own frame (no frame of ours is left on the stack) */
        if (r->depth == 0)
            destroy(r);
        return;
    }
    if (!r->outage_logged)
        sk_logf(SK_LOG_WARN, r->who, "redis %s:%d: connection lost: %s; reconnecting", r->ip, r->port,
                ac->err != 0 && ac->errstr != NULL ? ac->errstr : (r->fail_reason != NULL ? r->fail_reason : "closed"));
    r->outage_logged = 1;
    schedule_retry(r);
}

static void
on_sub_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    (void)ac;
    sub_t *s = privdata;
    sk_redis_t *r = s->r;
    redisReply *reply = reply_;
    if (reply == NULL) {
        r->state = ST_DOWN;
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || reply->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[0]->str, "message") != 0 || reply->element[2]->type != REDIS_REPLY_STRING)
        return; /* subscribe confirmations */
    enter(r);
    s->cb(r, s->channel, reply->element[2]->str, reply->element[2]->len, s->data);
    leave(r);
}

static int
send_subscribe(sk_redis_t *r, sub_t *s)
{
    if (redisAsyncCommand(r->ac, on_sub_reply, s, "SUBSCRIBE %b", s->channel, s->len) != REDIS_OK) {
        sk_logf(SK_LOG_ERROR, r->who, "redis: cannot queue SUBSCRIBE %s", s->channel);
        return -1;
    }
    return 0;
}

static void
on_handshake(sk_redis_t *r, redisAsyncContext *ac, redisReply *reply)
{
    if (reply == NULL || r->ac != ac || r->free_requested)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!r->outage_logged)
            sk_logf(SK_LOG_ERROR, r->who, "redis %s:%d refused the connection: %s", r->ip, r->port, reply->str);
        r->outage_logged = 1;
        drop(r, "disconnected");
        return;
    }
    r->state = ST_READY;
    r->connect_deadline = 0;
    r->backoff_ms = 0;
    sk_logf(r->outage_logged ? SK_LOG_INFO : SK_LOG_DEBUG, r->who, "redis %s:%d: connected", r->ip, r->port);
    r->outage_logged = 0;
    for (size_t i = 0; i < r->nsubs; ++i)
        send_subscribe(r, &r->subs[i]);
    if (r->on_connect != NULL)
        r->on_connect(r, r->on_connect_data);
}

static void
on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    cmd_t *c = privdata;
    sk_redis_t *r = c->r;
    redisReply *reply = reply_;
    enter(r);
    unlink_cmd(r, c);
    if (reply == NULL)
        r->state = ST_DOWN;
    if (c->internal)
        on_handshake(r, ac, reply);
    else if (c->cb != NULL)
        c->cb(r, reply, reply != NULL ? NULL : (r->fail_reason != NULL ? r->fail_reason : "disconnected"), c->data);
    free(c);
    leave(r);
}

static void
on_hiredis_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    sk_redis_t *r = ac->data;
    /* on failure hiredis frees the context right after this returns; on_dead schedules the retry */
    if (status != REDIS_OK || r == NULL || r->ac != ac)
        return;
    r->state = ST_HANDSHAKE;
    cmd_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return; /* the handshake deadline drops the connection */
    c->r = r;
    c->internal = 1;
    c->deadline = r->connect_deadline;
    int ret = r->password[0] != '\0' ? redisAsyncCommand(ac, on_reply, c, "AUTH %s", r->password)
                                     : redisAsyncCommand(ac, on_reply, c, "PING");
    if (ret != REDIS_OK) {
        free(c);
        return;
    }
    link_cmd(r, c);
}

static void
start_connect(sk_redis_t *r)
{
    r->fail_reason = NULL;
    redisAsyncContext *ac = redisAsyncConnect(r->ip, r->port);
    if (ac == NULL || ac->err != 0) {
        if (!r->outage_logged)
            sk_logf(SK_LOG_WARN, r->who, "redis %s:%d: cannot connect: %s; retrying", r->ip, r->port,
                    ac != NULL && ac->errstr != NULL ? ac->errstr : "out of memory");
        r->outage_logged = 1;
        if (ac != NULL)
            redisAsyncFree(ac);
        schedule_retry(r);
        return;
    }
    ac->data = r;
    int ret = r->thr->h2o_loop != NULL ? sk_redis_h2o_attach(ac, r->thr, on_dead) : sk_redis_ev_attach(ac, r->thr, on_dead);
    if (ret != 0) {
        if (!r->outage_logged)
            sk_logf(SK_LOG_ERROR, r->who, "redis: cannot attach the connection to the loop");
        r->outage_logged = 1;
        ac->data = NULL;
        redisAsyncFree(ac);
        schedule_retry(r);
        return;
    }
    /* a subscriber has no deadline: keepalive is what notices a peer that vanished without a FIN */
    redisEnableKeepAlive(&ac->c);
    r->ac = ac;
    r->state = ST_CONNECTING;
    r->connect_deadline = now_ms(r) + r->timeout_ms;
    arm_deadline(r, r->connect_deadline);
    /* after the adapter: hiredis 0.14 calls addWrite here to learn when the connect completes */
    redisAsyncSetConnectCallback(ac, on_hiredis_connect);
}

/* ---- API ---- */

sk_redis_t *
sk_redis_conn_new(sk_host_t *host, sk_thread_t *thr, const char *who, const char *ip, int port)
{
    if (host == NULL || thr == NULL)
        return NULL;
    sk_redis_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->host = host;
    r->thr = thr;
    snprintf(r->who, sizeof(r->who), "%s", who != NULL ? who : "redis");
    snprintf(r->ip, sizeof(r->ip), "%s", ip);
    r->port = port;
    snprintf(r->password, sizeof(r->password), "%s", host->conf.redis_password);
    r->timeout_ms = host->conf.redis_timeout_ms != 0 ? host->conf.redis_timeout_ms : DEFAULT_TIMEOUT_MS;
    r->pending.prev = r->pending.next = &r->pending;
    r->deadline_timer = sk_timer_new(thr, on_deadline_timer, r);
    r->retry_timer = sk_timer_new(thr, on_retry, r);
    if (r->deadline_timer == NULL || r->retry_timer == NULL) {
        destroy(r);
        return NULL;
    }
    enter(r);
    start_connect(r);
    leave(r);
    return r;
}

sk_redis_t *
sk_redis_new(sk_host_t *host, sk_thread_t *thr, const char *who)
{
    if (host == NULL || thr == NULL)
        return NULL;
    if (!host->conf.redis_cluster)
        return sk_redis_conn_new(host, thr, who, host->conf.redis_host, host->conf.redis_port);
    sk_redis_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->host = host;
    r->thr = thr;
    if ((r->cluster = sk_redis_cluster_new(r, host, thr, who)) == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

int
sk_redis_describe(sk_redis_t *r, char *buf, size_t len, int *masters, int *up)
{
    if (r == NULL || r->cluster == NULL)
        return -1;
    sk_redis_cluster_describe(r->cluster, buf, len, masters, up);
    return 0;
}

int
sk_redis_conn_state(sk_redis_t *r)
{
    if (r == NULL || r->free_requested || r->ac == NULL)
        return SK_CONN_DOWN;
    return r->state == ST_READY ? SK_CONN_READY : SK_CONN_CONNECTING;
}

const char *
sk_redis_conn_addr(sk_redis_t *r, int *port)
{
    *port = r->port;
    return r->ip;
}

void
sk_redis_free(sk_redis_t *r)
{
    if (r == NULL || r->free_requested)
        return;
    if (r->cluster != NULL) {
        sk_redis_cluster_free(r->cluster); /* frees r too */
        return;
    }
    r->free_requested = 1;
    r->on_connect = NULL;
    sk_timer_stop(r->retry_timer);
    sk_timer_stop(r->deadline_timer);
    enter(r);
    drop(r, "disconnected");
    leave(r);
}

int
sk_redis_connected(sk_redis_t *r)
{
    if (r != NULL && r->cluster != NULL)
        return sk_redis_cluster_connected(r->cluster);
    return r != NULL && !r->free_requested && r->state == ST_READY;
}

void
sk_redis_on_connect(sk_redis_t *r, void (*cb)(sk_redis_t *r, void *data), void *data)
{
    if (r == NULL || r->free_requested)
        return;
    if (r->cluster != NULL) {
        sk_redis_cluster_on_connect(r->cluster, cb, data);
        return;
    }
    r->on_connect = cb;
    r->on_connect_data = data;
}

/* Commands that would put the connection in a push mode where one callback gets many replies. */
static int
is_push_command(const char *name, size_t len)
{
    static const char *const names[] = {"subscribe", "psubscribe", "unsubscribe", "punsubscribe", "monitor"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
        if (len == strlen(names[i]) && strncasecmp(name, names[i], len) == 0)
            return 1;
    return 0;
}

static cmd_t *
new_cmd(sk_redis_t *r, sk_redis_cb cb, void *data, unsigned timeout_ms)
{
    if (r != NULL && r->cluster != NULL)
        return NULL;
    if (r == NULL || r->free_requested || r->state != ST_READY || r->nsubs != 0 || r->npending >= MAX_PENDING)
        return NULL;
    cmd_t *c = malloc(sizeof(*c));
    if (c == NULL)
        return NULL;
    c->r = r;
    c->cb = cb;
    c->data = data;
    c->internal = 0;
    c->deadline = now_ms(r) + (timeout_ms != 0 ? timeout_ms : r->timeout_ms);
    return c;
}

static void
queued(sk_redis_t *r, cmd_t *c)
{
    link_cmd(r, c);
    r->used_for_commands = 1;
    arm_deadline(r, c->deadline);
}

int
sk_redis_cmdargv(sk_redis_t *r, sk_redis_cb cb, void *data, unsigned timeout_ms, int argc, const char **argv, const size_t *argvlen)
{
    if (argc <= 0 || argv == NULL || is_push_command(argv[0], argvlen != NULL ? argvlen[0] : strlen(argv[0])))
        return -1;
    if (r != NULL && r->cluster != NULL)
        return sk_redis_cluster_cmdargv(r->cluster, NULL, 0, cb, data, timeout_ms, argc, argv, argvlen);
    cmd_t *c = new_cmd(r, cb, data, timeout_ms);
    if (c == NULL)
        return -1;
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, argvlen) != REDIS_OK) {
        free(c);
        return -1;
    }
    queued(r, c);
    return 0;
}

int
sk_redis_cmdargv_at(sk_redis_t *r, const char *route_key, size_t route_len, sk_redis_cb cb, void *data, unsigned timeout_ms,
                    int argc, const char **argv, const size_t *argvlen)
{
    if (r != NULL && r->cluster != NULL) {
        if (argc <= 0 || argv == NULL || is_push_command(argv[0], argvlen != NULL ? argvlen[0] : strlen(argv[0])))
            return -1;
        return sk_redis_cluster_cmdargv(r->cluster, route_key, route_len, cb, data, timeout_ms, argc, argv, argvlen);
    }
    return sk_redis_cmdargv(r, cb, data, timeout_ms, argc, argv, argvlen);
}

int
sk_redis_cmd(sk_redis_t *r, sk_redis_cb cb, void *data, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = sk_redis_vcmd(r, cb, data, fmt, ap);
    va_end(ap);
    return ret;
}

int
sk_redis_vcmd(sk_redis_t *r, sk_redis_cb cb, void *data, const char *fmt, va_list ap)
{
    if (fmt == NULL)
        return -1;
    const char *p = fmt;
    while (isspace((unsigned char)*p))
        ++p;
    size_t n = 0;
    while (p[n] != '\0' && !isspace((unsigned char)p[n]))
        ++n;
    if (is_push_command(p, n))
        return -1;
    if (r != NULL && r->cluster != NULL) {
        char *cmd = NULL;
        int len = redisvFormatCommand(&cmd, fmt, ap);
        if (len < 0)
            return -1;
        return sk_redis_cluster_formatted(r->cluster, cb, data, 0, cmd, (size_t)len); /* takes cmd */
    }
    cmd_t *c = new_cmd(r, cb, data, 0);
    if (c == NULL)
        return -1;
    if (redisvAsyncCommand(r->ac, on_reply, c, fmt, ap) != REDIS_OK) {
        free(c);
        return -1;
    }
    queued(r, c);
    return 0;
}

int
sk_redis_subscribe(sk_redis_t *r, const char *channel, sk_redis_msg_cb cb, void *data)
{
    if (r != NULL && r->cluster != NULL)
        return channel != NULL && cb != NULL ? sk_redis_cluster_subscribe(r->cluster, channel, cb, data) : -1;
    if (r == NULL || r->free_requested || channel == NULL || cb == NULL || r->used_for_commands || r->nsubs >= MAX_SUBS)
        return -1;
    size_t len = strlen(channel);
    for (size_t i = 0; i < r->nsubs; ++i)
        if (r->subs[i].len == len && memcmp(r->subs[i].channel, channel, len) == 0)
            return -1;
    sub_t *s = &r->subs[r->nsubs];
    s->channel = strdup(channel);
    if (s->channel == NULL)
        return -1;
    s->r = r;
    s->len = len;
    s->cb = cb;
    s->data = data;
    r->nsubs++;
    /* otherwise on_handshake subscribes, now and after every reconnect */
    if (r->state == ST_READY)
        send_subscribe(r, s);
    return 0;
}

/* ---- for the cluster router: one conn to one master ---- */

int
sk_redis_conn_formatted(sk_redis_t *r, sk_redis_cb cb, void *data, uint64_t deadline, int asking, const char *cmd, size_t len)
{
    if (r == NULL || r->free_requested || r->state != ST_READY || r->nsubs != 0 || r->npending + 2 > MAX_PENDING)
        return -1;
    cmd_t *c = malloc(sizeof(*c)), *a = NULL;
    if (c == NULL || (asking && (a = calloc(1, sizeof(*a))) == NULL)) {
        free(c);
        return -1;
    }
    *c = (cmd_t){.r = r, .cb = cb, .data = data, .deadline = deadline};
    if (asking) {
        /* ASKING holds for the next command only: both go into hiredis' output buffer back to back */
        *a = (cmd_t){.r = r, .deadline = deadline};
        if (redisAsyncCommand(r->ac, on_reply, a, "ASKING") != REDIS_OK) {
            free(a);
            free(c);
            return -1;
        }
        queued(r, a);
    }
    if (redisAsyncFormattedCommand(r->ac, on_reply, c, cmd, len) != REDIS_OK) {
        free(c);
        return -1;
    }
    queued(r, c);
    return 0;
}
