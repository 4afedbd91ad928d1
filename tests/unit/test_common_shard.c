/*
 * sk_shard: bucket tags, user -> bucket, the initial split, the speed share and the move arithmetic; and the Python
 * copy of tags and bucket keys (tests/integration/sk_wire.py --bucket-keys-sample).
 */
#define _POSIX_C_SOURCE 200809L /* popen */
#include <string.h>
#include "sk_test.h"
#include "sk_shard.h"
#include "sk_keys.h"
#include "sk_cluster.h"

#include <stdlib.h>

static unsigned
slot_of(const char *tag)
{
    return sk_cluster_crc16(tag, strlen(tag)) % SK_SHARD_SLOTS;
}

static void
test_tags(void)
{
    char t[SK_SHARD_TAG_MAX], t0[SK_SHARD_TAG_MAX];
    /* one bucket, and bucket 0 of any K, is the unsharded tag: shards = 1 keeps today's layout */
    ASSERT_EQ(sk_shard_tag(t, sizeof(t), 7, 0, 1), 2);
    ASSERT_STREQ(t, "a7");
    ASSERT(sk_shard_tag(t, sizeof(t), 7, 0, 3) > 0);
    ASSERT_STREQ(t, "a7");
    ASSERT_EQ(sk_shard_tag(t, sizeof(t), 7, 3, 3), -1);
    ASSERT_EQ(sk_shard_tag(t, sizeof(t), 7, 1, 1), -1);
    ASSERT_EQ(sk_shard_tag(t, 3, 7, 1, 3), -1);
    for (int64_t aid = 1; aid < 300; ++aid) {
        for (unsigned k = 2; k <= 8; k += 3) {
            sk_shard_tag(t0, sizeof(t0), aid, 0, k);
            unsigned s0 = (unsigned)((uint64_t)slot_of(t0) * k / SK_SHARD_SLOTS);
            unsigned seen = 0;
            for (unsigned b = 0; b < k; ++b) {
                ASSERT(sk_shard_tag(t, sizeof(t), aid, b, k) > 0);
                unsigned s = (unsigned)((uint64_t)slot_of(t) * k / SK_SHARD_SLOTS);
                ASSERT_EQ(s, (s0 + b) % k); /* every bucket in its own stripe, so on its own master */
                seen |= 1u << s;
                char again[SK_SHARD_TAG_MAX];
                sk_shard_tag(again, sizeof(again), aid, b, k);
                ASSERT_STREQ(t, again);
            }
            ASSERT_EQ(seen, (1u << k) - 1);
        }
    }
    /* 64 buckets: still found well within the bound */
    ASSERT(sk_shard_tag(t, sizeof(t), 123456789, 63, 64) > 0);
}

static void
test_users(void)
{
    unsigned count[3] = {0, 0, 0};
    for (int64_t u = 1; u <= 30000; ++u) {
        unsigned b = sk_shard_of_user(u, 3);
        ASSERT(b < 3);
        ASSERT_EQ(b, sk_shard_of_user(u, 3));
        count[b]++;
    }
    for (int b = 0; b < 3; ++b)
        ASSERT(count[b] > 9000 && count[b] < 11000);
    ASSERT_EQ(sk_shard_of_user(42, 1), 0u);
    ASSERT_EQ(sk_shard_of_user(42, 0), 0u);
}

static void
test_split(void)
{
    for (int64_t total = 0; total < 200; ++total)
        for (unsigned k = 1; k <= 7; ++k) {
            int64_t sum = 0, lo = INT64_MAX, hi = 0;
            for (unsigned b = 0; b < k; ++b) {
                int64_t s = sk_shard_split(total, b, k);
                sum += s;
                lo = s < lo ? s : lo;
                hi = s > hi ? s : hi;
            }
            ASSERT_EQ(sum, total);
            ASSERT(hi - lo <= 1);
        }
    ASSERT_EQ(sk_shard_split(3000, 0, 3), 1000);
    ASSERT_EQ(sk_shard_split(10, 0, 3), 4);
    ASSERT_EQ(sk_shard_split(10, 2, 3), 3);
}

