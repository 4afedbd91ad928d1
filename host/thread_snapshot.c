/*
 * Snapshot publishing: the control thread hands each thread a reference, and each thread swaps its own pointer on its
 * loop, so that a request reads thr->snap without a lock. Kept apart from thread.c so that the loop machinery links
 * without the Lua engine.
 */
#include <stdlib.h>
#include "host.h"

typedef struct st_snap_task_t {
    sk_thread_t *thr;
    const sk_snapshot_t *snap; /* one reference, owned by the task */
} snap_task_t;

static void
apply_snapshot(void *arg)
{
    snap_task_t *st = arg;
    sk_thread_t *thr = st->thr;
    sk_host_t *host = thr->host;
    const sk_snapshot_t *old = thr->snap;
    thr->snap = st->snap;
    free(st);
    /* after the loop ended (posting closed), plugin state is gone: only swap */
    if (!thr->post_closed) {
        if (thr->lua != NULL)
            sk_lua_thread_apply(thr->lua, thr->snap);
        for (size_t i = 0; i < host->nplugins; ++i) {
            sk_plugin_t *p = &host->plugins[i];
            if (p->on_snapshot == NULL)
                continue;
            if (thr->kind == SK_THREAD_WORKER && thr->spawned_by != p)
                continue; /* thread_init never ran there for this plugin */
            p->on_snapshot(p->inst, thr->tstates[i], thr->snap);
        }
    }
    /* released last: hooks may still compare against the old one */
    if (old != NULL)
        sk_snapshot_release(old);
}

static void
give_to(sk_thread_t *thr, const sk_snapshot_t *snap)
{
    if (thr == NULL)
        return;
    snap_task_t *st = malloc(sizeof(*st));
    if (st == NULL) {
        sk_logf(SK_LOG_ERROR, "host", "out of memory publishing snapshot %lld", (long long)snap->revision);
        return;
    }
    st->thr = thr;
    st->snap = snap;
    sk_snapshot_retain(snap);
    if (sk_thread_post(thr, apply_snapshot, st) != 0) {
        sk_snapshot_release(snap);
        free(st);
    }
}

void
sk_host_publish_snapshot(sk_host_t *host, const sk_snapshot_t *snap)
{
    if (snap == NULL)
        return;
    sk_snapshot_retain(snap);
    pthread_mutex_lock(&host->snap_mu);
    const sk_snapshot_t *old = host->latest_snap;
    host->latest_snap = snap;
    pthread_mutex_unlock(&host->snap_mu);
    if (old != NULL)
        sk_snapshot_release(old);
    for (size_t i = 0; i < host->nhttp; ++i)
        give_to(host->http[i], snap);
    give_to(host->admin, snap);
    give_to(host->control, snap);
    for (size_t i = 0; i < host->nworkers; ++i)
        give_to(host->workers[i], snap);
}

const sk_snapshot_t *
sk_host_latest_snapshot(sk_host_t *host)
{
    pthread_mutex_lock(&host->snap_mu);
    const sk_snapshot_t *s = host->latest_snap;
    if (s == NULL)
        s = sk_snapshot_empty();
    sk_snapshot_retain(s);
    pthread_mutex_unlock(&host->snap_mu);
    return s;
}
