/*
 * The Redis Cluster router (SPEC §9): behind an sk_redis_t made with redis.cluster = true, one conn (redis_client.c)
 * per master, opened when the slot map names it. Each command is formatted once and kept, so that a redirect or a
 * retryable error (which mean the command did not run) can re-send it; a transport failure (conn dropped, deadline)
 * is final, since the command may have run. Every command keeps the deadline of its first submission.
 *
 * Why this shape:
 *  - The conn already holds every single-connection rule (deadline = drop the conn, back-off, handshake before
 *    "ready"), so a slow or dead master fails only the commands routed to it.
 *  - Commands for a conn still connecting, and retries after TRYAGAIN and friends, wait in one "parked" list that a
 *    10 ms timer walks while it is not empty; they fail "timeout" at their deadline.
 *  - One 100 ms housekeeping timer refreshes the map: at once while none is known or after a MOVED, 200 ms after a
 *    master conn went down (a failover is then learned within the cluster-node-timeout plus ~0.3 s), and every 3 s.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <hiredis/hiredis.h>
#include "redis_cluster.h"
#include "sk_cluster.h"
#include "sk_list.h"

#define MAX_NODES 64
#define NO_NODE 0xff
#define MAX_HOPS 5
#define RETRY_MS 15
#define TICK_MS 10
#define HOUSE_MS 100
#define REFRESH_AFTER_DOWN_MS 200
#define REFRESH_EVERY_MS 3000
#define MAX_ARGS 64
#define MAX_SUBS 64
#define DEFAULT_TIMEOUT_MS 500

typedef struct st_node_t {
    sk_redis_cluster_t *cl;
    char ip[64];
    int port;
    int master;       /* in the last map */
    sk_redis_t *conn; /* commands; NULL when not a master */
} node_t;

typedef struct st_ccmd_t {
    struct st_ccmd_t *next; /* in the parked list */
    sk_redis_cluster_t *cl;
    sk_redis_cb cb;
    void *data;
    uint64_t deadline, retry_at;
    char *cmd;
    size_t len;
    int slot;     /* -1: keyless */
    int ask_node; /* -1, or the node of an ASK to send to once with ASKING */
    int hops;
    int broadcast; /* SCRIPT: sends outstanding */
    int answered;  /* a broadcast's user callback ran */
} ccmd_t;

typedef struct st_csub_t {
    sk_redis_cluster_t *cl;
    char *channel;
    sk_redis_msg_cb cb;
    void *data;
} csub_t;

struct st_sk_redis_cluster_t {
    sk_redis_t *front;
    sk_host_t *host;
    sk_thread_t *thr;
    char who[64];
    unsigned timeout_ms;
    node_t nodes[MAX_NODES];
    size_t nnodes, nseeds, next_seed;
    uint8_t slots[SK_CLUSTER_SLOTS];
    int map_known;
    int refreshing, refresh_wanted;
    uint64_t last_refresh, down_since, created_at;
    char *slots_cmd;
    int slots_len;
    ccmd_t *parked;
    sk_timer_t *tick, *house;
    int tick_armed;
    void (*on_connect)(sk_redis_t *r, void *data);
    void *on_connect_data;
    int used_for_commands;
    csub_t subs[MAX_SUBS];
    size_t nsubs;
    sk_redis_t *sub_conn;
    int sub_node;
    int depth, freeing;
    size_t inflight; /* callbacks of ours the conns still owe: the router outlives them all */
    int logged_no_map;
};

static void dispatch(ccmd_t *c, int first);
static void refresh(sk_redis_cluster_t *cl);

static uint64_t
now_ms(sk_redis_cluster_t *cl)
{
    return sk_thread_now_ms(cl->thr);
}

static void
destroy(sk_redis_cluster_t *cl)
{
    sk_timer_free(cl->tick);
    sk_timer_free(cl->house);
    redisFreeCommand(cl->slots_cmd);
    for (size_t i = 0; i < cl->nsubs; ++i)
        free(cl->subs[i].channel);
    free(cl->front);
    free(cl);
}

static void
enter(sk_redis_cluster_t *cl)
{
    cl->depth++;
}

static void
leave(sk_redis_cluster_t *cl)
{
    if (--cl->depth == 0 && cl->freeing && cl->inflight == 0)
        destroy(cl);
}

