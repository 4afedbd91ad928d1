/*
 * Internal to the host: the Redis Cluster router (redis_cluster.c) and the single-connection calls it builds on
 * (redis_client.c). With redis.cluster = false none of this runs: sk_redis_t is one connection, as before.
 */
#ifndef SK_REDIS_CLUSTER_H
#define SK_REDIS_CLUSTER_H

#include <stdint.h>
#include "host.h"

typedef struct st_sk_redis_cluster_t sk_redis_cluster_t;

enum { SK_CONN_DOWN, SK_CONN_CONNECTING, SK_CONN_READY };

/* ---- redis_client.c: one connection (a "conn"), used by the router for each master ---- */
/** A connection to ip:port on `thr`, with the reconnect and deadline rules of sk_redis_new. */
sk_redis_t *sk_redis_conn_new(sk_host_t *host, sk_thread_t *thr, const char *who, const char *ip, int port);
/** SK_CONN_DOWN (in back-off, or freed), SK_CONN_CONNECTING (connect or handshake under way), SK_CONN_READY. */
int sk_redis_conn_state(sk_redis_t *r);
/** The address the conn was made for. */
const char *sk_redis_conn_addr(sk_redis_t *r, int *port);
/** Queues an already formatted command (hiredis keeps its own copy) with an absolute deadline (sk_thread_now_ms),
 * preceded by ASKING when `asking`. 0: cb runs exactly once, as with sk_redis_cmdargv. -1: not ready (cb never runs). */
int sk_redis_conn_formatted(sk_redis_t *r, sk_redis_cb cb, void *data, uint64_t deadline, int asking, const char *cmd, size_t len);

/* ---- redis_cluster.c: the router behind an sk_redis_t made with redis.cluster = true ---- */
/** Starts learning the slot map from the seeds of conf.redis_addr. `front` is what user callbacks receive. */
sk_redis_cluster_t *sk_redis_cluster_new(sk_redis_t *front, sk_host_t *host, sk_thread_t *thr, const char *who);
/** Fails every pending command ("disconnected") and frees the router and `front`; safe inside callbacks. */
void sk_redis_cluster_free(sk_redis_cluster_t *cl);
/** True once the slot map is known and a master conn is ready (for a subscriber: its conn is ready). */
int sk_redis_cluster_connected(sk_redis_cluster_t *cl);
void sk_redis_cluster_on_connect(sk_redis_cluster_t *cl, void (*cb)(sk_redis_t *r, void *data), void *data);
/** Routes by route_key when given, else by sk_cluster_command_key; SCRIPT goes to every master. */
int sk_redis_cluster_cmdargv(sk_redis_cluster_t *cl, const char *route_key, size_t route_len, sk_redis_cb cb, void *data,
                             unsigned timeout_ms, int argc, const char **argv, const size_t *argvlen);
/** As sk_redis_cluster_cmdargv for a command formatted by hiredis; takes `cmd` (freed with redisFreeCommand). */
int sk_redis_cluster_formatted(sk_redis_cluster_t *cl, sk_redis_cb cb, void *data, unsigned timeout_ms, char *cmd, size_t len);
/** See sk_redis_describe. */
void sk_redis_cluster_describe(sk_redis_cluster_t *cl, char *buf, size_t len, int *masters, int *up);
int sk_redis_cluster_subscribe(sk_redis_cluster_t *cl, const char *channel, sk_redis_msg_cb cb, void *data);

#endif
