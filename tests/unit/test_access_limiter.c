/*
 * The limiter: exact per-second and per-minute counts, window rollover on an injected clock, the entry bound.
 */
#include "sk_test.h"
#include "access/limiter.h"

static void
key_of(int i, uint8_t k[16])
{
    sk_access_limiter_user_key(i, k);
}

static void
test_counts_and_rollover(void)
{
    sk_limiter_t *l = sk_access_limiter_new(100);
    uint8_t k[16];
    uint32_t sec, min;
    key_of(7, k);
    int64_t t0 = 1700000000;
    for (int i = 1; i <= 3; i++) {
        sk_access_limiter_hit(l, SK_LIMIT_USER, k, t0, &sec, &min);
        ASSERT_EQ(sec, i);
        ASSERT_EQ(min, i);
    }
    /* the same key as an IP is another entry */
    sk_access_limiter_hit(l, SK_LIMIT_IP, k, t0, &sec, &min);
    ASSERT_EQ(sec, 1);
    ASSERT_EQ(sk_access_limiter_size(l), 2);
    /* next second: sec restarts, min keeps the sum */
    sk_access_limiter_hit(l, SK_LIMIT_USER, k, t0 + 1, &sec, &min);
    ASSERT_EQ(sec, 1);
    ASSERT_EQ(min, 4);
    /* t0 + 59: t0's bucket is still among the last 60 */
    sk_access_limiter_hit(l, SK_LIMIT_USER, k, t0 + 59, &sec, &min);
    ASSERT_EQ(sec, 1);
    ASSERT_EQ(min, 5);
    /* t0 + 60: t0's three leave the window */
    sk_access_limiter_peek(l, SK_LIMIT_USER, k, t0 + 60, &sec, &min);
    ASSERT_EQ(sec, 0);
    ASSERT_EQ(min, 2);
    sk_access_limiter_hit(l, SK_LIMIT_USER, k, t0 + 60, &sec, &min);
    ASSERT_EQ(sec, 1);
    ASSERT_EQ(min, 3);
    /* a long pause forgets everything */
    sk_access_limiter_hit(l, SK_LIMIT_USER, k, t0 + 500, &sec, &min);
    ASSERT_EQ(sec, 1);
    ASSERT_EQ(min, 1);
    /* a clock step back counts into the newest second */
    sk_access_limiter_hit(l, SK_LIMIT_USER, k, t0 + 400, &sec, &min);
    ASSERT_EQ(sec, 2);
    ASSERT_EQ(min, 2);
    sk_access_limiter_free(l);
}

/* Many distinct seconds move an entry from its inline pairs to the ring; counts must stay exact across the move. */
static void
test_busy_key_exact(void)
{
    sk_limiter_t *l = sk_access_limiter_new(10);
    uint8_t k[16];
    uint32_t sec, min;
    key_of(1, k);
    int64_t t0 = 1000;
    uint32_t per[200];
    for (int s = 0; s < 200; s++) {
        per[s] = (uint32_t)(s % 7 + 1);
        for (uint32_t i = 0; i < per[s]; i++)
            sk_access_limiter_hit(l, SK_LIMIT_USER, k, t0 + s, &sec, &min);
        uint32_t want = 0;
        for (int b = s - 59 < 0 ? 0 : s - 59; b <= s; b++)
            want += per[b];
        ASSERT_EQ(sec, per[s]);
        ASSERT_EQ(min, want);
    }
    /* sparse hits: every 10 s, the ring keeps exactly the last 60 */
    for (int s = 300; s < 600; s += 10) {
        sk_access_limiter_hit(l, SK_LIMIT_USER, k, t0 + s, &sec, &min);
        ASSERT_EQ(sec, 1);
        ASSERT_EQ(min, s - 300 >= 50 ? 6 : (s - 300) / 10 + 1);
    }
    sk_access_limiter_free(l);
}

static void
test_bound_and_eviction(void)
{
    sk_limiter_t *l = sk_access_limiter_new(50);
    uint8_t k[16];
    uint32_t sec, min;
    for (int i = 1; i <= 200; i++) {
        key_of(i, k);
        sk_access_limiter_hit(l, SK_LIMIT_USER, k, 5000, &sec, &min);
        ASSERT(sk_access_limiter_size(l) <= 50);
    }
    ASSERT_EQ(sk_access_limiter_size(l), 50);
    ASSERT_EQ(sk_access_limiter_evictions(l), 150);
    /* the oldest went first: key 1 is gone, key 200 kept its count */
    key_of(1, k);
    sk_access_limiter_peek(l, SK_LIMIT_USER, k, 5000, &sec, &min);
    ASSERT_EQ(min, 0);
    key_of(200, k);
    sk_access_limiter_peek(l, SK_LIMIT_USER, k, 5000, &sec, &min);
    ASSERT_EQ(min, 1);
    /* a touched key is young again: touch 151, then add 49 new keys; 151 survives */
    key_of(151, k);
    sk_access_limiter_hit(l, SK_LIMIT_USER, k, 5000, &sec, &min);
    ASSERT_EQ(min, 2);
    for (int i = 1000; i < 1049; i++) {
        key_of(i, k);
        sk_access_limiter_hit(l, SK_LIMIT_USER, k, 5000, &sec, &min);
    }
    key_of(151, k);
    sk_access_limiter_peek(l, SK_LIMIT_USER, k, 5000, &sec, &min);
    ASSERT_EQ(min, 2);
    /* a minute later idle entries are reclaimed as traffic goes on, not counted as evictions */
    uint64_t ev = sk_access_limiter_evictions(l);
    for (int i = 0; i < 40; i++) {
        key_of(5000 + i, k);
        sk_access_limiter_hit(l, SK_LIMIT_USER, k, 5061, &sec, &min);
    }
    ASSERT_EQ(sk_access_limiter_evictions(l), ev);
    ASSERT(sk_access_limiter_size(l) <= 50);
    sk_access_limiter_free(l);
}

static void
test_striped_large(void)
{
    /* past 4096 entries the limiter stripes its locks; the total bound still holds */
    sk_limiter_t *l = sk_access_limiter_new(5000);
    uint8_t k[16];
    uint32_t sec, min;
    for (int i = 0; i < 20000; i++) {
        key_of(i + 1, k);
        sk_access_limiter_hit(l, SK_LIMIT_IP, k, 100, &sec, &min);
        ASSERT_EQ(sec, 1);
    }
    ASSERT(sk_access_limiter_size(l) <= 5000);
    ASSERT(sk_access_limiter_size(l) >= 4900);
    sk_access_limiter_free(l);
}

int
main(void)
{
    RUN(test_counts_and_rollover);
    RUN(test_busy_key_exact);
    RUN(test_bound_and_eviction);
    RUN(test_striped_large);
    DONE();
}