static int
find_node(sk_redis_cluster_t *cl, const char *ip, int port, int add)
{
    for (size_t i = 0; i < cl->nnodes; ++i)
        if (cl->nodes[i].port == port && strcmp(cl->nodes[i].ip, ip) == 0)
            return (int)i;
    if (!add || cl->nnodes == MAX_NODES || strlen(ip) >= sizeof(cl->nodes[0].ip))
        return -1;
    node_t *n = &cl->nodes[cl->nnodes];
    memset(n, 0, sizeof(*n));
    n->cl = cl;
    strcpy(n->ip, ip);
    n->port = port;
    return (int)cl->nnodes++;
}

/* ---- finishing commands ---- */

static void
finish(ccmd_t *c, redisReply *reply, const char *err)
{
    sk_redis_cluster_t *cl = c->cl;
    if (c->cb != NULL)
        c->cb(cl->front, reply, err, c->data);
    redisFreeCommand(c->cmd);
    free(c);
}

static void
arm_tick(sk_redis_cluster_t *cl)
{
    if (!cl->tick_armed && !cl->freeing) {
        cl->tick_armed = 1;
        sk_timer_start(cl->tick, TICK_MS);
    }
}

static void
park(ccmd_t *c, uint64_t retry_at)
{
    c->retry_at = retry_at;
    c->next = c->cl->parked;
    c->cl->parked = c;
    arm_tick(c->cl);
}

static void
on_tick(sk_timer_t *t, void *data)
{
    (void)t;
    sk_redis_cluster_t *cl = data;
    enter(cl);
    cl->tick_armed = 0;
    ccmd_t *list = cl->parked;
    cl->parked = NULL;
    uint64_t now = now_ms(cl);
    while (list != NULL) {
        ccmd_t *c = list;
        list = c->next;
        c->next = NULL;
        if (c->deadline <= now || cl->freeing)
            finish(c, NULL, cl->freeing ? "disconnected" : "timeout");
        else if (c->retry_at <= now)
            dispatch(c, 0);
        else
            park(c, c->retry_at);
    }
    leave(cl);
}

/* ---- sending ---- */

static void on_cmd_reply(sk_redis_t *conn, redisReply *reply, const char *err, void *data);
static void on_conn_up(sk_redis_t *conn, void *data);

static void
ensure_conn(sk_redis_cluster_t *cl, node_t *n)
{
    if (n->conn != NULL || cl->freeing)
        return;
    n->conn = sk_redis_conn_new(cl->host, cl->thr, cl->who, n->ip, n->port);
    if (n->conn != NULL)
        sk_redis_on_connect(n->conn, on_conn_up, n);
}

static int
any_ready_master(sk_redis_cluster_t *cl)
{
    int connecting = -1;
    for (size_t i = 0; i < cl->nnodes; ++i) {
        int st = cl->nodes[i].master ? sk_redis_conn_state(cl->nodes[i].conn) : SK_CONN_DOWN;
        if (st == SK_CONN_READY)
            return (int)i;
        if (st == SK_CONN_CONNECTING && connecting < 0)
            connecting = (int)i;
    }
    return connecting;
}

static int
send_broadcast(ccmd_t *c, int first)
{
    sk_redis_cluster_t *cl = c->cl;
    c->broadcast = 0;
    for (size_t i = 0; i < cl->nnodes; ++i)
        if (cl->nodes[i].master &&
            sk_redis_conn_formatted(cl->nodes[i].conn, on_cmd_reply, c, c->deadline, 0, c->cmd, c->len) == 0) {
            c->broadcast++;
            cl->inflight++;
        }
    if (c->broadcast > 0)
        return 0;
    c->broadcast = 0;
    if (first)
        return -1;
    finish(c, NULL, "disconnected");
    return 0;
}

/* Sends c to its node now, parks it while that conn is still connecting, or fails it: at the first submission by
 * returning -1 (the callback will not run, as "not connected" in single mode), later through its callback. */
