/* Loops, cross-thread posting, timers and snapshot publishing on both loop kinds (h2o evloop and libev); no servers. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include "host.h"
#include "snapshot.h"
#include "sk_test.h"

static const sk_thread_kind_t kinds[] = {SK_THREAD_HTTP, SK_THREAD_WORKER};
static const char *kind_names[] = {"h2o", "libev"};

static uint64_t
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void
run_loop(sk_thread_t *thr)
{
    while (!atomic_load(&thr->stop))
        sk_thread_loop_once(thr, 100);
}

static sk_host_t *
new_host(void)
{
    sk_host_t *host = calloc(1, sizeof(*host));
    ASSERT(host != NULL);
    pthread_mutex_init(&host->snap_mu, NULL);
    host->latest_snap = sk_snapshot_empty();
    return host;
}

static void
free_host(sk_host_t *host)
{
    sk_snapshot_release(host->latest_snap);
    pthread_mutex_destroy(&host->snap_mu);
    free(host);
}

static sk_thread_t *
start_thread(sk_host_t *host, sk_thread_kind_t kind)
{
    sk_thread_t *thr = sk_thread_new(host, kind, 0);
    ASSERT(thr != NULL);
    ASSERT((kind == SK_THREAD_HTTP) == (thr->h2o_loop != NULL));
    ASSERT((kind == SK_THREAD_WORKER) == (thr->ev_loop != NULL));
    ASSERT_EQ(sk_thread_start(thr, run_loop), 0);
    return thr;
}

static void
stop_thread(sk_thread_t *thr)
{
    sk_thread_request_stop(thr);
    sk_thread_join_free(thr);
}

/* a counter the main thread can wait on */
typedef struct st_waiter_t {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
} waiter_t;

static void
waiter_init(waiter_t *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->n = 0;
}

static void
waiter_add(waiter_t *w, int k)
{
    pthread_mutex_lock(&w->mu);
    w->n += k;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static int
waiter_wait(waiter_t *w, int n, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->mu);
    while (w->n < n && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0)
        ;
    int got = w->n;
    pthread_mutex_unlock(&w->mu);
    return got;
}

/* ---- posting ---- */

#define NPOST 20000

typedef struct st_post_state_t {
    sk_thread_t *thr;
    int next[2]; /* next expected sequence number per poster */
    int bad_order, bad_thread;
    waiter_t done;
} post_state_t;

typedef struct st_post_arg_t {
    post_state_t *st;
    int poster, seq;
} post_arg_t;

static void
on_posted(void *arg)
{
    post_arg_t *a = arg;
    post_state_t *st = a->st;
    if (sk_thread_self() != st->thr)
        st->bad_thread++;
    if (a->seq != st->next[a->poster])
        st->bad_order++;
    st->next[a->poster] = a->seq + 1;
    free(a);
    waiter_add(&st->done, 1);
}

static void
post_many(post_state_t *st, int poster)
{
    for (int i = 0; i < NPOST; ++i) {
        post_arg_t *a = malloc(sizeof(*a));
        *a = (post_arg_t){st, poster, i};
        ASSERT_EQ(sk_thread_post(st->thr, on_posted, a), 0);
    }
}

static void *
poster_main(void *arg)
{
    post_many(arg, 1);
    return NULL;
}

static void
test_post_order(void)
{
    for (int k = 0; k < 2; ++k) {
        sk_host_t *host = new_host();
        post_state_t st = {0};
        waiter_init(&st.done);
        st.thr = start_thread(host, kinds[k]);
        ASSERT(sk_thread_self() == NULL);
        pthread_t other;
        pthread_create(&other, NULL, poster_main, &st);
        post_many(&st, 0);
        pthread_join(other, NULL);
        ASSERT_EQ(waiter_wait(&st.done, 2 * NPOST, 20000), 2 * NPOST);
        ASSERT_EQ(st.bad_thread, 0);
        ASSERT_EQ(st.bad_order, 0);
        ASSERT_EQ(st.next[0], NPOST);
        ASSERT_EQ(st.next[1], NPOST);
        stop_thread(st.thr);
        free_host(host);
        fprintf(stderr, "  post order on %s: ok\n", kind_names[k]);
    }
}

/* A thread whose loop waits 10 s per pass still stops at once, and posts after the close fail while every accepted
 * task runs exactly once. */
