/*
 * The control thread's view of etcd: list the prefix, then watch it from the next revision through the JSON gateway,
 * with libcurl's multi-socket API driven by the thread's libev loop.
 *
 * One transfer is in flight at a time (a list or a watch). Everything that starts or ends a transfer runs outside
 * libcurl's callbacks (libcurl refuses add/remove calls from inside them): the write callback only buffers bytes, the
 * buffer is parsed after curl_multi_socket_action returns, and the next transfer starts from a timer.
 *
 * Liveness: the watch asks for progress notifications, and a stream that sends no byte for `idle` seconds is replaced
 * by a new watch from the same revision; a watch that gets no "created" answer in time is a failure (a stopped etcd
 * still accepts TCP connections). Failures back off (capped at 1 s) and move to the next endpoint.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "etcd_internal.h"
#include "snapshot.h"

#define WATCH_CONNECT_MS 1000
#define CREATED_DEADLINE_S 2.0
#define LIST_TIMEOUT_MS 3000
#define START_LIST_DEADLINE_MS 1000
#define DEFAULT_IDLE_S 5.0
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define PUBLISH_GAP_S 0.020
#define MIN_PROGRESS_GAP_S 0.4
#define MIN_IDLE_S 2.5
#define WATCH_RX_MAX (16u << 20)
#define WATCH_OBJ_MAX (8u << 20)

enum { PH_IDLE = 0, PH_LIST, PH_WATCH };
enum { NEXT_NONE = 0, NEXT_RETRY, NEXT_RELIST, NEXT_REWATCH };

struct st_sk_etcd_watch_t {
    sk_etcd_t *e;
    sk_host_t *host;
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer curl_timer, next_timer, tick_timer, publish_timer;
    CURL *easy;
    int phase;
    struct curl_slist *hdrs;
    sk_etcd_rxbuf_t rx;
    sk_json_splitter_t splitter;
    unsigned endpoint;
    unsigned backoff_ms;
    unsigned fails; /* failures in a row, for the log */
    ev_tstamp started_at, last_rx, idle_s, last_publish;
    ev_tstamp last_progress, progress_gap; /* the server's progress interval as observed (0 = not seen yet) */
    int created, need_list, publish_pending, stopping;
    int next;         /* verdict of the stream parser: what to do once the transfer is ended */
    char reason[256]; /* and why */
    int pending_next; /* what next_timer will do */
};

typedef struct st_sock_t {
    ev_io io;
    sk_etcd_watch_t *w;
} sock_t;

static void after_action(sk_etcd_watch_t *w);
static void schedule(sk_etcd_watch_t *w, int next, const char *why);

/* ---- helpers ---- */

static void
set_state(sk_etcd_t *e, const char *state)
{
    pthread_mutex_lock(&e->mu);
    e->state = state;
    pthread_mutex_unlock(&e->mu);
}

static void
call_hooks(sk_etcd_watch_t *w, const char *key, const char *value, size_t len, int64_t rev, int is_delete)
{
    sk_host_t *host = w->host;
    for (size_t i = 0; i < host->nplugins; i++) {
        sk_plugin_t *p = &host->plugins[i];
        if (p->on_etcd_event != NULL)
            p->on_etcd_event(p->inst, key, value != NULL ? value : "", len, rev, is_delete);
    }
}

static void
publish_now(sk_etcd_watch_t *w)
{
    sk_etcd_t *e = w->e;
    if (w->publish_pending) {
        ev_timer_stop(w->loop, &w->publish_timer);
        w->publish_pending = 0;
    }
    /* the control thread is the only writer of the state, so building needs no lock */
    const sk_snapshot_t *s = sk_etcd_state_build(e->st);
    sk_host_publish_snapshot(w->host, s);
    sk_snapshot_release(s);
    w->last_publish = ev_now(w->loop);
    pthread_mutex_lock(&e->mu);
    e->publishes++;
    pthread_mutex_unlock(&e->mu);
}