static void
dispatch_(ccmd_t *c, int first, int *ret)
{
    sk_redis_cluster_t *cl = c->cl;
    *ret = 0;
    uint64_t now = now_ms(cl);
    if (cl->freeing) {
        finish(c, NULL, "disconnected");
        return;
    }
    if (now >= c->deadline) {
        finish(c, NULL, "timeout");
        return;
    }
    int ni = c->ask_node >= 0 ? c->ask_node
                              : (c->slot >= 0 ? (cl->slots[c->slot] == NO_NODE ? -1 : cl->slots[c->slot]) : any_ready_master(cl));
    if (ni < 0) {
        if (first) {
            *ret = -1;
            return;
        }
        park(c, now + RETRY_MS); /* a slot no master serves right now: wait for the map */
        return;
    }
    node_t *n = &cl->nodes[ni];
    ensure_conn(cl, n); /* a node first named by a redirect */
    switch (sk_redis_conn_state(n->conn)) {
    case SK_CONN_READY:
        if (sk_redis_conn_formatted(n->conn, on_cmd_reply, c, c->deadline, c->ask_node >= 0, c->cmd, c->len) == 0) {
            cl->inflight++;
            return;
        }
        break;
    case SK_CONN_CONNECTING:
        park(c, now + TICK_MS);
        return;
    default:
        break;
    }
    if (first)
        *ret = -1;
    else
        finish(c, NULL, "disconnected");
}

static void
dispatch(ccmd_t *c, int first)
{
    int ret;
    dispatch_(c, first, &ret);
}

static void
on_cmd_reply(sk_redis_t *conn, redisReply *reply, const char *err, void *data)
{
    (void)conn;
    ccmd_t *c = data;
    sk_redis_cluster_t *cl = c->cl;
    enter(cl);
    cl->inflight--;
    if (c->broadcast > 0) {
        /* the first answer goes to the user, whichever master gave it */
        if (!c->answered) {
            c->answered = 1;
            if (c->cb != NULL)
                c->cb(cl->front, reply, err, c->data);
        }
        if (--c->broadcast == 0) {
            redisFreeCommand(c->cmd);
            free(c);
        }
        goto Exit;
    }
    c->ask_node = -1;
    if (err == NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR && !cl->freeing) {
        sk_cluster_redirect_t rd;
        if (c->hops < MAX_HOPS && sk_cluster_parse_redirect(reply->str, reply->len, &rd) == 0) {
            int ni = find_node(cl, rd.host, rd.port, 1);
            if (ni >= 0) {
                c->hops++;
                if (rd.kind == SK_CLUSTER_MOVED) {
                    cl->slots[rd.slot] = (uint8_t)ni;
                    cl->refresh_wanted = 1;
                } else {
                    c->ask_node = ni;
                }
                dispatch(c, 0);
                goto Exit;
            }
        } else if (sk_cluster_is_retryable(reply->str, reply->len)) {
            /* not a hop: a migration or a failover lasts what it lasts, and the deadline bounds the retries */
            park(c, now_ms(cl) + RETRY_MS);
            goto Exit;
        }
    }
    finish(c, reply, err);
Exit:
    leave(cl);
}

static int
submit(sk_redis_cluster_t *cl, int slot, int broadcast, sk_redis_cb cb, void *data, unsigned timeout_ms, char *cmd, size_t len)
{
    if (cl->freeing || cl->nsubs != 0 || !cl->map_known) {
        redisFreeCommand(cmd);
        return -1;
    }
    ccmd_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        redisFreeCommand(cmd);
        return -1;
    }
    c->cl = cl;
    c->cb = cb;
    c->data = data;
    c->deadline = now_ms(cl) + (timeout_ms != 0 ? timeout_ms : cl->timeout_ms);
    c->cmd = cmd;
    c->len = len;
    c->slot = slot;
    c->ask_node = -1;
    cl->used_for_commands = 1;
    int ret = 0;
    if (broadcast)
        ret = send_broadcast(c, 1);
    else
        dispatch_(c, 1, &ret);
    if (ret != 0) {
        redisFreeCommand(c->cmd);
        free(c);
    }
    return ret;
}

static int
route(int argc, const char **argv, const size_t *argvlen, const char *route_key, size_t route_len, int *broadcast)
{
    *broadcast = 0;
    if (route_key != NULL)
        return (int)sk_cluster_keyslot(route_key, route_len);
    size_t n0 = argvlen != NULL ? argvlen[0] : strlen(argv[0]);
    if (n0 == 6 && strncasecmp(argv[0], "SCRIPT", 6) == 0) {
        *broadcast = 1;
        return -1;
    }
    int k = sk_cluster_command_key(argc, (const char *const *)argv, argvlen);
    return k < 0 ? -1 : (int)sk_cluster_keyslot(argv[k], argvlen != NULL ? argvlen[k] : strlen(argv[k]));
}

