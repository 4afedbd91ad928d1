/*
 * Internal host interfaces. Plugins never include this file; they see include/seckill/plugin.h only.
 */
#ifndef SK_HOST_H
#define SK_HOST_H

#include <pthread.h>
#include <stdatomic.h>
#include <ev.h>
#include "seckill/plugin.h"

#define SK_MAX_PLUGINS 8
#define SK_MAX_THREADS 64

typedef struct st_sk_lua_thread_t sk_lua_thread_t; /* lua_policy.c */
typedef struct st_sk_etcd_t sk_etcd_t;             /* etcd_*.c */
/* lua_status.c: the policy table behind /status */
typedef struct st_sk_policy_table_t sk_policy_table_t;

typedef struct st_sk_task_t {
    struct st_sk_task_t *next;
    sk_task_cb fn;
    void *arg;
} sk_task_t;

struct st_sk_thread_t {
    sk_host_t *host;
    sk_thread_kind_t kind;
    unsigned index;
    pthread_t tid;
    /* exactly one of the two loops exists: h2o evloop for HTTP and ADMIN threads, libev for CONTROL and WORKER */
    h2o_evloop_t *h2o_loop;
    struct ev_loop *ev_loop;
    h2o_context_t h2o_ctx;          /* HTTP and ADMIN threads */
    h2o_accept_ctx_t accept_ctx[3]; /* per sk_listener_t */
    h2o_socket_t *listen_socks[3];
    int listen_fds[3];              /* opened by the main thread; 0 or -1 = none */
    sk_timer_t *accept_resume;      /* HTTP threads: restarts the listeners that ran out of fds (http.c on_accept) */
    struct st_sk_conn_map_t *conns; /* HTTP threads with the access listener: peer -> fd (conn_probe.c) */
    struct st_sk_metrics_thread_t *metrics;
    /* cross-thread posting */
    pthread_mutex_t post_mu;
    sk_task_t *post_head, *post_tail;
    int post_closed;
    h2o_multithread_queue_t *mq;
    h2o_multithread_receiver_t mq_recv;
    ev_async ev_wakeup;
    /* state */
    atomic_int stop;
    const sk_snapshot_t *snap;
    void *tstates[SK_MAX_PLUGINS];
    sk_lua_thread_t *lua;
    sk_plugin_t *spawned_by; /* WORKER threads: the plugin that asked */
};

struct st_sk_plugin_t {
    sk_host_t *host;
    unsigned index;
    char name[64];
    char path[512];
    void *dl;
    const sk_plugin_desc_t *desc;
    void *inst;
    sk_snapshot_cb on_snapshot;
    sk_etcd_event_cb on_etcd_event;
    unsigned spawn_count;
};

typedef struct st_sk_route_t {
    sk_listener_t listener;
    char path[128];
    sk_plugin_t *plugin;
    sk_handler_cb cb;
    h2o_pathconf_t *pathconf;
} sk_route_t;

struct st_sk_host_t {
    sk_config_t conf;
    const sk_host_api_t *api;
    sk_plugin_t plugins[SK_MAX_PLUGINS];
    size_t nplugins;
    sk_route_t routes[64];
    size_t nroutes;
    int creating; /* registration allowed */

    h2o_globalconf_t h2o_conf;
    h2o_hostconf_t *hostconfs[3];
    h2o_hostconf_t *hostlists[3][2]; /* NULL-terminated lists for accept_ctx.hosts */
    int listen_fds[3];               /* -1 when not listening */

    sk_thread_t *http[SK_MAX_THREADS];
    size_t nhttp;
    sk_thread_t *admin;
    sk_thread_t *control;
    sk_thread_t *workers[SK_MAX_THREADS];
    size_t nworkers;

    atomic_int stopping;
    uint64_t started_at; /* unix ms */

    /* health, written by the control thread */
    atomic_int redis_up;
    atomic_int queue_up; /* redis.queue_addr answers PING (1 without one) */
    /* redis.cluster: masters in the map and how many have a ready conn, and their JSON list (under redis_mu) */
    atomic_int redis_masters, redis_masters_up;
    pthread_mutex_t redis_mu;
    char redis_map_json[4096];
    sk_etcd_t *etcd;
    pthread_mutex_t snap_mu;
    const sk_snapshot_t *latest_snap; /* what was last published; for /status and new threads */

    /* lua_status.c: allocated on first use, freed by sk_policy_status_free */
    sk_policy_table_t *_Atomic policy_table;
};

