/*
 * Request metrics: per-thread counters (written only by their thread, read by the scraper with relaxed atomics), so
 * that counting costs no lock and no shared cache line on the request path.
 */
#ifndef SK_METRICS_H
#define SK_METRICS_H

#include <stdio.h>
#include "host.h"

/* Label slots of seckill_requests_total: the known exact paths first (SPEC's access API and the host's own), then one
 * per plugin route (an admin route is labelled by its prefix, "/product/"), then "other". A fixed set keeps the label
 * set bounded whatever paths clients send. */
#define SK_METRICS_KNOWN 8
#define SK_METRICS_ROUTES (SK_METRICS_KNOWN + 64 + 1)
#define SK_METRICS_OTHER (SK_METRICS_ROUTES - 1)
#define SK_METRICS_CODES 18 /* 0, 1001..1015, non-envelope 2xx-5xx */
#define SK_METRICS_BUCKETS 14

/** The bounds of the latency buckets, in µs (the last bucket, +Inf, has none). */
extern const int64_t sk_metrics_bucket_le_us[SK_METRICS_BUCKETS];

/** Every thread's counters added up (host/stats_publish.c reads them once a second). */
typedef struct st_sk_metrics_sum_t {
    uint64_t req[SK_METRICS_ROUTES][SK_METRICS_CODES];
    uint64_t lat[3][SK_METRICS_BUCKETS + 1]; /* per sk_listener_t; last = +Inf */
    uint64_t sum_us[3];
} sk_metrics_sum_t;

typedef struct st_sk_metrics_thread_t sk_metrics_thread_t;

sk_metrics_thread_t *sk_metrics_thread_new(sk_host_t *host);
void sk_metrics_thread_free(sk_metrics_thread_t *m);
/** Counts one answer on the calling thread (no-op on a thread without metrics). code < 0 is -HTTP status. */
void sk_metrics_observe(h2o_req_t *req, int code);
/** Adds up every thread's counters into *out (overwritten). */
void sk_metrics_sum(sk_host_t *host, sk_metrics_sum_t *out);
/** The labels of a slot: its plugin ("host" for the host's own paths) and path. 0, or -1 for an unused slot. */
int sk_metrics_slot_label(sk_host_t *host, size_t slot, const char **plugin, const char **path);
/** The slot index of a code (0, 1001..1015, raw), and back to its label ("0", "1007", "raw_ok", "raw_error"). */
const char *sk_metrics_code_label(size_t c, char *buf, size_t cap);
/** Writes the Prometheus text of every thread's counters. */
void sk_metrics_write(sk_host_t *host, FILE *out);

#endif
