/*
 * seckill-bench: the flash-sale load generator and invariant checker (issue 7, "Flash-sale proof").
 *
 * It holds the auth secret as a test client would (SPEC §4), precomputes the user keys of N users, creates its own
 * products and activities through the admin API (or uses existing ones), drives /sec/kill closed-loop or open-loop over
 * many keep-alive connections, prints throughput, latency percentiles and counts by code, then checks the sale's
 * invariants through the admin API and Redis. Exit status: 0 all checks passed, 1 a check failed, 2 usage or setup
 * error. `--help` documents every flag; the last line of the output is a JSON summary.
 *
 * The pieces live in tools/bench/ headers (only the .c files of tools/ are built as executables): hist.h (latency
 * histogram), http.h (response parser, blocking client), loadgen.h (epoll load threads), admin.h (admin API),
 * checks.h (invariants), report.h (output), selftest.h (--self-test).
 */
#include <getopt.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <openssl/rand.h>
#include "bench/bench.h"
#include "bench/hist.h"
#include "bench/http.h"
#include "bench/loadgen.h"
#include "bench/admin.h"
#include "bench/checks.h"
#include "bench/report.h"
#include "bench/selftest.h"

#define DEV_SECRET "seckill-dev-secret-change-me"

static void
usage(FILE *f)
{
    fprintf(f, "usage: seckill-bench [options]\n"
               "Load generator for /sec/kill with invariant checks. Exit: 0 pass, 1 a check failed, 2 usage/setup error.\n"
               "\n"
               "Targets (IPv4 addresses; 'localhost' means 127.0.0.1; an http:// prefix is accepted):\n"
               "  -a, --access IP:PORT       access listener (default 127.0.0.1:8082)\n"
               "  -A, --admin IP:PORT        admin listener (default 127.0.0.1:8081)\n"
               "      --admin-token TOKEN    admin bearer token (default: $SK_ADMIN_TOKEN, else none)\n"
               "      --redis IP:PORT        Redis for the checks (default 127.0.0.1:6379)\n"
               "      --redis-password PW    Redis AUTH (default: $SK_REDIS_PASSWORD, else none)\n"
               "      --redis-cluster        --redis is a seed node of a Redis Cluster: each activity's checks go to the\n"
               "                             master of its hash slot (CLUSTER SLOTS)\n"
               "      --secret S             auth.secret used to sign (default: $SK_AUTH_SECRET, else the shipped dev secret)\n"
               "\n"
               "Load:\n"
               "  -c, --connections N        keep-alive connections, one request outstanding each (default 64)\n"
               "  -t, --threads N            load threads, 1 or 2 (default 1)\n"
               "  -R, --rate R               open loop at R requests/s, latency from the scheduled send time (default 0:\n"
               "                             closed loop, each connection sends again as soon as it is answered)\n"
               "  -d, --duration S           seconds of load (default 10; fractions allowed)\n"
               "  -n, --requests N           stop after N requests (default 0: no limit)\n"
               "  -u, --users N              distinct users, ids USER_BASE..USER_BASE+N-1, cycled in order (default 10000)\n"
               "      --user-base ID         first user id (default 1000000)\n"
               "      --post                 send POST form bodies instead of GET query strings\n"
               "      --timeout-ms MS        a request unanswered after MS counts as a timeout (default 5000)\n"
               "\n"
               "Products (requests rotate over them):\n"
               "  -p, --products K           create K products, each with one activity active now (default 1)\n"
               "      --product-ids LIST     use these existing products (comma-separated) and their activities in effect;\n"
               "                             the bench must then be their only buyer for the sold == wins check\n"
               "      --total N              stock of each created activity (default 1000)\n"
               "      --buy-limit N          buy_limit of created activities (default 1)\n"
               "      --buy-rate R           buy_rate of created activities, 0 < R <= 1 (default 1)\n"
               "      --speed N              speed of created activities, 0 = unlimited (default 0)\n"
               "      --shards K             stock buckets of created activities, 1..64: sends shards=K in /activity/create\n"
               "                             (default: the field is not sent, the admin's default 1 applies); the Redis\n"
               "                             checks read every bucket of an activity, on the master of each bucket's tag\n"
               "      --relax-limits         install a limits.lua that admits everything for the run (one client IP would\n"
               "                             hit the default 50/s per-IP limit), and put the previous source back after\n"
               "      --settle-ms MS         wait after setup before the load (default 500; at least 1500 with --relax-limits)\n"
               "\n"
               "Checks (after the run; any failure exits 1):\n"
               "      --faults               a fault-injection run: do not fail on 1008 answers\n"
               "      --no-check             skip the invariant checks (the figures are still printed)\n"
               "      --max-tokens N         keep at most N won tokens for the Redis check (default 1000000)\n"
               "      --raw                  no admin or /sec/info calls and no checks: load --product-ids (default 1) as they\n"
               "                             are, against any HTTP server (e.g. h2o_hello itself)\n"
               "\n"
               "Baseline and server CPU:\n"
               "      --baseline PATH        first run the same load against PATH (bench/h2o_hello: `PATH -p PORT -t 1`),\n"
               "                             then seckilld, and print each figure as a ratio to it\n"
               "      --baseline-port P      port for the baseline (default: a free one)\n"
               "      --server-pid PID       add PID's CPU time (/proc/PID/stat) to the server CPU per request (repeatable)\n"
               "\n"
               "wrk:\n"
               "      --wrk-file FILE        only write pre-signed /sec/kill paths, one per line, for bench/wrk-paths.lua\n"
               "                             (valid for auth.window seconds), then exit\n"
               "      --wrk-count N          lines to write (default 100000)\n"
               "\n"
               "Other:\n"
               "  -q, --quiet                only the JSON summary line\n"
               "      --self-test            test the histogram and the HTTP parser, then exit\n"
               "  -h, --help                 this text\n"
               "\n"
               "Checks: every request answered; no 1008 (unless --faults); every answer a JSON envelope with the HTTP status\n"
               "SPEC §2 gives its code; per activity: sold <= total; wins seen == sold during the run; sold == total when\n"
               "buy_rate = 1, speed = 0 and demand (per user, answers that reached the stock decision, capped at buy_limit)\n"
               "covers the stock; no user over buy_limit (bench counts, /activity/winners, the Redis users hash); every won\n"
               "token is in /activity/winners and in the Redis tokens hash with its user_id; Redis sold == admin sold. With\n"
               "shards > 1 the Redis figures are sums over the activity's buckets, each user's count and tokens in its bucket.\n");
}

