/*
 * For test_host_redis_cluster.c: a real Redis Cluster of 3 masters plus one replica of master 1, on free loopback
 * ports whose bus ports (+10000) are free and below 65536, in a mkdtemp dir; killed with this process whatever happens
 * (PR_SET_PDEATHSIG, atexit, a handler for abort, the alarm and SIGSEGV). Plus direct blocking helpers to check where a
 * key lives.
 */
#ifndef TEST_HOST_REDIS_CLUSTER_HARNESS_H
#define TEST_HOST_REDIS_CLUSTER_HARNESS_H
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "host.h"
#include "sk_cluster.h"
#include "sk_test.h"

#define NODES 3

static char tmpdir[64] = "/tmp/sk-cluster-XXXXXX";
#define REPLICA NODES /* index of the replica of master 1, for the failover */
static int ports[NODES + 1];
static pid_t pids[NODES + 1];

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int
port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* A port whose cluster bus port (+10000) is below 65536 and free too. */
static int
pick_port(void)
{
    for (;;) {
        int p = 20000 + (int)((unsigned)rand() % 25000);
        int taken = 0;
        for (int i = 0; i <= NODES; ++i)
            taken |= ports[i] == p;
        if (!taken && port_free(p) && port_free(p + 10000))
            return p;
    }
}

static void
kill_all(void)
{
    for (int i = 0; i <= NODES; ++i)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
}

static void
on_fatal(int sig)
{
    for (int i = 0; i <= NODES; ++i)
        if (pids[i] > 0)
            kill(pids[i], SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void
at_exit(void)
{
    kill_all();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
}

static redisReply *
direct(int port, const char *fmt, ...)
{
    struct timeval tv = {2, 0};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", port, tv);
    ASSERT(ctx != NULL);
    if (ctx->err != 0) {
        redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(ctx, fmt, ap);
    va_end(ap);
    redisFree(ctx);
    return r;
}

static void
start_node(int i)
{
    char port[16], conf[128], logfile[128];
    snprintf(port, sizeof(port), "%d", ports[i]);
    snprintf(conf, sizeof(conf), "%s/nodes-%d.conf", tmpdir, ports[i]);
    snprintf(logfile, sizeof(logfile), "%s/redis-%d.log", tmpdir, ports[i]);
    char *argv[] = {"redis-server",
                    "--port",
                    port,
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    conf,
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-require-full-coverage",
                    "no", /* a dead master leaves the others serving: what the fault tests check */
                    "--appendonly",
                    "no",
                    "--save",
                    "",
                    "--dir",
                    tmpdir,
                    "--logfile",
                    logfile,
                    NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        execvp("redis-server", argv);
        _exit(127);
    }
    pids[i] = pid;
    for (int k = 0; k < 500; ++k) {
        redisReply *r = direct(ports[i], "PING");
        if (r != NULL) {
            freeReplyObject(r);
            return;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "redis-server on %d did not start\n", ports[i]);
    abort();
}

static int
cluster_ok(int port)
{
    redisReply *r = direct(port, "CLUSTER INFO");
    int ok = r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") != NULL;
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

static void
start_cluster(void)
{
    for (int i = 0; i < NODES; ++i)
        ports[i] = pick_port();
    for (int i = 0; i < NODES; ++i)
        start_node(i);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "redis-cli --cluster create 127.0.0.1:%d 127.0.0.1:%d 127.0.0.1:%d --cluster-yes >%s/create.log 2>&1", ports[0],
             ports[1], ports[2], tmpdir);
    ASSERT_EQ(system(cmd), 0);
    for (int k = 0; k < 1000; ++k) {
        int ok = 1;
        for (int i = 0; i < NODES; ++i)
            ok &= cluster_ok(ports[i]);
        if (ok)
            break;
        sleep_ms(20);
    }
    for (int i = 0; i < NODES; ++i)
        ASSERT(cluster_ok(ports[i]));
    /* a replica for master 1 (the failover test) */
    ports[REPLICA] = pick_port();
    start_node(REPLICA);
    redisReply *id = direct(ports[1], "CLUSTER MYID");
    ASSERT(id != NULL && id->type == REDIS_REPLY_STRING);
    snprintf(cmd, sizeof(cmd),
             "redis-cli --cluster add-node 127.0.0.1:%d 127.0.0.1:%d --cluster-slave --cluster-master-id %s >>%s/create.log 2>&1",
             ports[REPLICA], ports[1], id->str, tmpdir);
    freeReplyObject(id);
    ASSERT_EQ(system(cmd), 0);
    for (int k = 0; k < 1000; ++k) {
        redisReply *r = direct(ports[REPLICA], "INFO replication");
        int up = r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, "master_link_status:up") != NULL;
        if (r != NULL)
            freeReplyObject(r);
        if (up && cluster_ok(ports[REPLICA]))
            return;
        sleep_ms(20);
    }
    fprintf(stderr, "the replica did not sync\n");
    abort();
}

/* The node index owning `key`: the one answering GET without a redirect. */
static int
owner_of(const char *key)
{
    int owner = -1;
    for (int i = 0; i < NODES; ++i) {
        redisReply *r = direct(ports[i], "GET %s", key);
        ASSERT(r != NULL);
        if (r->type != REDIS_REPLY_ERROR) {
            ASSERT_EQ(owner, -1);
            owner = i;
        }
        freeReplyObject(r);
    }
    return owner;
}

static char *
node_id(int i)
{
    static char ids[NODES][64];
    redisReply *r = direct(ports[i], "CLUSTER MYID");
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    snprintf(ids[i], sizeof(ids[i]), "%s", r->str);
    freeReplyObject(r);
    return ids[i];
}

static void
fill_conf(sk_config_t *c, const char *addr)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->redis_addr, sizeof(c->redis_addr), "%s", addr);
    c->redis_cluster = 1;
    c->redis_timeout_ms = 1000;
    const char *comma = strchr(addr, ',');
    char first[64];
    snprintf(first, sizeof(first), "%.*s", (int)(comma != NULL ? (size_t)(comma - addr) : strlen(addr)), addr);
    ASSERT_EQ(sk_conf_parse_addr(first, c->redis_host, sizeof(c->redis_host), &c->redis_port), 0);
}

static void
seeds(char *buf, size_t len, int dead_first)
{
    snprintf(buf, len, "%s127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", dead_first ? "127.0.0.1:1," : "", ports[0], ports[1], ports[2]);
}

#endif
