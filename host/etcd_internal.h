/*
 * What etcd_client.c (blocking calls, status) and etcd_watch.c (the list + watch on the control thread) share.
 */
#ifndef SK_ETCD_INTERNAL_H
#define SK_ETCD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include "host.h"
#include "etcd_parse.h"
#include "etcd_state.h"

#define SK_ETCD_MAX_ENDPOINTS 8
#define SK_ETCD_CALL_DEADLINE_MS 2000 /* every blocking call, across all endpoints */
#define SK_ETCD_MAX_RESPONSE (64u << 20)

typedef struct st_sk_etcd_watch_t sk_etcd_watch_t;

struct st_sk_etcd_t {
    sk_host_t *host;
    char prefix[160]; /* etcd.prefix with one trailing '/' */
    size_t nendpoints;
    char endpoints[SK_ETCD_MAX_ENDPOINTS][256];
    atomic_uint preferred; /* the endpoint that answered last; blocking calls start there */
    atomic_int up;

    /* Guards the fields below and `st` (mutated on the control thread, read by /status on any thread). */
    pthread_mutex_t mu;
    sk_etcd_state_t *st;
    const char *state; /* static string: "starting", "listing", "watching", "down", "stopped" */
    char endpoint[256];
    char last_error[256];
    int64_t revision; /* the resume point: every event up to it has been applied */
    uint64_t relists, reconnects, events, publishes, bad_messages;
    int64_t progress_interval_ms; /* as observed; 0 until two notifications came on one stream */

    sk_etcd_watch_t *w; /* control thread only */
};

/** Blocking POST of a JSON body to path (e.g. "/v3/kv/range") with failover across the endpoints and one deadline.
 * Returns 0 with the 200 body in *resp (malloc'ed, NUL-terminated), or -1 with err. */
int sk_etcd_http_post(sk_etcd_t *e, const char *path, const char *body, unsigned deadline_ms, char **resp, size_t *resplen,
                      char *err, size_t errlen);
/** The JSON body of a range over every key starting with `full_prefix` (an absolute key). */
void sk_etcd_range_body(const char *full_prefix, char *out, size_t outcap);
/** The full key of a key relative to the prefix, or -1 if it does not fit. */
int sk_etcd_full_key(const sk_etcd_t *e, const char *key, char *out, size_t outcap);
/** The key relative to the prefix, or NULL when `key` is not under it. */
const char *sk_etcd_relative_key(const sk_etcd_t *e, const char *key);
void sk_etcd_set_error(sk_etcd_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** A response buffer bounded by `max` (an answer larger than that is not one we asked for), NUL-terminated. */
typedef struct st_sk_etcd_rxbuf_t {
    char *p;
    size_t len, cap, max;
} sk_etcd_rxbuf_t;

/** Appends for libcurl's write callback: returns len, or 0 (which aborts the transfer) past max or out of memory. */
size_t sk_etcd_rxbuf_append(sk_etcd_rxbuf_t *b, const char *data, size_t len);

#endif
