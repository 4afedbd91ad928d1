/*
 * The etcd client against a real etcd started by this test: blocking put/range/delete with failover and a deadline,
 * and the list + watch on a libev loop (plugin hooks in revision order, snapshots, down at start).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "sk_test.h"
#include "host.h"
#include "etcd_internal.h"

static pid_t etcd_pid;
static char etcd_dir[64] = "/tmp/sk-etcd-unit-XXXXXX";

static int
bound_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static int
free_port(void)
{
    int port, fd = bound_socket(&port);
    close(fd);
    return port;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
stop_etcd(void)
{
    if (etcd_pid > 0) {
        kill(etcd_pid, SIGKILL);
        waitpid(etcd_pid, NULL, 0);
        etcd_pid = 0;
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", etcd_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", etcd_dir);
    }
}

static void
on_alarm(int sig)
{
    (void)sig;
    if (etcd_pid > 0)
        kill(etcd_pid, SIGKILL);
    _exit(2);
}

static int
start_etcd(void)
{
    ASSERT(mkdtemp(etcd_dir) != NULL);
    int port = free_port(), peer = free_port();
    char client[64], peerurl[64], data[128], log[128], cluster[96];
    snprintf(client, sizeof(client), "http://127.0.0.1:%d", port);
    snprintf(peerurl, sizeof(peerurl), "http://127.0.0.1:%d", peer);
    snprintf(cluster, sizeof(cluster), "u=%s", peerurl);
    snprintf(data, sizeof(data), "%s/data", etcd_dir);
    snprintf(log, sizeof(log), "%s/etcd.log", etcd_dir);
    etcd_pid = fork();
    ASSERT(etcd_pid >= 0);
    if (etcd_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("etcd", "etcd", "--name", "u", "--data-dir", data, "--listen-client-urls", client, "--advertise-client-urls", client,
               "--listen-peer-urls", peerurl, "--initial-advertise-peer-urls", peerurl, "--initial-cluster", cluster,
               "--experimental-watch-progress-notify-interval=1s", (char *)NULL);
        _exit(127);
    }
    return port;
}

static sk_host_t *
new_host(const char *endpoints)
{
    sk_host_t *h = calloc(1, sizeof(*h));
    sk_conf_defaults(&h->conf);
    snprintf(h->conf.etcd_endpoints, sizeof(h->conf.etcd_endpoints), "%s", endpoints);
    snprintf(h->conf.etcd_prefix, sizeof(h->conf.etcd_prefix), "/sktest");
    const char *src = getenv("SK_SOURCE_DIR");
    snprintf(h->conf.policies_dir, sizeof(h->conf.policies_dir), "%s/policies", src != NULL ? src : "../..");
    pthread_mutex_init(&h->snap_mu, NULL);
    h->latest_snap = sk_snapshot_empty();
    return h;
}

static void
free_host(sk_host_t *h)
{
    sk_snapshot_release(h->latest_snap);
    sk_policy_status_free(h);
    pthread_mutex_destroy(&h->snap_mu);
    free(h);
}

/* ---- recording hook ---- */

typedef struct st_rec_t {
    int n;
    char keys[64][64];
    char values[64][256];
    int64_t revs[64];
    int dels[64];
    size_t lens[64];
} rec_t;

static void
on_event(void *inst, const char *key, const char *value, size_t len, int64_t rev, int is_delete)
{
    rec_t *r = inst;
    ASSERT(r->n < 64 && len < sizeof(r->values[0]));
    ASSERT_EQ(value[len], '\0'); /* NUL-terminated, even when the value is binary */
    snprintf(r->keys[r->n], sizeof(r->keys[0]), "%s", key);
    memcpy(r->values[r->n], value, len + 1);
    r->lens[r->n] = len;
    r->revs[r->n] = rev;
    r->dels[r->n] = is_delete;
    r->n++;
}

static int
find_key(const rec_t *r, int from, const char *key)
{
    for (int i = from; i < r->n; i++)
        if (strcmp(r->keys[i], key) == 0)
            return i;
    return -1;
}

