/*
 * The admin plugin's internals: the instance, the admin thread's state and the interfaces between its files.
 *
 * Everything that touches SQLite, etcd or the admin's Redis connection runs on the single SK_THREAD_ADMIN thread, so
 * the admin thread state (sk_admin_ts_t) needs no lock. Only the counters in the instance are read from other threads
 * (status, metrics), hence atomics.
 */
#ifndef SK_ADMIN_H
#define SK_ADMIN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "seckill/plugin.h"
#include "sk_form.h"
#include "sk_keys.h"
#include "sk_shard.h"
#include "sk_scripts.h"

/** A key of activity aid (common/sk_keys.h) in buf, for redis_cmd's "%s"; "" if it does not fit (never for 64 bytes). */
static inline const char *
sk_admin_key(char *buf, size_t cap, sk_key_id_t id, int64_t aid)
{
    return sk_key_activity(buf, cap, id, aid) < 0 ? "" : buf;
}

#define SK_ADMIN_NAME_MAX 128
#define SK_ADMIN_TOTAL_MAX 1000000000LL
#define SK_ADMIN_TIME_MAX 253402300799LL /* 9999-12-31 */
#define SK_ADMIN_TOKEN_MIN 16
#define SK_ADMIN_TOKEN_MAX 128
#define SK_ADMIN_REASON_MAX 256
#define SK_ADMIN_LIST_MAX 1000     /* blacklist page */
#define SK_ADMIN_WINNERS_MAX 10000 /* winners page */
#define SK_ADMIN_MAX_ACTIVITIES 100000
#define SK_ADMIN_CONSUME_MAX 1024 /* tokens being consumed at once */
#define SK_ADMIN_SYNC_INTERVAL_MS 1000
#define SK_ADMIN_POLICY_MAX 65536 /* the largest value the host puts to etcd */

typedef struct st_sk_admin_store_t sk_admin_store_t;
typedef struct st_sk_admin_ts_t sk_admin_ts_t;
typedef struct st_sk_admin_consume_t sk_admin_consume_t;

typedef struct st_sk_admin_t {
    const sk_host_api_t *api;
    sk_plugin_t *self;
    const sk_config_t *conf;
    int has_token;
    char token_sha[65]; /* sha256 of admin.token: compared digest to digest, so unequal lengths leak nothing */
    sk_admin_ts_t *ts;  /* written and read on the admin thread only */
    atomic_long inflight;
    atomic_long etcd_pending;      /* keys waiting for etcd (gauge) */
    atomic_long policy_events;     /* policy events posted to the admin thread and not yet stored */
    atomic_ulong sync_failures;    /* failed etcd puts/deletes */
    atomic_ulong orders_created;   /* successful /token/consume */
    atomic_ulong tokens_cancelled; /* successful /token/cancel */
    atomic_ulong history_dropped;  /* policy events dropped because the queue was full */
    atomic_int history_catch_up;   /* set when an event was dropped: the admin thread re-reads policies/ */
} sk_admin_t;

struct st_sk_admin_ts_t {
    sk_admin_t *inst;
    sk_thread_t *thr;
    sk_admin_store_t *store;
    sk_redis_t *redis;
    sk_timer_t *timer;
    int disposing;
    int need_reconcile; /* etcd vs SQLite, done at start and retried until it succeeds */
    int totals_dirty;   /* sk:{a<ID>}:total must be written from SQLite (start, Redis reconnect, a failed write) */
    unsigned totals_outstanding;
    unsigned ops_inflight;        /* activity changes waiting for Redis: the totals resync waits for them */
    int etcd_failing;             /* the last etcd write failed: requests leave their keys to the timer */
    sk_admin_consume_t *consumes; /* tokens being consumed (one at a time per token) */
    size_t nconsumes;
};

/* ---- model.c: pure validation and encoding (unit-tested) ---- */

/** 1 when s is 1..max bytes of valid UTF-8 without control characters. */
int sk_admin_text_ok(const char *s, size_t len, size_t max);
/** Canonical text of an IPv4 or IPv6 literal into out (>= 46 bytes). 0, or -1 when it is neither. */
int sk_admin_ip_canonical(const char *s, size_t len, char *out, size_t outlen);
/** 1 when name is one of the policy names the engine knows. */
int sk_admin_policy_name_ok(const char *name, size_t len);
/** 1 when a token has 16..128 bytes of printable ASCII without spaces. */
int sk_admin_token_ok(const char *s, size_t len);
/** 1 when a browser's Origin names the same host (and port) as the request's Host. */
int sk_admin_origin_ok(const char *origin, size_t olen, const char *host, size_t hlen);
/** Finds the token in an "Authorization: Bearer TOKEN" value. 0, or -1 when the scheme is not Bearer. */
int sk_admin_bearer(const char *hdr, size_t len, const char **tok, size_t *toklen);
/** The blacklist page cursor: "C" or "C-S" (HSCAN cursor C, then skip S entries of that batch). 0 or -1. */
int sk_admin_cursor_parse(const char *s, size_t len, uint64_t *cursor, uint32_t *skip);
void sk_admin_cursor_format(uint64_t cursor, uint32_t skip, char *out, size_t outlen);