static void
test_speed(void)
{
    /* the shares of one second add up to speed exactly, every second, and each bucket gets its turn at the extras */
    for (int64_t speed = 1; speed < 40; ++speed)
        for (unsigned k = 1; k <= 7; ++k) {
            int64_t over[8] = {0};
            for (int64_t sec = 1700000000; sec < 1700000000 + 2 * (int64_t)k; ++sec) {
                int64_t sum = 0;
                for (unsigned b = 0; b < k; ++b) {
                    int64_t s = sk_shard_speed(speed, b, k, sec);
                    ASSERT(s >= speed / k && s <= speed / k + 1);
                    over[b] += s;
                    sum += s;
                }
                ASSERT_EQ(sum, speed);
            }
            for (unsigned b = 1; b < k; ++b)
                ASSERT_EQ(over[b], over[0]);
        }
    /* speed 2 over 3 buckets: one bucket gets none in a second, and that means none (not unlimited) */
    int zero = 0;
    for (unsigned b = 0; b < 3; ++b)
        zero += sk_shard_speed(2, b, 3, 1700000000) == 0;
    ASSERT_EQ(zero, 1);
    ASSERT_EQ(sk_shard_speed(0, 1, 3, 5), 0);
    ASSERT_EQ(sk_shard_speed(7, 0, 1, 5), 7);
}

static void
test_moves(void)
{
    ASSERT_EQ(sk_shard_move_amount(0, 3), 0);
    ASSERT_EQ(sk_shard_move_amount(-5, 3), 0);
    ASSERT_EQ(sk_shard_move_amount(1, 3), 1);
    ASSERT_EQ(sk_shard_move_amount(5, 3), 1);
    ASSERT_EQ(sk_shard_move_amount(7, 3), 2);
    ASSERT_EQ(sk_shard_move_amount(1000, 3), 167);
    /* repeated moves from one donor shrink to single units and drain it completely: nothing is stranded */
    int64_t left = 1000, moved = 0, steps = 0;
    while (left > 0) {
        int64_t m = sk_shard_move_amount(left, 3);
        ASSERT(m >= 1 && m <= left);
        left -= m;
        moved += m;
        steps++;
    }
    ASSERT_EQ(moved, 1000);
    ASSERT(steps < 60);
    ASSERT_EQ(sk_shard_low_water(3000, 3), 250);
    ASSERT_EQ(sk_shard_low_water(2, 3), 1);
}

static void
test_keys(void)
{
    char k[96];
    /* bucket 0 is the activity's own key, byte for byte */
    ASSERT(sk_key_bucket(k, sizeof(k), SK_KEY_TOTAL, "a7") > 0);
    char k0[96];
    sk_key_activity(k0, sizeof(k0), SK_KEY_TOTAL, 7);
    ASSERT_STREQ(k, k0);
    ASSERT(sk_key_bucket(k, sizeof(k), SK_KEY_QUEUE, "a7.1.4") > 0);
    ASSERT_STREQ(k, "sk:{a7.1.4}:q");
    ASSERT(sk_key_bucket_nonce(k, sizeof(k), "a7.2.0", 42, "abc") > 0);
    ASSERT(strstr(k, "{a7.2.0}:") != NULL && strstr(k, ":42:abc") != NULL);
    ASSERT_EQ(sk_key_bucket(k, sizeof(k), SK_KEY_NODE, "a7"), -1);
    ASSERT_EQ(sk_key_bucket(k, 8, SK_KEY_TOTAL, "a7.1.4"), -1);
}

