/*
 * The status listener: /healthz, /status (JSON) and /metrics (Prometheus text). /healthz is also served on the
 * public access port.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "host.h"
#include "metrics.h"

static uint64_t
unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* SPEC §1: 503 when the node cannot do its job (Redis down, for access and logic), "degraded" when only etcd is. With
 * redis.cluster, "Redis down" means no master answers; with some masters down the node still serves the activities on
 * the others (SPEC §9), so that is "degraded" too. */
static int
health(sk_host_t *host, const char **word)
{
    int needs_redis = sk_conf_has_plugin(&host->conf, "access") || sk_conf_has_plugin(&host->conf, "logic");
    if (needs_redis && (!atomic_load(&host->redis_up) || !atomic_load(&host->queue_up))) {
        *word = "unavailable";
        return 503;
    }
    if (host->etcd == NULL || !sk_etcd_is_up(host->etcd) ||
        (host->conf.redis_cluster && atomic_load(&host->redis_masters_up) < atomic_load(&host->redis_masters))) {
        *word = "degraded";
        return 200;
    }
    *word = "ok";
    return 200;
}

static void
send_text(h2o_req_t *req, int status, const char *type, char *text, size_t len)
{
    sk_http_reply_raw(req, status, type, text, len);
}

static void
serve_healthz(sk_host_t *host, h2o_req_t *req)
{
    const char *word;
    int status = health(host, &word);
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"status\":\"%s\"}", word);
    send_text(req, status, "application/json", body, (size_t)n);
}

static void
serve_status(sk_host_t *host, h2o_req_t *req)
{
    cJSON *o = cJSON_CreateObject();
    const char *word;
    health(host, &word);
    cJSON_AddStringToObject(o, "status", word);
    cJSON_AddStringToObject(o, "node_id", host->conf.node_id);
    cJSON_AddStringToObject(o, "h2o_version", H2O_VERSION);
    cJSON_AddNumberToObject(o, "uptime_s", (double)(unix_ms() - host->started_at) / 1000.0);
    cJSON_AddNumberToObject(o, "threads", (double)host->nhttp);
    cJSON *plugins = cJSON_AddArrayToObject(o, "plugins");
    for (size_t i = 0; i < host->nplugins; ++i) {
        sk_plugin_t *p = &host->plugins[i];
        cJSON *po = cJSON_CreateObject();
        cJSON_AddStringToObject(po, "name", p->name);
        cJSON_AddStringToObject(po, "version", p->desc->version);
        if (p->desc->status != NULL)
            p->desc->status(p->inst, po);
        cJSON_AddItemToArray(plugins, po);
    }
    cJSON *redis = cJSON_AddObjectToObject(o, "redis");
    cJSON_AddStringToObject(redis, "addr", host->conf.redis_addr);
    cJSON_AddStringToObject(redis, "state", atomic_load(&host->redis_up) ? "up" : "down");
    cJSON_AddBoolToObject(redis, "cluster", host->conf.redis_cluster);
    if (host->conf.redis_queue_addr[0] != '\0') {
        cJSON_AddStringToObject(redis, "queue_addr", host->conf.redis_queue_addr);
        cJSON_AddStringToObject(redis, "queue_state", atomic_load(&host->queue_up) ? "up" : "down");
    }
    if (host->conf.redis_cluster) {
        pthread_mutex_lock(&host->redis_mu);
        cJSON *masters = cJSON_Parse(host->redis_map_json[0] != '\0' ? host->redis_map_json : "[]");
        pthread_mutex_unlock(&host->redis_mu);
        if (masters != NULL)
            cJSON_AddItemToObject(redis, "masters", masters);
    }
    cJSON *etcd = cJSON_AddObjectToObject(o, "etcd");
    if (host->etcd != NULL)
        sk_etcd_status(host->etcd, etcd);
    else
        cJSON_AddStringToObject(etcd, "state", "disabled");
    const sk_snapshot_t *snap = sk_host_latest_snapshot(host);
    cJSON *so = cJSON_AddObjectToObject(o, "snapshot");
    cJSON_AddNumberToObject(so, "revision", (double)snap->revision);
    cJSON_AddNumberToObject(so, "products", (double)snap->nproducts);
    cJSON_AddNumberToObject(so, "activities", (double)snap->nactivities);
    sk_snapshot_release(snap);
    cJSON *pol = cJSON_AddArrayToObject(o, "policies");
    sk_policy_status(host, pol);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text == NULL) {
        sk_http_reply(req, SK_E_UNAVAILABLE, "out of memory", NULL);
        return;
    }
    send_text(req, 200, "application/json", text, strlen(text));
    free(text);
}

static void
serve_metrics(sk_host_t *host, h2o_req_t *req)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (out == NULL) {
        sk_http_reply(req, SK_E_UNAVAILABLE, "out of memory", NULL);
        return;
    }
    const char *word;
    health(host, &word);
    fprintf(out, "# TYPE seckill_up gauge\nseckill_up %d\n", strcmp(word, "unavailable") != 0);
    fprintf(out, "# TYPE seckill_redis_up gauge\nseckill_redis_up %d\n", atomic_load(&host->redis_up) ? 1 : 0);
    if (host->conf.redis_queue_addr[0] != '\0')
        fprintf(out, "# TYPE seckill_queue_redis_up gauge\nseckill_queue_redis_up %d\n", atomic_load(&host->queue_up) ? 1 : 0);
    fprintf(out, "# TYPE seckill_etcd_up gauge\nseckill_etcd_up %d\n", host->etcd != NULL && sk_etcd_is_up(host->etcd) ? 1 : 0);
    fprintf(out, "# TYPE seckill_uptime_seconds gauge\nseckill_uptime_seconds %.3f\n",
            (double)(unix_ms() - host->started_at) / 1000.0);
    sk_metrics_write(host, out);
    for (size_t i = 0; i < host->nplugins; ++i)
        if (host->plugins[i].desc->metrics != NULL)
            host->plugins[i].desc->metrics(host->plugins[i].inst, out);
    fclose(out);
    send_text(req, 200, "text/plain; version=0.0.4", buf, len);
    free(buf);
}

int
sk_status_handle(sk_host_t *host, sk_listener_t listener, h2o_req_t *req)
{
    h2o_iovec_t p = req->path_normalized;
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/healthz"))) {
        serve_healthz(host, req);
        return 0;
    }
    if (listener != SK_LISTENER_STATUS)
        return -1;
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/status"))) {
        serve_status(host, req);
        return 0;
    }
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/metrics"))) {
        serve_metrics(host, req);
        return 0;
    }
    return -1;
}