static void
on_publish_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    sk_etcd_watch_t *w = t->data;
    w->publish_pending = 0;
    publish_now(w);
}

/* Coalesces bursts: at most one publish per PUBLISH_GAP_S, and a change is never held longer than that. */
static void
schedule_publish(sk_etcd_watch_t *w)
{
    if (w->publish_pending)
        return;
    ev_tstamp due = w->last_publish + PUBLISH_GAP_S - ev_now(w->loop);
    w->publish_pending = 1;
    ev_timer_set(&w->publish_timer, due > 0 ? due : 0., 0.);
    ev_timer_start(w->loop, &w->publish_timer);
}

/* Applies one key and tells the plugins; returns 1 when the snapshot content changed. */
static int
apply_one(sk_etcd_watch_t *w, const sk_etcd_kv_t *kv)
{
    sk_etcd_t *e = w->e;
    const char *rel = sk_etcd_relative_key(e, kv->key);
    if (rel == NULL)
        return 0;
    pthread_mutex_lock(&e->mu);
    int changed = sk_etcd_state_apply(e->st, rel, kv->value, kv->vlen, kv->mod_revision, kv->is_delete);
    pthread_mutex_unlock(&e->mu);
    call_hooks(w, rel, kv->value, kv->vlen, kv->mod_revision, kv->is_delete);
    return changed;
}

typedef struct st_gone_t {
    char **keys;
    size_t n, cap;
} gone_t;

static void
on_gone(void *arg, const char *key)
{
    gone_t *g = arg;
    if (g->n == g->cap) {
        size_t cap = g->cap != 0 ? g->cap * 2 : 16;
        char **k = realloc(g->keys, cap * sizeof(*k));
        if (k == NULL)
            return; /* the plugins miss one delete notice; the state itself is still right */
        g->keys = k;
        g->cap = cap;
    }
    char *dup = strdup(key);
    if (dup != NULL)
        g->keys[g->n++] = dup;
}

/* A full list replaces the state: keys it lacks are deleted, and the revision is the list's, even if it went back. */
static void
apply_list(sk_etcd_watch_t *w, const sk_etcd_kvs_t *kvs)
{
    sk_etcd_t *e = w->e;
    pthread_mutex_lock(&e->mu);
    sk_etcd_state_relist_begin(e->st);
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < kvs->n; i++)
        apply_one(w, &kvs->kvs[i]);
    gone_t g = {0};
    pthread_mutex_lock(&e->mu);
    sk_etcd_state_relist_end(e->st, on_gone, &g);
    sk_etcd_state_reset_revision(e->st, kvs->revision);
    e->revision = kvs->revision;
    e->relists++;
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < g.n; i++) {
        call_hooks(w, g.keys[i], "", 0, kvs->revision, 1);
        free(g.keys[i]);
    }
    free(g.keys);
    sk_logf(SK_LOG_INFO, "etcd", "listed %zu keys under %s at revision %lld (%zu gone)", kvs->n, e->prefix,
            (long long)kvs->revision, g.n);
    publish_now(w);
}

static void
mark_up(sk_etcd_watch_t *w)
{
    sk_etcd_t *e = w->e;
    if (!atomic_load(&e->up) && w->fails > 0)
        sk_logf(SK_LOG_INFO, "etcd", "%s is back after %u failed attempts", e->endpoints[w->endpoint], w->fails);
    atomic_store(&e->up, 1);
    atomic_store(&e->preferred, w->endpoint);
    w->fails = 0;
    w->backoff_ms = 0;
}

/* ---- libcurl glue ---- */

static void
on_io(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    sk_etcd_watch_t *w = ((sock_t *)io)->w;
    int flags = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    /* io may be freed inside this call (CURL_POLL_REMOVE); only w is used afterwards */
    curl_multi_socket_action(w->multi, io->fd, flags, &running);
    after_action(w);
}

