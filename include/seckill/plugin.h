/*
 * SecKill plugin ABI.
 *
 * A plugin is a shared object that exports exactly one symbol, SK_PLUGIN_ENTRY_SYMBOL, returning a
 * descriptor. The host checks the descriptor's ABI number, size and build signature before it calls
 * into the plugin, then hands it the host API table (sk_host_api_t). Plugins reach the host only
 * through that table: they are linked with -Wl,-z,defs and cannot see a host symbol.
 *
 * Threads:
 *  - SK_THREAD_HTTP: N h2o evloop threads serving the access and status listeners.
 *  - SK_THREAD_ADMIN: one h2o evloop thread serving the admin listener (blocking SQLite/etcd is fine there).
 *  - SK_THREAD_CONTROL: one libev thread (etcd watch, timers, periodic Redis jobs).
 *  - SK_THREAD_WORKER: libev threads a plugin asks for with api->thread_spawn (the logic consumers).
 * Every function of the table documents on which thread it may be called. "any" means any thread.
 */
#ifndef SECKILL_PLUGIN_H
#define SECKILL_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <h2o.h>
#include <h2o/version.h>
#include <hiredis/hiredis.h>
#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SK_PLUGIN_ABI 1
#define SK_BUILD_SIGNATURE "seckill-abi2/h2o-" H2O_VERSION "/hiredis-0.14/lua5.4"
#define SK_PLUGIN_ENTRY_SYMBOL "sk_plugin_entry"
#define SK_PLUGIN_EXPORT __attribute__((visibility("default")))

/* Shipped development defaults; seckilld refuses them on a non-loopback listener. */
#define SK_DEV_AUTH_SECRET "seckill-dev-secret-change-me"
#define SK_DEV_TOKEN_SECRET "seckill-dev-token-secret-change-me"

typedef struct st_sk_host_t sk_host_t;     /* the process */
typedef struct st_sk_plugin_t sk_plugin_t; /* the host's record of one loaded plugin (the plugin's handle) */
typedef struct st_sk_thread_t sk_thread_t; /* a host thread with an event loop */
typedef struct st_sk_timer_t sk_timer_t;   /* one-shot timer bound to one thread */
typedef struct st_sk_redis_t sk_redis_t;   /* async Redis connection bound to one thread */
typedef struct st_sk_host_api_t sk_host_api_t;

typedef enum en_sk_thread_kind_t {
    SK_THREAD_HTTP = 0,
    SK_THREAD_ADMIN = 1,
    SK_THREAD_CONTROL = 2,
    SK_THREAD_WORKER = 3,
} sk_thread_kind_t;

typedef enum en_sk_listener_t {
    SK_LISTENER_ACCESS = 0,
    SK_LISTENER_ADMIN = 1,
    SK_LISTENER_STATUS = 2,
} sk_listener_t;

enum { SK_LOG_DEBUG = 0, SK_LOG_INFO = 1, SK_LOG_WARN = 2, SK_LOG_ERROR = 3 };

/* SPEC §2 codes. */
enum {
    SK_OK = 0,
    SK_E_INVALID = 1001,
    SK_E_NOT_FOUND = 1002,
    SK_E_AUTH = 1003,
    SK_E_DENIED = 1004,
    SK_E_NOT_STARTED = 1005,
    SK_E_ENDED = 1006,
    SK_E_SOLD_OUT = 1007,
    SK_E_TIMEOUT = 1008,
    SK_E_DISABLED = 1009,
    SK_E_RATE_LIMITED = 1010,
    SK_E_NOT_SELECTED = 1011,
    SK_E_ALREADY_BOUGHT = 1012,
    SK_E_UNAVAILABLE = 1013,
    SK_E_CONFLICT = 1014,
    SK_E_ADMIN_AUTH = 1015,
};

