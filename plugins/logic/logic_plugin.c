/*
 * The logic plugin's descriptor: configuration, thread wiring and shutdown. The work is in worker.c and consumer.c (WORKER
 * threads) and heartbeat.c (the CONTROL thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include "logic.h"

#define MAX_WORKERS 16
#define DRAIN_MAX_MS 10000

/* On every thread the logic plugin lives on; only its WORKER threads read streams. */
static void
logic_on_snapshot(void *inst, void *tstate, const sk_snapshot_t *snap)
{
    sk_logic_t *L = inst;
    sk_thread_t *thr = L->api->thread_self();
    if (tstate != NULL && thr != NULL && L->api->thread_kind(thr) == SK_THREAD_WORKER)
        sk_logic_worker_sync(tstate, snap);
}

static void *
logic_create(const sk_host_api_t *api, sk_plugin_t *self, char *err, size_t errlen)
{
    if (api->version != SK_HOST_API_VERSION || api->size < sizeof(sk_host_api_t)) {
        snprintf(err, errlen, "host API version %u size %u not supported", api->version, api->size);
        return NULL;
    }
    sk_logic_t *L = calloc(1, sizeof(*L));
    if (L == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    L->api = api;
    L->self = self;
    L->conf = api->config(self);
    L->nworkers = L->conf->threads == 0 ? 1 : L->conf->threads > MAX_WORKERS ? MAX_WORKERS : L->conf->threads;
    sk_logic_script_sha(sk_script_logic_stock, L->sha);
    atomic_init(&L->stats.pending, -1);
    atomic_init(&L->stats.lag, -1);
    atomic_init(&L->stats.xlen, -1);
    if (L->sha[0] == '\0') {
        snprintf(err, errlen, "cannot hash the stock script");
        free(L);
        return NULL;
    }
    if (api->on_snapshot(self, logic_on_snapshot) != 0 || api->thread_spawn(self, L->nworkers) != 0) {
        snprintf(err, errlen, "cannot spawn %u worker threads", L->nworkers);
        free(L);
        return NULL;
    }
    return L;
}

static void *
logic_thread_init(void *inst, sk_thread_t *thr)
{
    sk_logic_t *L = inst;
    switch (L->api->thread_kind(thr)) {
    case SK_THREAD_WORKER: {
        sk_logic_worker_t *w = sk_logic_worker_new(L, thr);
        if (w == NULL)
            L->api->log(L->self, SK_LOG_ERROR, "worker %u: cannot set up", L->api->thread_index(thr));
        return w;
    }
    case SK_THREAD_CONTROL:
        L->hb = sk_logic_hb_new(L, thr);
        if (L->hb == NULL)
            L->api->log(L->self, SK_LOG_ERROR, "cannot set up the heartbeat");
        return L->hb;
    default:
        return NULL;
    }
}

static void
logic_thread_dispose(void *inst, sk_thread_t *thr, void *tstate)
{
    sk_logic_t *L = inst;
    switch (L->api->thread_kind(thr)) {
    case SK_THREAD_WORKER:
        sk_logic_worker_free(tstate);
        break;
    case SK_THREAD_CONTROL:
        sk_logic_hb_free(tstate);
        L->hb = NULL;
        break;
    default:
        break;
    }
}

static void
leave_task(void *arg)
{
    sk_logic_t *L = arg;
    sk_logic_hb_leave(L->hb);
}

static void
logic_stop(void *inst)
{
    sk_logic_t *L = inst;
    /* Keep consuming until a read comes back empty, for at most one request timeout: in a node that also runs
     * access, the entries still queued are its own in-flight requests, and with no other logic node they would all end
     * as 1008. The host waits for inflight() == 0 a little longer than that. */
    unsigned drain = L->conf->access_request_timeout_ms < DRAIN_MAX_MS ? L->conf->access_request_timeout_ms : DRAIN_MAX_MS;
    L->stop_deadline_ms = sk_logic_mono_ms() + drain;
    atomic_store(&L->stopping, 1);
    sk_thread_t *control = L->api->control_thread(L->self);
    if (control != NULL)
        L->api->post(control, leave_task, L);
}

static size_t
logic_inflight(void *inst)
{
    sk_logic_t *L = inst;
    int n = atomic_load(&L->busy);
    return n > 0 ? (size_t)n : 0;
}

static void
logic_destroy(void *inst)
{
    free(inst);
}

static void
logic_status(void *inst, cJSON *obj)
{
    sk_logic_status(inst, obj);
}

static void
logic_metrics(void *inst, FILE *out)
{
    sk_logic_metrics(inst, out);
}

static const sk_plugin_desc_t desc = {
    .abi = SK_PLUGIN_ABI,
    .size = sizeof(sk_plugin_desc_t),
    .name = "logic",
    .version = "1.0.0",
    .build_signature = SK_BUILD_SIGNATURE,
    .create = logic_create,
    .thread_init = logic_thread_init,
    .thread_dispose = logic_thread_dispose,
    .stop = logic_stop,
    .inflight = logic_inflight,
    .destroy = logic_destroy,
    .status = logic_status,
    .metrics = logic_metrics,
};

SK_PLUGIN_EXPORT const sk_plugin_desc_t *
sk_plugin_entry(void)
{
    return &desc;
}