static int
on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    sk_etcd_watch_t *w = userp;
    sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            ev_io_stop(w->loop, &s->io);
            free(s);
            curl_multi_assign(w->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->w = w;
        curl_multi_assign(w->multi, fd, s);
    } else {
        ev_io_stop(w->loop, &s->io);
    }
    int ev = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_init(&s->io, on_io, fd, ev);
    ev_io_start(w->loop, &s->io);
    return 0;
}

static void
on_curl_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    sk_etcd_watch_t *w = t->data;
    int running;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    after_action(w);
}

static int
on_curl_timerfunc(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    sk_etcd_watch_t *w = userp;
    ev_timer_stop(w->loop, &w->curl_timer);
    if (timeout_ms >= 0) {
        /* a fired one-shot ev_timer must be set again before it is started */
        ev_timer_set(&w->curl_timer, timeout_ms / 1000.0, 0.);
        ev_timer_start(w->loop, &w->curl_timer);
    }
    return 0;
}

static size_t
on_curl_write(char *data, size_t size, size_t n, void *arg)
{
    sk_etcd_watch_t *w = arg;
    size_t len = size * n;
    w->last_rx = ev_now(w->loop);
    return sk_etcd_rxbuf_append(&w->rx, data, len);
}

static void
end_transfer(sk_etcd_watch_t *w)
{
    if (w->easy != NULL) {
        curl_multi_remove_handle(w->multi, w->easy);
        curl_easy_cleanup(w->easy);
        w->easy = NULL;
    }
    curl_slist_free_all(w->hdrs);
    w->hdrs = NULL;
    w->rx.len = 0;
    sk_json_splitter_reset(&w->splitter);
    w->phase = PH_IDLE;
    w->created = 0;
    w->next = NEXT_NONE;
    w->last_progress = 0;
}

static int
begin_transfer(sk_etcd_watch_t *w, const char *path, const char *body, long timeout_ms, size_t rxmax)
{
    sk_etcd_t *e = w->e;
    char url[512];
    snprintf(url, sizeof(url), "%s%s", e->endpoints[w->endpoint], path);
    CURL *h = curl_easy_init();
    if (h == NULL)
        return -1;
    w->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    w->hdrs = curl_slist_append(w->hdrs, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, w->hdrs);
    curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_curl_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)WATCH_CONNECT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    w->rx.len = 0;
    w->rx.max = rxmax;
    w->easy = h;
    w->started_at = w->last_rx = ev_now(w->loop);
    if (curl_multi_add_handle(w->multi, h) != CURLM_OK) {
        end_transfer(w);
        return -1;
    }
    pthread_mutex_lock(&e->mu);
    snprintf(e->endpoint, sizeof(e->endpoint), "%s", e->endpoints[w->endpoint]);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

static void
start_list(sk_etcd_watch_t *w)
{
    char body[3200];
    sk_etcd_range_body(w->e->prefix, body, sizeof(body));
    if (atomic_load(&w->e->up))
        set_state(w->e, "listing"); /* a re-list; while etcd is down the state stays "down" until one succeeds */
    if (begin_transfer(w, "/v3/kv/range", body, LIST_TIMEOUT_MS, SK_ETCD_MAX_RESPONSE) != 0) {
        schedule(w, NEXT_RETRY, "cannot start the list request");
        return;
    }
    w->phase = PH_LIST;
}

static void
start_watch(sk_etcd_watch_t *w)
{
    sk_etcd_t *e = w->e;
    char body[3400], range[3200];
    sk_etcd_range_body(e->prefix, range, sizeof(range));
    pthread_mutex_lock(&e->mu);
    long long from = (long long)e->revision + 1;
    pthread_mutex_unlock(&e->mu);
    /* range is {"key":..,"range_end":..}: splice its members into the create request */
    range[strlen(range) - 1] = '\0';
    snprintf(body, sizeof(body), "{\"create_request\":%s,\"start_revision\":\"%lld\",\"progress_notify\":true}}", range, from);
    if (begin_transfer(w, "/v3/watch", body, 0L, WATCH_RX_MAX) != 0) {
        schedule(w, NEXT_RETRY, "cannot start the watch request");
        return;
    }
    w->phase = PH_WATCH;
}