/** Reads the product fields of /product/create. 0, or -1 with err naming the field and the rule. */
int sk_admin_product_from_params(const sk_form_t *f, sk_product_t *p, char *err, size_t errlen);
enum {
    SK_ADMIN_F_NAME = 1 << 0,
    SK_ADMIN_F_PRODUCT = 1 << 1,
    SK_ADMIN_F_START = 1 << 2,
    SK_ADMIN_F_END = 1 << 3,
    SK_ADMIN_F_TOTAL = 1 << 4,
    SK_ADMIN_F_STATUS = 1 << 5,
    SK_ADMIN_F_SPEED = 1 << 6,
    SK_ADMIN_F_BUY_LIMIT = 1 << 7,
    SK_ADMIN_F_BUY_RATE = 1 << 8,
    SK_ADMIN_F_SHARDS = 1 << 9,
};
/** Reads activity fields onto *a. On create the required fields must be present and the others get defaults
 * (status 1, speed 0, buy_limit 1, buy_rate 1, shards 1); on update only the present ones change. *changed gets SK_ADMIN_F_*. */
int sk_admin_activity_from_params(const sk_form_t *f, int is_update, sk_activity_t *a, unsigned *changed, char *err, size_t errlen);
/** The cross-field rules: start < end, end > now (when check_end), total <= product_total. 0, or -1 with err. */
int sk_admin_activity_check(const sk_activity_t *a, const sk_product_t *p, int64_t now, int check_end, char *err, size_t errlen);
/** 1 when both are enabled activities of one product (different ids) whose windows intersect. */
int sk_admin_activities_overlap(const sk_activity_t *a, const sk_activity_t *b);
/** A strict integer parameter; 0 (absent: *present = 0), or -1 with err. */
int sk_admin_param_int(const sk_form_t *f, const char *name, int64_t min, int64_t max, int64_t *out, int *present, char *err,
                       size_t errlen);

/** The etcd values (SPEC §6), malloc'ed; NULL on allocation failure. */
char *sk_admin_product_json(const sk_product_t *p);
char *sk_admin_activity_json(const sk_activity_t *a);
cJSON *sk_admin_product_obj(const sk_product_t *p);
cJSON *sk_admin_activity_obj(const sk_activity_t *a);

typedef struct st_sk_admin_winner_t {
    int64_t user_id, issued_at, expires_at;
    char token[SK_ADMIN_TOKEN_MAX + 1];
} sk_admin_winner_t;
/** Parses one entry of sk:{a<ID>}:wins, "user_id token issued_at expires_at". 0 or -1. */
int sk_admin_winner_parse(const char *s, size_t len, sk_admin_winner_t *w);
/** The state of a token from its value in sk:{a<ID>}:tokens: "live", "consumed", "cancelled", "expired", or
 * "unknown" (NULL or malformed). Pure. */
const char *sk_admin_token_state(const char *s, size_t len);

/* ---- body.c: parameters from the query string and a form or JSON body (pure) ---- */

/** Fills f from the query string and the body: JSON when the Content-Type says json (or, with none, the body starts
 * with '{'), form-encoded otherwise. 0, or -1 with err naming the parameter. */
int sk_admin_params_parse(sk_form_t *f, const char *query, size_t qlen, const char *ctype, size_t ctlen, const char *body,
                          size_t blen, char *err, size_t errlen);

/* ---- store.c: SQLite ---- */

enum { SK_ADMIN_STORE_OK = 0, SK_ADMIN_STORE_ERR = -1, SK_ADMIN_STORE_CONFLICT = 1, SK_ADMIN_STORE_NONE = 2 };

typedef struct st_sk_admin_order_t {
    int64_t order_id, user_id, product_id, activity_id, created_at, issued_at, expires_at;
    int state; /* 0 pending (the Redis mark may or may not have happened), 1 done */
    char token[SK_ADMIN_TOKEN_MAX + 1];
} sk_admin_order_t;

typedef struct st_sk_admin_policy_rev_t {
    char name[64];
    int64_t revision, seen_at;
    char sha256[65];
    int deleted;
} sk_admin_policy_rev_t;

