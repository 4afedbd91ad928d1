/*
 * Host threads: one event loop each (h2o evloop for HTTP and ADMIN, libev for CONTROL and WORKER), a mutex-protected
 * task list other threads post to, and one-shot timers that work the same on both loops.
 *
 * h2o 2.2.5 timers have one fixed duration per h2o_timeout_t, and disposing an h2o_timeout_t while the loop iterates
 * its timeout list crashes it. So every h2o thread keeps a ladder of power-of-two h2o_timeout_t buckets (0, 1, 2, 4 …
 * 2^31 ms), created on first use and disposed only when the thread is freed. A timer links itself into the largest
 * bucket not longer than what remains, and hops down the ladder until its monotonic deadline has passed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "host.h"

#define NBUCKETS 33           /* bucket 0 is 0 ms, bucket i is 2^(i-1) ms */
#define MAX_POSTED (1u << 20) /* tasks waiting on one thread; past it sk_thread_post fails */
#define MAX_HOP_MS (1ull << 31)

typedef struct st_thread_priv_t {
    sk_thread_t pub; /* first: a sk_thread_t * is a thread_priv_t * */
    int started;
    void (*run)(sk_thread_t *);
    /* under pub.post_mu */
    int wake_pending;
    size_t nposted;
    h2o_multithread_message_t wake_msg;
    /* owning thread only */
    ev_timer pass_timer;
    h2o_timeout_t buckets[NBUCKETS];
    uint64_t buckets_ready; /* bit i: buckets[i] is initialised */
    sk_timer_t *firing;
} thread_priv_t;

struct st_sk_timer_t {
    sk_thread_t *thr;
    sk_timer_cb cb;
    void *data;
    uint64_t deadline; /* monotonic ms (h2o loops) */
    h2o_timeout_entry_t entry;
    ev_timer w;
};

static _Thread_local sk_thread_t *current_thread;

static thread_priv_t *
priv_of(sk_thread_t *thr)
{
    return (thread_priv_t *)thr;
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
sk_thread_now_ms(sk_thread_t *thr)
{
    (void)thr;
    return mono_ms();
}

sk_thread_t *
sk_thread_self(void)
{
    return current_thread;
}

/* ---- posting ---- */

static void
wake_locked(sk_thread_t *thr)
{
    thread_priv_t *p = priv_of(thr);
    if (thr->h2o_loop != NULL) {
        /* before the thread made its queue, or after it dropped it, there is nobody to wake: the thread drains the
         * list when it starts, and refuses posts once it has stopped */
        if (thr->mq == NULL)
            return;
        /* h2o asserts if a message is sent while still linked: wake_pending stays set until on_mq unlinked it */
        if (!p->wake_pending) {
            p->wake_pending = 1;
            h2o_multithread_send_message(&thr->mq_recv, &p->wake_msg);
        }
    } else {
        ev_async_send(thr->ev_loop, &thr->ev_wakeup);
    }
}

static sk_task_t *
take_posted(sk_thread_t *thr, int close)
{
    pthread_mutex_lock(&thr->post_mu);
    sk_task_t *list = thr->post_head;
    thr->post_head = thr->post_tail = NULL;
    priv_of(thr)->nposted = 0;
    if (close)
        thr->post_closed = 1;
    pthread_mutex_unlock(&thr->post_mu);
    return list;
}

static void
run_tasks(sk_task_t *list)
{
    while (list != NULL) {
        sk_task_t *t = list;
        list = t->next;
        t->fn(t->arg);
        free(t);
    }
}

int
sk_thread_post(sk_thread_t *to, sk_task_cb fn, void *arg)
{
    if (to == NULL || fn == NULL)
        return -1;
    sk_task_t *t = malloc(sizeof(*t));
    if (t == NULL)
        return -1;
    t->next = NULL;
    t->fn = fn;
    t->arg = arg;
    thread_priv_t *p = priv_of(to);
    pthread_mutex_lock(&to->post_mu);
    if (to->post_closed || p->nposted >= MAX_POSTED) {
        pthread_mutex_unlock(&to->post_mu);
        free(t);
        return -1;
    }
    if (to->post_tail != NULL)
        to->post_tail->next = t;
    else
        to->post_head = t;
    to->post_tail = t;
    p->nposted++;
    /* woken under the lock, so that the loop cannot be destroyed between the append and the wake-up */
    wake_locked(to);
    pthread_mutex_unlock(&to->post_mu);
    return 0;
}

void
sk_thread_run_posted(sk_thread_t *thr)
{
    run_tasks(take_posted(thr, 0));
}

void
sk_thread_close_posts(sk_thread_t *thr)
{
    /* tasks posted before the close still run exactly once: their senders handed over ownership of `arg` */
    run_tasks(take_posted(thr, 1));
}

static void
on_mq(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    sk_thread_t *thr = H2O_STRUCT_FROM_MEMBER(sk_thread_t, mq_recv, receiver);
    while (!h2o_linklist_is_empty(messages))
        h2o_linklist_unlink(messages->next);
    pthread_mutex_lock(&thr->post_mu);
    priv_of(thr)->wake_pending = 0;
    pthread_mutex_unlock(&thr->post_mu);
    sk_thread_run_posted(thr);
}

static void
on_ev_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    sk_thread_run_posted(w->data);
}

