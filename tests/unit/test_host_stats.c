/*
 * The per-node stats: the quantile of a bucket histogram (what the dashboard shows as p50/p99) and the Redis key
 * names the publisher and the admin share.
 */
#include "sk_test.h"
#include "host.h"
#include "metrics.h"
#include "sk_keys.h"

static void
test_quantile(void)
{
    static const int64_t le[3] = {100, 200, 400};
    uint64_t empty[4] = {0, 0, 0, 0};
    ASSERT_EQ(sk_stats_quantile_us(empty, 4, le, 0.5), -1);
    uint64_t one[4] = {0, 10, 0, 0}; /* all in (100, 200] */
    ASSERT_EQ(sk_stats_quantile_us(one, 4, le, 0.5), 150);
    ASSERT_EQ(sk_stats_quantile_us(one, 4, le, 0.99), 199);
    uint64_t split[4] = {90, 0, 0, 10};                       /* 10 % past the last bound */
    ASSERT_EQ(sk_stats_quantile_us(split, 4, le, 0.5), 55);   /* 50 of 90 in [0, 100] */
    ASSERT_EQ(sk_stats_quantile_us(split, 4, le, 0.99), 400); /* +Inf: the last finite bound */
    uint64_t two[4] = {50, 50, 0, 0};
    ASSERT_EQ(sk_stats_quantile_us(two, 4, le, 0.5), 100);
    ASSERT_EQ(sk_stats_quantile_us(two, 4, le, 0.75), 150);
    /* the real bounds: one answer under 0.5 ms */
    uint64_t real[SK_METRICS_BUCKETS + 1] = {1};
    ASSERT_EQ(sk_stats_quantile_us(real, SK_METRICS_BUCKETS + 1, sk_metrics_bucket_le_us, 0.99), 495);
}

static void
test_keys(void)
{
    char buf[64];
    ASSERT_EQ(sk_key_node_stats(buf, sizeof(buf), "n1"), 11);
    ASSERT_STREQ(buf, "sk:stats:n1");
    ASSERT_EQ(sk_key_node_stats(buf, sizeof(buf), NULL), 8);
    ASSERT_STREQ(buf, "sk:stats");
    ASSERT_EQ(sk_key_node_stats(buf, 8, NULL), -1);
    ASSERT_EQ(sk_key_node_stats(buf, 11, "n1"), -1);
}

int
main(void)
{
    RUN(test_quantile);
    RUN(test_keys);
    DONE();
}
