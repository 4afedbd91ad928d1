/*
 * The access plugin's internals: the instance, the per-thread states, and what the files share.
 *
 * Threads (plugin.h): HTTP threads run the /sec/ handlers; each owns a command connection (the queue script, /sec/result)
 * and a subscription connection to its reply channel. The control thread polls Redis (clock offset, live logic nodes,
 * sold counts) and loads the blacklists, and posts immutable results to the HTTP threads, so that a request never
 * waits on anything but its own queue round trip.
 */
#ifndef SK_ACCESS_H
#define SK_ACCESS_H

#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include "seckill/plugin.h"
#include "sk_form.h"
#include "sk_sign.h"
#include "blacklist.h"
#include "client.h"
#include "limiter.h"
#include "params.h"
#include "replay.h"
#include "sk_keys.h"
#include "sk_scripts.h"
#include "sk_shard.h"
#include "state.h"

#define SK_ACCESS_QUEUE_MAX 500000       /* XLEN sk:queue bound checked by the queue script */
#define SK_ACCESS_REPLAY_CAP 262144      /* (user, nance) pairs remembered by one node */
#define SK_ACCESS_OVERLAY_CAP 32768      /* blacklist changes held per thread between two full loads */
#define SK_ACCESS_OPS_BEFORE_RELOAD 8192 /* incremental changes that trigger a full reload instead */
#define SK_ACCESS_POLL_MS 250            /* control poll: offset, live logic nodes, sold counts */
#define SK_ACCESS_BL_RELOAD_MS 60000
#define SK_ACCESS_ALIVE_WINDOW_MS 3000
#define SK_ACCESS_ALIVE_HOLD_MS 5000 /* a failed read of the live-logic count keeps the last good one this long */
#define SK_ACCESS_MAX_POLLED 4096    /* activities polled for sold counts */
#define SK_ACCESS_LEARNED 16         /* sold-out flags learned from 1007 answers, per thread */
#define SK_ACCESS_PROBE_MS 250       /* a waiting /sec/kill is probed for a closed client after this, then this often */
#define SK_ACCESS_PROBE_MAX 4096     /* probes per thread per tick (the oldest waiting first) */
#define SK_ACCESS_SUB_GRACE_MS 1000  /* redis.cluster: how long requests are still queued while the subscriber moves */

typedef struct st_sk_access_control_t sk_access_control_t;
typedef struct st_sk_access_pending_t sk_access_pending_t;

/** One activity's shared counts as last read from Redis. total is -1 when the key is missing. With shards > 1, sold is
 * the sum over its buckets and total the snapshot's (stock in flight between buckets belongs to none of them). */
typedef struct st_sk_access_sold_t {
    int64_t activity_id, sold, total;
    unsigned shards, waiting; /* buckets whose counts are still due in the poll being built */
    int failed;               /* a bucket's read failed in this poll: the previous counts stand */
} sk_access_sold_t;

/** What the control thread learned in one poll. Immutable once posted; one reference per HTTP thread. */
typedef struct st_sk_access_live_t {
    atomic_size_t refs;
    struct st_sk_access_t *a;
    uint64_t started_ms; /* CLOCK_MONOTONIC ms when the poll was sent */
    int redis_ok;
    int64_t logic_alive; /* live logic nodes; 0 also when unknown */
    int64_t offset_ms;   /* Redis TIME minus the local real-time clock */
    int64_t queue_len;   /* the sum of the polled activities' queue lengths, -1 unknown */
    size_t nsold;
    sk_access_sold_t sold[]; /* sorted by activity_id */
} sk_access_live_t;

typedef struct st_sk_access_t {
    const sk_host_api_t *api;
    sk_plugin_t *self;
    const sk_config_t *conf;
    sk_access_netlist_t trusted;
    sk_access_hostlist_t referers;
    sk_limiter_t *limiter;
    sk_replay_t *replay;
    char queue_sha[41], result_sha[41];
    atomic_size_t inflight;
    atomic_int stopped;
    /* figures for /status and /metrics */
    atomic_size_t bl_users, bl_ips;
    atomic_llong logic_alive, queue_len, offset_ms;
    atomic_ullong queued, timeouts, gone, redis_errors, bl_loads;
} sk_access_t;

#define SK_ACCESS_SUBMIT_MAX 128 /* requests per queue script */