static void
on_pump(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
}

static int
run_until(struct ev_loop *loop, int (*pred)(void *), void *arg, double timeout)
{
    ev_timer pump;
    ev_timer_init(&pump, on_pump, 0.01, 0.01);
    ev_timer_start(loop, &pump);
    double end = now_s() + timeout;
    int ok;
    while (!(ok = pred(arg)) && now_s() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &pump);
    return ok;
}

static const char *
activity(int id, int total, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "{\"activity_id\":%d,\"activity_name\":\"a%d\",\"product_id\":1,\"start_time\":100,\"end_time\":4102444800,"
             "\"total\":%d,\"status\":1,\"speed\":0,\"buy_limit\":1,\"buy_rate\":0.5}",
             id, id, total);
    return buf;
}

/* ---- tests ---- */

static int etcd_port;

static void
wait_etcd_ready(sk_etcd_t *e)
{
    char err[256];
    double end = now_s() + 20;
    int64_t rev;
    while (sk_etcd_put(e, "ready", "1", 1, &rev, err, sizeof(err)) != 0) {
        if (now_s() > end) {
            fprintf(stderr, "etcd did not start: %s\n", err);
            abort();
        }
        usleep(100000);
    }
}

static void
on_range(void *arg, const char *key, const char *value, size_t len, int64_t rev)
{
    rec_t *r = arg;
    on_event(r, key, value, len, rev, 0);
}

static void
test_blocking_calls(void)
{
    char eps[256], err[256];
    /* the first endpoint refuses: every call fails over to the second */
    snprintf(eps, sizeof(eps), "http://127.0.0.1:%d, 127.0.0.1:%d/", free_port(), etcd_port);
    sk_host_t *h = new_host(eps);
    sk_etcd_t *e = sk_etcd_new(h);
    ASSERT(e != NULL);
    ASSERT_EQ(e->nendpoints, 2);
    ASSERT_STREQ(e->prefix, "/sktest/");
    wait_etcd_ready(e);
    int64_t r1 = 0, r2 = 0, r3 = 0;
    char v[512];
    activity(1, 5, v, sizeof(v));
    ASSERT_EQ(sk_etcd_put(e, "activities/1", v, strlen(v), &r1, err, sizeof(err)), 0);
    ASSERT_EQ(sk_etcd_put(e, "activities/2", "x\0y", 3, &r2, err, sizeof(err)), 0); /* binary-safe value */
    ASSERT(r2 == r1 + 1);
    ASSERT_EQ(sk_etcd_put(e, "activitiesX", "outside", 7, NULL, err, sizeof(err)), 0);
    rec_t *r = calloc(1, sizeof(*r));
    ASSERT_EQ(sk_etcd_range(e, "activities/", on_range, r, err, sizeof(err)), 0);
    ASSERT_EQ(r->n, 2);
    ASSERT_STREQ(r->keys[0], "activities/1");
    ASSERT_STREQ(r->values[0], v);
    ASSERT_EQ(r->revs[0], r1);
    ASSERT_EQ(r->lens[1], 3);
    ASSERT(memcmp(r->values[1], "x\0y", 3) == 0);
    ASSERT_EQ(sk_etcd_delete(e, "activities/1", &r3, err, sizeof(err)), 0);
    ASSERT(r3 > r2);
    r->n = 0;
    ASSERT_EQ(sk_etcd_range(e, "", on_range, r, err, sizeof(err)), 0);
    ASSERT_EQ(r->n, 3); /* activities/2, activitiesX, ready */
    ASSERT_EQ(find_key(r, 0, "activities/1"), -1);
    /* bad input is an error, not a call */
    ASSERT_EQ(sk_etcd_put(e, "", "x", 1, NULL, err, sizeof(err)), -1);
    char *big = calloc(1, SK_ETCD_MAX_VALUE + 1);
    ASSERT_EQ(sk_etcd_put(e, "big", big, SK_ETCD_MAX_VALUE + 1, NULL, err, sizeof(err)), -1);
    ASSERT(strstr(err, "larger") != NULL);
    free(big);
    ASSERT_EQ(sk_etcd_put(NULL, "k", "x", 1, NULL, err, sizeof(err)), -1);
    sk_etcd_delete(e, "activities/2", NULL, err, sizeof(err));
    sk_etcd_delete(e, "activitiesX", NULL, err, sizeof(err));
    free(r);
    sk_etcd_free(e);
    free_host(h);
}