static bench_t bench;

/* The first Ctrl-C ends the load early; the checks still run and --relax-limits still restores the policy. A second
 * one kills the process (SA_RESETHAND). */
static void
on_interrupt(int signo)
{
    (void)signo;
    atomic_store(&bench.interrupted, 1);
}

static int
parse_addr(const char *s, char *ip, size_t iplen, int *port)
{
    if (strncmp(s, "http://", 7) == 0)
        s += 7;
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= iplen)
        return -1;
    char *e;
    long p = strtol(colon + 1, &e, 10);
    if ((*e != '\0' && *e != '/') || p < 1 || p > 65535)
        return -1;
    snprintf(ip, iplen, "%.*s", (int)(colon - s), s);
    if (strcmp(ip, "localhost") == 0)
        snprintf(ip, iplen, "127.0.0.1");
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1)
        return -1;
    *port = (int)p;
    return 0;
}

static int
parse_num(const char *s, double min, double max, double *out)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e != '\0' || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

/* user+system CPU seconds of pid, or -1. */
static double
proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    unsigned long long ut, st;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Runs one load phase against ip:port; pids are the server processes whose CPU is measured. 0, or -1 (setup). */
static int
run_load(bench_t *b, bench_run_t *run, const char *ip, int port, const pid_t *pids, int npids)
{
    int T = b->o.threads;
    lg_thread_t *ts = bench_xcalloc((size_t)T, sizeof(*ts));
    b->target_ip = ip;
    b->target_port = port;
    pthread_barrier_init(&b->ready, NULL, (unsigned)T + 1);
    pthread_barrier_init(&b->go, NULL, (unsigned)T + 1);
    for (int i = 0; i < T; i++) {
        lg_thread_t *t = &ts[i];
        t->b = b;
        t->idx = i;
        t->nconns = b->o.conns / T + (i < b->o.conns % T);
        t->conns = bench_xcalloc((size_t)t->nconns, sizeof(lg_conn_t));
        t->rate = b->o.rate / T;
        t->limit =
            b->o.max_requests ? b->o.max_requests / (uint64_t)T + ((uint64_t)i < b->o.max_requests % (uint64_t)T) : UINT64_MAX;
        t->nusers = (uint32_t)((b->o.users - i + T - 1) / T);
        t->maxtokens = b->o.max_tokens / (size_t)T;
        t->hmac = sk_hmac_new();
        t->epfd = epoll_create1(EPOLL_CLOEXEC);
        bh_init(&t->run.hist);
        if (t->hmac == NULL || t->epfd < 0) {
            fprintf(stderr, "seckill-bench: cannot set up load thread %d\n", i);
            exit(2);
        }
        pthread_create(&t->tid, NULL, lg_thread_main, t);
    }
    pthread_barrier_wait(&b->ready);
    double cpu0[BENCH_MAX_PIDS];
    for (int i = 0; i < npids; i++)
        cpu0[i] = proc_cpu_s(pids[i]);
    b->t0 = bench_now_ns() + 1000000u;
    b->t_end = b->t0 + (uint64_t)(b->o.duration * 1e9);
    pthread_barrier_wait(&b->go);
    int failed = 0;
    bh_init(&run->hist);
    for (int i = 0; i < T; i++) {
        lg_thread_t *t = &ts[i];
        pthread_join(t->tid, NULL);
        failed |= t->failed_setup;
    }
    /* The measured interval ends with the last answer, not with the drain and the closing of connections. */
    uint64_t t_done = 0;
    for (int i = 0; i < T; i++)
        t_done = ts[i].last_answer > t_done ? ts[i].last_answer : t_done;
    if (t_done <= b->t0)
        t_done = bench_now_ns();
    run->secs = (double)(t_done - b->t0) / 1e9;
    run->ncpu = npids;
    for (int i = 0; i < npids; i++) {
        double c1 = proc_cpu_s(pids[i]);
        run->cpu_s[i] = cpu0[i] >= 0 && c1 >= 0 ? c1 - cpu0[i] : -1;
    }
    for (int i = 0; i < T; i++) {
        lg_thread_t *t = &ts[i];
        bench_counts_t *a = &run->c, *s = &t->run.c;
        a->sent += s->sent, a->answered += s->answered, a->errors += s->errors, a->timeouts += s->timeouts;
        a->unsent += s->unsent, a->nocode += s->nocode, a->mismatches += s->mismatches;
        for (int k = 0; k <= BENCH_CODE_OTHER; k++)
            a->codes[k] += s->codes[k];
        for (int k = 0; k < 600; k++)
            a->status[k] += s->status[k];
        bh_merge(&run->hist, &t->run.hist);
        run->tokens_dropped += t->run.tokens_dropped;
        if (t->ntokens) {
            b->tokens = bench_xrealloc(b->tokens, (b->ntokens + t->ntokens) * sizeof(bench_token_t));
            memcpy(b->tokens + b->ntokens, t->tokens, t->ntokens * sizeof(bench_token_t));
            b->ntokens += t->ntokens;
        }
        free(t->tokens);
        free(t->conns);
        sk_hmac_free(t->hmac);
        close(t->epfd);
    }
    pthread_barrier_destroy(&b->ready);
    pthread_barrier_destroy(&b->go);
    free(ts);
    if (failed) {
        fprintf(stderr, "seckill-bench: could not open %d connections to %s:%d within 5 s\n", b->o.conns, ip, port);
        return -1;
    }
    return 0;
}

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static pid_t
baseline_start(const char *path, int port)
{
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the bench */
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        execl(path, path, "-a", "127.0.0.1", "-p", portstr, "-t", "1", (char *)NULL);
        fprintf(stderr, "seckill-bench: exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    if (pid < 0)
        return -1;
    uint64_t deadline = bench_now_ns() + 5000000000u;
    while (bench_now_ns() < deadline) {
        int fd = bench_tcp_open("127.0.0.1", port), ok = 0;
        if (fd >= 0 && bench_wait_fd(fd, POLLOUT, bench_now_ns() + 500000000u) == 0) {
            int soerr = 1;
            socklen_t sl = sizeof(soerr);
            ok = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0;
        }
        if (fd >= 0)
            close(fd);
        if (ok)
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void
baseline_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int
write_wrk_file(bench_t *b)
{
    FILE *f = fopen(b->o.wrk_file, "w");
    sk_hmac_t *h = sk_hmac_new();
    if (f == NULL || h == NULL) {
        fprintf(stderr, "seckill-bench: %s: %s\n", b->o.wrk_file, strerror(errno));
        return -1;
    }
    int64_t now = (int64_t)time(NULL);
    char params[320];
    for (uint64_t k = 0; k < b->o.wrk_count; k++) {
        uint16_t prod = (uint16_t)(k % (uint64_t)b->nprods);
        uint32_t user = (uint32_t)((k / (uint64_t)b->nprods) % (uint64_t)b->o.users);
        if (lg_params(b, h, 'w', k, user, prod, now, params, sizeof(params)) == 0 || fprintf(f, "/sec/kill?%s\n", params) < 0)
            break;
    }
    int rc = ferror(f) | fclose(f);
    sk_hmac_free(h);
    if (rc != 0) {
        fprintf(stderr, "seckill-bench: writing %s failed\n", b->o.wrk_file);
        return -1;
    }
    return 0;
}

enum {
    OPT_ADMIN_TOKEN = 256,
    OPT_REDIS,
    OPT_REDIS_CLUSTER,
    OPT_REDIS_PASSWORD,
    OPT_SECRET,
    OPT_USER_BASE,
    OPT_POST,
    OPT_TIMEOUT,
    OPT_PRODUCT_IDS,
    OPT_TOTAL,
    OPT_BUY_LIMIT,
    OPT_BUY_RATE,
    OPT_SPEED,
    OPT_SHARDS,
    OPT_RELAX,
    OPT_SETTLE,
    OPT_FAULTS,
    OPT_NO_CHECK,
    OPT_MAX_TOKENS,
    OPT_BASELINE,
    OPT_BASELINE_PORT,
    OPT_SERVER_PID,
    OPT_WRK_FILE,
    OPT_WRK_COUNT,
    OPT_SELF_TEST,
    OPT_RAW,
};

static void
parse_args(bench_opts_t *o, int argc, char **argv)
{
    static const struct option longopts[] = {{"access", 1, NULL, 'a'},
                                             {"admin", 1, NULL, 'A'},
                                             {"admin-token", 1, NULL, OPT_ADMIN_TOKEN},
                                             {"redis", 1, NULL, OPT_REDIS},
                                             {"redis-cluster", 0, NULL, OPT_REDIS_CLUSTER},
                                             {"redis-password", 1, NULL, OPT_REDIS_PASSWORD},
                                             {"secret", 1, NULL, OPT_SECRET},
                                             {"connections", 1, NULL, 'c'},
                                             {"threads", 1, NULL, 't'},
                                             {"rate", 1, NULL, 'R'},
                                             {"duration", 1, NULL, 'd'},
                                             {"requests", 1, NULL, 'n'},
                                             {"users", 1, NULL, 'u'},
                                             {"user-base", 1, NULL, OPT_USER_BASE},
                                             {"post", 0, NULL, OPT_POST},
                                             {"timeout-ms", 1, NULL, OPT_TIMEOUT},
                                             {"products", 1, NULL, 'p'},
                                             {"product-ids", 1, NULL, OPT_PRODUCT_IDS},
                                             {"total", 1, NULL, OPT_TOTAL},
                                             {"buy-limit", 1, NULL, OPT_BUY_LIMIT},
                                             {"buy-rate", 1, NULL, OPT_BUY_RATE},
                                             {"speed", 1, NULL, OPT_SPEED},
                                             {"shards", 1, NULL, OPT_SHARDS},
                                             {"relax-limits", 0, NULL, OPT_RELAX},
                                             {"settle-ms", 1, NULL, OPT_SETTLE},
                                             {"faults", 0, NULL, OPT_FAULTS},
                                             {"no-check", 0, NULL, OPT_NO_CHECK},
                                             {"max-tokens", 1, NULL, OPT_MAX_TOKENS},
                                             {"baseline", 1, NULL, OPT_BASELINE},
                                             {"baseline-port", 1, NULL, OPT_BASELINE_PORT},
                                             {"server-pid", 1, NULL, OPT_SERVER_PID},
                                             {"wrk-file", 1, NULL, OPT_WRK_FILE},
                                             {"wrk-count", 1, NULL, OPT_WRK_COUNT},
                                             {"quiet", 0, NULL, 'q'},
                                             {"self-test", 0, NULL, OPT_SELF_TEST},
                                             {"raw", 0, NULL, OPT_RAW},
                                             {"help", 0, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    double v;
#define NUM(min, max, dst)                                                                                                         \
    do {                                                                                                                           \
        if (parse_num(optarg, (min), (max), &v) != 0)                                                                              \
            goto Bad;                                                                                                              \
        dst = v;                                                                                                                   \
    } while (0)
    while ((c = getopt_long(argc, argv, "a:A:c:t:R:d:n:u:p:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'a':
            if (parse_addr(optarg, o->access_ip, sizeof(o->access_ip), &o->access_port) != 0)
                goto Bad;
            break;
        case 'A':
            if (parse_addr(optarg, o->admin_ip, sizeof(o->admin_ip), &o->admin_port) != 0)
                goto Bad;
            break;
        case OPT_REDIS:
            if (parse_addr(optarg, o->redis_ip, sizeof(o->redis_ip), &o->redis_port) != 0)
                goto Bad;
            break;
        case OPT_REDIS_CLUSTER:
            o->redis_cluster = 1;
            break;
        case OPT_ADMIN_TOKEN:
            o->admin_token = optarg;
            break;
        case OPT_REDIS_PASSWORD:
            o->redis_password = optarg;
            break;
        case OPT_SECRET:
            o->secret = optarg;
            break;
        case 'c':
            NUM(1, BENCH_MAX_CONNS, o->conns);
            break;
        case 't':
            NUM(1, BENCH_MAX_THREADS, o->threads);
            break;
        case 'R':
            NUM(0, 1e7, o->rate);
            break;
        case 'd':
            NUM(0.1, 86400, o->duration);
            break;
        case 'n':
            NUM(0, 1e12, o->max_requests);
            break;
        case 'u':
            NUM(1, BENCH_MAX_USERS, o->users);
            break;
        case OPT_USER_BASE:
            NUM(1, 4e18, o->user_base);
            break;
        case OPT_POST:
            o->post = 1;
            break;
        case OPT_TIMEOUT:
            NUM(10, 600000, o->timeout_ms);
            break;
        case 'p':
            NUM(1, BENCH_MAX_PRODUCTS, o->products);
            break;
        case OPT_PRODUCT_IDS:
            for (char *s = strtok(optarg, ","); s != NULL; s = strtok(NULL, ",")) {
                char *e;
                long long id = strtoll(s, &e, 10);
                if (*e != '\0' || id < 1 || o->nexisting == BENCH_MAX_PRODUCTS)
                    goto Bad;
                o->existing[o->nexisting++] = id;
            }
            break;
        case OPT_TOTAL:
            NUM(1, 1e9, o->total);
            break;
        case OPT_BUY_LIMIT:
            NUM(1, 65535, o->buy_limit);
            break;
        case OPT_BUY_RATE:
            NUM(1e-9, 1, o->buy_rate);
            break;
        case OPT_SPEED:
            NUM(0, 1e9, o->speed);
            break;
        case OPT_SHARDS:
            NUM(1, BENCH_MAX_SHARDS, o->shards);
            break;
        case OPT_RELAX:
            o->relax_limits = 1;
            break;
        case OPT_SETTLE:
            NUM(0, 60000, o->settle_ms);
            break;
        case OPT_FAULTS:
            o->faults = 1;
            break;
        case OPT_NO_CHECK:
            o->no_check = 1;
            break;
        case OPT_RAW:
            o->raw = o->no_check = 1;
            break;
        case OPT_MAX_TOKENS:
            NUM(0, 1e8, o->max_tokens);
            break;
        case OPT_BASELINE:
            o->baseline = optarg;
            break;
        case OPT_BASELINE_PORT:
            NUM(1, 65535, o->baseline_port);
            break;
        case OPT_SERVER_PID:
            if (o->nserver_pids == BENCH_MAX_PIDS)
                goto Bad;
            NUM(1, 4194304, o->server_pids[o->nserver_pids]);
            o->nserver_pids++;
            break;
        case OPT_WRK_FILE:
            o->wrk_file = optarg;
            break;
        case OPT_WRK_COUNT:
            NUM(1, 1e8, o->wrk_count);
            break;
        case 'q':
            o->quiet = 1;
            break;
        case OPT_SELF_TEST:
            exit(bench_self_test());
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
#undef NUM
    if (optind < argc) {
        fprintf(stderr, "seckill-bench: unexpected argument %s (see --help)\n", argv[optind]);
        exit(2);
    }
    return;
Bad:
    fprintf(stderr, "seckill-bench: bad value for %s: %s (see --help)\n", argv[optind - 1], optarg);
    exit(2);
}

/* Products under test: created, or the activities in effect of --product-ids; read back, and active on access. */
static int
setup_products(bench_t *b)
{
    char err[1024];
    b->nprods = b->o.nexisting ? b->o.nexisting : b->o.products;
    for (int i = 0; i < b->nprods; i++) {
        bench_product_t *p = &b->prods[i];
        char status[32];
        if (b->o.raw) {
            p->product_id = b->o.nexisting ? b->o.existing[i] : i + 1;
            p->buy_limit = 1;
            p->shards = 1;
            continue;
        }
        if (b->o.nexisting) {
            p->product_id = b->o.existing[i];
            if (bench_sec_info(b, p->product_id, &p->activity_id, status, sizeof(status), err, sizeof(err)) != 0)
                goto Error;
        } else if (bench_create_product(b, i, p, err, sizeof(err)) != 0) {
            goto Error;
        }
        if (bench_read_activity(b, p, 1, err, sizeof(err)) != 0 || bench_wait_active(b, p, p->created, err, sizeof(err)) != 0)
            goto Error;
        if (!b->o.quiet)
            printf("%s product %" PRId64 ", activity %" PRId64 ": total %" PRId64 ", sold %" PRId64 ", buy_limit %d, buy_rate %g,"
                   " speed %d, shards %d\n",
                   p->created ? "created" : "using", p->product_id, p->activity_id, p->total, p->sold_before, p->buy_limit,
                   p->buy_rate, p->speed, p->shards);
    }
    return 0;
Error:
    fprintf(stderr, "seckill-bench: setup: %s\n", err);
    return -1;
}

int
main(int argc, char **argv)
{
    bench_t *b = &bench;
    bench_opts_t *o = &b->o;
    snprintf(o->access_ip, sizeof(o->access_ip), "127.0.0.1");
    snprintf(o->admin_ip, sizeof(o->admin_ip), "127.0.0.1");
    snprintf(o->redis_ip, sizeof(o->redis_ip), "127.0.0.1");
    o->access_port = 8082, o->admin_port = 8081, o->redis_port = 6379;
    o->admin_token = getenv("SK_ADMIN_TOKEN");
    o->redis_password = getenv("SK_REDIS_PASSWORD");
    o->secret = getenv("SK_AUTH_SECRET") ? getenv("SK_AUTH_SECRET") : DEV_SECRET;
    o->conns = 64, o->threads = 1, o->duration = 10, o->users = 10000, o->user_base = 1000000, o->products = 1;
    o->total = 1000, o->buy_limit = 1, o->buy_rate = 1, o->timeout_ms = 5000, o->settle_ms = 500;
    o->wrk_count = 100000, o->max_tokens = 1000000;
    parse_args(o, argc, argv);
    if (o->raw)
        o->relax_limits = 0;
    if (o->users < o->threads)
        o->threads = o->users; /* each thread owns a share of the users */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_interrupt, .sa_flags = SA_RESETHAND};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct rlimit rl; /* one fd per connection */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max && rl.rlim_cur < (rlim_t)o->conns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    uint8_t rnd[4];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        fprintf(stderr, "seckill-bench: no randomness\n");
        return 2;
    }
    sk_hex_encode(rnd, sizeof(rnd), b->run_id);

    sk_hmac_t *h = sk_hmac_new();
    b->user_keys = bench_xmalloc((size_t)o->users * sizeof(*b->user_keys));
    for (int u = 0; u < o->users; u++) {
        if (h == NULL || sk_sign_user_key(h, o->secret, o->user_base + u, b->user_keys[u]) != 0) {
            fprintf(stderr, "seckill-bench: HMAC failed\n");
            return 2;
        }
    }
    sk_hmac_free(h);

    if (setup_products(b) != 0)
        return 2;
    if (o->wrk_file != NULL) {
        if (write_wrk_file(b) != 0)
            return 2;
        printf("{\"tool\":\"seckill-bench\",\"wrk_file\":\"%s\",\"lines\":%" PRIu64 ",\"product_ids\":[", o->wrk_file,
               o->wrk_count);
        for (int i = 0; i < b->nprods; i++)
            printf("%s%" PRId64, i ? "," : "", b->prods[i].product_id);
        printf("]}\n");
        return 0;
    }

    b->elig = bench_xcalloc((size_t)b->nprods * (size_t)o->users, sizeof(uint16_t));
    b->wins = bench_xcalloc((size_t)b->nprods * (size_t)o->users, sizeof(uint16_t));
    char err[512];
    char *old_limits = NULL;
    int settle = o->settle_ms, limits_from_file = 0;
    if (o->relax_limits) {
        old_limits = bench_get_limits(b, &limits_from_file);
        if (bench_put_limits(b, BENCH_RELAXED_LIMITS, err, sizeof(err)) != 0) {
            fprintf(stderr, "seckill-bench: --relax-limits: %s\n", err);
            free(old_limits);
            return 2;
        }
        if (settle < 1500)
            settle = 1500; /* etcd carries the policy to every node within 1 s */
    }
    usleep((useconds_t)settle * 1000u);

    static bench_run_t base, sk;
    int have_base = 0, rc = 0;
    if (o->baseline != NULL) {
        int port = o->baseline_port ? o->baseline_port : free_port();
        pid_t pid = port > 0 ? baseline_start(o->baseline, port) : -1;
        if (pid < 0) {
            fprintf(stderr, "seckill-bench: baseline %s did not start on port %d\n", o->baseline, port);
            rc = 2;
            goto Exit;
        }
        b->baseline_mode = 1;
        base.label = "baseline h2o_hello";
        rc = run_load(b, &base, "127.0.0.1", port, &pid, 1) == 0 ? 0 : 2;
        b->baseline_mode = 0;
        baseline_stop(pid);
        if (rc != 0)
            goto Exit;
        have_base = 1;
        if (!o->quiet)
            bench_print_run(&base, &pid);
    }
    sk.label = o->raw ? "target" : "seckilld";
    if (run_load(b, &sk, o->access_ip, o->access_port, o->server_pids, o->nserver_pids) != 0) {
        rc = 2;
        goto Exit;
    }
    for (int i = 0; i < b->nprods; i++) {
        bench_product_t *p = &b->prods[i];
        for (int u = 0; u < o->users; u++) {
            size_t s = (size_t)i * (size_t)o->users + (size_t)u;
            p->wins += b->wins[s];
            p->demand += b->elig[s] < p->buy_limit ? b->elig[s] : (uint64_t)p->buy_limit;
        }
    }
    if (!o->quiet) {
        printf("load: %s, %d connections, %d thread%s, %.1f s, %d users, %d product%s, %s\n",
               o->rate > 0 ? "open loop" : "closed loop", o->conns, o->threads, o->threads > 1 ? "s" : "", o->duration, o->users,
               b->nprods, b->nprods > 1 ? "s" : "", o->post ? "POST" : "GET");
        if (o->rate > 0)
            printf("  target rate %.1f req/s, latency from the scheduled send time\n", o->rate);
        bench_print_run(&sk, o->server_pids);
        if (have_base)
            bench_print_ratios(&sk, &base);
    }
    static bench_checks_t cs;
    if (!o->no_check)
        bench_run_checks(b, &sk, &cs);
    if (!o->quiet) {
        if (!o->no_check)
            bench_print_checks(&cs);
        printf("RESULT: %s\n", cs.failed ? "FAIL" : "PASS");
    }
    bench_print_json(b, &sk, have_base ? &base : NULL, &cs, !o->no_check);
    rc = cs.failed ? 1 : 0;
Exit:
    if (o->relax_limits) {
        if (old_limits == NULL)
            fprintf(stderr, "seckill-bench: the previous limits.lua is unknown: the permissive one stays installed\n");
        else if (bench_put_limits(b, limits_from_file ? NULL : old_limits, err, sizeof(err)) != 0)
            fprintf(stderr, "seckill-bench: could not restore limits.lua: %s\n", err);
        free(old_limits);
    }
    free(b->elig);
    free(b->wins);
    free(b->tokens);
    free(b->user_keys);
    return rc;
}
