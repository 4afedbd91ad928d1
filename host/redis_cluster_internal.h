/*
 * What the Redis Cluster router's two files share (host/redis_cluster.c: commands, redirects and subscriptions;
 * host/redis_cluster_map.c: the slot map and its refresh). Not for anything outside the router.
 */
#ifndef SK_REDIS_CLUSTER_INTERNAL_H
#define SK_REDIS_CLUSTER_INTERNAL_H

#include <stdint.h>
#include "redis_cluster.h"
#include "sk_cluster.h"

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

/* redis_cluster.c */
uint64_t sk_rc_now_ms(sk_redis_cluster_t *cl);
/* Callbacks may re-enter the router; enter/leave count the depth so that a free during a callback waits for the end. */
void sk_rc_enter(sk_redis_cluster_t *cl);
void sk_rc_leave(sk_redis_cluster_t *cl);
/** The index of node ip:port, added when `add` and there is room; -1 if absent. */
int sk_rc_find_node(sk_redis_cluster_t *cl, const char *ip, int port, int add);
/** Opens n's conn unless it has one. */
void sk_rc_ensure_conn(sk_redis_cluster_t *cl, node_t *n);
/** Puts the subscriber on a ready master (the one it is on while that one is up). */
void sk_rc_place_subscriber(sk_redis_cluster_t *cl);

/* redis_cluster_map.c */
void sk_rc_on_conn_up(sk_redis_t *conn, void *data);
void sk_rc_refresh(sk_redis_cluster_t *cl);
void sk_rc_on_house(sk_timer_t *t, void *data);

#endif