/** Opens (creating the parent directory and the file), sets WAL and busy_timeout, migrates. NULL with err. */
sk_admin_store_t *sk_admin_store_open(const char *path, char *err, size_t errlen);
void sk_admin_store_close(sk_admin_store_t *s);
const char *sk_admin_store_errmsg(sk_admin_store_t *s);
int sk_admin_store_user_version(sk_admin_store_t *s);

/* products; create and delete also mark the etcd key pending, in the same transaction */
int sk_admin_store_product_create(sk_admin_store_t *s, sk_product_t *p, int64_t now);
int sk_admin_store_product_get(sk_admin_store_t *s, int64_t id, sk_product_t *p);
int sk_admin_store_product_delete(sk_admin_store_t *s, int64_t id);
/** Replaces name, total and status of p->product_id. SK_ADMIN_STORE_NONE when unknown, CONFLICT on a duplicate name. */
int sk_admin_store_product_update(sk_admin_store_t *s, const sk_product_t *p, int64_t now);
int sk_admin_store_product_in_use(sk_admin_store_t *s, int64_t id, int64_t *count);
int sk_admin_store_products(sk_admin_store_t *s, int (*cb)(void *arg, const sk_product_t *p), void *arg);

/* activities; deleted ones stay as tombstones so that their tokens can still be consumed */
int sk_admin_store_activity_create(sk_admin_store_t *s, sk_activity_t *a, int64_t now);
int sk_admin_store_activity_update(sk_admin_store_t *s, const sk_activity_t *a, int64_t now);
int sk_admin_store_activity_get(sk_admin_store_t *s, int64_t id, sk_activity_t *a, int *deleted);
int sk_admin_store_activity_delete(sk_admin_store_t *s, int64_t id, int64_t now);
/** Live activities, all or (product_id > 0) of one product. */
int sk_admin_store_activities(sk_admin_store_t *s, int64_t product_id, int (*cb)(void *arg, const sk_activity_t *a), void *arg);
/** Ids of every activity of a product, tombstones included, newest first; returns how many (<= cap) or -1. */
int sk_admin_store_activity_ids(sk_admin_store_t *s, int64_t product_id, int64_t *ids, int cap);

/* etcd sync state: a row per key that etcd may not reflect yet */
int sk_admin_store_sync_mark(sk_admin_store_t *s, const char *key);
int sk_admin_store_sync_clear(sk_admin_store_t *s, const char *key);
int sk_admin_store_sync_pending(sk_admin_store_t *s, const char *key);        /* 1, 0 or -1 */
int sk_admin_store_sync_list(sk_admin_store_t *s, char (*keys)[64], int cap); /* count or -1 */
int64_t sk_admin_store_sync_count(sk_admin_store_t *s);

/* policy history */
int sk_admin_store_policy_add(sk_admin_store_t *s, const char *name, int64_t revision, const char *src, size_t len, int deleted,
                              int64_t now);
int sk_admin_store_policy_list(sk_admin_store_t *s, const char *name, int limit,
                               int (*cb)(void *arg, const sk_admin_policy_rev_t *r), void *arg);
/** The source of one revision (malloc'ed into *src). SK_ADMIN_STORE_NONE when unknown. */
int sk_admin_store_policy_get(sk_admin_store_t *s, const char *name, int64_t revision, char **src, size_t *len,
                              sk_admin_policy_rev_t *r);

/* orders */
int sk_admin_store_order_by_token(sk_admin_store_t *s, const char *token, sk_admin_order_t *o);
int sk_admin_store_order_pending(sk_admin_store_t *s, const char *token, int64_t user_id, int64_t product_id, int64_t now,
                                 int64_t *order_id);
int sk_admin_store_order_done(sk_admin_store_t *s, int64_t order_id, const sk_admin_order_t *o);
int sk_admin_store_order_drop_pending(sk_admin_store_t *s, const char *token);
/** Replaces any pending row of the token by a done row with the order id Redis holds. */
int sk_admin_store_order_repair(sk_admin_store_t *s, const sk_admin_order_t *o);
int sk_admin_store_orders_stale(sk_admin_store_t *s, int64_t older_than, sk_admin_order_t *out, int cap);

/* ---- http.c: checks, parameters, replies, request references ---- */