/* ---- the watch stream ---- */

static int verdict(sk_etcd_watch_t *w, int next, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int
verdict(sk_etcd_watch_t *w, int next, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->reason, sizeof(w->reason), fmt, ap);
    va_end(ap);
    w->next = next;
    return -1; /* stops the splitter: nothing after this object is trusted */
}

/* The smallest gap between two server notifications is the server's interval (after events a tick is skipped, so gaps
 * of two intervals happen too); 2.5 of them without a byte means the stream is dead. */
static void
learn_progress_gap(sk_etcd_watch_t *w)
{
    ev_tstamp now = ev_now(w->loop);
    if (w->last_progress > 0) {
        ev_tstamp gap = now - w->last_progress;
        if (gap >= MIN_PROGRESS_GAP_S && (w->progress_gap == 0 || gap < w->progress_gap))
            w->progress_gap = gap;
    }
    w->last_progress = now;
    pthread_mutex_lock(&w->e->mu);
    w->e->progress_interval_ms = (int64_t)(w->progress_gap * 1000);
    pthread_mutex_unlock(&w->e->mu);
}

/* The floor keeps one mis-measured gap (two notifications read in one late loop pass) from killing healthy streams. */
static ev_tstamp
idle_limit(const sk_etcd_watch_t *w)
{
    ev_tstamp limit = w->progress_gap * 2.5;
    if (w->progress_gap == 0 || limit > w->idle_s)
        return w->idle_s;
    return limit < MIN_IDLE_S ? MIN_IDLE_S : limit;
}

static int
on_watch_object(void *arg, const char *obj, size_t len)
{
    sk_etcd_watch_t *w = arg;
    sk_etcd_t *e = w->e;
    sk_watch_msg_t m;
    char err[256];
    if (sk_etcd_parse_watch(obj, len, &m, err, sizeof(err)) != 0) {
        pthread_mutex_lock(&e->mu);
        e->bad_messages++;
        pthread_mutex_unlock(&e->mu);
        return verdict(w, NEXT_RETRY, "bad watch message: %s", err);
    }
    pthread_mutex_lock(&e->mu);
    int64_t rev = e->revision;
    pthread_mutex_unlock(&e->mu);
    int ret = 0, changed = 0;
    switch (m.kind) {
    case SK_WATCH_CREATED:
        if (m.revision != 0 && m.revision < rev) {
            ret = verdict(w, NEXT_RELIST, "store revision %lld is behind ours (%lld): etcd was restored", (long long)m.revision,
                          (long long)rev);
            break;
        }
        w->created = 1;
        mark_up(w);
        set_state(e, "watching");
        sk_logf(SK_LOG_DEBUG, "etcd", "watching %s from revision %lld", e->prefix, (long long)rev + 1);
        break;
    case SK_WATCH_CANCELED:
        if (m.compact_revision > 0)
            ret = verdict(w, NEXT_RELIST, "revision %lld was compacted (compact revision %lld)", (long long)rev + 1,
                          (long long)m.compact_revision);
        else
            ret = verdict(w, NEXT_RETRY, "watch canceled: %s", m.reason[0] != '\0' ? m.reason : "no reason given");
        break;
    case SK_WATCH_EVENTS:
        for (size_t i = 0; i < m.events.n; i++) {
            const sk_etcd_kv_t *kv = &m.events.kvs[i];
            changed |= apply_one(w, kv);
            pthread_mutex_lock(&e->mu);
            sk_etcd_state_set_revision(e->st, kv->mod_revision);
            if (kv->mod_revision > e->revision)
                e->revision = kv->mod_revision;
            e->events++;
            pthread_mutex_unlock(&e->mu);
        }
        break;
    case SK_WATCH_PROGRESS:
        /* Only the server's own notifications (watch id 0) are safe resume points: the answer to a progress_request
         * (watch id -1) can come before events of that revision were delivered. */
        if (m.watch_id == -1 || !w->created)
            break;
        if (m.revision < rev) {
            ret = verdict(w, NEXT_RELIST, "store revision %lld is behind ours (%lld): etcd was restored", (long long)m.revision,
                          (long long)rev);
            break;
        }
        pthread_mutex_lock(&e->mu);
        sk_etcd_state_set_revision(e->st, m.revision);
        e->revision = m.revision;
        pthread_mutex_unlock(&e->mu);
        learn_progress_gap(w);
        break;
    case SK_WATCH_ERROR:
        ret = verdict(w, NEXT_RETRY, "watch stream: %s", m.reason);
        break;
    }
    sk_watch_msg_dispose(&m);
    if (changed)
        schedule_publish(w);
    return ret;
}