static void
on_pass_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
}

/* ---- lifecycle ---- */

sk_thread_t *
sk_thread_new(sk_host_t *host, sk_thread_kind_t kind, unsigned index)
{
    thread_priv_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    sk_thread_t *thr = &p->pub;
    thr->host = host;
    thr->kind = kind;
    thr->index = index;
    pthread_mutex_init(&thr->post_mu, NULL);
    atomic_init(&thr->stop, 0);
    if (kind == SK_THREAD_HTTP || kind == SK_THREAD_ADMIN) {
        /* the message queue is created on the thread itself (thread_main): its socket's buffers come from the
         * creating thread's thread-local h2o buffer prototype, which is not safe to share between threads */
        thr->h2o_loop = h2o_evloop_create();
    } else {
        thr->ev_loop = ev_loop_new(EVFLAG_AUTO);
        if (thr->ev_loop == NULL) {
            pthread_mutex_destroy(&thr->post_mu);
            free(p);
            return NULL;
        }
        ev_async_init(&thr->ev_wakeup, on_ev_async);
        thr->ev_wakeup.data = thr;
        ev_async_start(thr->ev_loop, &thr->ev_wakeup);
        ev_timer_init(&p->pass_timer, on_pass_timer, 0., 0.);
    }
    return thr;
}

static void *
thread_main(void *arg)
{
    sk_thread_t *thr = arg;
    thread_priv_t *p = priv_of(thr);
    current_thread = thr;
    if (thr->h2o_loop != NULL) {
        pthread_mutex_lock(&thr->post_mu);
        thr->mq = h2o_multithread_create_queue(thr->h2o_loop);
        h2o_multithread_register_receiver(thr->mq, &thr->mq_recv, on_mq);
        if (thr->post_head != NULL)
            wake_locked(thr);
        pthread_mutex_unlock(&thr->post_mu);
    }
    p->run(thr);
    sk_thread_close_posts(thr);
    if (thr->h2o_loop != NULL) {
        /* dropped here, on its own thread, for the same reason it was made here */
        pthread_mutex_lock(&thr->post_mu);
        if (h2o_linklist_is_linked(&p->wake_msg.link))
            h2o_linklist_unlink(&p->wake_msg.link);
        h2o_multithread_unregister_receiver(thr->mq, &thr->mq_recv);
        h2o_multithread_destroy_queue(thr->mq);
        /* libh2o 2.2.5 (evloop) closes the queue's pipe but never frees the queue itself (LeakSanitizer shows it) */
        free(thr->mq);
        thr->mq = NULL;
        pthread_mutex_unlock(&thr->post_mu);
        /* one last pass frees the sockets closed above (h2o defers that to its loop) */
        h2o_evloop_run(thr->h2o_loop, 0);
        /* socket buffers recycled into this thread's thread-local list would be lost with the thread */
        h2o_mem_recycle_t *recycle = &h2o_socket_buffer_prototype.allocator;
        while (recycle->cnt > 0)
            free(h2o_mem_alloc_recycle(recycle, 1));
    }
    current_thread = NULL;
    return NULL;
}

