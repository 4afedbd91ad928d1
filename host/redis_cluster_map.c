/*
 * The Redis Cluster router's slot map (see redis_cluster.c for the router): CLUSTER SLOTS from a ready conn, applied
 * as one table of slot -> node; the 100 ms housekeeping timer that decides when to ask again.
 */
#include <stdio.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "redis_cluster_internal.h"

/* ---- the slot map ---- */

void
sk_rc_on_conn_up(sk_redis_t *conn, void *data)
{
    node_t *n = data;
    sk_redis_cluster_t *cl = n->cl;
    sk_rc_enter(cl);
    if (!cl->map_known || cl->refresh_wanted)
        sk_rc_refresh(cl);
    else if (cl->on_connect != NULL && (cl->nsubs == 0 ? conn != cl->sub_conn : conn == cl->sub_conn))
        cl->on_connect(cl->front, cl->on_connect_data);
    sk_rc_leave(cl);
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
        int ni = sk_rc_find_node(cl, ip, (int)port, 1);
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
            sk_rc_ensure_conn(cl, n);
        }
    }
    sk_rc_place_subscriber(cl);
    /* on_connect for the masters that were ready before the map was known */
    if (!had_map && cl->on_connect != NULL && sk_redis_cluster_connected(cl))
        cl->on_connect(cl->front, cl->on_connect_data);
}

static void
on_slots(sk_redis_t *conn, redisReply *reply, const char *err, void *data)
{
    sk_redis_cluster_t *cl = data;
    sk_rc_enter(cl);
    cl->inflight--;
    cl->refreshing = 0;
    cl->last_refresh = sk_rc_now_ms(cl);
    if (cl->freeing) {
        sk_rc_leave(cl);
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
    sk_rc_leave(cl);
}

void
sk_rc_refresh(sk_redis_cluster_t *cl)
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
                sk_rc_ensure_conn(cl, n); /* a conn in back-off keeps retrying on its own */
                break;
            }
        }
        return;
    }
    if (sk_redis_conn_formatted(ask->conn, on_slots, cl, sk_rc_now_ms(cl) + cl->timeout_ms, 0, cl->slots_cmd,
                                (size_t)cl->slots_len) == 0) {
        cl->refreshing = 1;
        cl->inflight++;
    }
}

void
sk_rc_on_house(sk_timer_t *t, void *data)
{
    sk_redis_cluster_t *cl = data;
    sk_rc_enter(cl);
    uint64_t now = sk_rc_now_ms(cl);
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
        sk_rc_refresh(cl);
    sk_rc_place_subscriber(cl); /* a subscriber whose master went down moves to another master */
    if (!cl->map_known && !cl->logged_no_map && now - cl->created_at > 5000) {
        cl->logged_no_map = 1;
        sk_logf(SK_LOG_WARN, cl->who, "redis cluster %s: no slot map yet", cl->host->conf.redis_addr);
    }
    if (!cl->freeing)
        sk_timer_start(t, HOUSE_MS);
    sk_rc_leave(cl);
}