static void
test_deadline(void)
{
    /* accepts connections (backlog) and never answers: the call must give up at its deadline */
    int port, fd = bound_socket(&port);
    ASSERT(listen(fd, 16) == 0);
    char eps[64], err[256];
    snprintf(eps, sizeof(eps), "http://127.0.0.1:%d", port);
    sk_host_t *h = new_host(eps);
    sk_etcd_t *e = sk_etcd_new(h);
    double t0 = now_s();
    ASSERT_EQ(sk_etcd_put(e, "k", "v", 1, NULL, err, sizeof(err)), -1);
    double took = now_s() - t0;
    ASSERT(took > 1.5 && took < 3.0);
    ASSERT(strstr(err, "127.0.0.1") != NULL);

    /* the watcher starts while etcd "is down": the policy files serve at once and the node reports down */
    struct ev_loop *loop = ev_loop_new(0);
    sk_thread_t thr = {.host = h, .kind = SK_THREAD_CONTROL, .ev_loop = loop};
    t0 = now_s();
    sk_etcd_start(e, &thr);
    ASSERT(now_s() - t0 < 1.6); /* the first list waits at most about 1 s */
    ASSERT_EQ(sk_etcd_is_up(e), 0);
    const sk_snapshot_t *s = sk_host_latest_snapshot(h);
    ASSERT_EQ(s->npolicies, 3);
    ASSERT_EQ(s->policies[0].revision, 0);
    sk_snapshot_release(s);
    cJSON *o = cJSON_CreateObject();
    sk_etcd_status(e, o);
    ASSERT_STREQ(cJSON_GetObjectItem(o, "state")->valuestring, "down");
    ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(o, "up")));
    cJSON_Delete(o);
    sk_etcd_stop(e);
    ev_loop_destroy(loop);
    sk_etcd_free(e);
    free_host(h);
    close(fd);
}

typedef struct st_watch_ctx_t {
    rec_t *r;
    sk_host_t *h;
    int64_t rev;
} watch_ctx_t;

static int
seen_rev(void *arg)
{
    watch_ctx_t *c = arg;
    return c->r->n > 0 && c->r->revs[c->r->n - 1] >= c->rev;
}

static int
snapshot_at(void *arg)
{
    watch_ctx_t *c = arg;
    const sk_snapshot_t *s = sk_host_latest_snapshot(c->h);
    int ok = s->revision >= c->rev;
    sk_snapshot_release(s);
    return ok;
}