/* The whole configuration, parsed and validated by the host. Read-only for plugins. Strings are never NULL. */
typedef struct st_sk_config_t {
    char plugins[256];
    char plugin_dir[512]; /* extra key: where <name>.so live; default: <dir of seckilld>/plugins */
    char node_id[128];
    unsigned threads;
    char access_listen[64], admin_listen[64], status_listen[64];
    char redis_addr[1024], redis_password[256]; /* redis.addr: IP:port, or with redis.cluster a comma-separated seed list */
    unsigned redis_timeout_ms;
    char redis_host[48]; /* the first address of redis_addr, split */
    uint16_t redis_port;
    int redis_cluster;            /* redis.cluster (0/1): redis_addr lists seed nodes of a Redis Cluster (SPEC §9) */
    unsigned redis_wait_replicas; /* redis.wait_replicas: a win is told only after WAIT confirms this many replicas */
    char etcd_endpoints[1024], etcd_prefix[128];
    char auth_secret[256];
    unsigned auth_window;
    unsigned access_request_timeout_ms;
    char access_referer_whitelist[2048], access_trusted_proxies[1024];
    unsigned access_max_inflight, access_limiter_max_entries;
    size_t http_max_body;
    unsigned lua_mem_limit_kb, lua_instr_limit;
    char logic_token_secret[256];
    unsigned logic_token_ttl;
    char admin_db[512], admin_token[256];
    char policies_dir[512];
    char log_level[16];
    char log_file[512];            /* extra key: empty = stderr */
    unsigned http_idle_timeout_ms; /* extra key http.idle_timeout_ms */
    int http2;                     /* extra key http.http2 (0/1), off by default */
    char admin_console_dir[512];   /* extra key admin.console_dir: the console's files; default <dir of seckilld>/console */
    char admin_chart_js[512];      /* extra key admin.chart_js: Debian's libjs-chart.js UMD build, served as /chart.js */
    /* extra key redis.queue_addr: empty, or one plain Redis (IP:port, no cluster) that holds the request queues and
     * their nonces, so that queueing costs no durable write (README "A separate queue Redis") */
    char redis_queue_addr[64];
    char redis_queue_host[48];
    uint16_t redis_queue_port;
} sk_config_t;

/* ---- the etcd snapshot (immutable; a thread's pointer stays valid until that thread returns to its loop) ---- */

typedef struct st_sk_product_t {
    int64_t product_id;
    char name[132];
    int64_t total;
    int status;
} sk_product_t;

/* An activity's stock may be split over this many buckets at most (SPEC §9). */
#define SK_MAX_SHARDS 64

typedef struct st_sk_activity_t {
    int64_t activity_id;
    int64_t product_id;
    char name[132];
    int64_t start_time, end_time; /* [start, end) unix seconds */
    int64_t total;
    int status;    /* 0 disabled, 1 enabled */
    int64_t speed; /* max wins per second, 0 = unlimited */
    int64_t buy_limit;
    double buy_rate;
    int shards; /* 1..SK_MAX_SHARDS stock buckets (SPEC §9); 1 = the unsharded layout */
} sk_activity_t;

/* The bucket count of an activity; a zeroed struct (tests, older callers) counts as unsharded. */
static inline int
sk_activity_shards(const sk_activity_t *a)
{
    return a->shards > 1 ? a->shards : 1;
}

typedef struct st_sk_policy_src_t {
    char name[64]; /* e.g. "limits.lua" */
    const char *src;
    size_t len;
    int64_t revision; /* etcd mod_revision; 0 = the file in policies.dir */
    char sha256[65];
} sk_policy_src_t;

typedef struct st_sk_snapshot_t {
    int64_t revision; /* etcd store revision this snapshot reflects */
    size_t nproducts;
    const sk_product_t *products; /* sorted by product_id */
    size_t nactivities;
    const sk_activity_t *activities; /* sorted by (product_id, start_time, activity_id) */
    size_t npolicies;
    const sk_policy_src_t *policies; /* the validated sources in effect (etcd, else file), sorted by name */
} sk_snapshot_t;

/* ---- policy call arguments (SPEC §7) ---- */

typedef struct st_sk_policy_req_t {
    int64_t user_id, product_id, now;
    const char *ip;
    /* limits.lua only */
    uint32_t user_sec, user_min, ip_sec, ip_min;
} sk_policy_req_t;

typedef struct st_sk_policy_activity_t {
    const sk_activity_t *activity;
    int64_t sold, left;
} sk_policy_activity_t;

/* ---- callbacks ---- */

/** An HTTP handler. Runs on the thread that accepted the connection. Return 0 when it will answer (now or later), -1 to
 * let the host answer 404. `tstate` is what the plugin's thread_init returned for this thread. */
typedef int (*sk_handler_cb)(void *inst, void *tstate, h2o_req_t *req);
typedef void (*sk_task_cb)(void *arg);
typedef void (*sk_timer_cb)(sk_timer_t *timer, void *data);
/** A Redis reply. Exactly one of reply / err is non-NULL. err is "timeout", "disconnected", "not connected" or a
 * hiredis message. The reply is freed by the host after the callback returns. */
typedef void (*sk_redis_cb)(sk_redis_t *r, redisReply *reply, const char *err, void *data);
/** A message on a subscribed channel. */
typedef void (*sk_redis_msg_cb)(sk_redis_t *r, const char *channel, const char *msg, size_t len, void *data);
/** Called when a thread's snapshot changes (on that thread). */
typedef void (*sk_snapshot_cb)(void *inst, void *tstate, const sk_snapshot_t *snap);
/** A raw etcd event under the prefix, on the control thread, in revision order (key relative to the prefix). */
typedef void (*sk_etcd_event_cb)(void *inst, const char *key, const char *value, size_t len, int64_t mod_revision, int is_delete);

