/*
 * seckilld: parses the command line, loads the configuration and the plugins, starts the threads, and on
 * SIGTERM/SIGINT drains in-flight requests before it exits 0.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <libgen.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "host.h"
#include "redis_cluster.h"
#include "sk_keys.h"
#include "sk_scripts.h"

#define MAX_OVERRIDES 256

static void
usage(FILE *out)
{
    fprintf(out, "usage: seckilld -c FILE [--set key=value]... [--check]\n");
}

static uint64_t
unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* A process started with a closed stdin must not get a listen socket as fd 0. */
static void
ensure_std_fds(void)
{
    for (int fd = 0; fd < 3; ++fd)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) < 0)
            exit(2);
}

/* <dir of seckilld>/<sub>: the build tree and the installed layout (/usr/lib/seckill/) both keep the plugins and the
 * console next to the binary, so neither needs a config key to find them. */
static void
default_exe_relative(char *out, size_t outlen, const char *sub)
{
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        snprintf(out, outlen, "%s", sub);
        return;
    }
    exe[n] = '\0';
    snprintf(out, outlen, "%s/%s", dirname(exe), sub);
}

/* ---- threads ---- */

static void
init_plugins_on(sk_thread_t *thr)
{
    sk_host_t *host = thr->host;
    for (size_t i = 0; i < host->nplugins; ++i) {
        sk_plugin_t *p = &host->plugins[i];
        if (thr->kind == SK_THREAD_WORKER && thr->spawned_by != p)
            continue;
        if (p->desc->thread_init != NULL)
            thr->tstates[i] = p->desc->thread_init(p->inst, thr);
    }
}

static void
dispose_plugins_on(sk_thread_t *thr)
{
    sk_host_t *host = thr->host;
    for (size_t i = host->nplugins; i-- > 0;) {
        sk_plugin_t *p = &host->plugins[i];
        if (thr->kind == SK_THREAD_WORKER && thr->spawned_by != p)
            continue;
        if (p->desc->thread_dispose != NULL)
            p->desc->thread_dispose(p->inst, thr, thr->tstates[i]);
        thr->tstates[i] = NULL;
    }
}

static void
adopt_latest_snapshot(sk_thread_t *thr)
{
    thr->snap = sk_host_latest_snapshot(thr->host);
    if (thr->lua != NULL)
        sk_lua_thread_apply(thr->lua, thr->snap);
}

static void
run_loop(sk_thread_t *thr)
{
    while (!atomic_load(&thr->stop))
        sk_thread_loop_once(thr, 100);
    /* tasks already posted run now, while the plugin state they may touch still exists */
    sk_thread_close_posts(thr);
}

static void
run_http_thread(sk_thread_t *thr)
{
    sk_http_thread_init(thr);
    thr->lua = sk_lua_thread_new(thr->host);
    adopt_latest_snapshot(thr);
    init_plugins_on(thr);
    run_loop(thr);
    dispose_plugins_on(thr);
    sk_http_thread_dispose(thr);
    sk_lua_thread_free(thr->lua);
    thr->lua = NULL;
}

static void
run_worker_thread(sk_thread_t *thr)
{
    thr->lua = sk_lua_thread_new(thr->host);
    adopt_latest_snapshot(thr);
    init_plugins_on(thr);
    run_loop(thr);
    dispose_plugins_on(thr);
    sk_lua_thread_free(thr->lua);
    thr->lua = NULL;
}

/* control thread: Redis health and the node lock */
typedef struct st_control_state_t {
    sk_host_t *host;
    sk_redis_t *redis;
    sk_redis_t *queue; /* redis.queue_addr, probed like redis; NULL without one */
    sk_timer_t *timer;
    sk_stats_pub_t *stats;
    char lock_value[96];
    char lock_key[SK_NODE_KEY_MAX];
    unsigned ticks;
    int pending, queue_pending;
} control_state_t;

static void
on_queue_ping(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    control_state_t *cs = data;
    (void)r;
    cs->queue_pending = 0;
    int up = err == NULL && reply != NULL && reply->type != REDIS_REPLY_ERROR;
    if (up != atomic_load(&cs->host->queue_up))
        sk_logf(up ? SK_LOG_INFO : SK_LOG_WARN, "host", "queue redis %s is %s%s%s", cs->host->conf.redis_queue_addr,
                up ? "up" : "down", err ? ": " : "", err ? err : "");
    atomic_store(&cs->host->queue_up, up);
}

static void
on_ping(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    control_state_t *cs = data;
    (void)r;
    cs->pending = 0;
    int up = err == NULL && reply != NULL && reply->type != REDIS_REPLY_ERROR;
    if (up != atomic_load(&cs->host->redis_up))
        sk_logf(up ? SK_LOG_INFO : SK_LOG_WARN, "host", "redis %s is %s%s%s", cs->host->conf.redis_addr, up ? "up" : "down",
                err ? ": " : "", err ? err : "");
    atomic_store(&cs->host->redis_up, up);
}

