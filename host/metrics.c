#include <stdlib.h>
#include <sys/time.h>
#include <string.h>
#include <time.h>
#include "metrics.h"

struct st_sk_metrics_thread_t {
    sk_host_t *host;
    atomic_uint_fast64_t requests[SK_METRICS_ROUTES][SK_METRICS_CODES];
    atomic_uint_fast64_t latency[3][SK_METRICS_BUCKETS + 1]; /* per listener; last = +Inf */
    atomic_uint_fast64_t latency_sum_us[3];
};

/* upper bounds of the latency buckets, in seconds */
static const double bucket_le[SK_METRICS_BUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
/* the same bounds in µs, so that counting an answer needs no floating point */
const int64_t sk_metrics_bucket_le_us[SK_METRICS_BUCKETS] = {500,    1000,   2000,   5000,    10000,   25000,   50000,
                                                             100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

/* The exact paths labelled as themselves. The access plugin serves every /sec/ path behind one route, so the route
 * alone would say "/sec/" for all of them; anything else under a plugin's prefix keeps the prefix's label, and a path
 * no route owns is "other". */
static const struct {
    const char *plugin, *path;
} known[SK_METRICS_KNOWN] = {
    {"access", "/sec/kill"}, {"access", "/sec/info"}, {"access", "/sec/list"}, {"access", "/sec/result"},
    {"host", "/healthz"},    {"host", "/status"},     {"host", "/metrics"},    {"admin", "/dashboard/data"},
};

static size_t
path_slot(sk_host_t *host, h2o_req_t *req, int *listener)
{
    *listener = -1;
    size_t route = SK_METRICS_OTHER;
    for (size_t i = 0; i < host->nroutes; ++i) {
        if (host->routes[i].pathconf == req->pathconf) {
            route = SK_METRICS_KNOWN + i;
            *listener = host->routes[i].listener;
            break;
        }
    }
    h2o_iovec_t p = req->path_normalized;
    for (size_t k = 0; k < SK_METRICS_KNOWN; ++k) {
        /* a plugin's path counts as such only on that plugin's listener (a /sec/kill sent to the admin port is not
         * access traffic); the host's paths are the host's wherever they arrive */
        int want = strcmp(known[k].plugin, "access") == 0  ? SK_LISTENER_ACCESS
                   : strcmp(known[k].plugin, "admin") == 0 ? SK_LISTENER_ADMIN
                                                           : -1;
        if ((want < 0 || want == *listener) && h2o_memis(p.base, p.len, known[k].path, strlen(known[k].path)))
            return k;
    }
    /* an unknown /sec/ path would otherwise take the access route's label and look like real traffic */
    if (route != SK_METRICS_OTHER && host->routes[route - SK_METRICS_KNOWN].listener == SK_LISTENER_ACCESS)
        return SK_METRICS_OTHER;
    return route;
}

int
sk_metrics_slot_label(sk_host_t *host, size_t slot, const char **plugin, const char **path)
{
    if (slot < SK_METRICS_KNOWN) {
        *plugin = known[slot].plugin;
        *path = known[slot].path;
        return 0;
    }
    if (slot == SK_METRICS_OTHER) {
        *plugin = "host";
        *path = "other";
        return 0;
    }
    if (slot - SK_METRICS_KNOWN >= host->nroutes)
        return -1;
    *plugin = host->routes[slot - SK_METRICS_KNOWN].plugin->name;
    *path = host->routes[slot - SK_METRICS_KNOWN].path;
    return 0;
}

const char *
sk_metrics_code_label(size_t c, char *buf, size_t cap)
{
    if (c == 0)
        snprintf(buf, cap, "0");
    else if (c <= 15)
        snprintf(buf, cap, "%zu", 1000 + c);
    else
        snprintf(buf, cap, "%s", c == 16 ? "raw_ok" : "raw_error");
    return buf;
}

sk_metrics_thread_t *
sk_metrics_thread_new(sk_host_t *host)
{
    sk_metrics_thread_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        abort();
    m->host = host;
    return m;
}

void
sk_metrics_thread_free(sk_metrics_thread_t *m)
{
    free(m);
}

static inline void
bump(atomic_uint_fast64_t *c, uint64_t by)
{
    /* only the owning thread writes: a relaxed load+store needs no locked instruction */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by, memory_order_relaxed);
}

static int
code_slot(int code)
{
    if (code == 0)
        return 0;
    if (code >= 1001 && code <= 1015)
        return code - 1000;
    return 16 + (code == -200 ? 0 : 1); /* raw answers: ok / error */
}

void
sk_metrics_observe(h2o_req_t *req, int code)
{
    sk_thread_t *thr = sk_thread_self();
    if (thr == NULL || thr->metrics == NULL)
        return;
    sk_metrics_thread_t *m = thr->metrics;
    sk_host_t *host = thr->host;
    int listener;
    size_t route = path_slot(host, req, &listener);
    bump(&m->requests[route][code_slot(code)], 1);
    /* a path no route owns (/healthz, a 404): an admin thread serves the admin listener alone, but an HTTP thread
     * serves both the access and the status listener, so which one it came through is unknown and it is not timed */
    if (listener < 0)
        listener = thr->kind == SK_THREAD_ADMIN ? SK_LISTENER_ADMIN : -1;
    if (listener < 0)
        return;
    struct timeval now;
    gettimeofday(&now, NULL);
    int64_t us = (int64_t)(now.tv_sec - req->processed_at.at.tv_sec) * 1000000 + (now.tv_usec - req->processed_at.at.tv_usec);
    if (us < 0)
        us = 0;
    size_t b = 0;
    while (b < SK_METRICS_BUCKETS && us > sk_metrics_bucket_le_us[b])
        ++b;
    bump(&m->latency[listener][b], 1);
    bump(&m->latency_sum_us[listener], (uint64_t)us);
}

static void
collect(sk_host_t *host, sk_metrics_thread_t *m, uint64_t req[SK_METRICS_ROUTES][SK_METRICS_CODES],
        uint64_t lat[3][SK_METRICS_BUCKETS + 1], uint64_t sum[3])
{
    if (m == NULL)
        return;
    (void)host;
    for (size_t r = 0; r < SK_METRICS_ROUTES; ++r)
        for (size_t c = 0; c < SK_METRICS_CODES; ++c)
            req[r][c] += atomic_load_explicit(&m->requests[r][c], memory_order_relaxed);
    for (size_t l = 0; l < 3; ++l) {
        for (size_t b = 0; b <= SK_METRICS_BUCKETS; ++b)
            lat[l][b] += atomic_load_explicit(&m->latency[l][b], memory_order_relaxed);
        sum[l] += atomic_load_explicit(&m->latency_sum_us[l], memory_order_relaxed);
    }
}

void
sk_metrics_sum(sk_host_t *host, sk_metrics_sum_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < host->nhttp; ++i)
        collect(host, host->http[i]->metrics, out->req, out->lat, out->sum_us);
    if (host->admin != NULL)
        collect(host, host->admin->metrics, out->req, out->lat, out->sum_us);
}