int
sk_redis_cluster_cmdargv(sk_redis_cluster_t *cl, const char *route_key, size_t route_len, sk_redis_cb cb, void *data,
                         unsigned timeout_ms, int argc, const char **argv, const size_t *argvlen)
{
    int broadcast, slot = route(argc, argv, argvlen, route_key, route_len, &broadcast);
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0)
        return -1;
    return submit(cl, slot, broadcast, cb, data, timeout_ms, cmd, (size_t)len);
}

/* The arguments of a command hiredis formatted ("*N\r\n$L\r\n<L bytes>\r\n..."), pointing into it. */
static int
unformat(const char *cmd, size_t len, const char **argv, size_t *argvlen, int max)
{
    const char *p = cmd, *end = cmd + len;
    if (len < 4 || *p != '*')
        return -1;
    long n = strtol(p + 1, NULL, 10);
    if ((p = memchr(p, '\n', (size_t)(end - p))) == NULL)
        return -1;
    ++p;
    int argc = 0;
    for (long i = 0; i < n && argc < max; ++i) {
        if (p >= end || *p != '$')
            return -1;
        long l = strtol(p + 1, NULL, 10);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL || l < 0 || (size_t)(end - nl - 1) < (size_t)l + 2)
            return -1;
        argv[argc] = nl + 1;
        argvlen[argc++] = (size_t)l;
        p = nl + 1 + l + 2;
    }
    return argc;
}

int
sk_redis_cluster_formatted(sk_redis_cluster_t *cl, sk_redis_cb cb, void *data, unsigned timeout_ms, char *cmd, size_t len)
{
    const char *argv[MAX_ARGS];
    size_t argvlen[MAX_ARGS];
    int argc = unformat(cmd, len, argv, argvlen, MAX_ARGS);
    if (argc <= 0) {
        redisFreeCommand(cmd);
        return -1;
    }
    int broadcast, slot = route(argc, argv, argvlen, NULL, 0, &broadcast);
    return submit(cl, slot, broadcast, cb, data, timeout_ms, cmd, len);
}

/* ---- subscriptions ---- */

static void
on_sub_msg(sk_redis_t *conn, const char *channel, const char *msg, size_t len, void *data)
{
    (void)conn;
    csub_t *s = data;
    enter(s->cl);
    s->cb(s->cl->front, channel, msg, len, s->data);
    leave(s->cl);
}

/* The subscriber conn lives on the master of the first channel's slot; a new one is made when that node stopped
 * being a master (the conn itself re-subscribes after its own reconnects). A plain PUBLISH reaches every node of the
 * cluster, so any master serves as well: when the conn to ours is down (a master killed, before the cluster has
 * promoted its replica), the subscription moves to the next master at once instead of waiting out the failover, so
 * that an access thread keeps hearing the answers of the activities on the masters still up. */
static void
place_subscriber(sk_redis_cluster_t *cl)
{
    if (cl->nsubs == 0 || !cl->map_known || cl->freeing)
        return;
    int down = cl->sub_conn != NULL && sk_redis_conn_state(cl->sub_conn) == SK_CONN_DOWN;
    if (cl->sub_conn != NULL && cl->nodes[cl->sub_node].master && !down)
        return;
    const char *ch = cl->subs[0].channel;
    uint8_t ni = cl->slots[sk_cluster_keyslot(ch, strlen(ch))];
    if (down || ni == NO_NODE) {
        /* the next master after the one that failed, round the node list */
        size_t from = cl->sub_conn != NULL ? (size_t)cl->sub_node : 0;
        ni = NO_NODE;
        for (size_t k = 1; k <= cl->nnodes && ni == NO_NODE; ++k) {
            size_t i = (from + k) % cl->nnodes;
            if (cl->nodes[i].master && (!down || i != (size_t)cl->sub_node))
                ni = (uint8_t)i;
        }
        if (ni == NO_NODE)
            return;
        if (down)
            sk_logf(SK_LOG_WARN, cl->who, "redis cluster: subscriber conn to %s:%d is down; subscribing on %s:%d",
                    cl->nodes[cl->sub_node].ip, cl->nodes[cl->sub_node].port, cl->nodes[ni].ip, cl->nodes[ni].port);
    }
    if (cl->sub_conn != NULL)
        sk_redis_free(cl->sub_conn);
    cl->sub_node = ni;
    cl->sub_conn = sk_redis_conn_new(cl->host, cl->thr, cl->who, cl->nodes[ni].ip, cl->nodes[ni].port);
    if (cl->sub_conn == NULL)
        return;
    sk_redis_on_connect(cl->sub_conn, on_conn_up, &cl->nodes[ni]);
    for (size_t i = 0; i < cl->nsubs; ++i)
        sk_redis_subscribe(cl->sub_conn, cl->subs[i].channel, on_sub_msg, &cl->subs[i]);
}

