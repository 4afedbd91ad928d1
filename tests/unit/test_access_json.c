/*
 * JSON escaping of names and tokens: valid UTF-8 passes, quotes, control bytes and broken UTF-8 are escaped.
 */
#include "sk_test.h"
#include "access/access.h"

static const char *
esc(const char *s, size_t len)
{
    static char out[256];
    if (sk_access_json_escape(out, sizeof(out), s, len) == (size_t)-1)
        return NULL;
    return out;
}

static void
test_escape(void)
{
    ASSERT_STREQ(esc("pear sale", 9), "pear sale");
    ASSERT_STREQ(esc("a\"b\\c", 5), "a\\\"b\\\\c");
    ASSERT_STREQ(esc("a\nb\x01", 4), "a\\u000ab\\u0001");
    ASSERT_STREQ(esc("\xe6\xa2\xa8", 3), "\xe6\xa2\xa8"); /* 梨 */
    ASSERT_STREQ(esc("\xf0\x9f\x8d\x90", 4), "\xf0\x9f\x8d\x90");
    ASSERT_STREQ(esc("\xff", 1), "\\u00ff");
    ASSERT_STREQ(esc("\xe6\xa2", 2), "\\u00e6\\u00a2");            /* truncated */
    ASSERT_STREQ(esc("\xc0\xaf", 2), "\\u00c0\\u00af");            /* overlong */
    ASSERT_STREQ(esc("\xed\xa0\x80", 3), "\\u00ed\\u00a0\\u0080"); /* surrogate */
    ASSERT_STREQ(esc("\x7f", 1), "\\u007f");
    char big[200];
    memset(big, '"', sizeof(big));
    ASSERT(esc(big, sizeof(big)) == NULL); /* does not fit: reported, never overflows */
}

int
main(void)
{
    RUN(test_escape);
    DONE();
}