static void
test_python_agrees(void)
{
    const char *src = getenv("SK_SOURCE_DIR");
    if (src == NULL) {
        fprintf(stderr, "SK_SOURCE_DIR not set (run under ctest): the Python side is not checked\n");
        return;
    }
    char want[20][96];
    int n = 0;
    for (unsigned b = 0; b < 3; ++b) {
        char tag[SK_SHARD_TAG_MAX];
        sk_shard_tag(tag, sizeof(tag), 7, b, 3);
        snprintf(want[n++], 96, "%s", tag);
        sk_key_bucket(want[n++], 96, SK_KEY_QUEUE, tag);
        sk_key_bucket(want[n++], 96, SK_KEY_TOTAL, tag);
        sk_key_bucket(want[n++], 96, SK_KEY_MOVE_OUT, tag);
        sk_result_key_bucket(want[n++], 96, tag, 1700000000000);
    }
    char tag[SK_SHARD_TAG_MAX];
    sk_shard_tag(tag, sizeof(tag), 7, sk_shard_of_user(42, 3), 3);
    sk_key_bucket_nonce(want[n++], 96, tag, 42, "abc");
    snprintf(want[n++], 96, "%u", sk_shard_of_user(42, 3));
    snprintf(want[n++], 96, "%u", sk_shard_of_user(1234567, 5));
    char cmd[1024], line[256];
    snprintf(cmd, sizeof(cmd), "python3 '%s/tests/integration/sk_wire.py' --bucket-keys-sample", src);
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    int i = 0;
    while (fgets(line, sizeof(line), p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        ASSERT(i < n);
        ASSERT_STREQ(line, want[i]);
        i++;
    }
    ASSERT_EQ(pclose(p), 0);
    ASSERT_EQ(i, n);
}

static int64_t
plan_sum(const int64_t *left, const sk_shard_move_t *m, size_t n, unsigned k, int64_t *after)
{
    int64_t sum = 0;
    for (unsigned i = 0; i < k; ++i)
        after[i] = left[i];
    for (size_t i = 0; i < n; ++i) {
        after[m[i].from] -= m[i].units;
        after[m[i].to] += m[i].units;
    }
    for (unsigned i = 0; i < k; ++i)
        sum += after[i];
    return sum;
}

static void
test_plan(void)
{
    sk_shard_move_t m[SK_SHARD_MAX];
    int64_t after[SK_SHARD_MAX];
    unsigned char none[SK_SHARD_MAX] = {0}, w0[SK_SHARD_MAX] = {1};
    /* total 3000 over 3: low water 250. A hot bucket 0 below it takes from the fullest, ceil(900 / 6) = 150 */
    int64_t hot[3] = {100, 600, 900};
    size_t n = sk_shard_plan(hot, none, 3, 3000, m);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(m[0].from, 2);
    ASSERT_EQ(m[0].to, 0);
    ASSERT_EQ(m[0].units, 150);
    ASSERT_EQ(plan_sum(hot, m, n, 3, after), 1600); /* nothing created or lost */
    /* every bucket full enough: no move */
    int64_t full[3] = {300, 600, 900};
    ASSERT_EQ(sk_shard_plan(full, none, 3, 3000, m), 0);
    /* near the end quiet buckets do not pass units back and forth: of [1, 4, 5] only bucket 0 takes (5 - 1 >= 2),
     * bucket 1 does not (5 - 4 < 2)... */
    int64_t quiet[3] = {1, 4, 5};
    ASSERT_EQ(sk_shard_plan(quiet, none, 3, 3000, m), 1); /* bucket 0 (5 - 1 >= 2) */
    ASSERT_EQ(m[0].from, 2);
    ASSERT_EQ(m[0].to, 0);
    int64_t even[3] = {2, 4, 4};
    n = sk_shard_plan(even, none, 3, 3000, m);
    ASSERT_EQ(n, 1); /* 0 takes one; then 4 - 3 < 2: 1 and 2 stay */
    ASSERT_EQ(plan_sum(even, m, n, 3, after), 10);
    ASSERT_EQ(after[0], 3);
    /* ...but an empty bucket with buyers gets the last unit, none stranded */
    int64_t last[3] = {0, 1, 0};
    ASSERT_EQ(sk_shard_plan(last, none, 3, 3000, m), 0);
    n = sk_shard_plan(last, w0, 3, 3000, m);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(m[0].from, 1);
    ASSERT_EQ(m[0].to, 0);
    ASSERT_EQ(m[0].units, 1);
    /* nothing anywhere: nothing to move even when wanted */
    int64_t dry[3] = {0, 0, 0};
    ASSERT_EQ(sk_shard_plan(dry, w0, 3, 3000, m), 0);
    /* one bucket, or bad counts: no plan */
    ASSERT_EQ(sk_shard_plan(hot, none, 1, 3000, m), 0);
    ASSERT_EQ(sk_shard_plan(hot, none, SK_SHARD_MAX + 1, 3000, m), 0);
    /* many buckets, all low: every move conserves units and no donor goes negative */
    int64_t many[SK_SHARD_MAX];
    unsigned char want[SK_SHARD_MAX];
    for (unsigned i = 0; i < SK_SHARD_MAX; ++i) {
        many[i] = (int64_t)(i * 7 % 11);
        want[i] = i % 3 == 0;
    }
    int64_t before = 0;
    for (unsigned i = 0; i < SK_SHARD_MAX; ++i)
        before += many[i];
    n = sk_shard_plan(many, want, SK_SHARD_MAX, 64000, m);
    ASSERT(n > 0);
    ASSERT_EQ(plan_sum(many, m, n, SK_SHARD_MAX, after), before);
    for (unsigned i = 0; i < SK_SHARD_MAX; ++i)
        ASSERT(after[i] >= 0);
    /* a simulated sale: demand only in bucket 0, plans applied round after round, sells everything */
    int64_t sim[3] = {1000, 1000, 1000}, sold = 0;
    unsigned char wsim[3] = {0};
    for (int round = 0; round < 10000 && sold < 3000; ++round) {
        int64_t take = sim[0] < 40 ? sim[0] : 40; /* bucket 0 sells up to 40 between two reads */
        sim[0] -= take;
        sold += take;
        wsim[0] = sim[0] == 0;
        n = sk_shard_plan(sim, wsim, 3, 3000, m);
        plan_sum(sim, m, n, 3, after);
        memcpy(sim, after, sizeof(sim));
    }
    ASSERT_EQ(sold, 3000);
    ASSERT_EQ(sim[0] + sim[1] + sim[2], 0);
}

/* Received in a moment ago: no donor, also for a bucket that receives earlier in the same plan. */
static void
test_plan_received(void)
{
    sk_shard_move_t m[SK_SHARD_MAX];
    int64_t after[SK_SHARD_MAX];
    /* the last unit just moved to bucket 1, whose buyers have not come yet; bucket 0 is empty with buyers: it waits */
    int64_t last[3] = {0, 1, 0};
    unsigned char f[3] = {SK_SHARD_WANTED, SK_SHARD_RECEIVED, 0};
    ASSERT_EQ(sk_shard_plan(last, f, 3, 3000, m), 0);
    /* once the mark has gone (SK_LOGIC_RECEIVED_MS) it moves on: not stranded */
    f[1] = 0;
    ASSERT_EQ(sk_shard_plan(last, f, 3, 3000, m), 1);
    ASSERT_EQ(m[0].from, 1);
    ASSERT_EQ(m[0].to, 0);
    /* a fuller bucket that just received is passed over for the next fullest */
    int64_t hot[3] = {0, 900, 600};
    unsigned char g[3] = {SK_SHARD_WANTED, SK_SHARD_RECEIVED, 0};
    ASSERT_EQ(sk_shard_plan(hot, g, 3, 3000, m), 1);
    ASSERT_EQ(m[0].from, 2);
    ASSERT_EQ(m[0].units, 100); /* ceil(600 / 6) */
    /* two empty wanted buckets and one unit: the first takes it, the second cannot take it from the first */
    int64_t one[3] = {0, 0, 1};
    unsigned char w2[3] = {SK_SHARD_WANTED, SK_SHARD_WANTED, 0};
    size_t n = sk_shard_plan(one, w2, 3, 3000, m);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(m[0].to, 0);
    ASSERT_EQ(plan_sum(one, m, n, 3, after), 1);
    /* the ping-pong it prevents: two buckets whose buyers arrive only while their bucket is empty. Without the mark the
     * unit changes bucket every round; with it (kept for two rounds here) it stays put for as long as the mark lasts */
    int64_t pp[2] = {1, 0};
    unsigned mark[2] = {0, 0}, moves_marked = 0, moves_unmarked = 0;
    for (int marked = 0; marked < 2; ++marked) {
        pp[0] = 1;
        pp[1] = 0;
        mark[0] = mark[1] = 0;
        for (int round = 0; round < 20; ++round) {
            unsigned char pf[2];
            for (unsigned b = 0; b < 2; ++b)
                pf[b] = (unsigned char)((pp[b] == 0 ? SK_SHARD_WANTED : 0) | (marked && mark[b] > 0 ? SK_SHARD_RECEIVED : 0));
            n = sk_shard_plan(pp, pf, 2, 2, m);
            for (unsigned b = 0; b < 2; ++b)
                if (mark[b] > 0)
                    mark[b]--;
            for (size_t i = 0; i < n; ++i) {
                pp[m[i].from] -= m[i].units;
                pp[m[i].to] += m[i].units;
                mark[m[i].to] = 2;
                *(marked ? &moves_marked : &moves_unmarked) += 1;
            }
            ASSERT_EQ(pp[0] + pp[1], 1);
        }
    }
    ASSERT_EQ(moves_unmarked, 20);
    ASSERT(moves_marked <= 7);
}

int
main(void)
{
    RUN(test_plan);
    RUN(test_plan_received);
    RUN(test_tags);
    RUN(test_users);
    RUN(test_split);
    RUN(test_speed);
    RUN(test_moves);
    RUN(test_keys);
    RUN(test_python_agrees);
    DONE();
}