int
sk_thread_start(sk_thread_t *thr, void (*run)(sk_thread_t *))
{
    thread_priv_t *p = priv_of(thr);
    if (p->started || run == NULL)
        return -1;
    p->run = run;
    int ret = pthread_create(&thr->tid, NULL, thread_main, thr);
    if (ret != 0) {
        sk_logf(SK_LOG_ERROR, "host", "cannot start a thread: %s", strerror(ret));
        return -1;
    }
    p->started = 1;
    return 0;
}

void
sk_thread_request_stop(sk_thread_t *thr)
{
    if (thr == NULL)
        return;
    atomic_store(&thr->stop, 1);
    pthread_mutex_lock(&thr->post_mu);
    if (!thr->post_closed)
        wake_locked(thr);
    pthread_mutex_unlock(&thr->post_mu);
}

void
sk_thread_loop_once(sk_thread_t *thr, int max_wait_ms)
{
    if (max_wait_ms < 0)
        max_wait_ms = 0;
    if (thr->h2o_loop != NULL) {
        /* -1 is EINTR: nothing to do but come back */
        h2o_evloop_run(thr->h2o_loop, max_wait_ms);
    } else {
        thread_priv_t *p = priv_of(thr);
        ev_timer_set(&p->pass_timer, max_wait_ms / 1000., 0.);
        ev_timer_start(thr->ev_loop, &p->pass_timer);
        ev_run(thr->ev_loop, EVRUN_ONCE);
        ev_timer_stop(thr->ev_loop, &p->pass_timer);
    }
}

static void
destroy_h2o_loop(sk_thread_t *thr)
{
    thread_priv_t *p = priv_of(thr);
    /* the message queue was dropped by the thread itself (thread_main) */
    for (int i = 0; i < NBUCKETS; ++i) {
        if ((p->buckets_ready & (1ull << i)) == 0)
            continue;
        /* timers their owners forgot: unlinked so that dispose does not assert (the sk_timer_t leaks) */
        while (!h2o_linklist_is_empty(&p->buckets[i]._entries))
            h2o_linklist_unlink(p->buckets[i]._entries.next);
        h2o_timeout_dispose(thr->h2o_loop, &p->buckets[i]);
    }
    p->buckets_ready = 0;
    /* h2o_evloop_destroy asserts when a timeout (e.g. an undisposed h2o_context_t) is still registered */
    if (h2o_linklist_is_empty(&thr->h2o_loop->_timeouts))
        h2o_evloop_destroy(thr->h2o_loop);
    else
        sk_logf(SK_LOG_ERROR, "host", "thread %u: h2o loop still has timeouts (context not disposed?); leaking it", thr->index);
    thr->h2o_loop = NULL;
}

void
sk_thread_join(sk_thread_t *thr)
{
    if (thr == NULL)
        return;
    thread_priv_t *p = priv_of(thr);
    if (p->started) {
        pthread_join(thr->tid, NULL);
        p->started = 0;
    }
}

