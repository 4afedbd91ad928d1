/*
 * seckill-bench's output: the human-readable report of a run (throughput, latency percentiles, counts by code and
 * HTTP status, server CPU), the ratios to the baseline, the checks, and the one-line JSON summary.
 * Included by tools/seckill-bench.c only.
 */
#ifndef SK_BENCH_REPORT_H
#define SK_BENCH_REPORT_H

#include <cjson/cJSON.h>
#include "bench.h"
#include "checks.h"

static const double bench_pcts[] = {50, 90, 99, 99.9};
static const char *const bench_pct_names[] = {"p50", "p90", "p99", "p99.9"};
#define BENCH_NPCTS 4

static double
bench_throughput(const bench_run_t *r)
{
    return r->secs > 0 ? (double)r->c.answered / r->secs : 0;
}

/* Server CPU (user+system) µs per answered request summed over the watched pids, or -1 when unknown. */
static double
bench_cpu_us(const bench_run_t *r)
{
    double s = 0;
    int known = 0;
    for (int i = 0; i < r->ncpu; i++) {
        if (r->cpu_s[i] >= 0) {
            s += r->cpu_s[i];
            known = 1;
        }
    }
    return known && r->c.answered ? s * 1e6 / (double)r->c.answered : -1;
}

static void
bench_print_run(const bench_run_t *r, const pid_t *pids)
{
    const bench_counts_t *c = &r->c;
    printf("%s: %.2f s, %" PRIu64 " sent, %" PRIu64 " answered, %" PRIu64 " errors, %" PRIu64 " timeouts, %" PRIu64 " never sent\n",
           r->label, r->secs, c->sent, c->answered, c->errors, c->timeouts, c->unsent);
    printf("  throughput  %.1f req/s\n", bench_throughput(r));
    printf("  latency µs ");
    for (int i = 0; i < BENCH_NPCTS; i++)
        printf(" %s %.1f", bench_pct_names[i], (double)bh_percentile(&r->hist, bench_pcts[i]) / 1000.0);
    printf("  max %.1f  mean %.1f\n", (double)r->hist.max / 1000.0 * (r->hist.n > 0), bh_mean(&r->hist) / 1000.0);
    printf("  codes      ");
    for (int i = 0; i <= BENCH_CODE_OTHER; i++) {
        if (c->codes[i] == 0)
            continue;
        if (i == BENCH_CODE_OTHER)
            printf(" other=%" PRIu64, c->codes[i]);
        else
            printf(" %d=%" PRIu64, i == 0 ? 0 : 1000 + i, c->codes[i]);
    }
    if (c->nocode)
        printf(" no-code=%" PRIu64, c->nocode);
    printf("\n  http       ");
    for (int i = 0; i < 600; i++)
        if (c->status[i])
            printf(" %d=%" PRIu64, i, c->status[i]);
    printf("\n");
    double cpu = bench_cpu_us(r);
    if (cpu >= 0) {
        printf("  server CPU  %.1f µs/request (", cpu);
        for (int i = 0; i < r->ncpu; i++)
            printf("%spid %d: %.2f s", i ? ", " : "", (int)pids[i], r->cpu_s[i]);
        printf(")\n");
    }
}

static void
bench_print_ratios(const bench_run_t *sk, const bench_run_t *base)
{
    double tb = bench_throughput(base);
    printf("ratio to baseline (seckilld / h2o_hello, same connections, same run):\n");
    printf("  throughput  %.3f\n", tb > 0 ? bench_throughput(sk) / tb : 0);
    printf("  latency    ");
    for (int i = 0; i < BENCH_NPCTS; i++) {
        uint64_t b = bh_percentile(&base->hist, bench_pcts[i]);
        printf(" %s x%.2f", bench_pct_names[i], b ? (double)bh_percentile(&sk->hist, bench_pcts[i]) / (double)b : 0);
    }
    printf("\n");
    double cs = bench_cpu_us(sk), cb = bench_cpu_us(base);
    if (cs >= 0 && cb > 0)
        printf("  server CPU  x%.2f per request\n", cs / cb);
}

static void
bench_print_checks(const bench_checks_t *cs)
{
    printf("checks:\n");
    for (int i = 0; i < cs->n; i++) {
        const bench_check_t *c = &cs->items[i];
        printf("  [%s] %s: %s\n", c->ok == 1 ? " ok " : c->ok == 0 ? "FAIL" : "skip", c->name, c->detail);
    }
}

