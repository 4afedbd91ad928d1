/*
 * Blacklist sets and overlays.
 */
#include "sk_test.h"
#include "access/blacklist.h"

static void
key(int kind, const char *v, uint8_t k[16])
{
    ASSERT_EQ(sk_access_bl_key(kind, v, strlen(v), k), 0);
}

static void
test_set(void)
{
    sk_blbuild_t *b = sk_access_blbuild_new();
    ASSERT_EQ(sk_access_blbuild_add(b, SK_BL_USER, "42", 2), 0);
    ASSERT_EQ(sk_access_blbuild_add(b, SK_BL_USER, "42", 2), 0); /* duplicates from HSCAN collapse */
    ASSERT_EQ(sk_access_blbuild_add(b, SK_BL_USER, "x", 1), -1);
    ASSERT_EQ(sk_access_blbuild_add(b, SK_BL_IP, "1.2.3.4", 7), 0);
    ASSERT_EQ(sk_access_blbuild_add(b, SK_BL_IP, "::", 2), -1);
    ASSERT_EQ(sk_access_blbuild_add(b, SK_BL_IP, "2001:db8::7", 11), 0);
    sk_blset_t *s = sk_access_blbuild_finish(b);
    ASSERT_EQ(sk_access_blset_size(s, SK_BL_USER), 1);
    ASSERT_EQ(sk_access_blset_size(s, SK_BL_IP), 2);
    uint8_t k[16];
    key(SK_BL_USER, "42", k);
    ASSERT_EQ(sk_access_blset_has(s, SK_BL_USER, k), 1);
    ASSERT_EQ(sk_access_blset_has(s, SK_BL_IP, k), 0);
    key(SK_BL_USER, "43", k);
    ASSERT_EQ(sk_access_blset_has(s, SK_BL_USER, k), 0);
    key(SK_BL_IP, "1.2.3.4", k);
    ASSERT_EQ(sk_access_blset_has(s, SK_BL_IP, k), 1);
    key(SK_BL_IP, "::ffff:1.2.3.4", k); /* the mapped form is the same address */
    ASSERT_EQ(sk_access_blset_has(s, SK_BL_IP, k), 1);
    sk_access_blset_retain(s);
    sk_access_blset_release(s);
    sk_access_blset_release(s);
}

static void
test_big(void)
{
    sk_blbuild_t *b = sk_access_blbuild_new();
    char v[32];
    for (int i = 1; i <= 200000; i++) {
        int n = snprintf(v, sizeof(v), "%d", i * 3);
        ASSERT_EQ(sk_access_blbuild_add(b, SK_BL_USER, v, (size_t)n), 0);
    }
    sk_blset_t *s = sk_access_blbuild_finish(b);
    ASSERT_EQ(sk_access_blset_size(s, SK_BL_USER), 200000);
    uint8_t k[16];
    for (int i = 1; i <= 600000; i++) {
        int n = snprintf(v, sizeof(v), "%d", i);
        ASSERT_EQ(sk_access_bl_key(SK_BL_USER, v, (size_t)n, k), 0);
        ASSERT_EQ(sk_access_blset_has(s, SK_BL_USER, k), i % 3 == 0);
    }
    sk_access_blset_release(s);
}

static void
test_overlay(void)
{
    sk_blset_t *s;
    sk_blbuild_t *b = sk_access_blbuild_new();
    sk_access_blbuild_add(b, SK_BL_USER, "7", 1);
    s = sk_access_blbuild_finish(b);
    sk_bloverlay_t *o = sk_access_bloverlay_new(4);
    uint8_t k7[16], k8[16];
    key(SK_BL_USER, "7", k7);
    key(SK_BL_USER, "8", k8);
    ASSERT_EQ(sk_access_blacklisted(s, o, SK_BL_USER, k7), 1);
    ASSERT_EQ(sk_access_blacklisted(s, o, SK_BL_USER, k8), 0);
    ASSERT_EQ(sk_access_bloverlay_set(o, SK_BL_USER, k7, 0), 0); /* remove 7 */
    ASSERT_EQ(sk_access_bloverlay_set(o, SK_BL_USER, k8, 1), 0); /* add 8 */
    ASSERT_EQ(sk_access_blacklisted(s, o, SK_BL_USER, k7), 0);
    ASSERT_EQ(sk_access_blacklisted(s, o, SK_BL_USER, k8), 1);
    ASSERT_EQ(sk_access_blacklisted(s, o, SK_BL_IP, k8), 0);
    ASSERT_EQ(sk_access_bloverlay_set(o, SK_BL_USER, k7, 1), 0); /* and back */
    ASSERT_EQ(sk_access_blacklisted(s, o, SK_BL_USER, k7), 1);
    ASSERT_EQ(sk_access_bloverlay_size(o), 2);
    uint8_t k[16];
    key(SK_BL_USER, "100", k);
    ASSERT_EQ(sk_access_bloverlay_set(o, SK_BL_USER, k, 1), 0);
    key(SK_BL_USER, "101", k);
    ASSERT_EQ(sk_access_bloverlay_set(o, SK_BL_USER, k, 1), 0);
    key(SK_BL_USER, "102", k);
    ASSERT_EQ(sk_access_bloverlay_set(o, SK_BL_USER, k, 1), -1); /* bounded */
    sk_access_bloverlay_clear(o);
    ASSERT_EQ(sk_access_bloverlay_size(o), 0);
    ASSERT_EQ(sk_access_blacklisted(s, o, SK_BL_USER, k8), 0);
    sk_access_bloverlay_free(o);
    sk_access_blset_release(s);
}

int
main(void)
{
    RUN(test_set);
    RUN(test_big);
    RUN(test_overlay);
    DONE();
}