/* ---- the plugin descriptor ---- */

typedef struct st_sk_plugin_desc_t {
    uint32_t abi;  /* SK_PLUGIN_ABI */
    uint32_t size; /* sizeof(sk_plugin_desc_t) */
    const char *name;
    const char *version;
    const char *build_signature; /* SK_BUILD_SIGNATURE */
    /** Main thread, before any thread starts. Read config, register routes and hooks through `api`. Returns the
     * instance, or NULL with `err` filled; the host then undoes what this plugin registered and unloads it. */
    void *(*create)(const sk_host_api_t *api, sk_plugin_t *self, char *err, size_t errlen);
    /** On each thread of kind HTTP, ADMIN, CONTROL and each WORKER the plugin spawned, after the loop exists and before
     * it runs. Returns the plugin's per-thread state (may be NULL). */
    void *(*thread_init)(void *inst, sk_thread_t *thr);
    /** On the same thread, after its loop stopped. */
    void (*thread_dispose)(void *inst, sk_thread_t *thr, void *tstate);
    /** Main thread, on SIGTERM/SIGINT: stop taking new work. In-flight requests still get their answers. */
    void (*stop)(void *inst);
    /** Main thread, the number of requests still waiting for an answer (the host waits for 0, bounded). May be NULL. */
    size_t (*inflight)(void *inst);
    /** Main thread, after all threads were joined. */
    void (*destroy)(void *inst);
    /** Any thread: add fields to the /status JSON object of this plugin. May be NULL. */
    void (*status)(void *inst, cJSON *obj);
    /** Any thread: write Prometheus text lines (names prefixed seckill_). May be NULL. */
    void (*metrics)(void *inst, FILE *out);
} sk_plugin_desc_t;

typedef const sk_plugin_desc_t *(*sk_plugin_entry_fn)(void);

/* ---- the host API table ---- */

#define SK_HOST_API_VERSION 4

struct st_sk_host_api_t {
    uint32_t version; /* SK_HOST_API_VERSION */
    uint32_t size;    /* sizeof(sk_host_api_t) */

