/*
 * The per-node replay cache: seen once, expiry, the bound.
 */
#include "sk_test.h"
#include "access/replay.h"

static void
test_seen(void)
{
    sk_replay_t *r = sk_access_replay_new(1000);
    ASSERT_EQ(sk_access_replay_check(r, 42, "abcdefgh", 8, 200, 100), 0);
    ASSERT_EQ(sk_access_replay_check(r, 42, "abcdefgh", 8, 200, 101), 1);
    ASSERT_EQ(sk_access_replay_check(r, 42, "abcdefgh", 8, 200, 199), 1);
    /* another user or nance is another pair */
    ASSERT_EQ(sk_access_replay_check(r, 43, "abcdefgh", 8, 200, 101), 0);
    ASSERT_EQ(sk_access_replay_check(r, 42, "abcdefgi", 8, 200, 101), 0);
    /* past its expiry the pair is forgotten, then recorded afresh */
    ASSERT_EQ(sk_access_replay_check(r, 42, "abcdefgh", 8, 400, 200), 0);
    ASSERT_EQ(sk_access_replay_check(r, 42, "abcdefgh", 8, 400, 201), 1);
    sk_access_replay_free(r);
}

static void
test_bound(void)
{
    sk_replay_t *r = sk_access_replay_new(800);
    char n[32];
    for (int i = 0; i < 100000; i++) {
        int len = snprintf(n, sizeof(n), "nonce%08d", i);
        ASSERT_EQ(sk_access_replay_check(r, 1, n, (size_t)len, 1000000, 10), 0);
        ASSERT(sk_access_replay_size(r) <= 1024);
    }
    /* the newest are still remembered */
    int len = snprintf(n, sizeof(n), "nonce%08d", 99999);
    ASSERT_EQ(sk_access_replay_check(r, 1, n, (size_t)len, 1000000, 10), 1);
    /* expiry reclaims: all of them are gone after their time */
    len = snprintf(n, sizeof(n), "fresh-nonce");
    ASSERT_EQ(sk_access_replay_check(r, 2, n, (size_t)len, 3000000, 2000000), 0);
    sk_access_replay_free(r);
}

int
main(void)
{
    RUN(test_seen);
    RUN(test_bound);
    DONE();
}