int
sk_redis_cluster_subscribe(sk_redis_cluster_t *cl, const char *channel, sk_redis_msg_cb cb, void *data)
{
    if (cl->freeing || cl->used_for_commands || cl->nsubs >= MAX_SUBS)
        return -1;
    for (size_t i = 0; i < cl->nsubs; ++i)
        if (strcmp(cl->subs[i].channel, channel) == 0)
            return -1;
    csub_t *s = &cl->subs[cl->nsubs];
    if ((s->channel = strdup(channel)) == NULL)
        return -1;
    s->cl = cl;
    s->cb = cb;
    s->data = data;
    cl->nsubs++;
    if (cl->sub_conn != NULL)
        sk_redis_subscribe(cl->sub_conn, channel, on_sub_msg, s);
    else
        place_subscriber(cl);
    return 0;
}

/* ---- the slot map ---- */

static void
on_conn_up(sk_redis_t *conn, void *data)
{
    node_t *n = data;
    sk_redis_cluster_t *cl = n->cl;
    enter(cl);
    if (!cl->map_known || cl->refresh_wanted)
        refresh(cl);
    else if (cl->on_connect != NULL && (cl->nsubs == 0 ? conn != cl->sub_conn : conn == cl->sub_conn))
        cl->on_connect(cl->front, cl->on_connect_data);
    leave(cl);
}

static int
reply_int(const redisReply *r, long long *v)
{
    if (r->type != REDIS_REPLY_INTEGER)
        return -1;
    *v = r->integer;
    return 0;
}

static void
apply_map(sk_redis_cluster_t *cl, const redisReply *reply, const char *asked_ip)
{
    uint8_t slots[SK_CLUSTER_SLOTS];
    int master[MAX_NODES] = {0};
    memset(slots, NO_NODE, sizeof(slots));
    for (size_t i = 0; i < reply->elements; ++i) {
        const redisReply *e = reply->element[i];
        long long lo, hi, port;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || reply_int(e->element[0], &lo) != 0 ||
            reply_int(e->element[1], &hi) != 0 || lo < 0 || hi >= SK_CLUSTER_SLOTS || lo > hi)
            continue;
        const redisReply *m = e->element[2];
        if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING ||
            reply_int(m->element[1], &port) != 0 || port <= 0 || port > 65535)
            continue;
        /* an empty endpoint means "the node you asked" (cluster-preferred-endpoint-type unknown-endpoint) */
        const char *ip = m->element[0]->len > 0 ? m->element[0]->str : asked_ip;
        int ni = find_node(cl, ip, (int)port, 1);
        if (ni < 0)
            continue;
        master[ni] = 1;
        memset(slots + lo, ni, (size_t)(hi - lo + 1));
    }
    memcpy(cl->slots, slots, sizeof(slots));
    int had_map = cl->map_known;
    cl->map_known = 1;
    for (size_t i = 0; i < cl->nnodes; ++i) {
        node_t *n = &cl->nodes[i];
        n->master = master[i];
        if (!n->master && n->conn != NULL) {
            sk_redis_t *conn = n->conn;
            n->conn = NULL;
            sk_redis_free(conn); /* its pending commands fail "disconnected" */
        } else if (n->master && cl->nsubs == 0) {
            ensure_conn(cl, n);
        }
    }
    place_subscriber(cl);
    /* on_connect for the masters that were ready before the map was known */
    if (!had_map && cl->on_connect != NULL && sk_redis_cluster_connected(cl))
        cl->on_connect(cl->front, cl->on_connect_data);
}