void
sk_metrics_write(sk_host_t *host, FILE *out)
{
    static const char *lnames[] = {"access", "admin", "status"};
    sk_metrics_sum_t *m = malloc(sizeof(*m));
    if (m == NULL)
        abort();
    sk_metrics_sum(host, m);

    fprintf(out, "# HELP seckill_requests_total Answers by plugin, path and code.\n# TYPE seckill_requests_total counter\n");
    for (size_t r = 0; r < SK_METRICS_ROUTES; ++r) {
        const char *plugin, *path;
        if (sk_metrics_slot_label(host, r, &plugin, &path) != 0)
            continue;
        for (size_t c = 0; c < SK_METRICS_CODES; ++c) {
            if (m->req[r][c] == 0)
                continue;
            char code[16];
            fprintf(out, "seckill_requests_total{plugin=\"%s\",path=\"%s\",code=\"%s\"} %llu\n", plugin, path,
                    sk_metrics_code_label(c, code, sizeof(code)), (unsigned long long)m->req[r][c]);
        }
    }
    fprintf(out, "# HELP seckill_request_duration_seconds Handler-to-answer latency by listener.\n"
                 "# TYPE seckill_request_duration_seconds histogram\n");
    for (size_t l = 0; l < 3; ++l) {
        uint64_t cum = 0;
        for (size_t b = 0; b < SK_METRICS_BUCKETS; ++b) {
            cum += m->lat[l][b];
            fprintf(out, "seckill_request_duration_seconds_bucket{listener=\"%s\",le=\"%g\"} %llu\n", lnames[l], bucket_le[b],
                    (unsigned long long)cum);
        }
        cum += m->lat[l][SK_METRICS_BUCKETS];
        fprintf(out, "seckill_request_duration_seconds_bucket{listener=\"%s\",le=\"+Inf\"} %llu\n", lnames[l],
                (unsigned long long)cum);
        fprintf(out, "seckill_request_duration_seconds_sum{listener=\"%s\"} %.6f\n", lnames[l], (double)m->sum_us[l] / 1e6);
        fprintf(out, "seckill_request_duration_seconds_count{listener=\"%s\"} %llu\n", lnames[l], (unsigned long long)cum);
    }
    free(m);
}
