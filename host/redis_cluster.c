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
#include "redis_cluster_internal.h"
#include "sk_cluster.h"
#include "sk_list.h"

static void dispatch(ccmd_t *c, int first);

uint64_t
sk_rc_now_ms(sk_redis_cluster_t *cl)
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

void
sk_rc_enter(sk_redis_cluster_t *cl)
{
    cl->depth++;
}

void
sk_rc_leave(sk_redis_cluster_t *cl)
{
    if (--cl->depth == 0 && cl->freeing && cl->inflight == 0)
        destroy(cl);
}

int
sk_rc_find_node(sk_redis_cluster_t *cl, const char *ip, int port, int add)
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
    sk_rc_enter(cl);
    cl->tick_armed = 0;
    ccmd_t *list = cl->parked;
    cl->parked = NULL;
    uint64_t now = sk_rc_now_ms(cl);
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
    sk_rc_leave(cl);
}

/* ---- sending ---- */

static void on_cmd_reply(sk_redis_t *conn, redisReply *reply, const char *err, void *data);

void
sk_rc_ensure_conn(sk_redis_cluster_t *cl, node_t *n)
{
    if (n->conn != NULL || cl->freeing)
        return;
    n->conn = sk_redis_conn_new(cl->host, cl->thr, cl->who, n->ip, n->port);
    if (n->conn != NULL)
        sk_redis_on_connect(n->conn, sk_rc_on_conn_up, n);
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
    uint64_t now = sk_rc_now_ms(cl);
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
    sk_rc_ensure_conn(cl, n); /* a node first named by a redirect */
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
    sk_rc_enter(cl);
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
            int ni = sk_rc_find_node(cl, rd.host, rd.port, 1);
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
            park(c, sk_rc_now_ms(cl) + RETRY_MS);
            goto Exit;
        }
    }
    finish(c, reply, err);
Exit:
    sk_rc_leave(cl);
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
    c->deadline = sk_rc_now_ms(cl) + (timeout_ms != 0 ? timeout_ms : cl->timeout_ms);
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
    sk_rc_enter(s->cl);
    s->cb(s->cl->front, channel, msg, len, s->data);
    sk_rc_leave(s->cl);
}

/* The subscriber conn lives on the master of the first channel's slot; a new one is made when that node stopped
 * being a master (the conn itself re-subscribes after its own reconnects). A plain PUBLISH reaches every node of the
 * cluster, so any master serves as well: when the conn to ours is down (a master killed, before the cluster has
 * promoted its replica), the subscription moves to the next master at once instead of waiting out the failover, so
 * that an access thread keeps hearing the answers of the activities on the masters still up. */
void
sk_rc_place_subscriber(sk_redis_cluster_t *cl)
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
    sk_redis_on_connect(cl->sub_conn, sk_rc_on_conn_up, &cl->nodes[ni]);
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
        sk_rc_place_subscriber(cl);
    return 0;
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
    cl->house = sk_timer_new(thr, sk_rc_on_house, cl);
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
            sk_rc_find_node(cl, ip, port, 1);
    }
    cl->nseeds = cl->nnodes;
    cl->created_at = sk_rc_now_ms(cl);
    if (cl->slots_len < 0 || cl->tick == NULL || cl->house == NULL || cl->nnodes == 0) {
        sk_timer_free(cl->tick);
        sk_timer_free(cl->house);
        redisFreeCommand(cl->slots_cmd);
        free(cl);
        return NULL;
    }
    sk_rc_enter(cl);
    sk_rc_refresh(cl);
    sk_timer_start(cl->house, HOUSE_MS);
    sk_rc_leave(cl);
    return cl;
}

void
sk_redis_cluster_free(sk_redis_cluster_t *cl)
{
    if (cl->freeing)
        return;
    sk_rc_enter(cl);
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
    sk_rc_leave(cl);
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