static void
test_watch(void)
{
    char eps[128], err[256], v[512];
    snprintf(eps, sizeof(eps), "http://127.0.0.1:%d,http://127.0.0.1:%d", free_port(), etcd_port);
    sk_host_t *h = new_host(eps);
    rec_t *r = calloc(1, sizeof(*r));
    h->nplugins = 1;
    h->plugins[0].on_etcd_event = on_event;
    h->plugins[0].inst = r;
    sk_etcd_t *e = sk_etcd_new(h);
    int64_t r1;
    activity(1, 5, v, sizeof(v));
    ASSERT_EQ(sk_etcd_put(e, "activities/1", v, strlen(v), &r1, err, sizeof(err)), 0);
    const char *prod = "{\"product_id\":1,\"product_name\":\"p\",\"product_total\":9,\"status\":1}";
    ASSERT_EQ(sk_etcd_put(e, "products/1", prod, strlen(prod), NULL, err, sizeof(err)), 0);

    struct ev_loop *loop = ev_loop_new(0);
    sk_thread_t thr = {.host = h, .kind = SK_THREAD_CONTROL, .ev_loop = loop};
    sk_etcd_start(e, &thr);
    ASSERT_EQ(sk_etcd_is_up(e), 1);
    /* the list called the hooks for every key, with mod revisions */
    int i = find_key(r, 0, "activities/1");
    ASSERT(i >= 0);
    ASSERT_EQ(r->revs[i], r1);
    ASSERT(find_key(r, 0, "products/1") >= 0);
    const sk_snapshot_t *s = sk_host_latest_snapshot(h);
    ASSERT_EQ(s->nactivities, 1);
    ASSERT_EQ(s->nproducts, 1);
    ASSERT_EQ(s->npolicies, 3);
    sk_snapshot_release(s);

    /* a burst of changes arrives in revision order, deletes flagged */
    int mark = r->n;
    int64_t ra, rb, rc;
    char pol[512];
    snprintf(pol, sizeof(pol), "function admit(r)\n    return true\nend\n");
    activity(2, 7, v, sizeof(v));
    ASSERT_EQ(sk_etcd_put(e, "activities/2", v, strlen(v), &ra, err, sizeof(err)), 0);
    ASSERT_EQ(sk_etcd_delete(e, "activities/1", &rb, err, sizeof(err)), 0);
    ASSERT_EQ(sk_etcd_put(e, "policies/limits.lua", pol, strlen(pol), &rc, err, sizeof(err)), 0);
    watch_ctx_t c = {.r = r, .h = h, .rev = rc};
    ASSERT(run_until(loop, seen_rev, &c, 5));
    ASSERT_EQ(r->n, mark + 3);
    ASSERT_STREQ(r->keys[mark], "activities/2");
    ASSERT_EQ(r->revs[mark], ra);
    ASSERT_STREQ(r->keys[mark + 1], "activities/1");
    ASSERT_EQ(r->dels[mark + 1], 1);
    ASSERT_STREQ(r->values[mark + 1], "");
    ASSERT_EQ(r->revs[mark + 1], rb);
    ASSERT_STREQ(r->keys[mark + 2], "policies/limits.lua");
    ASSERT_STREQ(r->values[mark + 2], pol);
    /* the snapshot follows within the coalescing delay */
    ASSERT(run_until(loop, snapshot_at, &c, 2));
    s = sk_host_latest_snapshot(h);
    ASSERT_EQ(s->nactivities, 1);
    ASSERT_EQ(s->activities[0].activity_id, 2);
    const sk_policy_src_t *lp = NULL;
    for (size_t k = 0; k < s->npolicies; k++)
        if (strcmp(s->policies[k].name, "limits.lua") == 0)
            lp = &s->policies[k];
    ASSERT(lp != NULL);
    ASSERT_EQ(lp->revision, rc);
    ASSERT_STREQ(lp->src, pol);
    sk_snapshot_release(s);

    cJSON *o = cJSON_CreateObject();
    sk_etcd_status(e, o);
    ASSERT_STREQ(cJSON_GetObjectItem(o, "state")->valuestring, "watching");
    ASSERT(cJSON_GetObjectItem(o, "revision")->valuedouble >= (double)rc);
    ASSERT_STREQ(cJSON_GetObjectItem(o, "endpoint")->valuestring, e->endpoints[1]);
    cJSON_Delete(o);

    sk_etcd_stop(e);
    ASSERT_EQ(sk_etcd_is_up(e), 0);
    sk_etcd_stop(e); /* twice is harmless */
    ev_loop_destroy(loop);
    sk_etcd_free(e);
    free_host(h);
    free(r);
}

int
main(void)
{
    signal(SIGALRM, on_alarm);
    alarm(100);
    etcd_port = start_etcd();
    atexit(stop_etcd);
    RUN(test_blocking_calls);
    RUN(test_deadline);
    RUN(test_watch);
    stop_etcd();
    DONE();
}
