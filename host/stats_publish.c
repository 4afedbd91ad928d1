/*
 * Every process publishes its request counters to Redis, so that the admin's dashboard sees every node of the
 * deployment and not only its own process (SPEC §5 Console). On the control thread, every SK_STATS_PUBLISH_MS:
 *
 *   HSET   sk:stats:<node_id>  node_id roles ts_ms started_ms redis etcd wins p50_us p99_us codes paths lat policies
 *   PEXPIRE sk:stats:<node_id> SK_STATS_TTL_MS
 *   ZADD   sk:stats            <ts_ms> <node_id>
 *
 * Each command names one key (a cluster routes each on its own). The counters are cumulative since the start, so
 * that a reader computes rates from two samples and a lost publication costs nothing; only p50/p99 are computed here,
 * over the interval since the previous publication, because a histogram's percentile cannot be differenced later
 * from two percentiles. codes, paths, lat and policies are JSON text (see README "Console").
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "host.h"
#include "metrics.h"
#include "sk_keys.h"

#define SK_STATS_FIELDS 13

struct st_sk_stats_pub_t {
    sk_host_t *host;
    uint64_t prev_lat[SK_METRICS_BUCKETS + 1];
    int have_prev;
    unsigned pending; /* commands of the last publication not answered yet */
    sk_metrics_sum_t sum;
};

static uint64_t
unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

sk_stats_pub_t *
sk_stats_pub_new(sk_host_t *host)
{
    sk_stats_pub_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    p->host = host;
    return p;
}

void
sk_stats_pub_free(sk_stats_pub_t *p)
{
    free(p);
}

/* The q-quantile of a bucket histogram in µs, interpolated inside its bucket; -1 when it is empty. */
int64_t
sk_stats_quantile_us(const uint64_t *b, size_t nb, const int64_t *le_us, double q)
{
    uint64_t total = 0, cum = 0;
    for (size_t i = 0; i < nb; ++i)
        total += b[i];
    if (total == 0)
        return -1;
    double want = q * (double)total;
    for (size_t i = 0; i < nb; ++i) {
        if (b[i] == 0 || (double)(cum + b[i]) < want) {
            cum += b[i];
            continue;
        }
        int64_t lo = i == 0 ? 0 : le_us[i - 1];
        if (i == nb - 1) /* +Inf: the last finite bound is all we know */
            return lo;
        double frac = (want - (double)cum) / (double)b[i];
        return lo + (int64_t)(frac * (double)(le_us[i] - lo));
    }
    return le_us[nb - 2];
}

static void
on_reply(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    sk_stats_pub_t *p = data;
    (void)r, (void)reply, (void)err;
    if (p->pending > 0)
        p->pending--;
}

static char *
json_text(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s != NULL ? s : strdup("null");
}

/* The answers of every path by code, and the same added up over the access plugin's paths: the sale's traffic, which
 * is what the dashboard's "requests per second by code" means (the admin's own calls and the probes would blur it). */
static void
add_counts(sk_stats_pub_t *p, char **codes_out, char **paths_out, uint64_t *wins)
{
    cJSON *codes = cJSON_CreateObject(), *paths = cJSON_CreateObject();
    uint64_t total[SK_METRICS_CODES] = {0};
    char label[16];
    *wins = 0;
    for (size_t r = 0; r < SK_METRICS_ROUTES; ++r) {
        const char *plugin, *path;
        if (sk_metrics_slot_label(p->host, r, &plugin, &path) != 0)
            continue;
        cJSON *po = NULL;
        for (size_t c = 0; c < SK_METRICS_CODES; ++c) {
            uint64_t n = p->sum.req[r][c];
            if (n == 0)
                continue;
            if (po == NULL)
                po = cJSON_AddObjectToObject(paths, path);
            cJSON_AddNumberToObject(po, sk_metrics_code_label(c, label, sizeof(label)), (double)n);
            if (strcmp(plugin, "access") == 0)
                total[c] += n;
        }
        if (strcmp(path, "/sec/kill") == 0)
            *wins = p->sum.req[r][0];
    }
    for (size_t c = 0; c < SK_METRICS_CODES; ++c)
        if (total[c] != 0)
            cJSON_AddNumberToObject(codes, sk_metrics_code_label(c, label, sizeof(label)), (double)total[c]);
    *codes_out = json_text(codes);
    *paths_out = json_text(paths);
}

static char *
policies_json(sk_host_t *host)
{
    cJSON *full = cJSON_CreateArray(), *out = cJSON_CreateArray();
    sk_policy_status(host, full);
    cJSON *e;
    cJSON_ArrayForEach(e, full)
    {
        /* what the console shows: the revision in effect; the status listener has the rest */
        cJSON *o = cJSON_CreateObject();
        static const char *keep[] = {"name", "revision", "sha256", "source", "error"};
        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); ++i) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(e, keep[i]);
            if (v != NULL)
                cJSON_AddItemToObject(o, keep[i], cJSON_Duplicate(v, 1));
        }
        cJSON_AddItemToArray(out, o);
    }
    cJSON_Delete(full);
    return json_text(out);
}

