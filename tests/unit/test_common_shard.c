/*
 * sk_shard: bucket tags, user -> bucket, the initial split, the speed share and the move arithmetic; and the Python
 * copy of tags and bucket keys (tests/integration/sk_wire.py --bucket-keys-sample).
 */
#define _POSIX_C_SOURCE 200809L /* popen */
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

int
main(void)
{
    RUN(test_tags);
    RUN(test_users);
    RUN(test_split);
    RUN(test_speed);
    RUN(test_moves);
    RUN(test_keys);
    RUN(test_python_agrees);
    DONE();
}