static void
on_slots(sk_redis_t *conn, redisReply *reply, const char *err, void *data)
{
    sk_redis_cluster_t *cl = data;
    enter(cl);
    cl->inflight--;
    cl->refreshing = 0;
    cl->last_refresh = now_ms(cl);
    if (cl->freeing) {
        leave(cl);
        return;
    }
    if (err != NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        sk_logf(SK_LOG_WARN, cl->who, "redis cluster: CLUSTER SLOTS failed: %s",
                err != NULL ? err : (reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : "empty answer"));
        cl->refresh_wanted = 1;
    } else {
        int port;
        const char *ip = sk_redis_conn_addr(conn, &port);
        char asked[64];
        snprintf(asked, sizeof(asked), "%s", ip);
        cl->refresh_wanted = 0;
        apply_map(cl, reply, asked);
    }
    leave(cl);
}

static void
refresh(sk_redis_cluster_t *cl)
{
    if (cl->refreshing || cl->freeing)
        return;
    cl->refresh_wanted = 1;
    /* ask a ready conn: a master first, then any node (a seed), else open the next seed and ask when it is up */
    node_t *ask = NULL;
    for (int pass = 0; pass < 2 && ask == NULL; ++pass)
        for (size_t i = 0; i < cl->nnodes && ask == NULL; ++i)
            if ((pass == 1 || cl->nodes[i].master) && sk_redis_conn_state(cl->nodes[i].conn) == SK_CONN_READY)
                ask = &cl->nodes[i];
    if (ask == NULL) {
        size_t tries = cl->nnodes;
        while (tries-- > 0) {
            node_t *n = &cl->nodes[cl->next_seed++ % cl->nnodes];
            if (n->conn == NULL || sk_redis_conn_state(n->conn) == SK_CONN_DOWN) {
                ensure_conn(cl, n); /* a conn in back-off keeps retrying on its own */
                break;
            }
        }
        return;
    }
    if (sk_redis_conn_formatted(ask->conn, on_slots, cl, now_ms(cl) + cl->timeout_ms, 0, cl->slots_cmd, (size_t)cl->slots_len) ==
        0) {
        cl->refreshing = 1;
        cl->inflight++;
    }
}

static void
on_house(sk_timer_t *t, void *data)
{
    sk_redis_cluster_t *cl = data;
    enter(cl);
    uint64_t now = now_ms(cl);
    int down = 0;
    for (size_t i = 0; i < cl->nnodes; ++i)
        if (cl->nodes[i].master && sk_redis_conn_state(cl->nodes[i].conn) == SK_CONN_DOWN)
            down = 1;
    if (down && cl->down_since == 0)
        cl->down_since = now;
    else if (!down)
        cl->down_since = 0;
    if (!cl->map_known || cl->refresh_wanted || now - cl->last_refresh >= REFRESH_EVERY_MS ||
        (down && now - cl->down_since >= REFRESH_AFTER_DOWN_MS && now - cl->last_refresh >= REFRESH_AFTER_DOWN_MS))
        refresh(cl);
    place_subscriber(cl); /* a subscriber whose master went down moves to another master */
    if (!cl->map_known && !cl->logged_no_map && now - cl->created_at > 5000) {
        cl->logged_no_map = 1;
        sk_logf(SK_LOG_WARN, cl->who, "redis cluster %s: no slot map yet", cl->host->conf.redis_addr);
    }
    if (!cl->freeing)
        sk_timer_start(t, HOUSE_MS);
    leave(cl);
}

/* ---- API ---- */

