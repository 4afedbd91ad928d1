/*
 * sk_form: query/form parsing bounds and errors, and strict integers.
 */
#include "sk_test.h"
#include "sk_form.h"

static int
parse(sk_form_t *f, const char *s)
{
    sk_form_init(f);
    return sk_form_parse(f, s, strlen(s));
}

static void
test_basic(void)
{
    sk_form_t f;
    ASSERT_EQ(parse(&f, "a=1&b=hello+world&c=%41%62%2b&&d&e="), 0);
    ASSERT_EQ(f.n, 5);
    ASSERT_STREQ(sk_form_get(&f, "a")->value, "1");
    ASSERT_STREQ(sk_form_get(&f, "b")->value, "hello world");
    ASSERT_STREQ(sk_form_get(&f, "c")->value, "Ab+");
    ASSERT_EQ(sk_form_get(&f, "d")->len, 0);
    ASSERT_EQ(sk_form_get(&f, "e")->len, 0);
    ASSERT(sk_form_get(&f, "z") == NULL);
    /* appending a second source (query then body) keeps duplicate detection across both */
    ASSERT_EQ(sk_form_parse(&f, "x=%ff", 5), 0);
    ASSERT_EQ((unsigned char)sk_form_get(&f, "x")->value[0], 0xff);
    ASSERT_EQ(sk_form_parse(&f, "a=2", 3), -1);
    ASSERT_STREQ(f.error, "a: duplicate parameter");
    ASSERT_EQ(parse(&f, ""), 0);
    ASSERT_EQ(f.n, 0);
}

static void
test_errors(void)
{
    sk_form_t f;
    ASSERT_EQ(parse(&f, "user_id=1&nance=%zz"), -1);
    ASSERT_STREQ(f.error, "nance: malformed percent-encoding");
    ASSERT_EQ(parse(&f, "nance=ab%4"), -1);
    ASSERT_STREQ(f.error, "nance: malformed percent-encoding");
    ASSERT_EQ(parse(&f, "nance=ab%"), -1);
    ASSERT_STREQ(f.error, "nance: malformed percent-encoding");
    ASSERT_EQ(parse(&f, "src=a%00b"), -1);
    ASSERT_STREQ(f.error, "src: NUL byte in value");
    ASSERT_EQ(parse(&f, "user_id=1&user_id=2"), -1);
    ASSERT_STREQ(f.error, "user_id: duplicate parameter");
    ASSERT_EQ(parse(&f, "abcdefghijabcdefghijabcdefghijab=1"), -1); /* 32-byte name */
    ASSERT_STREQ(f.error, "parameter name too long");
    ASSERT_EQ(parse(&f, "abcdefghijabcdefghijabcdefghija=1"), 0); /* 31 bytes fit */
    ASSERT_EQ(parse(&f, "%zz=1"), -1);
    ASSERT_STREQ(f.error, "malformed parameter name");
    ASSERT_EQ(parse(&f, "=1"), -1);
    ASSERT_EQ(parse(&f, "a%01=1"), -1);
    ASSERT_STREQ(f.error, "malformed parameter name");

    char big[20000];
    strcpy(big, "src=");
    memset(big + 4, 'x', 9000);
    big[9004] = '\0';
    ASSERT_EQ(parse(&f, big), -1);
    ASSERT_STREQ(f.error, "src: value too long");

    char many[1024] = "";
    for (int i = 0; i < SK_FORM_MAX_PARAMS + 1; i++)
        sprintf(many + strlen(many), "p%d=1&", i);
    ASSERT_EQ(parse(&f, many), -1);
    ASSERT_STREQ(f.error, "too many parameters");

    /* values fill the buffer exactly: the NUL of each counts */
    sk_form_init(&f);
    char v[8200];
    strcpy(v, "a=");
    memset(v + 2, 'y', 8191);
    v[8193] = '\0';
    ASSERT_EQ(sk_form_parse(&f, v, strlen(v)), 0);
    ASSERT_EQ(sk_form_get(&f, "a")->len, 8191);
    ASSERT_EQ(sk_form_parse(&f, "b=", 2), -1);
}

static void
test_int(void)
{
    int64_t v = 0;
    ASSERT_EQ(sk_parse_int64("1", 1, 1, INT64_MAX, &v), 0);
    ASSERT_EQ(v, 1);
    ASSERT_EQ(sk_parse_int64("9223372036854775807", 19, 1, INT64_MAX, &v), 0);
    ASSERT(v == INT64_MAX);
    ASSERT_EQ(sk_parse_int64("9223372036854775808", 19, 1, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64("99999999999999999999", 20, 1, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64("18446744073709551617", 20, 1, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64("0", 1, 1, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64("0", 1, 0, 1, &v), 0);
    ASSERT_EQ(sk_parse_int64("007", 3, 1, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64("-1", 2, INT64_MIN, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64("+1", 2, 1, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64(" 1", 2, 1, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64("1a", 2, 1, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64("", 0, 0, INT64_MAX, &v), -1);
    ASSERT_EQ(sk_parse_int64("11", 2, 1, 10, &v), -1);
    ASSERT_EQ(sk_parse_int64("1\0002", 3, 1, INT64_MAX, &v), -1);
}

int
main(void)
{
    RUN(test_basic);
    RUN(test_errors);
    RUN(test_int);
    DONE();
}