/* ---- log.c ---- */
int sk_log_open(const char *level, const char *file, char *err, size_t errlen);
void sk_logf(int level, const char *who, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sk_vlogf(int level, const char *who, const char *fmt, va_list ap);
/** Masks a secret for logs: the first 4 characters then "…(N)". out needs 32 bytes. */
const char *sk_log_mask(const char *secret, char *out, size_t outlen);

/* ---- conf.c ---- */
void sk_conf_defaults(sk_config_t *c);
/** Loads FILE (key = value lines, '#' comments), then applies the overrides ("key=value"). 0, or -1 with a message
 * naming the file, the key and what was expected. */
int sk_conf_load(sk_config_t *c, const char *file, char **overrides, size_t noverrides, char *err, size_t errlen);
int sk_conf_set(sk_config_t *c, const char *key, const char *value, char *err, size_t errlen);
/** SPEC §1 start-up refusals that need no server (default secrets or no admin token off loopback). */
int sk_conf_check_exposure(const sk_config_t *c, char *err, size_t errlen);
int sk_conf_parse_addr(const char *addr, char *host, size_t hostlen, uint16_t *port);
int sk_addr_is_loopback(const char *addr);
int sk_conf_has_plugin(const sk_config_t *c, const char *name);

/* ---- thread.c: loops, posting, timers ---- */
/** Creates the thread's loop (h2o evloop for HTTP/ADMIN, libev for CONTROL/WORKER) and its post queue; does not
 * register it in host->http[] etc. Tasks may be posted before it starts. */
sk_thread_t *sk_thread_new(sk_host_t *host, sk_thread_kind_t kind, unsigned index);
/** Starts the pthread: sets sk_thread_self(), calls run(thr), then sk_thread_close_posts(). 0 or -1. */
int sk_thread_start(sk_thread_t *thr, void (*run)(sk_thread_t *));
/** Any thread: sets thr->stop and wakes the loop. */
void sk_thread_request_stop(sk_thread_t *thr);
/** Joins the thread, destroys its loop and releases thr->snap. Any h2o_context_t on the loop must be disposed by then
 * (otherwise the loop is leaked with an error log). Remove the thread from host->http[] etc. before, if other threads
 * may still post or publish to it. */
/** Waits for the thread to end, without freeing it (so that others may still post to it and be refused). */
void sk_thread_join(sk_thread_t *thr);
void sk_thread_join_free(sk_thread_t *thr);
sk_thread_t *sk_thread_self(void);
/** Any thread: runs fn(arg) on `to`, in posting order. 0: fn will run exactly once (even if the thread then stops);
 * -1: it will not (thread closed, queue bound reached, out of memory) and arg stays the caller's. */
int sk_thread_post(sk_thread_t *to, sk_task_cb fn, void *arg);
/** On the thread: runs the tasks queued so far (the loop does this by itself). */
void sk_thread_run_posted(sk_thread_t *thr);
/** On the thread itself, once its loop has ended: refuses further posts (sk_thread_post then returns -1) and runs the
 * tasks already queued, so that each accepted task runs exactly once. Call it before disposing plugin state; the thread
 * wrapper calls it anyway after the run function returns. */
void sk_thread_close_posts(sk_thread_t *thr);
/** Runs one pass of the thread's loop (h2o evloop or libev), waiting at most max_wait_ms. */
void sk_thread_loop_once(sk_thread_t *thr, int max_wait_ms);
/** Timers live on one thread and are used only there. A timer may be started, stopped or freed inside its own
 * callback. */
sk_timer_t *sk_timer_new(sk_thread_t *thr, sk_timer_cb cb, void *data);
/** One-shot, `ms` from now (never earlier); restarting re-arms. 0 runs it in this or the next loop pass. */
void sk_timer_start(sk_timer_t *t, uint64_t ms);
void sk_timer_stop(sk_timer_t *t);
void sk_timer_free(sk_timer_t *t);
/** CLOCK_MONOTONIC in ms (the same clock on both loop kinds). */
uint64_t sk_thread_now_ms(sk_thread_t *thr);
/** Gives `snap` (one reference owned by the caller, kept) to every thread; each swaps it in on its loop and calls the
 * plugins' on_snapshot hooks. */
void sk_host_publish_snapshot(sk_host_t *host, const sk_snapshot_t *snap);
/** The snapshot most recently published, with a reference the caller must release. */
const sk_snapshot_t *sk_host_latest_snapshot(sk_host_t *host);

/* ---- snapshot.c (refcounted immutable snapshots) ---- */
const sk_snapshot_t *sk_snapshot_empty(void);
void sk_snapshot_retain(const sk_snapshot_t *s);
void sk_snapshot_release(const sk_snapshot_t *s);

/* ---- redis_client.c: the API's redis_* functions ---- */
/** On `thr` (which owns it from then on): starts connecting to conf.redis_host:redis_port (an IP; no DNS on loop
 * threads). Usable once AUTH (or PING) answered; reconnects with back-off 50..500 ms. `who` prefixes its logs. */
sk_redis_t *sk_redis_new(sk_host_t *host, sk_thread_t *thr, const char *who);
/** Fails every pending callback with "disconnected" and frees the client; safe inside its own callbacks. NULL is ok. */
void sk_redis_free(sk_redis_t *r);
int sk_redis_connected(sk_redis_t *r);
/** Queues a command with a deadline (timeout_ms, 0 = redis.timeout_ms). 0: cb runs exactly once, with the reply
 * (possibly an error reply) or with err "timeout" / "disconnected"; when any deadline passes, the connection is dropped
 * and every pending command fails at once. -1 (cb never runs): not connected, a subscriber connection, a push command
 * (SUBSCRIBE, MONITOR…), or too many pending. argvlen NULL = strlen. */
int sk_redis_cmdargv(sk_redis_t *r, sk_redis_cb cb, void *data, unsigned timeout_ms, int argc, const char **argv,
                     const size_t *argvlen);
/** As sk_redis_cmdargv, routed by `route_key`'s hash slot with redis.cluster (sk_host_api_t.redis_cmdargv_at). */
int sk_redis_cmdargv_at(sk_redis_t *r, const char *route_key, size_t route_len, sk_redis_cb cb, void *data, unsigned timeout_ms,
                        int argc, const char **argv, const size_t *argvlen);
/** As sk_redis_cmdargv, hiredis format (%s %b %d …), default deadline. */
int sk_redis_vcmd(sk_redis_t *r, sk_redis_cb cb, void *data, const char *fmt, va_list ap);
/** The hiredis-format command (%s, %b, ...), as sk_redis_vcmd. */
int sk_redis_cmd(sk_redis_t *r, sk_redis_cb cb, void *data, const char *fmt, ...);
/** Makes `r` a subscriber (refused once it ran commands): subscribes now or when connected, and again after every
 * reconnect; cb gets each message. No deadlines apply to a subscriber. At most 64 channels; -1 on a duplicate. */
int sk_redis_subscribe(sk_redis_t *r, const char *channel, sk_redis_msg_cb cb, void *data);
/** cb runs on the owning thread each time the connection is up and authenticated (after re-subscribing). */
void sk_redis_on_connect(sk_redis_t *r, void (*cb)(sk_redis_t *r, void *data), void *data);
/** redis.cluster: writes the masters of the slot map as a JSON array ([{"addr","slots","up"}]) into buf and their
 * counts; -1 for a single-Redis client. On the owning thread. */
int sk_redis_describe(sk_redis_t *r, char *buf, size_t len, int *masters, int *up);
/** Blocking, for start-up only: connects, AUTHs and runs one command, each with redis.timeout_ms. NULL with err on a
 * connect, AUTH or I/O failure; a Redis error reply is returned as a reply (type REDIS_REPLY_ERROR). */
redisReply *sk_redis_sync_command(const sk_config_t *c, char *err, size_t errlen, const char *fmt, ...);

/* ---- etcd_*.c ---- */
/** Main thread: prepares the client (no I/O). */
sk_etcd_t *sk_etcd_new(sk_host_t *host);
/** Control thread: loads the prefix, publishes the first snapshot, starts the watch; never blocks for long. If etcd is
 * down it publishes a snapshot with the file policies and keeps retrying. */
void sk_etcd_start(sk_etcd_t *e, sk_thread_t *control);
void sk_etcd_stop(sk_etcd_t *e); /* control thread */
void sk_etcd_free(sk_etcd_t *e);
int sk_etcd_is_up(sk_etcd_t *e);               /* any thread */
void sk_etcd_status(sk_etcd_t *e, cJSON *obj); /* any thread */
int sk_etcd_put(sk_etcd_t *e, const char *key, const char *value, size_t len, int64_t *rev, char *err, size_t errlen);
int sk_etcd_delete(sk_etcd_t *e, const char *key, int64_t *rev, char *err, size_t errlen);
int sk_etcd_range(sk_etcd_t *e, const char *key_prefix,
                  void (*cb)(void *arg, const char *key, const char *value, size_t len, int64_t mod_revision), void *arg, char *err,
                  size_t errlen);

/* ---- lua_*.c: the policy engine ---- */
sk_lua_thread_t *sk_lua_thread_new(sk_host_t *host);
void sk_lua_thread_free(sk_lua_thread_t *lt);
/** Swaps in the snapshot's policy sources (compiling those whose sha256 changed); keeps the old one on failure. */
void sk_lua_thread_apply(sk_lua_thread_t *lt, const sk_snapshot_t *snap);
int sk_policy_admit(sk_lua_thread_t *lt, const sk_policy_req_t *r, char *reason, size_t reasonlen);
int sk_policy_allow(sk_lua_thread_t *lt, const sk_policy_req_t *r, const sk_policy_activity_t *a);
int sk_policy_issue(sk_lua_thread_t *lt, const sk_policy_req_t *r, const sk_policy_activity_t *a, char *token, size_t tokencap,
                    int64_t *ttl);
/** Compiles `src` in a scratch sandbox, checks the required function exists and a sample call returns the right types. */
int sk_policy_validate(const sk_config_t *c, const char *name, const char *src, size_t len, char *err, size_t errlen);
/** Loads policies.dir/<name> for the names the engine knows. 0, or -1 with err. */
int sk_policy_check_dir(const sk_config_t *c, char *err, size_t errlen);
/** Policy state for /status: per name: sha256, revision, last error. Any thread. */
void sk_policy_status(sk_host_t *host, cJSON *arr);
/** Records the outcome of loading one policy version: error NULL = (sha256, revision) is in effect; otherwise that
 * version was rejected with `error` (the one in effect stays). Idempotent; any thread. */
void sk_policy_record(sk_host_t *host, const char *name, const char *sha256, int64_t revision, const char *error);
/** Frees the policy table (main thread, after all threads were joined). */
void sk_policy_status_free(sk_host_t *host);

/* ---- stats_publish.c: this node's counters in Redis for the admin's dashboard ---- */
#define SK_STATS_PUBLISH_MS 500 /* twice per dashboard refresh, so that every refresh sees a new sample */
#define SK_STATS_TTL_MS 5000
typedef struct st_sk_stats_pub_t sk_stats_pub_t;
sk_stats_pub_t *sk_stats_pub_new(sk_host_t *host);
/** Control thread: publishes the node's hash and index entry, unless the previous publication is still pending. */
void sk_stats_pub_tick(sk_stats_pub_t *p, sk_redis_t *r);
/** After the Redis client that served it was freed (its callbacks reference p). */
void sk_stats_pub_free(sk_stats_pub_t *p);
/** The q-quantile (0..1) of bucket counts b[0..nb) whose upper bounds are le_us[0..nb-1) (the last is +Inf), in µs,
 * interpolated inside its bucket; -1 when the histogram is empty. Pure. */
int64_t sk_stats_quantile_us(const uint64_t *b, size_t nb, const int64_t *le_us, double q);

/* ---- plugin_loader.c ---- */
int sk_plugins_load(sk_host_t *host, const char *dir, char *err, size_t errlen);
int sk_plugin_load_one(sk_host_t *host, const char *path, char *err, size_t errlen);
void sk_plugins_destroy(sk_host_t *host);
extern const sk_host_api_t sk_host_api;

/* ---- http.c / status.c ---- */
int sk_http_setup(sk_host_t *host, char *err, size_t errlen);
void sk_http_thread_init(sk_thread_t *thr);
void sk_http_close_listeners(sk_thread_t *thr);
void sk_http_reply(h2o_req_t *req, int code, const char *message, const char *data_json);
void sk_http_reply_raw(h2o_req_t *req, int http_status, const char *content_type, const char *body, size_t len);
int sk_http_req_body(h2o_req_t *req, h2o_iovec_t *body);

/* conn_probe.c: which accepted fd carries which peer, to notice a client that closed while its request waits */
typedef struct st_sk_conn_map_t sk_conn_map_t;
sk_conn_map_t *sk_conn_map_new(void);
void sk_conn_map_free(sk_conn_map_t *m);
/** Remembers that fd carries the connection from `peer` (bounded: may evict an older slot). */
void sk_conn_map_note(sk_conn_map_t *m, const struct sockaddr *peer, socklen_t len, int fd);
/** The fd last noted for `peer`, or -1. */
int sk_conn_map_find(const sk_conn_map_t *m, const struct sockaddr *peer, socklen_t len);
/** 1 if fd still carries `peer` and the peer has closed or reset, 0 if it is open, -1 unknown (fd is another's). */
int sk_conn_peer_closed(int fd, const struct sockaddr *peer, socklen_t len);
/** The API's req_peer_closed (on the request's HTTP thread). */
int sk_http_req_peer_closed(h2o_req_t *req);
void sk_http_thread_dispose(sk_thread_t *thr);
/** Serves /healthz (and on the status listener /status and /metrics). 0 if it answered, -1 if the path is not its. */
int sk_status_handle(sk_host_t *host, sk_listener_t listener, h2o_req_t *req);

#endif