static void
on_lock_refresh(sk_redis_t *r, redisReply *reply, const char *err, void *data)
{
    (void)r, (void)reply, (void)err, (void)data;
}

static void
on_control_tick(sk_timer_t *t, void *data)
{
    control_state_t *cs = data;
    sk_host_t *host = cs->host;
    if (host->conf.redis_cluster) {
        /* for /status and /healthz, which run on other threads */
        char map[sizeof(host->redis_map_json)];
        int masters = 0, up = 0;
        if (sk_redis_describe(cs->redis, map, sizeof(map), &masters, &up) == 0) {
            pthread_mutex_lock(&host->redis_mu);
            memcpy(host->redis_map_json, map, sizeof(map));
            pthread_mutex_unlock(&host->redis_mu);
            atomic_store(&host->redis_masters, masters);
            atomic_store(&host->redis_masters_up, up);
        }
    }
    if (!sk_redis_connected(cs->redis)) {
        if (atomic_load(&host->redis_up))
            sk_logf(SK_LOG_WARN, "host", "redis %s is down", host->conf.redis_addr);
        atomic_store(&host->redis_up, 0);
    } else if (!cs->pending) {
        cs->pending = sk_redis_cmd(cs->redis, on_ping, cs, "PING") == 0;
        /* the node lock: refreshed every ~3 s, expires 10 s after this process stops refreshing it */
        if (cs->ticks % 6 == 0)
            sk_redis_cmd(cs->redis, on_lock_refresh, cs, "SET %s %s PX 10000", cs->lock_key, cs->lock_value);
    }
    if (cs->queue != NULL && !sk_redis_connected(cs->queue))
        atomic_store(&host->queue_up, 0);
    else if (cs->queue != NULL && !cs->queue_pending)
        cs->queue_pending = sk_redis_cmd(cs->queue, on_queue_ping, cs, "PING") == 0;
    sk_stats_pub_tick(cs->stats, cs->redis); /* the tick is SK_STATS_PUBLISH_MS */
    /* Give the memory of a connection storm back: glibc keeps freed heap pages (of every thread's arena) mapped, so
     * after 10,000 connections came and went the RSS stayed at its peak (tests/integration/test_hostile_storm.py).
     * malloc_trim returns whole free pages inside the heaps too; every 10 s it costs well under a millisecond. */
    if (cs->ticks % 20 == 19)
        malloc_trim(0);
    cs->ticks++;
    sk_timer_start(t, SK_STATS_PUBLISH_MS);
}

static void
run_control_thread(sk_thread_t *thr)
{
    sk_host_t *host = thr->host;
    control_state_t cs = {.host = host};
    snprintf(cs.lock_value, sizeof(cs.lock_value), "%d", (int)getpid());
    sk_key_node(cs.lock_key, sizeof(cs.lock_key), host->conf.node_id);
    adopt_latest_snapshot(thr);
    cs.redis = sk_redis_new(host, thr, "host");
    if (host->conf.redis_queue_addr[0] != '\0')
        cs.queue = sk_redis_conn_new(host, thr, "host-queue", host->conf.redis_queue_host, host->conf.redis_queue_port);
    cs.stats = sk_stats_pub_new(host);
    cs.timer = sk_timer_new(thr, on_control_tick, &cs);
    sk_timer_start(cs.timer, 1);
    if (host->etcd != NULL)
        sk_etcd_start(host->etcd, thr);
    init_plugins_on(thr);
    run_loop(thr);
    dispose_plugins_on(thr);
    if (host->etcd != NULL)
        sk_etcd_stop(host->etcd);
    sk_timer_free(cs.timer);
    if (cs.queue != NULL)
        sk_redis_free(cs.queue);
    sk_redis_free(cs.redis);
    sk_stats_pub_free(cs.stats);
}

/* ---- start-up checks ---- */

/* --check: the files a start would need, so that a package or a deployment with a wrong plugin_dir fails here. The
 * console's files only warn: without them the admin API still works, and the console answers 404. */
static int
check_installed(const sk_config_t *c, char *err, size_t errlen)
{
    static const char *names[] = {"access", "logic", "admin"};
    char path[1200];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
        if (!sk_conf_has_plugin(c, names[i]))
            continue;
        snprintf(path, sizeof(path), "%s/%s.so", c->plugin_dir, names[i]);
        if (access(path, R_OK) != 0) {
            snprintf(err, errlen, "plugin_dir: %.600s: %s", path, strerror(errno));
            return -1;
        }
    }
    if (sk_conf_has_plugin(c, "admin")) {
        snprintf(path, sizeof(path), "%s/index.html", c->admin_console_dir);
        if (access(path, R_OK) != 0)
            fprintf(stderr, "seckilld: warning: admin.console_dir: %s: %s (the console will answer 404)\n", path, strerror(errno));
        if (access(c->admin_chart_js, R_OK) != 0)
            fprintf(stderr, "seckilld: warning: admin.chart_js: %s: %s (the console draws no charts)\n", c->admin_chart_js,
                    strerror(errno));
    }
    return 0;
}

