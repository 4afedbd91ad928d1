/*
 * Shared by the Redis client tests: a real redis-server on a free loopback port in a mkdtemp dir (killed with this
 * process whatever happens: PR_SET_PDEATHSIG, atexit, and a handler for abort and the alarm), one loop thread of either
 * kind, and callbacks that record what they got for the main thread to check.
 */
#ifndef TEST_HOST_REDIS_HARNESS_H
#define TEST_HOST_REDIS_HARNESS_H
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "host.h"
#include "sk_test.h"

#define TIMEOUT_MS 500
#define MAXREC 4096

static char redis_path[512];
static char tmpdir[64] = "/tmp/sk-redis-XXXXXX";
static int redis_port;
static pid_t redis_pid = -1;
static char redis_pass[32];

/* ---- the server ---- */

static inline uint64_t
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void
sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static inline void
find_redis(void)
{
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path != NULL ? path : "/usr/bin:/bin");
    for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir != NULL; dir = strtok_r(NULL, ":", &save)) {
        snprintf(redis_path, sizeof(redis_path), "%s/redis-server", dir);
        if (access(redis_path, X_OK) == 0)
            return;
    }
    fprintf(stderr, "redis-server not found in PATH\n");
    exit(1);
}

static inline int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    ASSERT(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static inline void
fill_conf(sk_config_t *c, const char *password, unsigned timeout_ms)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->redis_host, sizeof(c->redis_host), "127.0.0.1");
    c->redis_port = (uint16_t)redis_port;
    snprintf(c->redis_addr, sizeof(c->redis_addr), "127.0.0.1:%d", redis_port);
    snprintf(c->redis_password, sizeof(c->redis_password), "%s", password);
    c->redis_timeout_ms = timeout_ms;
}

static inline void
kill_redis(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
}

/* ASSERT aborts, which skips atexit: the server is killed here too (kill is async-signal-safe) */
static inline void
on_fatal(int sig)
{
    if (redis_pid > 0)
        kill(redis_pid, SIGKILL);
    /* the server writes only its log there (no RDB, no AOF) */
    char logpath[sizeof(tmpdir) + 16];
    memcpy(logpath, tmpdir, sizeof(tmpdir));
    strcat(logpath, "/redis.log");
    unlink(logpath);
    rmdir(tmpdir);
    signal(sig, SIG_DFL);
    raise(sig);
}

static inline void
at_exit(void)
{
    kill_redis();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
}

static inline void
start_redis(const char *password)
{
    snprintf(redis_pass, sizeof(redis_pass), "%s", password);
    char port[16], logfile[128];
    snprintf(port, sizeof(port), "%d", redis_port);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", tmpdir);
    char *argv[16] = {redis_path,     "--port", port,    "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no",     "--dir", tmpdir,   "--logfile", logfile};
    int argc = 13;
    if (password[0] != '\0') {
        argv[argc++] = "--requirepass";
        argv[argc++] = (char *)password;
    }
    argv[argc] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        execv(redis_path, argv);
        _exit(127);
    }
    redis_pid = pid;
    sk_config_t c;
    fill_conf(&c, password, 300);
    for (int i = 0; i < 500; ++i) {
        char err[256];
        redisReply *r = sk_redis_sync_command(&c, err, sizeof(err), "PING");
        if (r != NULL) {
            int ok = r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            if (ok)
                return;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "redis-server did not start\n");
    abort();
}

/* runs one command with the blocking client; returns the integer reply, or -1 */
static inline long long
sync_int(const char *fmt, const char *arg)
{
    sk_config_t c;
    fill_conf(&c, redis_pass, 1000);
    char err[256];
    redisReply *r = sk_redis_sync_command(&c, err, sizeof(err), fmt, arg);
    if (r == NULL)
        return -1;
    long long v = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_INTEGER)
        v = r->element[1]->integer; /* PUBSUB NUMSUB ch */
    freeReplyObject(r);
    return v;
}

/* ---- the loop thread and what the callbacks record ---- */

typedef struct st_rec_t {
    int type; /* redisReply type, or -1 for an error */
    long long integer;
    char str[64];
    size_t len;
    char err[32];
    uint64_t at;
} rec_t;

typedef struct st_ctx_t {
    sk_host_t host;
    sk_thread_t *thr;
    const char *kind;
    sk_redis_t *r, *r2;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int nrecs;
    rec_t recs[MAXREC];
    int calls[MAXREC]; /* callbacks per command index */
    int connects, connects2;
    int sync_done;
    int flag; /* scratch result of on-thread checks */
    uint64_t t0;
    int free_at; /* the index whose callback frees the client */
} ctx_t;

static ctx_t *cx;

static inline void
ctx_signal(void)
{
    pthread_cond_broadcast(&cx->cv);
}

static inline int
wait_until(int *counter, int n, unsigned ms)
{
    uint64_t end = mono() + ms;
    pthread_mutex_lock(&cx->mu);
    while (*counter < n && mono() < end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 10 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&cx->cv, &cx->mu, &ts);
    }
    int got = *counter;
    pthread_mutex_unlock(&cx->mu);
    return got;
}

static inline void
reset_recs(void)
{
    pthread_mutex_lock(&cx->mu);
    cx->nrecs = 0;
    memset(cx->calls, 0, sizeof(cx->calls));
    pthread_mutex_unlock(&cx->mu);
}

static inline void
sync_task(void *arg)
{
    void (**fn)(void) = arg;
    (*fn)();
    pthread_mutex_lock(&cx->mu);
    cx->sync_done++;
    ctx_signal();
    pthread_mutex_unlock(&cx->mu);
}