/** Bearer token and Origin checks; replies 1015 and returns -1 on refusal. */
int sk_admin_check_access(sk_admin_t *inst, h2o_req_t *req);
/** Parses the parameters; replies 1001 and returns -1 on failure. */
int sk_admin_params(sk_admin_t *inst, h2o_req_t *req, sk_form_t *f);
int sk_admin_method(h2o_req_t *req, const char *m);
/** Replies with data (consumed; may be NULL). */
void sk_admin_reply(sk_admin_t *inst, h2o_req_t *req, int code, const char *message, cJSON *data);
void sk_admin_replyf(sk_admin_t *inst, h2o_req_t *req, int code, cJSON *data, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/** A request waiting for Redis. The request may vanish (its pool is disposed): ref.req then becomes NULL. */
typedef struct st_sk_admin_reqref_t {
    h2o_req_t *req;
    struct st_sk_admin_reqref_t **slot;
    int active; /* counted in inst->inflight */
} sk_admin_reqref_t;
void sk_admin_reqref_set(sk_admin_t *inst, sk_admin_reqref_t *ref, h2o_req_t *req);
/** Detaches; returns the request to answer, or NULL when it is gone or the thread is shutting down. */
h2o_req_t *sk_admin_reqref_take(sk_admin_t *inst, sk_admin_reqref_t *ref);
int64_t sk_admin_now(void);

/* ---- sync.c: etcd and Redis totals ---- */

/** Pushes SQLite's view of one key ("products/3", "activities/7") to etcd now. 1 synced, 0 still pending. */
int sk_admin_sync_key(sk_admin_ts_t *ts, const char *key, int from_request);
/** Writes activity a's stock to Redis for the sale: SET of its total, or with shards > 1 a DEL of bucket 0's total so
 * that every bucket starts from its share (common/sk_shard.h). The redis_cmd result. */
int sk_admin_write_total(sk_admin_ts_t *ts, const sk_activity_t *a, sk_redis_cb cb, void *data);
void sk_admin_sync_start(sk_admin_ts_t *ts);
/** Runs the sync pass soon (a Redis reconnect, a failed write). */
void sk_admin_sync_kick(sk_admin_ts_t *ts);
void sk_admin_sync_stop(sk_admin_ts_t *ts);

/* ---- routes_*.c ---- */

int sk_admin_route_product(void *inst, void *tstate, h2o_req_t *req);
int sk_admin_route_activity(void *inst, void *tstate, h2o_req_t *req);
/** The hash tag of user uid's stock bucket in activity aid (from the store's shards; "a<aid>" when unsharded or
 * unknown). cap >= SK_SHARD_TAG_MAX. */
void sk_admin_user_tag(sk_admin_ts_t *ts, int64_t aid, int64_t uid, char *tag, size_t cap);
/** routes_winners.c: answers GET /activity/winners with the page [offset, offset + limit) of a's winners, over its
 * stock buckets in order. */
void sk_admin_winners(sk_admin_ts_t *ts, h2o_req_t *req, const sk_activity_t *a, int64_t offset, int64_t limit);
int sk_admin_route_policy(void *inst, void *tstate, h2o_req_t *req);
int sk_admin_route_blacklist(void *inst, void *tstate, h2o_req_t *req);
int sk_admin_route_token(void *inst, void *tstate, h2o_req_t *req);
/** GET /, /console/<file>, /dashboard/data; -1 for any other path (the host then answers /healthz or 404). */
int sk_admin_route_console(void *inst, void *tstate, h2o_req_t *req);
int sk_admin_route_dashboard(void *inst, void *tstate, h2o_req_t *req);
/** 1 when name is one console file name: one segment of [A-Za-z0-9._-], no leading dot, a known extension. Pure. */
int sk_admin_console_name_ok(const char *name, size_t len);
/** The Content-Type of a console file by its extension, or NULL. Pure. */
const char *sk_admin_console_type(const char *name, size_t len);
/** Control thread: mirrors policy events into SQLite history through the admin thread. */
void sk_admin_policy_event(void *inst, const char *key, const char *value, size_t len, int64_t mod_revision, int is_delete);
/** Admin thread: stores the current etcd policies in history (start-up catch-up). */
int sk_admin_policy_catch_up(sk_admin_ts_t *ts);
/** Admin thread: finishes orders left pending by a crash or a Redis failure. */
void sk_admin_token_redrive(sk_admin_ts_t *ts);
void sk_admin_token_dispose(sk_admin_ts_t *ts);
/** Admin thread: POST /token/cancel with its parsed form (routes_cancel.c). */
void sk_admin_token_cancel(sk_admin_ts_t *ts, h2o_req_t *req, const sk_form_t *f);
/** routes_token.c: the token, user_id and product_id of /token/consume and /token/cancel. 0, or -1 after answering
 * 1001 with the parameter's name. */
int sk_admin_token_params(sk_admin_t *inst, h2o_req_t *req, const sk_form_t *f, const sk_form_param_t **token, int64_t *uid,
                          int64_t *pid);

#endif