sk_redis_cluster_t *
sk_redis_cluster_new(sk_redis_t *front, sk_host_t *host, sk_thread_t *thr, const char *who)
{
    sk_redis_cluster_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return NULL;
    cl->front = front;
    cl->host = host;
    cl->thr = thr;
    snprintf(cl->who, sizeof(cl->who), "%s", who != NULL ? who : "redis");
    cl->timeout_ms = host->conf.redis_timeout_ms != 0 ? host->conf.redis_timeout_ms : DEFAULT_TIMEOUT_MS;
    memset(cl->slots, NO_NODE, sizeof(cl->slots));
    cl->slots_len = redisFormatCommand(&cl->slots_cmd, "CLUSTER SLOTS");
    cl->tick = sk_timer_new(thr, on_tick, cl);
    cl->house = sk_timer_new(thr, on_house, cl);
    const char *p = host->conf.redis_addr, *item;
    size_t len;
    while (sk_list_next(&p, &item, &len)) {
        char one[64], ip[64];
        uint16_t port;
        if (len >= sizeof(one))
            continue;
        memcpy(one, item, len);
        one[len] = '\0';
        if (sk_conf_parse_addr(one, ip, sizeof(ip), &port) == 0)
            find_node(cl, ip, port, 1);
    }
    cl->nseeds = cl->nnodes;
    cl->created_at = now_ms(cl);
    if (cl->slots_len < 0 || cl->tick == NULL || cl->house == NULL || cl->nnodes == 0) {
        sk_timer_free(cl->tick);
        sk_timer_free(cl->house);
        redisFreeCommand(cl->slots_cmd);
        free(cl);
        return NULL;
    }
    enter(cl);
    refresh(cl);
    sk_timer_start(cl->house, HOUSE_MS);
    leave(cl);
    return cl;
}

void
sk_redis_cluster_free(sk_redis_cluster_t *cl)
{
    if (cl->freeing)
        return;
    enter(cl);
    cl->freeing = 1;
    cl->on_connect = NULL;
    sk_timer_stop(cl->tick);
    sk_timer_stop(cl->house);
    for (size_t i = 0; i < cl->nnodes; ++i)
        if (cl->nodes[i].conn != NULL) {
            sk_redis_t *conn = cl->nodes[i].conn;
            cl->nodes[i].conn = NULL;
            sk_redis_free(conn);
        }
    if (cl->sub_conn != NULL)
        sk_redis_free(cl->sub_conn);
    cl->sub_conn = NULL;
    while (cl->parked != NULL) {
        ccmd_t *c = cl->parked;
        cl->parked = c->next;
        finish(c, NULL, "disconnected");
    }
    leave(cl);
}

int
sk_redis_cluster_connected(sk_redis_cluster_t *cl)
{
    if (cl->freeing || !cl->map_known)
        return 0;
    if (cl->nsubs != 0)
        return sk_redis_conn_state(cl->sub_conn) == SK_CONN_READY;
    for (size_t i = 0; i < cl->nnodes; ++i)
        if (cl->nodes[i].master && sk_redis_conn_state(cl->nodes[i].conn) == SK_CONN_READY)
            return 1;
    return 0;
}

void
sk_redis_cluster_on_connect(sk_redis_cluster_t *cl, void (*cb)(sk_redis_t *r, void *data), void *data)
{
    cl->on_connect = cb;
    cl->on_connect_data = data;
}

/* Appends with snprintf semantics, never past len; a list that does not fit is cut and closed. */
static void
put(char *buf, size_t len, size_t *n, const char *fmt, ...)
{
    if (*n >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *n, len - *n, fmt, ap);
    va_end(ap);
    *n = k < 0 ? len : *n + (size_t)k;
}

void
sk_redis_cluster_describe(sk_redis_cluster_t *cl, char *buf, size_t len, int *masters, int *up)
{
    size_t n = 0;
    *masters = *up = 0;
    put(buf, len, &n, "[");
    for (size_t i = 0; i < cl->nnodes; ++i) {
        node_t *nd = &cl->nodes[i];
        if (!nd->master)
            continue;
        int ready = sk_redis_conn_state(cl->nodes[i].conn) == SK_CONN_READY;
        ++*masters;
        *up += ready;
        put(buf, len, &n, "%s{\"addr\":\"%s:%d\",\"up\":%s,\"slots\":\"", *masters > 1 ? "," : "", nd->ip, nd->port,
            ready ? "true" : "false");
        int first = 1;
        for (unsigned s = 0; s < SK_CLUSTER_SLOTS; ++s) {
            if (cl->slots[s] != i || (s > 0 && cl->slots[s - 1] == i))
                continue;
            unsigned e = s;
            while (e + 1 < SK_CLUSTER_SLOTS && cl->slots[e + 1] == i)
                ++e;
            put(buf, len, &n, e == s ? "%s%u" : "%s%u-%u", first ? "" : ",", s, e);
            first = 0;
        }
        put(buf, len, &n, "\"}");
    }
    put(buf, len, &n, "]");
    if (n >= len && len >= 3) /* cut: still valid JSON */
        snprintf(buf, len, "[]");
}