static int
take_node_lock(sk_host_t *host, char *err, size_t errlen)
{
    char rerr[256], key[SK_NODE_KEY_MAX];
    sk_key_node(key, sizeof(key), host->conf.node_id);
    redisReply *r = sk_redis_sync_command(&host->conf, rerr, sizeof(rerr), "SET %s %d NX PX 10000", key, (int)getpid());
    if (r == NULL) {
        sk_logf(SK_LOG_WARN, "host", "cannot check that node_id %s is unique (redis: %s); starting anyway", host->conf.node_id,
                rerr);
        return 0;
    }
    int ok = r->type == REDIS_REPLY_STATUS;
    int is_error = r->type == REDIS_REPLY_ERROR;
    if (is_error)
        snprintf(rerr, sizeof(rerr), "%s", r->str);
    freeReplyObject(r);
    if (is_error) {
        snprintf(err, errlen, "redis refused the node lock: %s", rerr);
        return -1;
    }
    if (!ok) {
        snprintf(err, errlen, "node_id: \"%s\" is already used by a live process", host->conf.node_id);
        return -1;
    }
    return 0;
}

static void
release_node_lock(sk_host_t *host)
{
    char rerr[256], pid[32], key[SK_NODE_KEY_MAX];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    sk_key_node(key, sizeof(key), host->conf.node_id);
    redisReply *r =
        sk_redis_sync_command(&host->conf, rerr, sizeof(rerr), "EVAL %s 1 %s %s", sk_script_host_lock_release, key, pid);
    if (r != NULL)
        freeReplyObject(r);
}

/* ---- shutdown ---- */

static void
close_listeners_task(void *arg)
{
    sk_http_close_listeners(arg);
}

static size_t
inflight(sk_host_t *host)
{
    size_t n = 0;
    for (size_t i = 0; i < host->nplugins; ++i)
        if (host->plugins[i].desc->inflight != NULL)
            n += host->plugins[i].desc->inflight(host->plugins[i].inst);
    return n;
}

