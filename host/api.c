/*
 * The host API table handed to plugins: thin adapters from the ABI onto the host's services.
 */
#include <stdio.h>
#include <string.h>
#include "host.h"
#include "redis_cluster.h"

static const sk_config_t *
api_config(sk_plugin_t *self)
{
    return &self->host->conf;
}

static void
api_log(sk_plugin_t *self, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_vlogf(level, self->name, fmt, ap);
    va_end(ap);
}

static int
api_stopping(sk_plugin_t *self)
{
    return atomic_load(&self->host->stopping);
}

static int
api_route(sk_plugin_t *self, sk_listener_t listener, const char *path, sk_handler_cb cb)
{
    sk_host_t *host = self->host;
    if (!host->creating || cb == NULL || path == NULL || path[0] != '/' || strlen(path) >= sizeof(host->routes[0].path) ||
        (unsigned)listener > SK_LISTENER_STATUS)
        return -1;
    if (host->nroutes >= sizeof(host->routes) / sizeof(host->routes[0]))
        return -1;
    for (size_t i = 0; i < host->nroutes; ++i)
        if (host->routes[i].listener == listener && strcmp(host->routes[i].path, path) == 0)
            return -1;
    sk_route_t *r = &host->routes[host->nroutes++];
    r->listener = listener;
    snprintf(r->path, sizeof(r->path), "%s", path);
    r->plugin = self;
    r->cb = cb;
    return 0;
}

static int
api_on_snapshot(sk_plugin_t *self, sk_snapshot_cb cb)
{
    if (!self->host->creating)
        return -1;
    self->on_snapshot = cb;
    return 0;
}

static int
api_on_etcd_event(sk_plugin_t *self, sk_etcd_event_cb cb)
{
    if (!self->host->creating)
        return -1;
    self->on_etcd_event = cb;
    return 0;
}

static sk_thread_kind_t
api_thread_kind(sk_thread_t *thr)
{
    return thr->kind;
}

static unsigned
api_thread_index(sk_thread_t *thr)
{
    return thr->index;
}

static size_t
api_nhttp_threads(sk_plugin_t *self)
{
    return self->host->nhttp;
}

static sk_thread_t *
api_http_thread(sk_plugin_t *self, size_t i)
{
    return i < self->host->nhttp ? self->host->http[i] : NULL;
}

static sk_thread_t *
api_control_thread(sk_plugin_t *self)
{
    return self->host->control;
}

static sk_thread_t *
api_admin_thread(sk_plugin_t *self)
{
    return self->host->admin;
}

static int
api_thread_spawn(sk_plugin_t *self, unsigned count)
{
    if (!self->host->creating || count == 0 || self->host->nworkers + count > SK_MAX_THREADS)
        return -1;
    /* the threads themselves are created by main once every plugin is loaded */
    self->spawn_count += count;
    self->host->nworkers += count;
    return 0;
}

static void *
api_tstate(sk_plugin_t *self, sk_thread_t *thr)
{
    return thr->tstates[self->index];
}

static sk_redis_t *
api_redis_new(sk_plugin_t *self, sk_thread_t *thr)
{
    return sk_redis_new(self->host, thr, self->name);
}

static sk_redis_t *
api_redis_new_queue(sk_plugin_t *self, sk_thread_t *thr)
{
    const sk_config_t *c = &self->host->conf;
    if (c->redis_queue_addr[0] == '\0' || thr == NULL)
        return NULL;
    char who[80];
    snprintf(who, sizeof(who), "%s-queue", self->name);
    return sk_redis_conn_new(self->host, thr, who, c->redis_queue_host, c->redis_queue_port);
}

static const sk_snapshot_t *
api_snapshot(sk_thread_t *thr)
{
    return thr->snap != NULL ? thr->snap : sk_snapshot_empty();
}