static cJSON *
bench_json_run(const bench_run_t *r)
{
    cJSON *o = cJSON_CreateObject(), *lat = cJSON_CreateObject(), *codes = cJSON_CreateObject(), *http = cJSON_CreateObject();
    const bench_counts_t *c = &r->c;
    char k[16];
    cJSON_AddNumberToObject(o, "seconds", r->secs);
    cJSON_AddNumberToObject(o, "sent", (double)c->sent);
    cJSON_AddNumberToObject(o, "answered", (double)c->answered);
    cJSON_AddNumberToObject(o, "errors", (double)c->errors);
    cJSON_AddNumberToObject(o, "timeouts", (double)c->timeouts);
    cJSON_AddNumberToObject(o, "unsent", (double)c->unsent);
    cJSON_AddNumberToObject(o, "throughput", bench_throughput(r));
    static const char *const keys[] = {"p50", "p90", "p99", "p999"};
    for (int i = 0; i < BENCH_NPCTS; i++)
        cJSON_AddNumberToObject(lat, keys[i], (double)bh_percentile(&r->hist, bench_pcts[i]) / 1000.0);
    cJSON_AddNumberToObject(lat, "max", r->hist.n ? (double)r->hist.max / 1000.0 : 0);
    cJSON_AddNumberToObject(lat, "mean", bh_mean(&r->hist) / 1000.0);
    cJSON_AddItemToObject(o, "latency_us", lat);
    for (int i = 0; i <= BENCH_CODE_OTHER; i++) {
        if (c->codes[i] == 0)
            continue;
        if (i == BENCH_CODE_OTHER)
            snprintf(k, sizeof(k), "other");
        else
            snprintf(k, sizeof(k), "%d", i == 0 ? 0 : 1000 + i);
        cJSON_AddNumberToObject(codes, k, (double)c->codes[i]);
    }
    if (c->nocode)
        cJSON_AddNumberToObject(codes, "none", (double)c->nocode);
    cJSON_AddItemToObject(o, "codes", codes);
    for (int i = 0; i < 600; i++) {
        if (c->status[i]) {
            snprintf(k, sizeof(k), "%d", i);
            cJSON_AddNumberToObject(http, k, (double)c->status[i]);
        }
    }
    cJSON_AddItemToObject(o, "http", http);
    double cpu = bench_cpu_us(r);
    if (cpu >= 0)
        cJSON_AddNumberToObject(o, "server_cpu_us_per_req", cpu);
    else
        cJSON_AddNullToObject(o, "server_cpu_us_per_req");
    cJSON *per = cJSON_AddArrayToObject(o, "server_cpu_s"); /* per watched pid, in --server-pid order */
    for (int i = 0; i < r->ncpu; i++)
        cJSON_AddItemToArray(per, r->cpu_s[i] >= 0 ? cJSON_CreateNumber(r->cpu_s[i]) : cJSON_CreateNull());
    return o;
}

/* The machine-readable summary: the seckilld run's figures at top level, plus baseline, activities and checks. */
static void
bench_print_json(const bench_t *b, const bench_run_t *sk, const bench_run_t *base, const bench_checks_t *cs, int checked)
{
    cJSON *o = bench_json_run(sk);
    cJSON_AddStringToObject(o, "tool", "seckill-bench");
    cJSON_AddStringToObject(o, "mode", b->o.rate > 0 ? "open" : "closed");
    cJSON_AddNumberToObject(o, "connections", b->o.conns);
    cJSON_AddNumberToObject(o, "threads", b->o.threads);
    cJSON_AddNumberToObject(o, "rate", b->o.rate);
    cJSON_AddNumberToObject(o, "duration", b->o.duration);
    cJSON_AddNumberToObject(o, "users", b->o.users);
    cJSON_AddNumberToObject(o, "wins", (double)sk->c.codes[0]);
    cJSON *acts = cJSON_AddArrayToObject(o, "activities");
    for (int i = 0; i < b->nprods; i++) {
        const bench_product_t *p = &b->prods[i];
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "product_id", (double)p->product_id);
        cJSON_AddNumberToObject(a, "activity_id", (double)p->activity_id);
        cJSON_AddBoolToObject(a, "created", p->created);
        cJSON_AddNumberToObject(a, "total", (double)p->total);
        cJSON_AddNumberToObject(a, "shards", p->shards);
        cJSON_AddNumberToObject(a, "sold_before", (double)p->sold_before);
        cJSON_AddNumberToObject(a, "sold", (double)p->sold_after);
        cJSON_AddNumberToObject(a, "wins", (double)p->wins);
        cJSON_AddNumberToObject(a, "demand", (double)p->demand);
        cJSON_AddItemToArray(acts, a);
    }
    if (base != NULL) {
        cJSON *bo = bench_json_run(base), *ratio = cJSON_CreateObject();
        double tb = bench_throughput(base), cs_ = bench_cpu_us(sk), cb = bench_cpu_us(base);
        cJSON_AddNumberToObject(ratio, "throughput", tb > 0 ? bench_throughput(sk) / tb : 0);
        static const char *const keys[] = {"p50", "p90", "p99", "p999"};
        for (int i = 0; i < BENCH_NPCTS; i++) {
            uint64_t v = bh_percentile(&base->hist, bench_pcts[i]);
            cJSON_AddNumberToObject(ratio, keys[i], v ? (double)bh_percentile(&sk->hist, bench_pcts[i]) / (double)v : 0);
        }
        if (cs_ >= 0 && cb > 0)
            cJSON_AddNumberToObject(ratio, "server_cpu", cs_ / cb);
        cJSON_AddItemToObject(bo, "ratio", ratio);
        cJSON_AddItemToObject(o, "baseline", bo);
    }
    cJSON *ch = cJSON_AddObjectToObject(o, "checks");
    int passed = 0, skipped = 0;
    cJSON *fails = cJSON_CreateArray();
    for (int i = 0; i < cs->n; i++) {
        passed += cs->items[i].ok == 1;
        skipped += cs->items[i].ok == -1;
        if (cs->items[i].ok == 0) {
            char line[320];
            snprintf(line, sizeof(line), "%s: %s", cs->items[i].name, cs->items[i].detail);
            cJSON_AddItemToArray(fails, cJSON_CreateString(line));
        }
    }
    cJSON_AddBoolToObject(ch, "run", checked);
    cJSON_AddNumberToObject(ch, "passed", passed);
    cJSON_AddNumberToObject(ch, "failed", cs->failed);
    cJSON_AddNumberToObject(ch, "skipped", skipped);
    cJSON_AddItemToObject(ch, "failures", fails);
    cJSON_AddBoolToObject(o, "pass", cs->failed == 0);
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

#endif
