/*
 * seckill-bench --self-test: the pure pieces (histogram, HTTP response parser, code table) checked without any server.
 * tests/integration/test_bench_smoke.py runs it. Included by tools/seckill-bench.c only.
 */
#ifndef SK_BENCH_SELFTEST_H
#define SK_BENCH_SELFTEST_H

#include "bench.h"
#include "hist.h"
#include "http.h"
#include "loadgen.h"

static int
bench_self_test(void)
{
    int fails = 0, n = 0;
#define ST(c)                                                                                                                      \
    do {                                                                                                                           \
        n++;                                                                                                                       \
        if (!(c)) {                                                                                                                \
            fails++;                                                                                                               \
            fprintf(stderr, "self-test: %s:%d: %s\n", __FILE__, __LINE__, #c);                                                     \
        }                                                                                                                          \
    } while (0)
    static bench_hist_t h;
    bh_init(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        bh_record(&h, v * 1000); /* 1 µs .. 100 ms, uniform */
    double p50 = (double)bh_percentile(&h, 50), p99 = (double)bh_percentile(&h, 99), p999 = (double)bh_percentile(&h, 99.9);
    ST(p50 >= 50000000 * 0.98 && p50 <= 50000000 * 1.02);
    ST(p99 >= 99000000 * 0.98 && p99 <= 99000000 * 1.02);
    ST(p999 >= 99900000 * 0.98 && p999 <= 100000000);
    ST(bh_percentile(&h, 100) == 100000000);
    for (uint64_t v = 0; v < 5000000; v = v * 3 / 2 + 1)
        ST(bh_low(bh_index(v)) <= v && v <= bh_high(bh_index(v)) && (v < 64 || bh_high(bh_index(v)) - v <= v / 64));
    ST(bh_index(UINT64_MAX) == BH_BUCKETS - 1);
    bh_init(&h);
    ST(bh_percentile(&h, 99) == 0);
    bh_record(&h, 7);
    ST(bh_percentile(&h, 0) == 7 && bh_percentile(&h, 99.9) == 7);

    char scratch[256];
    bench_resp_t r;
    const char *ok = "HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\ncontent-length: 13\r\n\r\n{\"code\":1007}";
    ST(bench_parse_response(ok, strlen(ok), scratch, sizeof(scratch), &r) == 1 && r.status == 410 && r.body_len == 13 &&
       r.consumed == strlen(ok) && !r.close);
    int k;
    ST(lg_json_code(r.body, r.body_len, &k) == 1007 && k);
    ST(bench_parse_response(ok, strlen(ok) - 1, scratch, sizeof(scratch), &r) == 0);
    ST(bench_parse_response(ok, 20, scratch, sizeof(scratch), &r) == 0);
    const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     "5\r\n{\"cod\r\n6;x=y\r\ne\":0,}\r\n0\r\n\r\n";
    ST(bench_parse_response(ch, strlen(ch), scratch, sizeof(scratch), &r) == 1 && r.status == 200 && r.body_len == 11 &&
       memcmp(r.body, "{\"code\":0,}", 11) == 0 && r.close && r.consumed == strlen(ch));
    ST(lg_json_code(r.body, r.body_len, &k) == 0 && k);
    ST(bench_parse_response(ch, strlen(ch) - 2, scratch, sizeof(scratch), &r) == 0);
    const char *bad = "SSH-2.0-OpenSSH\r\n\r\n";
    ST(bench_parse_response(bad, strlen(bad), scratch, sizeof(scratch), &r) == -1);
    const char *nolen = "HTTP/1.1 200 OK\r\n\r\nabc";
    ST(bench_parse_response(nolen, strlen(nolen), scratch, sizeof(scratch), &r) == -1);
    ST(lg_json_code("{\"message\":\"x\"}", 15, &k) == 0 && !k);
    ST(bench_code_status(1008) == 504 && bench_code_status(1011) == 429 && bench_code_status(0) == 200);
    ST(bench_code_slot(1008) == 8 && bench_code_slot(42) == BENCH_CODE_OTHER);
    printf("self-test: %d of %d checks passed\n", n - fails, n);
#undef ST
    return fails ? 1 : 0;
}

#endif
