/*
 * The admin plugin's descriptor: products, activities, policies, blacklist and tokens (SPEC §5) on the admin listener.
 * All of its work runs on the single admin thread, where blocking SQLite and etcd calls are allowed; see admin.h.
 */
#include <stdlib.h>
#include <string.h>
#include "admin.h"
#include "sk_sign.h"

static void *
admin_create(const sk_host_api_t *api, sk_plugin_t *self, char *err, size_t errlen)
{
    sk_admin_t *inst = calloc(1, sizeof(*inst));
    if (inst == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    inst->api = api;
    inst->self = self;
    inst->conf = api->config(self);
    inst->has_token = inst->conf->admin_token[0] != '\0';
    if (inst->has_token)
        sk_sha256_hex(inst->conf->admin_token, strlen(inst->conf->admin_token), inst->token_sha);

    /* Open and migrate now, so that a bad admin.db fails the start with a message instead of a dead admin thread. */
    sk_admin_store_t *s = sk_admin_store_open(inst->conf->admin_db, err, errlen);
    if (s == NULL) {
        free(inst);
        return NULL;
    }
    sk_admin_store_close(s);

    static const struct {
        const char *path;
        sk_handler_cb cb;
    } routes[] = {
        {"/product/", sk_admin_route_product},     {"/activity/", sk_admin_route_activity}, {"/policy/", sk_admin_route_policy},
        {"/blacklist/", sk_admin_route_blacklist}, {"/token/", sk_admin_route_token},       {"/", sk_admin_route_console},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); ++i) {
        if (api->route(self, SK_LISTENER_ADMIN, routes[i].path, routes[i].cb) != 0) {
            snprintf(err, errlen, "cannot register route %s", routes[i].path);
            free(inst);
            return NULL;
        }
    }
    if (api->on_etcd_event(self, sk_admin_policy_event) != 0) {
        snprintf(err, errlen, "cannot register the etcd event hook");
        free(inst);
        return NULL;
    }
    return inst;
}

static void *
admin_thread_init(void *instp, sk_thread_t *thr)
{
    sk_admin_t *inst = instp;
    char err[256];
    if (inst->api->thread_kind(thr) != SK_THREAD_ADMIN)
        return NULL;
    sk_admin_ts_t *ts = calloc(1, sizeof(*ts));
    if (ts == NULL)
        return NULL;
    ts->inst = inst;
    ts->thr = thr;
    if ((ts->store = sk_admin_store_open(inst->conf->admin_db, err, sizeof(err))) == NULL)
        inst->api->log(inst->self, SK_LOG_ERROR, "%s", err);
    ts->redis = inst->api->redis_new(inst->self, thr);
    inst->ts = ts;
    if (ts->store != NULL)
        sk_admin_sync_start(ts);
    return ts;
}

static void
admin_thread_dispose(void *instp, sk_thread_t *thr, void *tstate)
{
    sk_admin_t *inst = instp;
    sk_admin_ts_t *ts = tstate;
    (void)thr;
    if (ts == NULL)
        return;
    ts->disposing = 1;
    sk_admin_sync_stop(ts);
    if (ts->redis != NULL)
        inst->api->redis_free(ts->redis); /* fails every pending callback; they see `disposing` and only free */
    ts->redis = NULL;
    sk_admin_token_dispose(ts);
    sk_admin_store_close(ts->store);
    inst->ts = NULL;
    free(ts);
}

static void
admin_stop(void *instp)
{
    (void)instp;
}

static size_t
admin_inflight(void *instp)
{
    sk_admin_t *inst = instp;
    long n = atomic_load(&inst->inflight);
    return n > 0 ? (size_t)n : 0;
}

static void
admin_destroy(void *instp)
{
    free(instp);
}

static void
admin_status(void *instp, cJSON *obj)
{
    sk_admin_t *inst = instp;
    cJSON_AddStringToObject(obj, "db", inst->conf->admin_db);
    cJSON_AddBoolToObject(obj, "token_required", inst->has_token);
    cJSON_AddNumberToObject(obj, "etcd_pending", (double)atomic_load(&inst->etcd_pending));
    cJSON_AddNumberToObject(obj, "etcd_sync_failures", (double)atomic_load(&inst->sync_failures));
    cJSON_AddNumberToObject(obj, "orders_created", (double)atomic_load(&inst->orders_created));
    cJSON_AddNumberToObject(obj, "tokens_cancelled", (double)atomic_load(&inst->tokens_cancelled));
    cJSON_AddNumberToObject(obj, "policy_events_dropped", (double)atomic_load(&inst->history_dropped));
    cJSON_AddNumberToObject(obj, "inflight", (double)atomic_load(&inst->inflight));
}

static void
admin_metrics(void *instp, FILE *out)
{
    sk_admin_t *inst = instp;
    fprintf(out, "# TYPE seckill_admin_etcd_pending gauge\nseckill_admin_etcd_pending %ld\n", atomic_load(&inst->etcd_pending));
    fprintf(out, "# TYPE seckill_admin_etcd_sync_failures_total counter\nseckill_admin_etcd_sync_failures_total %lu\n",
            atomic_load(&inst->sync_failures));
    fprintf(out, "# TYPE seckill_admin_orders_total counter\nseckill_admin_orders_total %lu\n", atomic_load(&inst->orders_created));
    fprintf(out, "# TYPE seckill_admin_tokens_cancelled_total counter\nseckill_admin_tokens_cancelled_total %lu\n",
            atomic_load(&inst->tokens_cancelled));
}

static const sk_plugin_desc_t admin_desc = {
    .abi = SK_PLUGIN_ABI,
    .size = sizeof(sk_plugin_desc_t),
    .name = "admin",
    .version = "1.0.0",
    .build_signature = SK_BUILD_SIGNATURE,
    .create = admin_create,
    .thread_init = admin_thread_init,
    .thread_dispose = admin_thread_dispose,
    .stop = admin_stop,
    .inflight = admin_inflight,
    .destroy = admin_destroy,
    .status = admin_status,
    .metrics = admin_metrics,
};

SK_PLUGIN_EXPORT const sk_plugin_desc_t *
sk_plugin_entry(void)
{
    return &admin_desc;
}