/* ---- transfer outcomes ---- */

static void
on_list_done(sk_etcd_watch_t *w, CURLcode rc)
{
    sk_etcd_t *e = w->e;
    long status = 0;
    char err[400];
    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        snprintf(err, sizeof(err), "list from %s: %s", e->endpoints[w->endpoint], curl_easy_strerror(rc));
    } else {
        sk_etcd_kvs_t kvs;
        if (sk_etcd_parse_range(w->rx.p != NULL ? w->rx.p : "", w->rx.len, &kvs, err, sizeof(err)) == 0 && status == 200) {
            end_transfer(w);
            mark_up(w);
            w->need_list = 0;
            apply_list(w, &kvs);
            sk_etcd_kvs_dispose(&kvs);
            schedule(w, NEXT_REWATCH, NULL);
            return;
        }
        if (status != 200)
            snprintf(err, sizeof(err), "list from %s: HTTP %ld", e->endpoints[w->endpoint], status);
    }
    end_transfer(w);
    schedule(w, NEXT_RETRY, err);
}

static void
on_watch_done(sk_etcd_watch_t *w, CURLcode rc)
{
    char why[300];
    long status = 0;
    curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK)
        snprintf(why, sizeof(why), "watch on %s: %s", w->e->endpoints[w->endpoint], curl_easy_strerror(rc));
    else if (status != 200)
        snprintf(why, sizeof(why), "watch on %s: HTTP %ld", w->e->endpoints[w->endpoint], status);
    else
        snprintf(why, sizeof(why), "watch on %s: the stream ended", w->e->endpoints[w->endpoint]);
    end_transfer(w);
    schedule(w, NEXT_RETRY, why);
}

static void
process_rx(sk_etcd_watch_t *w)
{
    if (w->phase != PH_WATCH || w->rx.len == 0)
        return;
    size_t n = w->rx.len;
    w->rx.len = 0;
    int rc = sk_json_splitter_feed(&w->splitter, w->rx.p, n, on_watch_object, w);
    if (rc != 0 && w->next == NEXT_NONE)
        verdict(w, NEXT_RETRY, "watch message larger than %u bytes", WATCH_OBJ_MAX);
    if (w->next != NEXT_NONE) {
        int next = w->next;
        char why[256];
        memcpy(why, w->reason, sizeof(why));
        end_transfer(w);
        schedule(w, next, why);
    }
}

static void
after_action(sk_etcd_watch_t *w)
{
    process_rx(w);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE || msg->easy_handle != w->easy)
            continue;
        CURLcode rc = msg->data.result;
        process_rx(w); /* bytes that came with the end of the stream */
        if (w->easy == NULL)
            continue;
        if (w->phase == PH_LIST)
            on_list_done(w, rc);
        else
            on_watch_done(w, rc);
    }
}