/* runs fn on the loop thread and waits for it */
static inline void
on_thread(void (*fn)(void))
{
    static void (*slot)(void);
    slot = fn;
    int want = cx->sync_done + 1;
    ASSERT_EQ(sk_thread_post(cx->thr, sync_task, (void *)&slot), 0);
    ASSERT_EQ(wait_until(&cx->sync_done, want, 10000), want);
}

static inline void
on_rec(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    int idx = (int)(intptr_t)data;
    ASSERT(idx >= 0 && idx < MAXREC);
    ASSERT((reply == NULL) != (err == NULL));
    pthread_mutex_lock(&cx->mu);
    cx->calls[idx]++;
    rec_t *rec = &cx->recs[cx->nrecs < MAXREC ? cx->nrecs++ : MAXREC - 1];
    memset(rec, 0, sizeof(*rec));
    rec->at = mono();
    if (err != NULL) {
        rec->type = -1;
        snprintf(rec->err, sizeof(rec->err), "%s", err);
    } else {
        rec->type = reply->type;
        rec->integer = reply->integer;
        if (reply->str != NULL) {
            rec->len = reply->len;
            memcpy(rec->str, reply->str, reply->len < sizeof(rec->str) - 1 ? reply->len : sizeof(rec->str) - 1);
        }
    }
    ctx_signal();
    pthread_mutex_unlock(&cx->mu);
    if (idx == cx->free_at) {
        sk_redis_free(r); /* from inside a callback of the same connection */
        if (cx->r2 == r)
            cx->r2 = NULL;
    }
}

static inline void
on_connected(sk_redis_t *r, void *data)
{
    (void)r;
    pthread_mutex_lock(&cx->mu);
    ++*(int *)data;
    ctx_signal();
    pthread_mutex_unlock(&cx->mu);
}

static inline int
cmd(sk_redis_t *r, int idx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int ret = sk_redis_vcmd(r, on_rec, (void *)(intptr_t)idx, fmt, ap);
    va_end(ap);
    return ret;
}

static inline int
connects(void)
{
    pthread_mutex_lock(&cx->mu);
    int n = cx->connects;
    pthread_mutex_unlock(&cx->mu);
    return n;
}

static inline void
wait_connected(int n)
{
    ASSERT_EQ(wait_until(&cx->connects, n, 5000), n);
}

/* ---- clients ---- */

static inline void
t_noop(void)
{
}

static inline void
t_new(void)
{
    cx->free_at = -1;
    cx->r = sk_redis_new(&cx->host, cx->thr, "test");
    ASSERT(cx->r != NULL);
    sk_redis_on_connect(cx->r, on_connected, &cx->connects);
    /* not connected yet: refused, and the callback is never called */
    cx->flag = cmd(cx->r, MAXREC - 1, "PING");
}

static inline void
t_free(void)
{
    sk_redis_free(cx->r);
    cx->r = NULL;
}

/* ---- driver ---- */

static inline void
run_loop(sk_thread_t *thr)
{
    while (!atomic_load(&thr->stop))
        sk_thread_loop_once(thr, 100);
}

static inline int
count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; ++fd)
        if (fcntl(fd, F_GETFD) >= 0)
            ++n;
    return n;
}

/* Runs `suite` on a fresh loop thread of `kind`, with a command client cx->r connected by t_new. */
static inline void
run_suite(sk_thread_kind_t kind, const char *name, void (*suite)(void))
{
    cx = calloc(1, sizeof(*cx));
    ASSERT(cx != NULL);
    cx->kind = name;
    pthread_mutex_init(&cx->mu, NULL);
    pthread_cond_init(&cx->cv, NULL);
    pthread_mutex_init(&cx->host.snap_mu, NULL);
    fill_conf(&cx->host.conf, redis_pass, TIMEOUT_MS);
    cx->thr = sk_thread_new(&cx->host, kind, 0);
    ASSERT(cx->thr != NULL);
    ASSERT_EQ(sk_thread_start(cx->thr, run_loop), 0);
    on_thread(t_noop);     /* the thread is running: its own fds (the h2o message queue's pipe) exist */
    int fds = count_fds(); /* with the loop's own fds: h2o 2.2.5 never closes its epoll fd */
    fprintf(stderr, "== on %s\n", name);
    on_thread(t_new);
    ASSERT_EQ(cx->flag, -1); /* not connected yet: refused, and the callback is never called */
    wait_connected(1);
    suite();
    on_thread(t_free);
    /* every reconnect closed what it opened (hiredis' fd and h2o's dup) */
    ASSERT_EQ(count_fds(), fds);
    sk_thread_request_stop(cx->thr);
    sk_thread_join_free(cx->thr);
    pthread_mutex_destroy(&cx->host.snap_mu);
    free(cx);
    cx = NULL;
    /* back to a server without a password for the next loop kind */
    kill_redis();
    start_redis("");
}

/* The test's main: one server, the suite on an h2o loop, then on a libev loop. */
static inline int
harness_main(void (*suite)(void))
{
    alarm(110);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGABRT, on_fatal);
    signal(SIGALRM, on_fatal);
    find_redis();
    ASSERT(mkdtemp(tmpdir) != NULL);
    atexit(at_exit);
    redis_port = free_port();
    start_redis("");
    run_suite(SK_THREAD_HTTP, "h2o", suite);
    run_suite(SK_THREAD_WORKER, "libev", suite);
    return 0;
}

#endif