static void
run_slow_loop(sk_thread_t *thr)
{
    while (!atomic_load(&thr->stop))
        sk_thread_loop_once(thr, 10000);
}

static void
count_task(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void
test_stop_and_close(void)
{
    for (int k = 0; k < 2; ++k) {
        sk_host_t *host = new_host();
        sk_thread_t *thr = sk_thread_new(host, kinds[k], 0);
        ASSERT_EQ(sk_thread_start(thr, run_slow_loop), 0);
        ASSERT_EQ(sk_thread_start(thr, run_slow_loop), -1);
        sleep_ms(50);
        atomic_int ran = 0;
        int accepted = 0, refused = 0;
        uint64_t t0 = mono();
        sk_thread_request_stop(thr);
        /* the loop ends and closes its queue: from then on posts fail */
        while (mono() - t0 < 3000) {
            if (sk_thread_post(thr, count_task, &ran) == 0) {
                accepted++;
            } else {
                refused++;
                break;
            }
            usleep(200);
        }
        ASSERT_EQ(refused, 1);
        ASSERT(mono() - t0 < 2000);
        sk_thread_join_free(thr);
        ASSERT_EQ(atomic_load(&ran), accepted);
        free_host(host);
        fprintf(stderr, "  stop and close on %s: ok (%d posts accepted while stopping)\n", kind_names[k], accepted);
    }
}

/* ---- timers ---- */

#define NRAND 500

typedef struct st_timer_state_t {
    sk_thread_t *thr;
    waiter_t done;
    /* fixed cases */
    int order[16];
    int norder;
    uint64_t t0;
    long early; /* how many fired before their time */
    int stopped_fired;
    int rearm_count;
    int zero_rearm_count;
    sk_timer_t *rearm, *zero_rearm, *stopped, *restarted, *self_free;
    /* random */
    sk_timer_t *rnd[NRAND];
    uint64_t rnd_due[NRAND];
    int rnd_fired[NRAND];
    uint64_t max_late;
} timer_state_t;

typedef struct st_fixed_t {
    timer_state_t *st;
    int id;
    uint64_t due;
} fixed_t;

static fixed_t fixed[8];

static void
on_fixed(sk_timer_t *t, void *data)
{
    fixed_t *f = data;
    timer_state_t *st = f->st;
    if (mono() < f->due)
        st->early++;
    st->order[st->norder++] = f->id;
    sk_timer_free(t); /* freeing a timer inside its own callback is allowed */
    waiter_add(&st->done, 1);
}

static void
on_rearm(sk_timer_t *t, void *data)
{
    timer_state_t *st = data;
    if (++st->rearm_count < 5)
        sk_timer_start(t, 10); /* a fired one-shot restarts */
    else
        waiter_add(&st->done, 1);
}

static void
on_zero_rearm(sk_timer_t *t, void *data)
{
    timer_state_t *st = data;
    if (++st->zero_rearm_count < 3)
        sk_timer_start(t, 0);
    else
        waiter_add(&st->done, 1);
}

static void
on_stopped(sk_timer_t *t, void *data)
{
    (void)t;
    ((timer_state_t *)data)->stopped_fired++;
}

static timer_state_t *rnd_owner; /* the random-timer callback finds its state here; one test at a time */

static void
on_rnd_timer(sk_timer_t *t, void *data)
{
    (void)t;
    timer_state_t *st = rnd_owner;
    size_t i = (size_t)(uintptr_t)data;
    uint64_t now = mono();
    if (now < st->rnd_due[i])
        st->early++;
    else if (now - st->rnd_due[i] > st->max_late)
        st->max_late = now - st->rnd_due[i];
    st->rnd_fired[i]++;
    waiter_add(&st->done, 1);
}

static void
setup_timers(void *arg)
{
    timer_state_t *st = arg;
    sk_thread_t *thr = st->thr;
    uint64_t now = mono();
    static const unsigned ms[] = {0, 1, 5, 30, 200};
    for (int i = 0; i < 5; ++i) {
        fixed[i] = (fixed_t){st, i, now + ms[i]};
        sk_timer_start(sk_timer_new(thr, on_fixed, &fixed[i]), ms[i]);
    }
    /* restarted with a shorter delay: fires once, at the new time */
    fixed[5] = (fixed_t){st, 5, now + 10};
    st->restarted = sk_timer_new(thr, on_fixed, &fixed[5]);
    sk_timer_start(st->restarted, 1000);
    sk_timer_start(st->restarted, 10);
    st->stopped = sk_timer_new(thr, on_stopped, st);
    sk_timer_start(st->stopped, 20);
    sk_timer_stop(st->stopped);
    st->rearm = sk_timer_new(thr, on_rearm, st);
    sk_timer_start(st->rearm, 10);
    st->zero_rearm = sk_timer_new(thr, on_zero_rearm, st);
    sk_timer_start(st->zero_rearm, 0);
    for (size_t i = 0; i < NRAND; ++i) {
        unsigned d = (unsigned)((i * 7919) % 300);
        st->rnd_due[i] = mono() + d;
        st->rnd[i] = sk_timer_new(thr, on_rnd_timer, (void *)(uintptr_t)i);
        sk_timer_start(st->rnd[i], d);
    }
    /* a timer freed before it fires never fires */
    sk_timer_t *gone = sk_timer_new(thr, on_stopped, st);
    sk_timer_start(gone, 5);
    sk_timer_free(gone);
}

static void
teardown_timers(void *arg)
{
    timer_state_t *st = arg;
    sk_timer_free(st->stopped);
    sk_timer_free(st->rearm);
    sk_timer_free(st->zero_rearm);
    for (size_t i = 0; i < NRAND; ++i)
        sk_timer_free(st->rnd[i]);
    waiter_add(&st->done, 1);
}

static void
test_timers(void)
{
    for (int k = 0; k < 2; ++k) {
        sk_host_t *host = new_host();
        timer_state_t *st = calloc(1, sizeof(*st));
        waiter_init(&st->done);
        rnd_owner = st;
        st->thr = start_thread(host, kinds[k]);
        ASSERT_EQ(sk_thread_post(st->thr, setup_timers, st), 0);
        int want = 6 + 2 + NRAND;
        ASSERT_EQ(waiter_wait(&st->done, want, 10000), want);
        sleep_ms(100); /* a stopped timer or a duplicate would show up now */
        ASSERT_EQ(sk_thread_post(st->thr, teardown_timers, st), 0);
        ASSERT_EQ(waiter_wait(&st->done, want + 1, 5000), want + 1);
        ASSERT_EQ(st->norder, 6);
        static const int expect[] = {0, 1, 2, 5, 3, 4}; /* 0, 1, 5, 10 (restarted), 30, 200 ms */
        for (int i = 0; i < 6; ++i)
            ASSERT_EQ(st->order[i], expect[i]);
        ASSERT_EQ(st->early, 0);
        ASSERT_EQ(st->stopped_fired, 0);
        ASSERT_EQ(st->rearm_count, 5);
        ASSERT_EQ(st->zero_rearm_count, 3);
        for (size_t i = 0; i < NRAND; ++i)
            ASSERT_EQ(st->rnd_fired[i], 1);
        ASSERT(st->max_late < 1000);
        stop_thread(st->thr);
        fprintf(stderr, "  timers on %s: ok (max lateness %llu ms)\n", kind_names[k], (unsigned long long)st->max_late);
        free(st);
        free_host(host);
    }
}

static void
check_now(void *arg)
{
    sk_thread_t *thr = sk_thread_self();
    uint64_t a = sk_thread_now_ms(thr);
    sleep_ms(20);
    uint64_t b = sk_thread_now_ms(thr);
    *(int *)arg = b >= a + 19 && b < a + 1000 ? 1 : -1;
}

static void
test_now_ms(void)
{
    for (int k = 0; k < 2; ++k) {
        sk_host_t *host = new_host();
        sk_thread_t *thr = start_thread(host, kinds[k]);
        volatile int ok = 0;
        ASSERT_EQ(sk_thread_post(thr, check_now, (void *)&ok), 0);
        for (int i = 0; i < 500 && ok == 0; ++i)
            sleep_ms(10);
        ASSERT_EQ(ok, 1);
        stop_thread(thr);
        free_host(host);
    }
}

/* ---- snapshots ---- */

typedef struct st_hook_log_t {
    pthread_mutex_t mu;
    int calls[4];
    int64_t last_rev[4];
    void *last_tstate[4];
    int bad;
} hook_log_t;

static hook_log_t hooks;

static void
on_snapshot_hook(void *inst, void *tstate, const sk_snapshot_t *snap)
{
    sk_thread_t *thr = sk_thread_self();
    int slot = (int)(intptr_t)inst == 42 ? (int)(thr->kind == SK_THREAD_HTTP ? 0 : 1 + thr->index) : -1;
    pthread_mutex_lock(&hooks.mu);
    if (slot < 0 || thr->snap != snap || snap->revision <= hooks.last_rev[slot])
        hooks.bad++;
    else {
        hooks.calls[slot]++;
        hooks.last_rev[slot] = snap->revision;
        hooks.last_tstate[slot] = tstate;
    }
    pthread_mutex_unlock(&hooks.mu);
}

static void
test_publish_snapshot(void)
{
    pthread_mutex_init(&hooks.mu, NULL);
    sk_host_t *host = new_host();
    host->nplugins = 1;
    host->plugins[0].host = host;
    host->plugins[0].inst = (void *)(intptr_t)42;
    host->plugins[0].on_snapshot = on_snapshot_hook;
    host->nhttp = 1;
    host->http[0] = sk_thread_new(host, SK_THREAD_HTTP, 0);
    host->http[0]->tstates[0] = (void *)(intptr_t)1000;
    host->nworkers = 2;
    for (unsigned i = 0; i < 2; ++i) {
        host->workers[i] = sk_thread_new(host, SK_THREAD_WORKER, i);
        host->workers[i]->tstates[0] = (void *)(intptr_t)(2000 + i);
    }
    host->workers[0]->spawned_by = &host->plugins[0]; /* worker 1 belongs to no plugin: no hook there */
    for (int i = 0; i < 1; ++i)
        ASSERT_EQ(sk_thread_start(host->http[i], run_loop), 0);
    for (int i = 0; i < 2; ++i)
        ASSERT_EQ(sk_thread_start(host->workers[i], run_loop), 0);

    const sk_snapshot_t *s1 = sk_snapshot_new(1, NULL, 0, NULL, 0, NULL, 0);
    const sk_snapshot_t *s2 = sk_snapshot_new(2, NULL, 0, NULL, 0, NULL, 0);
    const sk_snapshot_t *latest = sk_host_latest_snapshot(host);
    ASSERT(latest == sk_snapshot_empty());
    sk_snapshot_release(latest);
    sk_host_publish_snapshot(host, s1);
    sk_host_publish_snapshot(host, s2);
    latest = sk_host_latest_snapshot(host);
    ASSERT(latest == s2);
    sk_snapshot_release(latest);
    for (int i = 0; i < 500; ++i) {
        pthread_mutex_lock(&hooks.mu);
        int done = hooks.calls[0] == 2 && hooks.calls[1] == 2;
        pthread_mutex_unlock(&hooks.mu);
        if (done)
            break;
        sleep_ms(10);
    }
    sleep_ms(50);
    ASSERT_EQ(hooks.bad, 0);
    ASSERT_EQ(hooks.calls[0], 2);
    ASSERT_EQ(hooks.calls[1], 2);
    ASSERT_EQ(hooks.calls[2], 0);
    ASSERT_EQ(hooks.last_rev[0], 2);
    ASSERT((intptr_t)hooks.last_tstate[0] == 1000);
    ASSERT((intptr_t)hooks.last_tstate[1] == 2000);
    /* s1 is held by its creator only; s2 by its creator, the host, and three threads */
    ASSERT_EQ(sk_snapshot_refcount(s1), 1);
    ASSERT_EQ(sk_snapshot_refcount(s2), 5);
    for (int i = 0; i < 1; ++i)
        stop_thread(host->http[i]);
    for (int i = 0; i < 2; ++i)
        stop_thread(host->workers[i]);
    ASSERT_EQ(sk_snapshot_refcount(s2), 2);
    sk_snapshot_release(s1);
    sk_snapshot_release(s2);
    free_host(host);
}

int
main(void)
{
    RUN(test_post_order);
    RUN(test_stop_and_close);
    RUN(test_timers);
    RUN(test_now_ms);
    RUN(test_publish_snapshot);
    DONE();
}