void
sk_stats_pub_tick(sk_stats_pub_t *p, sk_redis_t *r)
{
    sk_host_t *host = p->host;
    if (p->pending > 0 || !sk_redis_connected(r))
        return; /* a slow Redis gets one publication at a time, never a backlog */
    sk_metrics_sum(host, &p->sum);
    int listener = sk_conf_has_plugin(&host->conf, "access") ? SK_LISTENER_ACCESS : SK_LISTENER_ADMIN;
    uint64_t delta[SK_METRICS_BUCKETS + 1];
    for (size_t b = 0; b <= SK_METRICS_BUCKETS; ++b) {
        uint64_t now = p->sum.lat[listener][b];
        delta[b] = p->have_prev && now >= p->prev_lat[b] ? now - p->prev_lat[b] : p->have_prev ? 0 : now;
        p->prev_lat[b] = now;
    }
    p->have_prev = 1;
    int64_t p50 = sk_stats_quantile_us(delta, SK_METRICS_BUCKETS + 1, sk_metrics_bucket_le_us, 0.50);
    int64_t p99 = sk_stats_quantile_us(delta, SK_METRICS_BUCKETS + 1, sk_metrics_bucket_le_us, 0.99);

    cJSON *lat = cJSON_CreateObject();
    cJSON *le = cJSON_AddArrayToObject(lat, "le_us"), *cnt = cJSON_AddArrayToObject(lat, "counts");
    for (size_t b = 0; b <= SK_METRICS_BUCKETS; ++b) {
        if (b < SK_METRICS_BUCKETS)
            cJSON_AddItemToArray(le, cJSON_CreateNumber((double)sk_metrics_bucket_le_us[b]));
        cJSON_AddItemToArray(cnt, cJSON_CreateNumber((double)p->sum.lat[listener][b]));
    }
    cJSON_AddStringToObject(lat, "listener", listener == SK_LISTENER_ACCESS ? "access" : "admin");

    char *codes, *paths;
    uint64_t wins;
    add_counts(p, &codes, &paths, &wins);
    char *latj = json_text(lat), *pol = policies_json(host);
    char ts[24], started[24], winsb[24], p50b[24], p99b[24], key[200], idx[64];
    uint64_t now = unix_ms();
    snprintf(ts, sizeof(ts), "%llu", (unsigned long long)now);
    snprintf(started, sizeof(started), "%llu", (unsigned long long)host->started_at);
    snprintf(winsb, sizeof(winsb), "%llu", (unsigned long long)wins);
    snprintf(p50b, sizeof(p50b), "%lld", (long long)p50);
    snprintf(p99b, sizeof(p99b), "%lld", (long long)p99);
    const char *redis = atomic_load(&host->redis_up) ? "up" : "down";
    const char *etcd = host->etcd != NULL && sk_etcd_is_up(host->etcd) ? "up" : "down";
    if (sk_key_node_stats(key, sizeof(key), host->conf.node_id) < 0 || sk_key_node_stats(idx, sizeof(idx), NULL) < 0)
        goto done;

    const char *argv[2 + 2 * SK_STATS_FIELDS] = {"HSET", key};
    const char *fields[SK_STATS_FIELDS][2] = {
        {"node_id", host->conf.node_id},
        {"roles", host->conf.plugins},
        {"ts_ms", ts},
        {"started_ms", started},
        {"redis", redis},
        {"etcd", etcd},
        {"wins", winsb},
        {"p50_us", p50b},
        {"p99_us", p99b},
        {"codes", codes},
        {"paths", paths},
        {"lat", latj},
        {"policies", pol},
    };
    for (size_t i = 0; i < SK_STATS_FIELDS; ++i) {
        argv[2 + 2 * i] = fields[i][0];
        argv[3 + 2 * i] = fields[i][1];
    }
    if (sk_redis_cmdargv(r, on_reply, p, 0, 2 + 2 * SK_STATS_FIELDS, argv, NULL) == 0)
        p->pending++;
    /* a few publications' worth of life: a node that stops disappears from the dashboard within seconds */
    if (sk_redis_cmd(r, on_reply, p, "PEXPIRE %s %d", key, SK_STATS_TTL_MS) == 0)
        p->pending++;
    if (sk_redis_cmd(r, on_reply, p, "ZADD %s %s %s", idx, ts, host->conf.node_id) == 0)
        p->pending++;
done:
    free(codes);
    free(paths);
    free(latj);
    free(pol);
}