    /* config and logging (any thread) */
    const sk_config_t *(*config)(sk_plugin_t *self);
    void (*log)(sk_plugin_t *self, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
    /** true while shutdown is in progress */
    int (*stopping)(sk_plugin_t *self);

    /* registration (only inside create) */
    int (*route)(sk_plugin_t *self, sk_listener_t listener, const char *path_prefix, sk_handler_cb cb);
    int (*on_snapshot)(sk_plugin_t *self, sk_snapshot_cb cb);
    int (*on_etcd_event)(sk_plugin_t *self, sk_etcd_event_cb cb);

    /* HTTP replies (on the request's thread). Sets status from the code (SPEC §2), Content-Type, Cache-Control on
     * /sec/ paths, Retry-After on 1010/1011, and records metrics. data_json may be NULL (sent as null). */
    void (*reply)(h2o_req_t *req, int code, const char *message, const char *data_json);
    void (*reply_raw)(h2o_req_t *req, int http_status, const char *content_type, const char *body, size_t len);
    /** Reads the whole request body (bounded by http.max_body). Returns 0, or -1 if it is too large. */
    int (*req_body)(h2o_req_t *req, h2o_iovec_t *body);

    /* threads (any thread unless said) */
    sk_thread_t *(*thread_self)(void); /* NULL on a non-host thread */
    sk_thread_kind_t (*thread_kind)(sk_thread_t *thr);
    unsigned (*thread_index)(sk_thread_t *thr); /* 0..n-1 within its kind */
    size_t (*nhttp_threads)(sk_plugin_t *self);
    sk_thread_t *(*http_thread)(sk_plugin_t *self, size_t i);
    sk_thread_t *(*control_thread)(sk_plugin_t *self);
    sk_thread_t *(*admin_thread)(sk_plugin_t *self); /* NULL if no admin thread */
    /** Runs fn(arg) on `to`'s loop soon. Returns 0, or -1 if the thread is gone (fn is then not called). */
    int (*post)(sk_thread_t *to, sk_task_cb fn, void *arg);
    /** Only inside create: asks for a libev WORKER thread; thread_init is called on it with kind SK_THREAD_WORKER. */
    int (*thread_spawn)(sk_plugin_t *self, unsigned count);
    /** The plugin's per-thread state on `thr` (what thread_init returned). Only on `thr` itself. */
    void *(*tstate)(sk_plugin_t *self, sk_thread_t *thr);

    /* timers (only on the owning thread) */
    sk_timer_t *(*timer_new)(sk_thread_t *thr, sk_timer_cb cb, void *data);
    void (*timer_start)(sk_timer_t *t, uint64_t ms); /* one-shot; restarting re-arms */
    void (*timer_stop)(sk_timer_t *t);
    void (*timer_free)(sk_timer_t *t);
    uint64_t (*now_ms)(sk_thread_t *thr); /* loop time, monotonic */

    /* Redis (only on the owning thread). The connection uses redis.addr / password / timeout_ms, reconnects with
     * back-off, and fails every pending callback when a command passes its deadline. */
    sk_redis_t *(*redis_new)(sk_plugin_t *self, sk_thread_t *thr);
    void (*redis_free)(sk_redis_t *r); /* fails pending callbacks with "disconnected" */
    int (*redis_connected)(sk_redis_t *r);
    /** Queues a command. Returns 0, or -1 when not connected (cb is then not called). timeout_ms 0 = redis.timeout_ms */
    int (*redis_cmdargv)(sk_redis_t *r, sk_redis_cb cb, void *data, unsigned timeout_ms, int argc, const char **argv,
                         const size_t *argvlen);
    int (*redis_cmd)(sk_redis_t *r, sk_redis_cb cb, void *data, const char *fmt, ...);
    /** Subscribes to a channel on a connection used only for subscriptions; re-subscribes after reconnects. */
    int (*redis_subscribe)(sk_redis_t *r, const char *channel, sk_redis_msg_cb cb, void *data);
    /** Called (on the owning thread) each time the connection comes up; may be NULL. With redis.cluster: each time a
     * master's connection comes up (the first time once the slot map is known). */
    void (*redis_on_connect)(sk_redis_t *r, void (*cb)(sk_redis_t *r, void *data), void *data);

    /* snapshot (on a host thread: the thread's current snapshot; never NULL) */
    const sk_snapshot_t *(*snapshot)(sk_thread_t *thr);

    /* etcd, blocking with a deadline; call only on the ADMIN or CONTROL thread. key is relative to etcd.prefix.
     * Return 0, or -1 with err filled. */
    int (*etcd_put)(sk_plugin_t *self, const char *key, const char *value, size_t len, int64_t *revision, char *err, size_t errlen);
    int (*etcd_delete)(sk_plugin_t *self, const char *key, int64_t *revision, char *err, size_t errlen);
    /** Lists keys under key_prefix (relative). cb is called for each, inline. */
    int (*etcd_range)(sk_plugin_t *self, const char *key_prefix,
                      void (*cb)(void *arg, const char *key, const char *value, size_t len, int64_t mod_revision), void *arg,
                      char *err, size_t errlen);
    int (*etcd_up)(sk_plugin_t *self);

    /* Lua policies (on a host thread; each thread has its own states, swapped when the snapshot changes).
     * Each returns -1 on a failing call (budget, error, wrong types) after writing an error log. */
    int (*policy_admit)(sk_thread_t *thr, const sk_policy_req_t *r, char *reason, size_t reasonlen); /* 1/0/-1 */
    int (*policy_allow)(sk_thread_t *thr, const sk_policy_req_t *r, const sk_policy_activity_t *a);  /* 1/0/-1 */
    /** token: NUL-terminated, 16..128 printable bytes; ttl: seconds (logic.token_ttl if the policy gave none) */
    int (*policy_issue)(sk_thread_t *thr, const sk_policy_req_t *r, const sk_policy_activity_t *a, char *token, size_t tokencap,
                        int64_t *ttl); /* 0/-1 */
    /** Compiles and validates a policy source in a scratch state (any thread). 0, or -1 with the Lua error. */
    int (*policy_validate)(sk_plugin_t *self, const char *name, const char *src, size_t len, char *err, size_t errlen);

    /* ---- version 2 ---- */
    /** As redis_cmdargv, but with redis.cluster the command goes to the master of `route_key`'s hash slot instead of
     * its own first key's: for keyless commands that must reach one master, such as WAIT after a script on the same
     * connection. Without a cluster it is redis_cmdargv. */
    int (*redis_cmdargv_at)(sk_redis_t *r, const char *route_key, size_t route_len, sk_redis_cb cb, void *data, unsigned timeout_ms,
                            int argc, const char **argv, const size_t *argvlen);

    /* ---- version 3 ---- */
    /** On the request's HTTP thread, for a request on the access listener: 1 if its client has closed or reset the
     * connection, 0 if it is still open, -1 if the host cannot tell (the request then waits for its deadline). One
     * getpeername and one poll; meant for requests that have waited a while, not for every request. */
    int (*req_peer_closed)(h2o_req_t *req);

    /* ---- version 4 ---- */
    /** On the owning thread: a connection to the queue Redis, redis.queue_addr (a plain Redis, also when redis.cluster
     * is on), with redis.password and the rules of redis_new. NULL when redis.queue_addr is empty: the queues then
     * live on redis_new's connection. */
    sk_redis_t *(*redis_new_queue)(sk_plugin_t *self, sk_thread_t *thr);
};

#ifdef __cplusplus
}
#endif

#endif
