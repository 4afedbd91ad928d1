/*
 * Request metrics: per-thread counters (written only by their thread, read by the scraper with relaxed atomics), so
 * that counting costs no lock and no shared cache line on the request path.
 */
#ifndef SK_METRICS_H
#define SK_METRICS_H

#include <stdio.h>
#include "host.h"

#define SK_METRICS_ROUTES 65 /* host routes + one "other" slot */
#define SK_METRICS_CODES 18  /* 0, 1001..1015, non-envelope 2xx-5xx */
#define SK_METRICS_BUCKETS 14

typedef struct st_sk_metrics_thread_t sk_metrics_thread_t;

sk_metrics_thread_t *sk_metrics_thread_new(sk_host_t *host);
void sk_metrics_thread_free(sk_metrics_thread_t *m);
/** Counts one answer on the calling thread (no-op on a thread without metrics). code < 0 is -HTTP status. */
void sk_metrics_observe(h2o_req_t *req, int code);
/** Writes the Prometheus text of every thread's counters. */
void sk_metrics_write(sk_host_t *host, FILE *out);

#endif