/* ---- what next ---- */

static void
on_next_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    sk_etcd_watch_t *w = t->data;
    int next = w->pending_next;
    w->pending_next = NEXT_NONE;
    if (w->stopping || w->easy != NULL)
        return;
    if (next == NEXT_RELIST || w->need_list)
        start_list(w);
    else
        start_watch(w);
}

/* Decides the next transfer; it starts from a timer, never from inside a libcurl call. */
static void
schedule(sk_etcd_watch_t *w, int next, const char *why)
{
    sk_etcd_t *e = w->e;
    double delay = 0;
    if (w->stopping)
        return;
    pthread_mutex_lock(&e->mu);
    e->reconnects++;
    pthread_mutex_unlock(&e->mu);
    if (next == NEXT_RELIST) {
        sk_logf(SK_LOG_WARN, "etcd", "%s: listing %s again", why, e->prefix);
        w->need_list = 1;
    } else if (next == NEXT_REWATCH) {
        if (why != NULL)
            sk_logf(SK_LOG_DEBUG, "etcd", "%s", why);
    } else {
        int was_up = atomic_exchange(&e->up, 0);
        w->fails++;
        if (was_up || w->fails == 1 || w->fails % 30 == 0)
            sk_logf(SK_LOG_WARN, "etcd", "%s (attempt %u)", why, w->fails);
        sk_etcd_set_error(e, "%s", why);
        set_state(e, "down");
        w->backoff_ms = w->backoff_ms == 0 ? BACKOFF_MIN_MS : w->backoff_ms * 2;
        if (w->backoff_ms > BACKOFF_MAX_MS)
            w->backoff_ms = BACKOFF_MAX_MS;
        delay = w->backoff_ms / 1000.0;
        w->endpoint = (w->endpoint + 1) % (unsigned)e->nendpoints;
    }
    w->pending_next = next;
    ev_timer_stop(w->loop, &w->next_timer);
    ev_timer_set(&w->next_timer, delay, 0.);
    ev_timer_start(w->loop, &w->next_timer);
}

static void
on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    sk_etcd_watch_t *w = t->data;
    if (w->phase != PH_WATCH)
        return;
    ev_tstamp now = ev_now(loop);
    if (!w->created && now - w->started_at > CREATED_DEADLINE_S) {
        end_transfer(w);
        schedule(w, NEXT_RETRY, "no answer to the watch request within 2 s");
    } else if (w->created && now - w->last_rx > idle_limit(w)) {
        /* With a known progress interval silence means a dead stream. Without one the stream may just be quiet, so
         * a new watch from the same revision is the probe: a dead etcd will not answer it. */
        char why[160];
        int known = w->progress_gap > 0;
        snprintf(why, sizeof(why), "no byte on the watch stream for %.1f s%s", idle_limit(w),
                 known ? " (2.5 progress intervals): dead" : ": watching again");
        end_transfer(w);
        schedule(w, known ? NEXT_RETRY : NEXT_REWATCH, why);
    }
}

/* ---- start and stop ---- */

static void
load_file_policies(sk_etcd_watch_t *w)
{
    sk_etcd_t *e = w->e;
    for (size_t i = 0; i < SK_ETCD_NPOLICIES; i++) {
        const char *name = sk_etcd_policy_names[i];
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", w->host->conf.policies_dir, name);
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            sk_logf(SK_LOG_WARN, "etcd", "no policy file %s: %s", path, strerror(errno));
            continue;
        }
        char *buf = malloc(SK_ETCD_MAX_VALUE + 1);
        size_t n = buf != NULL ? fread(buf, 1, SK_ETCD_MAX_VALUE + 1, f) : 0;
        fclose(f);
        if (buf == NULL || n > SK_ETCD_MAX_VALUE) {
            sk_logf(SK_LOG_ERROR, "etcd", "policy file %s is larger than %d bytes", path, SK_ETCD_MAX_VALUE);
        } else {
            pthread_mutex_lock(&e->mu);
            sk_etcd_state_set_file_policy(e->st, name, buf, n);
            pthread_mutex_unlock(&e->mu);
        }
        free(buf);
    }
}

