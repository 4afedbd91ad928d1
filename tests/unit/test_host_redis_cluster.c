/*
 * The host's Redis client against a real 3-master Redis Cluster on free loopback ports (SPEC §9): today the blocking
 * start-up client (sk_redis_sync_command), which tries the seeds in order and follows MOVED and ASK. The cluster is
 * started in a mkdtemp dir and killed with this process whatever happens (PR_SET_PDEATHSIG, atexit, abort handler).
 */
#include <arpa/inet.h>
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
static int ports[NODES];
static pid_t pids[NODES];

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
        for (int i = 0; i < NODES; ++i)
            taken |= ports[i] == p;
        if (!taken && port_free(p) && port_free(p + 10000))
            return p;
    }
}

static void
kill_all(void)
{
    for (int i = 0; i < NODES; ++i)
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
            pids[i] = 0;
        }
}

static void
on_fatal(int sig)
{
    for (int i = 0; i < NODES; ++i)
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
            return;
        sleep_ms(20);
    }
    fprintf(stderr, "the cluster did not reach cluster_state:ok\n");
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

/* Keys of different slots written through any seed reach their own masters, all three of them. */
static void
test_sync_routes_by_slot(void)
{
    char addr[256], err[256];
    seeds(addr, sizeof(addr), 1);
    sk_config_t c;
    fill_conf(&c, addr);
    int seen[NODES] = {0};
    for (int k = 0; k < 30; ++k) {
        char key[32];
        snprintf(key, sizeof(key), "sk:{a%d}:stock", k);
        redisReply *r = sk_redis_sync_command(&c, err, sizeof(err), "SET %s %d", key, k);
        ASSERT(r != NULL);
        ASSERT_EQ(r->type, REDIS_REPLY_STATUS);
        freeReplyObject(r);
        int o = owner_of(key);
        ASSERT(o >= 0);
        seen[o]++;
        /* the owner's slot count agrees with our hash */
        r = direct(ports[o], "CLUSTER COUNTKEYSINSLOT %u", sk_cluster_keyslot(key, strlen(key)));
        ASSERT(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
        freeReplyObject(r);
        r = sk_redis_sync_command(&c, err, sizeof(err), "GET %s", key);
        ASSERT(r != NULL && r->type == REDIS_REPLY_STRING && atoi(r->str) == k);
        freeReplyObject(r);
    }
    for (int i = 0; i < NODES; ++i)
        ASSERT(seen[i] > 0);
    /* an EVAL with a key goes to that key's master; a keyless command to the first seed that answers */
    redisReply *r =
        sk_redis_sync_command(&c, err, sizeof(err), "EVAL %s 1 %s", "return redis.call('GET', KEYS[1])", "sk:{a7}:stock");
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "7");
    freeReplyObject(r);
    r = sk_redis_sync_command(&c, err, sizeof(err), "PING");
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    /* no seed at all */
    fill_conf(&c, "127.0.0.1:1,127.0.0.1:2");
    ASSERT(sk_redis_sync_command(&c, err, sizeof(err), "PING") == NULL);
    ASSERT(strstr(err, "connect") != NULL);
}

/* A slot in migration: a key already moved is reached through ASK (ASKING first), and after SETSLOT NODE through MOVED. */
static void
test_sync_follows_ask_and_moved(void)
{
    char addr[256], err[256];
    const char *moved = "sk:{m1}:moved", *stays = "sk:{m1}:stays";
    unsigned slot = sk_cluster_keyslot(moved, strlen(moved));
    seeds(addr, sizeof(addr), 0);
    sk_config_t c;
    fill_conf(&c, addr);
    redisReply *r = sk_redis_sync_command(&c, err, sizeof(err), "SET %s a", moved);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = sk_redis_sync_command(&c, err, sizeof(err), "SET %s b", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    int src = owner_of(moved), dst = (src + 1) % NODES;
    char *src_id = node_id(src), *dst_id = node_id(dst);
    r = direct(ports[dst], "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = direct(ports[src], "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = direct(ports[src], "MIGRATE 127.0.0.1 %d %s 0 5000 KEYS %s", ports[dst], "", moved);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    /* the source now answers ASK for `moved` */
    r = direct(ports[src], "GET %s", moved);
    ASSERT(r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "ASK ", 4) == 0);
    freeReplyObject(r);
    r = sk_redis_sync_command(&c, err, sizeof(err), "GET %s", moved);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "a");
    freeReplyObject(r);
    r = sk_redis_sync_command(&c, err, sizeof(err), "GET %s", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "b");
    freeReplyObject(r);
    r = direct(ports[src], "MIGRATE 127.0.0.1 %d %s 0 5000 KEYS %s", ports[dst], "", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    for (int i = 0; i < NODES; ++i) {
        r = direct(ports[i], "CLUSTER SETSLOT %u NODE %s", slot, dst_id);
        ASSERT(r != NULL && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    r = direct(ports[src], "GET %s", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "MOVED ", 6) == 0);
    freeReplyObject(r);
    /* seeds starting at the old owner: MOVED is followed */
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ports[src]);
    fill_conf(&c, addr);
    r = sk_redis_sync_command(&c, err, sizeof(err), "GET %s", stays);
    ASSERT(r != NULL && r->type == REDIS_REPLY_STRING);
    ASSERT_STREQ(r->str, "b");
    freeReplyObject(r);
    ASSERT_EQ(owner_of(stays), dst);
}

int
main(void)
{
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    ASSERT(mkdtemp(tmpdir) != NULL);
    atexit(at_exit);
    signal(SIGABRT, on_fatal);
    signal(SIGALRM, on_fatal);
    signal(SIGSEGV, on_fatal);
    alarm(110);
    start_cluster();
    RUN(test_sync_routes_by_slot);
    RUN(test_sync_follows_ask_and_moved);
    DONE();
}