void
sk_thread_join_free(sk_thread_t *thr)
{
    if (thr == NULL)
        return;
    thread_priv_t *p = priv_of(thr);
    if (p->started)
        pthread_join(thr->tid, NULL);
    if (!thr->post_closed)
        sk_thread_close_posts(thr);
    if (thr->h2o_loop != NULL) {
        destroy_h2o_loop(thr);
    } else if (thr->ev_loop != NULL) {
        ev_async_stop(thr->ev_loop, &thr->ev_wakeup);
        ev_timer_stop(thr->ev_loop, &p->pass_timer);
        ev_loop_destroy(thr->ev_loop);
        thr->ev_loop = NULL;
    }
    if (thr->snap != NULL)
        sk_snapshot_release(thr->snap);
    pthread_mutex_destroy(&thr->post_mu);
    free(p);
}

/* ---- timers ---- */

static void on_h2o_timeout(h2o_timeout_entry_t *entry);
static void on_ev_timer(struct ev_loop *loop, ev_timer *w, int revents);

sk_timer_t *
sk_timer_new(sk_thread_t *thr, sk_timer_cb cb, void *data)
{
    if (thr == NULL || cb == NULL)
        return NULL;
    sk_timer_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->thr = thr;
    t->cb = cb;
    t->data = data;
    t->entry.cb = on_h2o_timeout;
    ev_timer_init(&t->w, on_ev_timer, 0., 0.);
    t->w.data = t;
    return t;
}

static void
link_into_bucket(sk_timer_t *t, uint64_t ms)
{
    thread_priv_t *p = priv_of(t->thr);
    int i = 0;
    if (ms != 0) {
        if (ms > MAX_HOP_MS)
            ms = MAX_HOP_MS;
        i = 64 - __builtin_clzll(ms); /* largest 2^(i-1) <= ms */
    }
    if ((p->buckets_ready & (1ull << i)) == 0) {
        h2o_timeout_init(t->thr->h2o_loop, &p->buckets[i], i == 0 ? 0 : 1ull << (i - 1));
        p->buckets_ready |= 1ull << i;
    }
    h2o_timeout_link(t->thr->h2o_loop, &p->buckets[i], &t->entry);
}

static void
fire(sk_timer_t *t)
{
    thread_priv_t *p = priv_of(t->thr);
    p->firing = t;
    t->cb(t, t->data); /* may free t */
    p->firing = NULL;
}

static void
on_h2o_timeout(h2o_timeout_entry_t *entry)
{
    sk_timer_t *t = H2O_STRUCT_FROM_MEMBER(sk_timer_t, entry, entry);
    uint64_t now = mono_ms();
    if (t->deadline > now) {
        link_into_bucket(t, t->deadline - now);
        return;
    }
    fire(t);
}

static void
on_ev_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    fire(w->data);
}

void
sk_timer_stop(sk_timer_t *t)
{
    if (t == NULL)
        return;
    if (t->thr->h2o_loop != NULL) {
        if (h2o_timeout_is_linked(&t->entry))
            h2o_timeout_unlink(&t->entry);
    } else {
        ev_timer_stop(t->thr->ev_loop, &t->w);
    }
}

void
sk_timer_start(sk_timer_t *t, uint64_t ms)
{
    if (t == NULL)
        return;
    sk_timer_stop(t);
    if (t->thr->h2o_loop != NULL) {
        /* a 0 ms timer re-armed from its own callback would run again in the same pass, for ever */
        if (ms == 0 && priv_of(t->thr)->firing == t)
            ms = 1;
        t->deadline = mono_ms() + ms;
        link_into_bucket(t, ms);
    } else {
        /* ev_now is the time the pass started; a long pass would make the timer fire early */
        ev_now_update(t->thr->ev_loop);
        /* a fired one-shot ev_timer must be set again before it is started */
        ev_timer_set(&t->w, ms / 1000., 0.);
        ev_timer_start(t->thr->ev_loop, &t->w);
    }
}

void
sk_timer_free(sk_timer_t *t)
{
    if (t == NULL)
        return;
    sk_timer_stop(t);
    thread_priv_t *p = priv_of(t->thr);
    if (p->firing == t)
        p->firing = NULL;
    free(t);
}
