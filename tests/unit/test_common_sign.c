/*
 * SPEC §4 signature against vectors computed with python3's hmac module.
 */
#include "sk_test.h"
#include "sk_sign.h"

#define SECRET "seckill-dev-secret-change-me"
#define UK42 "e839bf9d204607f7d7515e3d849552d5da51929e4f39e4122893fe1585f22d6a"
#define KILL42 "e9079b12ef44c3ac1ea05bc7e8aee413af4150c97463b032a5c9f6db5facba2f"
#define RESULT42 "34c05d0d6b29acad1ac3be60a9274b1cdbfa257aa96e1742116995dc2fa239f3"

static void
test_user_key(void)
{
    sk_hmac_t *h = sk_hmac_new();
    char out[65];
    ASSERT_EQ(sk_sign_user_key(h, SECRET, 42, out), 0);
    ASSERT_STREQ(out, UK42);
    /* a key longer than the cached slots (200 bytes) still signs right, twice in a row */
    char longkey[201];
    memset(longkey, 'k', 200);
    longkey[200] = '\0';
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(sk_sign_user_key(h, longkey, INT64_MAX, out), 0);
        ASSERT_STREQ(out, "8e6fa30b0aad6e64c400299f8443a2935ea6cff1b32fb8115266398ce3f13ddc");
    }
    sk_hmac_free(h);
}

static void
test_request(void)
{
    sk_hmac_t *h = sk_hmac_new();
    char out[65];
    ASSERT_EQ(sk_sign_request(h, UK42, "kill", 42, 3, 1530928052, "abcdefgh", out), 0);
    ASSERT_STREQ(out, KILL42);
    ASSERT_EQ(sk_sign_request(h, UK42, "result", 42, 3, 1530928052, "abcdefgh", out), 0);
    ASSERT_STREQ(out, RESULT42);
    sk_hmac_free(h);
}

static void
test_verify(void)
{
    sk_hmac_t *h = sk_hmac_new();
    /* interleave keys so that both cache slots are exercised and swapped */
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(sk_sign_verify(h, SECRET, "kill", 42, 3, 1530928052, "abcdefgh", KILL42, 64), 1);
        char other[65];
        ASSERT_EQ(sk_sign_user_key(h, "another secret", 7, other), 0);
        ASSERT_EQ(sk_sign_verify(h, SECRET, "result", 42, 3, 1530928052, "abcdefgh", RESULT42, 64), 1);
    }
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (KILL42[i] >= 'a' && KILL42[i] <= 'f') ? (char)(KILL42[i] - 32) : KILL42[i];
    ASSERT_EQ(sk_sign_verify(h, SECRET, "kill", 42, 3, 1530928052, "abcdefgh", upper, 64), 1);
    /* wrong scope, user, product, time, nance, secret, length, character */
    ASSERT_EQ(sk_sign_verify(h, SECRET, "result", 42, 3, 1530928052, "abcdefgh", KILL42, 64), 0);
    ASSERT_EQ(sk_sign_verify(h, SECRET, "kill", 43, 3, 1530928052, "abcdefgh", KILL42, 64), 0);
    ASSERT_EQ(sk_sign_verify(h, SECRET, "kill", 42, 4, 1530928052, "abcdefgh", KILL42, 64), 0);
    ASSERT_EQ(sk_sign_verify(h, SECRET, "kill", 42, 3, 1530928053, "abcdefgh", KILL42, 64), 0);
    ASSERT_EQ(sk_sign_verify(h, SECRET, "kill", 42, 3, 1530928052, "abcdefgi", KILL42, 64), 0);
    ASSERT_EQ(sk_sign_verify(h, "x", "kill", 42, 3, 1530928052, "abcdefgh", KILL42, 64), 0);
    ASSERT_EQ(sk_sign_verify(h, SECRET, "kill", 42, 3, 1530928052, "abcdefgh", KILL42, 63), 0);
    char bad[65];
    memcpy(bad, KILL42, 65);
    bad[10] = 'g';
    ASSERT_EQ(sk_sign_verify(h, SECRET, "kill", 42, 3, 1530928052, "abcdefgh", bad, 64), 0);
    bad[10] = ':'; /* next to '9' in ASCII */
    ASSERT_EQ(sk_sign_verify(h, SECRET, "kill", 42, 3, 1530928052, "abcdefgh", bad, 64), 0);
    sk_hmac_free(h);
}

static void
test_helpers(void)
{
    char hex[65];
    sk_sha256_hex("abc", 3, hex);
    ASSERT_STREQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    uint8_t b[3] = {0x00, 0xab, 0xff};
    sk_hex_encode(b, 3, hex);
    ASSERT_STREQ(hex, "00abff");
    ASSERT_EQ(sk_ct_equal("abcd", "abcd", 4), 1);
    ASSERT_EQ(sk_ct_equal("abcd", "abce", 4), 0);
}

int
main(void)
{
    RUN(test_user_key);
    RUN(test_request);
    RUN(test_verify);
    RUN(test_helpers);
    DONE();
}
