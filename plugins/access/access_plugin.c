/*
 * The access plugin: the public gateway on SK_LISTENER_ACCESS (SPEC §3, §4). This file is only the glue: descriptor,
 * instance and per-thread set-up, shutdown, and the /status and /metrics figures.
 */
#include "access.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
on_snapshot(void *inst, void *tstate, const sk_snapshot_t *snap)
{
    sk_access_t *a = inst;
    sk_thread_t *thr = a->api->thread_self();
    (void)snap;
    /* only HTTP threads hold an sk_access_thread_t; the control thread's state is another type */
    if (tstate == NULL || thr == NULL || a->api->thread_kind(thr) != SK_THREAD_HTTP)
        return;
    /* a changed activity (say, a raised total) voids what earlier 1007 answers taught this thread */
    sk_access_thread_t *t = tstate;
    memset(t->learned, 0, sizeof(t->learned));
}

static void *
create(const sk_host_api_t *api, sk_plugin_t *self, char *err, size_t errlen)
{
    if (api->version != SK_HOST_API_VERSION || api->size < sizeof(sk_host_api_t)) {
        snprintf(err, errlen, "host API version %u (size %u) is not the one this plugin was built for", api->version, api->size);
        return NULL;
    }
    sk_access_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->api = api;
    a->self = self;
    a->conf = api->config(self);
    char why[160];
    if (sk_access_netlist_parse(a->conf->access_trusted_proxies, &a->trusted, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "access.trusted_proxies: %s", why);
        goto Error;
    }
    if (sk_access_hostlist_parse(a->conf->access_referer_whitelist, &a->referers, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "access.referer_whitelist: %s", why);
        goto Error;
    }
    if ((a->limiter = sk_access_limiter_new(a->conf->access_limiter_max_entries)) == NULL ||
        (a->replay = sk_access_replay_new(SK_ACCESS_REPLAY_CAP)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto Error;
    }
    sk_access_script_sha(sk_script_access_queue, a->queue_sha);
    sk_access_script_sha(sk_script_access_result, a->result_sha);
    if (api->route(self, SK_LISTENER_ACCESS, "/sec/", sk_access_handle) != 0 || api->on_snapshot(self, on_snapshot) != 0) {
        snprintf(err, errlen, "cannot register /sec/");
        goto Error;
    }
    return a;
Error:
    sk_access_limiter_free(a->limiter);
    sk_access_replay_free(a->replay);
    free(a);
    return NULL;
}

static void
http_thread_free(sk_access_thread_t *t)
{
    sk_access_queue_dispose(t);
    sk_access_live_release(t->live);
    sk_access_blset_release(t->bl);
    sk_access_bloverlay_free(t->overlay);
    sk_hmac_free(t->hmac);
    free(t);
}

static void *
thread_init(void *inst, sk_thread_t *thr)
{
    sk_access_t *a = inst;
    const sk_host_api_t *api = a->api;
    switch (api->thread_kind(thr)) {
    case SK_THREAD_HTTP: {
        sk_access_thread_t *t = calloc(1, sizeof(*t));
        if (t == NULL)
            return NULL;
        t->a = a;
        t->thr = thr;
        t->index = api->thread_index(thr);
        if ((t->hmac = sk_hmac_new()) == NULL || (t->overlay = sk_access_bloverlay_new(SK_ACCESS_OVERLAY_CAP)) == NULL ||
            (t->bl = sk_access_blset_empty()) == NULL || sk_access_queue_init(t) != 0) {
            api->log(a->self, SK_LOG_ERROR, "HTTP thread %u: set-up failed; /sec/ answers 404 there", t->index);
            http_thread_free(t);
            return NULL;
        }
        return t;
    }
    case SK_THREAD_CONTROL: {
        sk_access_control_t *c = sk_access_control_new(a, thr);
        if (c == NULL)
            api->log(a->self, SK_LOG_ERROR, "control thread: set-up failed; no blacklists, no logic liveness");
        return c;
    }
    default:
        return NULL;
    }
}

static void
thread_dispose(void *inst, sk_thread_t *thr, void *tstate)
{
    sk_access_t *a = inst;
    if (tstate == NULL)
        return;
    switch (a->api->thread_kind(thr)) {
    case SK_THREAD_HTTP:
        http_thread_free(tstate);
        break;
    case SK_THREAD_CONTROL:
        sk_access_control_free(tstate);
        break;
    default:
        break;
    }
}

static void
stop(void *inst)
{
    sk_access_t *a = inst;
    atomic_store(&a->stopped, 1);
}

static size_t
inflight(void *inst)
{
    sk_access_t *a = inst;
    return atomic_load(&a->inflight);
}

static void
destroy(void *inst)
{
    sk_access_t *a = inst;
    sk_access_limiter_free(a->limiter);
    sk_access_replay_free(a->replay);
    free(a);
}

static void
status(void *inst, cJSON *obj)
{
    sk_access_t *a = inst;
    cJSON_AddNumberToObject(obj, "inflight", (double)atomic_load(&a->inflight));
    cJSON_AddNumberToObject(obj, "max_inflight", (double)a->conf->access_max_inflight);
    cJSON_AddNumberToObject(obj, "queue_len", (double)atomic_load(&a->queue_len));
    cJSON_AddNumberToObject(obj, "logic_alive", (double)atomic_load(&a->logic_alive));
    cJSON_AddNumberToObject(obj, "redis_offset_ms", (double)atomic_load(&a->offset_ms));
    cJSON_AddNumberToObject(obj, "blacklist_users", (double)atomic_load(&a->bl_users));
    cJSON_AddNumberToObject(obj, "blacklist_ips", (double)atomic_load(&a->bl_ips));
    cJSON_AddNumberToObject(obj, "blacklist_loads", (double)atomic_load(&a->bl_loads));
    cJSON_AddNumberToObject(obj, "limiter_entries", (double)sk_access_limiter_size(a->limiter));
    cJSON_AddNumberToObject(obj, "limiter_evictions", (double)sk_access_limiter_evictions(a->limiter));
    cJSON_AddNumberToObject(obj, "replay_entries", (double)sk_access_replay_size(a->replay));
    cJSON_AddNumberToObject(obj, "queued", (double)atomic_load(&a->queued));
    cJSON_AddNumberToObject(obj, "timeouts", (double)atomic_load(&a->timeouts));
    cJSON_AddNumberToObject(obj, "gone", (double)atomic_load(&a->gone));
    cJSON_AddNumberToObject(obj, "redis_errors", (double)atomic_load(&a->redis_errors));
    cJSON_AddBoolToObject(obj, "stopped", atomic_load(&a->stopped) != 0);
}

static void
metrics(void *inst, FILE *out)
{
    sk_access_t *a = inst;
    fprintf(out, "# TYPE seckill_access_inflight gauge\nseckill_access_inflight %zu\n", atomic_load(&a->inflight));
    fprintf(out, "# TYPE seckill_access_queue_length gauge\nseckill_access_queue_length %lld\n", atomic_load(&a->queue_len));
    fprintf(out, "# TYPE seckill_access_logic_alive gauge\nseckill_access_logic_alive %lld\n", atomic_load(&a->logic_alive));
    fprintf(out, "# TYPE seckill_access_blacklist_entries gauge\n");
    fprintf(out, "seckill_access_blacklist_entries{type=\"user\"} %zu\n", atomic_load(&a->bl_users));
    fprintf(out, "seckill_access_blacklist_entries{type=\"ip\"} %zu\n", atomic_load(&a->bl_ips));
    fprintf(out, "# TYPE seckill_access_limiter_entries gauge\nseckill_access_limiter_entries %zu\n",
            sk_access_limiter_size(a->limiter));
    fprintf(out, "# TYPE seckill_access_limiter_evictions_total counter\nseckill_access_limiter_evictions_total %" PRIu64 "\n",
            sk_access_limiter_evictions(a->limiter));
    fprintf(out, "# TYPE seckill_access_replay_entries gauge\nseckill_access_replay_entries %zu\n",
            sk_access_replay_size(a->replay));
    fprintf(out, "# TYPE seckill_access_queued_total counter\nseckill_access_queued_total %llu\n", atomic_load(&a->queued));
    fprintf(out, "# TYPE seckill_access_timeouts_total counter\nseckill_access_timeouts_total %llu\n", atomic_load(&a->timeouts));
    fprintf(out, "# TYPE seckill_access_gone_total counter\nseckill_access_gone_total %llu\n", atomic_load(&a->gone));
    fprintf(out, "# TYPE seckill_access_redis_errors_total counter\nseckill_access_redis_errors_total %llu\n",
            atomic_load(&a->redis_errors));
}

static const sk_plugin_desc_t desc = {
    .abi = SK_PLUGIN_ABI,
    .size = sizeof(sk_plugin_desc_t),
    .name = "access",
    .version = "1.0",
    .build_signature = SK_BUILD_SIGNATURE,
    .create = create,
    .thread_init = thread_init,
    .thread_dispose = thread_dispose,
    .stop = stop,
    .inflight = inflight,
    .destroy = destroy,
    .status = status,
    .metrics = metrics,
};

SK_PLUGIN_EXPORT const sk_plugin_desc_t *
sk_plugin_entry(void)
{
    return &desc;
}