static double
idle_from_env(void)
{
    /* The server's progress interval, when known (tests run etcd with 1 s); 2.5 intervals without a byte = dead. */
    const char *v = getenv("SK_ETCD_PROGRESS_MS");
    if (v != NULL) {
        char *end;
        long ms = strtol(v, &end, 10);
        if (*end == '\0' && ms >= 100 && ms <= 600000)
            return ms * 2.5 / 1000.0;
    }
    return DEFAULT_IDLE_S;
}

void
sk_etcd_start(sk_etcd_t *e, sk_thread_t *control)
{
    if (e == NULL || e->w != NULL)
        return;
    sk_etcd_watch_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        sk_logf(SK_LOG_ERROR, "etcd", "out of memory");
        return;
    }
    w->e = e;
    w->host = e->host;
    w->loop = control->ev_loop;
    w->idle_s = idle_from_env();
    w->endpoint = atomic_load(&e->preferred) % (unsigned)e->nendpoints;
    sk_json_splitter_init(&w->splitter, WATCH_OBJ_MAX);
    ev_timer_init(&w->curl_timer, on_curl_timer, 0., 0.);
    ev_timer_init(&w->next_timer, on_next_timer, 0., 0.);
    ev_timer_init(&w->publish_timer, on_publish_timer, 0., 0.);
    ev_timer_init(&w->tick_timer, on_tick, 0.5, 0.5);
    w->curl_timer.data = w->next_timer.data = w->publish_timer.data = w->tick_timer.data = w;
    ev_timer_start(w->loop, &w->tick_timer);
    w->multi = curl_multi_init();
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timerfunc);
    curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    e->w = w;
    load_file_policies(w);

    /* The first list blocks briefly, so that the first snapshot already holds etcd's data when etcd is up. */
    char body[3200], err[256];
    char *resp = NULL;
    size_t resplen = 0;
    sk_etcd_kvs_t kvs;
    sk_etcd_range_body(e->prefix, body, sizeof(body));
    set_state(e, "listing");
    if (sk_etcd_http_post(e, "/v3/kv/range", body, START_LIST_DEADLINE_MS, &resp, &resplen, err, sizeof(err)) == 0 &&
        sk_etcd_parse_range(resp, resplen, &kvs, err, sizeof(err)) == 0) {
        w->endpoint = atomic_load(&e->preferred) % (unsigned)e->nendpoints;
        mark_up(w);
        apply_list(w, &kvs);
        sk_etcd_kvs_dispose(&kvs);
        start_watch(w);
    } else {
        sk_logf(SK_LOG_WARN, "etcd", "etcd is down at start (%s): serving the policy files, retrying", err);
        w->need_list = 1;
        schedule(w, NEXT_RETRY, err); /* first, so that whoever sees the file snapshot also sees "down" */
        publish_now(w);
    }
    free(resp);
}

void
sk_etcd_stop(sk_etcd_t *e)
{
    if (e == NULL || e->w == NULL)
        return;
    sk_etcd_watch_t *w = e->w;
    w->stopping = 1;
    end_transfer(w);
    ev_timer_stop(w->loop, &w->curl_timer);
    ev_timer_stop(w->loop, &w->next_timer);
    ev_timer_stop(w->loop, &w->publish_timer);
    ev_timer_stop(w->loop, &w->tick_timer);
    curl_multi_cleanup(w->multi);
    sk_json_splitter_dispose(&w->splitter);
    free(w->rx.p);
    free(w);
    e->w = NULL;
    atomic_store(&e->up, 0);
    set_state(e, "stopped");
}
