/*
 * An HdrHistogram-like latency histogram: log buckets with 64 linear sub-buckets each, so every recorded value is
 * kept within 1/64 (1.6%) of its true value from 1 ns to about 9 minutes, in a fixed 17 KB table that threads merge
 * by adding. Pure code, included by tools/seckill-bench.c only.
 */
#ifndef SK_BENCH_HIST_H
#define SK_BENCH_HIST_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BH_SUB_BITS 6
#define BH_SUB (1u << BH_SUB_BITS)
#define BH_MAX_SHIFT 33
#define BH_BUCKETS (BH_SUB * (BH_MAX_SHIFT + 2))

typedef struct st_bench_hist_t {
    uint64_t counts[BH_BUCKETS];
    uint64_t n;
    uint64_t min, max;
    double sum;
} bench_hist_t;

static inline void
bh_init(bench_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

/* Values below 64 have a bucket each; above, the top 7 significant bits choose the bucket, so bucket i covers
 * [bh_low(i), bh_high(i)]. */
static inline size_t
bh_index(uint64_t v)
{
    if (v < BH_SUB)
        return (size_t)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - BH_SUB_BITS;
    if (shift > BH_MAX_SHIFT)
        return BH_BUCKETS - 1;
    return (size_t)BH_SUB * (size_t)(shift + 1) + (size_t)((v >> shift) - BH_SUB);
}

static inline uint64_t
bh_low(size_t i)
{
    if (i < BH_SUB)
        return i;
    unsigned shift = (unsigned)(i / BH_SUB - 1);
    return (uint64_t)(i % BH_SUB + BH_SUB) << shift;
}

static inline uint64_t
bh_high(size_t i)
{
    if (i < BH_SUB)
        return i;
    unsigned shift = (unsigned)(i / BH_SUB - 1);
    return (((uint64_t)(i % BH_SUB + BH_SUB) + 1) << shift) - 1;
}

static inline void
bh_record(bench_hist_t *h, uint64_t v)
{
    h->counts[bh_index(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

static inline void
bh_merge(bench_hist_t *into, const bench_hist_t *from)
{
    for (size_t i = 0; i < BH_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->n += from->n;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

/* The value at percentile p (0..100): like HdrHistogram, the highest value equivalent to the bucket that holds the
 * ceil(p% * n)-th smallest sample, clamped to the exact max. 0 for an empty histogram. */
static inline uint64_t
bh_percentile(const bench_hist_t *h, double p)
{
    if (h->n == 0)
        return 0;
    double want = p / 100.0 * (double)h->n;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < BH_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bh_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

static inline double
bh_mean(const bench_hist_t *h)
{
    return h->n ? h->sum / (double)h->n : 0;
}

#endif