static int
api_etcd_put(sk_plugin_t *self, const char *key, const char *value, size_t len, int64_t *rev, char *err, size_t errlen)
{
    return sk_etcd_put(self->host->etcd, key, value, len, rev, err, errlen);
}

static int
api_etcd_delete(sk_plugin_t *self, const char *key, int64_t *rev, char *err, size_t errlen)
{
    return sk_etcd_delete(self->host->etcd, key, rev, err, errlen);
}

static int
api_etcd_range(sk_plugin_t *self, const char *key_prefix,
               void (*cb)(void *arg, const char *key, const char *value, size_t len, int64_t mod_revision), void *arg, char *err,
               size_t errlen)
{
    return sk_etcd_range(self->host->etcd, key_prefix, cb, arg, err, errlen);
}

static int
api_etcd_up(sk_plugin_t *self)
{
    return self->host->etcd != NULL && sk_etcd_is_up(self->host->etcd);
}

static int
api_policy_admit(sk_thread_t *thr, const sk_policy_req_t *r, char *reason, size_t reasonlen)
{
    return thr->lua != NULL ? sk_policy_admit(thr->lua, r, reason, reasonlen) : -1;
}

static int
api_policy_allow(sk_thread_t *thr, const sk_policy_req_t *r, const sk_policy_activity_t *a)
{
    return thr->lua != NULL ? sk_policy_allow(thr->lua, r, a) : -1;
}

static int
api_policy_issue(sk_thread_t *thr, const sk_policy_req_t *r, const sk_policy_activity_t *a, char *token, size_t tokencap,
                 int64_t *ttl)
{
    return thr->lua != NULL ? sk_policy_issue(thr->lua, r, a, token, tokencap, ttl) : -1;
}

static int
api_policy_validate(sk_plugin_t *self, const char *name, const char *src, size_t len, char *err, size_t errlen)
{
    return sk_policy_validate(&self->host->conf, name, src, len, err, errlen);
}

const sk_host_api_t sk_host_api = {
    .version = SK_HOST_API_VERSION,
    .size = sizeof(sk_host_api_t),
    .config = api_config,
    .log = api_log,
    .stopping = api_stopping,
    .route = api_route,
    .on_snapshot = api_on_snapshot,
    .on_etcd_event = api_on_etcd_event,
    .reply = sk_http_reply,
    .reply_raw = sk_http_reply_raw,
    .req_body = sk_http_req_body,
    .thread_self = sk_thread_self,
    .thread_kind = api_thread_kind,
    .thread_index = api_thread_index,
    .nhttp_threads = api_nhttp_threads,
    .http_thread = api_http_thread,
    .control_thread = api_control_thread,
    .admin_thread = api_admin_thread,
    .post = sk_thread_post,
    .thread_spawn = api_thread_spawn,
    .tstate = api_tstate,
    .timer_new = sk_timer_new,
    .timer_start = sk_timer_start,
    .timer_stop = sk_timer_stop,
    .timer_free = sk_timer_free,
    .now_ms = sk_thread_now_ms,
    .redis_new = api_redis_new,
    .redis_free = sk_redis_free,
    .redis_connected = sk_redis_connected,
    .redis_cmdargv = sk_redis_cmdargv,
    .redis_cmd = sk_redis_cmd,
    .redis_subscribe = sk_redis_subscribe,
    .redis_on_connect = sk_redis_on_connect,
    .redis_cmdargv_at = sk_redis_cmdargv_at,
    .req_peer_closed = sk_http_req_peer_closed,
    .redis_new_queue = api_redis_new_queue,
    .snapshot = api_snapshot,
    .etcd_put = api_etcd_put,
    .etcd_delete = api_etcd_delete,
    .etcd_range = api_etcd_range,
    .etcd_up = api_etcd_up,
    .policy_admit = api_policy_admit,
    .policy_allow = api_policy_allow,
    .policy_issue = api_policy_issue,
    .policy_validate = api_policy_validate,
};
