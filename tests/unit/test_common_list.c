/*
 * sk_list: stepping through comma-separated configuration lists.
 */
#include "sk_test.h"
#include "sk_list.h"

/* The items of s joined by '|', for comparing in one go. */
static const char *
items(const char *s)
{
    static char out[256];
    const char *p = s, *item;
    size_t len, n = 0, count = 0;
    out[0] = '\0';
    while (sk_list_next(&p, &item, &len)) {
        n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%.*s", count++ > 0 ? "|" : "", (int)len, item);
        ASSERT(n < sizeof(out));
    }
    return out;
}

static void
test_items(void)
{
    ASSERT_STREQ(items("access,logic,admin"), "access|logic|admin");
    ASSERT_STREQ(items("one"), "one");
    ASSERT_STREQ(items(""), "");
    /* blanks are the caller's business; an empty middle item is reported, a trailing comma adds none */
    ASSERT_STREQ(items(" a , b "), " a | b ");
    ASSERT_STREQ(items("a,,b"), "a||b");
    ASSERT_STREQ(items("a,"), "a");
    ASSERT_STREQ(items(",a"), "|a");
    ASSERT_STREQ(items(","), "");
    ASSERT_STREQ(items(",,"), "|");
}

int
main(void)
{
    RUN(test_items);
    DONE();
}