typedef struct st_sk_access_thread_t {
    sk_access_t *a;
    sk_thread_t *thr;
    unsigned index;
    sk_hmac_t *hmac;
    sk_redis_t *cmd, *sub;
    sk_redis_t *queue;    /* the queue script's connection: redis.queue_addr's, or cmd when that is empty */
    uint64_t sub_down_ms; /* loop ms since which the reply subscriber has been seen down, 0 while it is up */
    char channel[192];    /* sk:reply:<node_id>:<index> */
    char id_prefix[192];  /* <node_id>:<index>: */
    sk_access_live_t *live;
    sk_blset_t *bl;
    sk_bloverlay_t *overlay;
    struct {
        int64_t activity_id;
        uint64_t at_ms;
    } learned[SK_ACCESS_LEARNED];
    /* waiting /sec/kill requests */
    uint64_t seq;
    sk_access_pending_t **buckets;
    size_t mask, npending;
    sk_access_pending_t *dl_head, *dl_tail; /* creation order = deadline order */
    /* requests of this loop pass, queued by one script at its end */
    sk_access_pending_t *submit[SK_ACCESS_SUBMIT_MAX];
    size_t nsubmit;
    sk_timer_t *submit_timer;
    /* requests answered 1013 on a Redis timeout, settled in Redis when the connection is back (bounded: the oldest
     * are dropped, their scripts' own Redis-clock guard still holds) */
    struct {
        char tag[SK_SHARD_TAG_MAX];
        int64_t deadline_redis_ms;
        uint64_t seq;
    } unsettled[1024];
    size_t nunsettled;
    sk_timer_t *timer, *probe_timer;
} sk_access_thread_t;

/* ---- request.c ---- */
/** The /sec/ router (route callback). */
int sk_access_handle(void *inst, void *tstate, h2o_req_t *req);
/** Query string, then a form body on POST. -1 after answering 1001. */
int sk_access_read_form(sk_access_thread_t *t, h2o_req_t *req, sk_form_t *f);
/** The client address (SPEC §3, trusted proxies). */
void sk_access_client_addr(sk_access_t *a, h2o_req_t *req, uint8_t ip[16]);
/** 1 when the Referer passes the whitelist. */
int sk_access_referer_allowed(sk_access_t *a, h2o_req_t *req);
/** Writes s as a JSON string body (without quotes) into dst; returns the length, or (size_t)-1 when it does not fit. */
size_t sk_access_json_escape(char *dst, size_t cap, const char *s, size_t len);
/** Unix seconds and milliseconds of the real-time clock; monotonic milliseconds. */
int64_t sk_access_unix_ms(void);
uint64_t sk_access_mono_ms(void);

/* ---- info.c / kill.c / result.c ---- */
int sk_access_info(sk_access_thread_t *t, h2o_req_t *req);
int sk_access_list(sk_access_thread_t *t, h2o_req_t *req);
int sk_access_kill(sk_access_thread_t *t, h2o_req_t *req);
int sk_access_result(sk_access_thread_t *t, h2o_req_t *req);
/** Steps 1-5 shared by the signed endpoints: answers and returns -1 on failure. */
int sk_access_signed_checks(sk_access_thread_t *t, h2o_req_t *req, const char *scope, sk_form_t *f, sk_access_signed_t *p,
                            uint8_t ip[16]);

/* ---- control.c: the live poll (control thread) and its use (HTTP threads) ---- */
sk_access_control_t *sk_access_control_new(sk_access_t *a, sk_thread_t *thr);
void sk_access_control_free(sk_access_control_t *c);
sk_access_live_t *sk_access_live_new(struct st_sk_access_t *a, size_t nsold);
void sk_access_live_release(sk_access_live_t *l);
/** The shared counts of an activity on this thread, or NULL. */
const sk_access_sold_t *sk_access_live_sold(const sk_access_live_t *l, int64_t activity_id);
/** Sold out as far as this thread knows (shared counts, or a 1007 it saw since the last poll started). *sold gets the
 * last known count. */
int sk_access_sold_out(sk_access_thread_t *t, const sk_activity_t *a, int64_t *sold);
/** Records a 1007 answer of the logic layer. */
void sk_access_learn_sold_out(sk_access_thread_t *t, int64_t activity_id);

/* ---- blacklist_load.c ---- */
/** Control thread: starts loading and following the blacklists. */
int sk_access_bl_start(sk_access_control_t *c);
void sk_access_bl_stop(sk_access_control_t *c);
/** HTTP thread: is the user or the IP blacklisted? */
int sk_access_bl_denied(sk_access_thread_t *t, int64_t user_id, const uint8_t ip[16]);

/* ---- queue.c ---- */
int sk_access_queue_init(sk_access_thread_t *t);
void sk_access_queue_dispose(sk_access_thread_t *t);
/** Step 9 and 10: the nonce check and the queue in one script, then the wait. Always answers. */
void sk_access_queue_submit(sk_access_thread_t *t, h2o_req_t *req, const sk_access_signed_t *p, const sk_activity_t *act,
                            const char *ip);
/** The queue and result scripts (text) and their SHA1s. */
void sk_access_script_sha(const char *src, char out[41]);

#endif