static void
drain(sk_host_t *host)
{
    atomic_store(&host->stopping, 1);
    for (size_t i = 0; i < host->nhttp; ++i)
        sk_thread_post(host->http[i], close_listeners_task, host->http[i]);
    if (host->admin != NULL)
        sk_thread_post(host->admin, close_listeners_task, host->admin);
    for (size_t i = host->nplugins; i-- > 0;)
        if (host->plugins[i].desc->stop != NULL)
            host->plugins[i].desc->stop(host->plugins[i].inst);
    /* every waiting request has its own deadline of access.request_timeout_ms; give them that plus a margin */
    uint64_t deadline = unix_ms() + host->conf.access_request_timeout_ms + 1500;
    size_t n;
    while ((n = inflight(host)) != 0 && unix_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (n != 0)
        sk_logf(SK_LOG_WARN, "host", "%zu requests still in flight at the drain deadline", n);
    /* let the last answers leave the sockets */
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Every thread is stopped and joined before any is freed: a thread still running may post to another one, and such
 * a post must find a closed queue, not freed memory. The control thread goes first so that no snapshot is published
 * to a thread whose plugins are being disposed. */
static void
stop_all_threads(sk_host_t *host)
{
    sk_thread_t *all[SK_MAX_THREADS * 2 + 2];
    size_t n = 0;
    all[n++] = host->control;
    for (size_t i = 0; i < host->nworkers; ++i)
        all[n++] = host->workers[i];
    for (size_t i = 0; i < host->nhttp; ++i)
        all[n++] = host->http[i];
    if (host->admin != NULL)
        all[n++] = host->admin;
    sk_thread_request_stop(all[0]);
    sk_thread_join(all[0]);
    for (size_t i = 1; i < n; ++i)
        sk_thread_request_stop(all[i]);
    for (size_t i = 1; i < n; ++i)
        sk_thread_join(all[i]);
    for (size_t i = 0; i < n; ++i)
        sk_thread_join_free(all[i]);
}

int
main(int argc, char **argv)
{
    const char *conf_file = NULL;
    char *overrides[MAX_OVERRIDES];
    size_t noverrides = 0;
    int check_only = 0;
    char err[1024];

    ensure_std_fds();
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            conf_file = argv[++i];
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            if (noverrides == MAX_OVERRIDES) {
                fprintf(stderr, "seckilld: too many --set options\n");
                return 2;
            }
            overrides[noverrides++] = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0 && noverrides < MAX_OVERRIDES) {
            overrides[noverrides++] = argv[i] + 6;
        } else if (strcmp(argv[i], "--check") == 0) {
            check_only = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "seckilld: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (conf_file == NULL) {
        usage(stderr);
        return 2;
    }

    sk_host_t *host = calloc(1, sizeof(*host));
    if (host == NULL)
        return 1;
    sk_conf_defaults(&host->conf);
    default_exe_relative(host->conf.plugin_dir, sizeof(host->conf.plugin_dir), "plugins");
    default_exe_relative(host->conf.admin_console_dir, sizeof(host->conf.admin_console_dir), "console");
    if (sk_conf_load(&host->conf, conf_file, overrides, noverrides, err, sizeof(err)) != 0) {
        fprintf(stderr, "seckilld: config error: %s\n", err);
        return 1;
    }
    atomic_store(&host->queue_up, host->conf.redis_queue_addr[0] == '\0'); /* a queue Redis is down until it answers */
    if (sk_conf_check_exposure(&host->conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "seckilld: refusing to start: %s\n", err);
        return 1;
    }
    if (sk_policy_check_dir(&host->conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "seckilld: policy error: %s\n", err);
        return 1;
    }
    if (check_only) {
        if (check_installed(&host->conf, err, sizeof(err)) != 0) {
            fprintf(stderr, "seckilld: config error: %s\n", err);
            return 1;
        }
        printf("seckilld: %s: configuration and policies OK\n", conf_file);
        return 0;
    }
    if (sk_log_open(host->conf.log_level, host->conf.log_file, err, sizeof(err)) != 0) {
        fprintf(stderr, "seckilld: config error: %s\n", err);
        return 1;
    }

    /* signals are taken by sigwait in this thread only */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    host->started_at = unix_ms();
    host->api = &sk_host_api;
    pthread_mutex_init(&host->snap_mu, NULL);
    pthread_mutex_init(&host->redis_mu, NULL);
    host->latest_snap = sk_snapshot_empty();
    if (take_node_lock(host, err, sizeof(err)) != 0) {
        fprintf(stderr, "seckilld: refusing to start: %s\n", err);
        sk_logf(SK_LOG_ERROR, "host", "refusing to start: %s", err);
        return 1;
    }

    host->nhttp = host->conf.threads;
    for (size_t i = 0; i < host->nhttp; ++i)
        host->http[i] = sk_thread_new(host, SK_THREAD_HTTP, (unsigned)i);
    if (sk_conf_has_plugin(&host->conf, "admin"))
        host->admin = sk_thread_new(host, SK_THREAD_ADMIN, 0);
    host->control = sk_thread_new(host, SK_THREAD_CONTROL, 0);
    host->etcd = sk_etcd_new(host);

    if (sk_plugins_load(host, host->conf.plugin_dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "seckilld: %s\n", err);
        sk_logf(SK_LOG_ERROR, "host", "%s", err);
        release_node_lock(host);
        return 1;
    }
    host->nworkers = 0;
    for (size_t i = 0; i < host->nplugins; ++i) {
        for (unsigned k = 0; k < host->plugins[i].spawn_count; ++k) {
            sk_thread_t *w = sk_thread_new(host, SK_THREAD_WORKER, (unsigned)host->nworkers);
            w->spawned_by = &host->plugins[i];
            host->workers[host->nworkers++] = w;
        }
    }
    if (sk_http_setup(host, err, sizeof(err)) != 0) {
        fprintf(stderr, "seckilld: %s\n", err);
        sk_logf(SK_LOG_ERROR, "host", "%s", err);
        release_node_lock(host);
        return 1;
    }

    sk_thread_start(host->control, run_control_thread);
    if (host->admin != NULL)
        sk_thread_start(host->admin, run_http_thread);
    for (size_t i = 0; i < host->nworkers; ++i)
        sk_thread_start(host->workers[i], run_worker_thread);
    for (size_t i = 0; i < host->nhttp; ++i)
        sk_thread_start(host->http[i], run_http_thread);
    sk_logf(SK_LOG_INFO, "host", "seckilld %s started: plugins=%s access=%s admin=%s status=%s threads=%zu", host->conf.node_id,
            host->conf.plugins, host->conf.access_listen, host->admin ? host->conf.admin_listen : "-", host->conf.status_listen,
            host->nhttp);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
        ;
    sk_logf(SK_LOG_INFO, "host", "signal %d: draining", sig);
    drain(host);

    stop_all_threads(host);
    h2o_config_dispose(&host->h2o_conf);
    sk_plugins_destroy(host);
    sk_etcd_free(host->etcd);
    release_node_lock(host);
    sk_logf(SK_LOG_INFO, "host", "stopped");
    sk_snapshot_release(host->latest_snap);
    sk_policy_status_free(host);
    free(host);
    return 0;
}
