/*
 * seckill-bench's shared types: options, products under test, per-thread counters and the run's results.
 * Included by tools/seckill-bench.c only (CMake builds one executable per .c file of tools/).
 */
#ifndef SK_BENCH_BENCH_H
#define SK_BENCH_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include "hist.h"

#define BENCH_MAX_PRODUCTS 64
#define BENCH_MAX_SHARDS 64 /* the admin's bound on an activity's shards */
#define BENCH_MAX_PIDS 8
#define BENCH_MAX_THREADS 2
#define BENCH_MAX_CONNS 20000
#define BENCH_MAX_USERS 10000000
#define BENCH_CODE_OTHER 31 /* codes[] slot of any code outside 0 and 1001..1030 */
#define BENCH_TOKEN_MAX 128

static void *
bench_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "seckill-bench: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

static void *
bench_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL) {
        fprintf(stderr, "seckill-bench: out of memory (%zu x %zu bytes)\n", n, sz);
        abort();
    }
    return p;
}

static void *
bench_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "seckill-bench: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

typedef struct st_bench_opts_t {
    char access_ip[64];
    int access_port;
    char admin_ip[64];
    int admin_port;
    const char *admin_token;
    char redis_ip[64];
    int redis_port;
    int redis_cluster; /* --redis-cluster: redis_ip:redis_port is a seed; checks go to each activity's master */
    const char *redis_password;
    const char *secret;
    int conns;
    int threads;
    double rate;     /* 0: closed loop */
    double duration; /* seconds */
    uint64_t max_requests;
    int users;
    int64_t user_base;
    int products;                         /* how many to create */
    int64_t existing[BENCH_MAX_PRODUCTS]; /* --product-ids */
    int nexisting;
    int64_t total;
    int buy_limit;
    double buy_rate;
    int speed;
    int shards; /* --shards: sent as shards= in /activity/create; 0 = not sent (the admin's default, 1) */
    int post;
    int faults;
    int no_check;
    int raw; /* no admin calls, no checks */
    int relax_limits;
    const char *baseline; /* path of h2o_hello, or NULL */
    int baseline_port;
    const char *wrk_file;
    uint64_t wrk_count;
    int timeout_ms;
    int settle_ms;
    pid_t server_pids[BENCH_MAX_PIDS];
    int nserver_pids;
    size_t max_tokens;
    int quiet;
} bench_opts_t;

typedef struct st_bench_product_t {
    int64_t product_id, activity_id;
    int64_t total, sold_before, sold_after, left_after;
    int buy_limit, speed;
    int shards; /* stock buckets (common/sk_shard.h), read back from /activity/list; 1 when not listed */
    double buy_rate;
    int created;
    uint64_t wins;   /* code 0 answers seen by the bench */
    uint64_t demand; /* sum over users of min(answers that reached the stock decision, buy_limit) */
} bench_product_t;

typedef struct st_bench_counts_t {
    uint64_t sent, answered, errors, timeouts, unsent;
    uint64_t nocode;     /* answers whose body has no JSON "code" */
    uint64_t mismatches; /* HTTP status not the one SPEC §2 gives the code */
    uint64_t codes[BENCH_CODE_OTHER + 1];
    uint64_t status[600];
} bench_counts_t;

typedef struct st_bench_token_t {
    uint32_t user; /* index into the user table */
    uint16_t prod; /* index into products */
    uint8_t len;
    char tok[BENCH_TOKEN_MAX + 1];
} bench_token_t;

/* One load run (against seckilld or the baseline). */
typedef struct st_bench_run_t {
    const char *label;
    bench_counts_t c;
    bench_hist_t hist;
    double secs;
    double cpu_s[BENCH_MAX_PIDS]; /* server CPU (user+system) seconds during the run, per pid; <0 unknown */
    int ncpu;
    uint64_t tokens_dropped; /* wins beyond --max-tokens: not checked */
} bench_run_t;

typedef struct st_bench_t {
    bench_opts_t o;
    bench_product_t prods[BENCH_MAX_PRODUCTS];
    int nprods;
    char (*user_keys)[65]; /* precomputed user_key of each user index */
    uint16_t *elig;        /* [prod * users + user]: answers that reached the stock decision (saturating) */
    uint16_t *wins;        /* [prod * users + user]: code 0 answers */
    bench_token_t *tokens; /* every won token (up to max_tokens), merged after the run */
    size_t ntokens;
    char run_id[9]; /* random hex: keeps nances unique across runs */
    /* load phase */
    pthread_barrier_t ready, go;
    uint64_t t0, t_end;
    int baseline_mode;      /* target is h2o_hello: answers carry no token, no checks */
    atomic_int interrupted; /* SIGINT/SIGTERM: end the load early, still check and restore */
    const char *target_ip;
    int target_port;
} bench_t;

/* Counts a code into its codes[] slot. */
static inline int
bench_code_slot(long code)
{
    if (code == 0)
        return 0;
    if (code >= 1001 && code <= 1030)
        return (int)(code - 1000);
    return BENCH_CODE_OTHER;
}

/* SPEC §2: the HTTP status each code must come with (0 when unknown). */
static inline int
bench_code_status(long code)
{
    static const int st[] = {200, 400, 404, 401, 403, 403, 410, 410, 504, 403, 429, 429, 409, 503, 409, 401};
    if (code == 0)
        return 200;
    if (code >= 1001 && code <= 1015)
        return st[code - 1000];
    return 0;
}

/* Answers that went through the stock decision of the logic layer: they count as demand. */
static inline int
bench_code_is_demand(long code)
{
    return code == 0 || code == 1007 || code == 1011 || code == 1012;
}

#endif
