/*
 * SPEC §3 parameter rules: every malformed input answers 1001 naming the parameter.
 */
#include "sk_test.h"
#include "access/params.h"

#define AUTH "auth_code=e9079b12ef44c3ac1ea05bc7e8aee413af4150c97463b032a5c9f6db5facba2f"

static int
check(const char *q, char *msg)
{
    sk_form_t f;
    sk_access_signed_t p;
    sk_form_init(&f);
    if (sk_form_parse(&f, q, strlen(q)) != 0) {
        strcpy(msg, f.error);
        return -1;
    }
    return sk_access_params_signed(&f, &p, msg, 160);
}

static void
expect_bad(const char *q, const char *name)
{
    char msg[160] = "";
    ASSERT_EQ(check(q, msg), -1);
    if (strstr(msg, name) == NULL) {
        fprintf(stderr, "query %s: message \"%s\" does not name %s\n", q, msg, name);
        abort();
    }
}

static void
test_good(void)
{
    sk_form_t f;
    sk_access_signed_t p;
    char msg[160];
    const char *q = "product_id=3&user_id=42&time=1530928052&nance=abcdefgh&" AUTH "&src=app-ios";
    sk_form_init(&f);
    ASSERT_EQ(sk_form_parse(&f, q, strlen(q)), 0);
    ASSERT_EQ(sk_access_params_signed(&f, &p, msg, sizeof(msg)), 0);
    ASSERT_EQ(p.product_id, 3);
    ASSERT_EQ(p.user_id, 42);
    ASSERT_EQ(p.time, 1530928052);
    ASSERT_EQ(p.nance_len, 8);
    ASSERT_STREQ(p.src, "app-ios");
    int64_t pid;
    ASSERT_EQ(sk_access_params_product(&f, &pid, msg, sizeof(msg)), 0);
    ASSERT_EQ(pid, 3);
}

static void
test_bad(void)
{
    expect_bad("user_id=42&time=1&nance=abcdefgh&" AUTH, "product_id");
    expect_bad("product_id=0&user_id=42&time=1&nance=abcdefgh&" AUTH, "product_id");
    expect_bad("product_id=abc&user_id=42&time=1&nance=abcdefgh&" AUTH, "product_id");
    expect_bad("product_id=9223372036854775808&user_id=42&time=1&nance=abcdefgh&" AUTH, "product_id");
    expect_bad("product_id=-3&user_id=42&time=1&nance=abcdefgh&" AUTH, "product_id");
    expect_bad("product_id=3&user_id=99999999999999999999&time=1&nance=abcdefgh&" AUTH, "user_id");
    expect_bad("product_id=3&user_id=4%002&time=1&nance=abcdefgh&" AUTH, "user_id");
    expect_bad("product_id=3&user_id=42&time=1.5&nance=abcdefgh&" AUTH, "time");
    expect_bad("product_id=3&user_id=42&nance=abcdefgh&" AUTH, "time");
    expect_bad("product_id=3&user_id=42&time=1&nance=short&" AUTH, "nance");
    expect_bad("product_id=3&user_id=42&time=1&nance=abcdefgh!&" AUTH, "nance");
    expect_bad("product_id=3&user_id=42&time=1&nance=%ff%fe%fd%fc%fb%fa%f9%f8&" AUTH, "nance");
    expect_bad("product_id=3&user_id=42&time=1&nance="
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&" AUTH,
               "nance");
    expect_bad("product_id=3&user_id=42&time=1&nance=abcdefgh", "auth_code");
    expect_bad("product_id=3&user_id=42&time=1&nance=abcdefgh&auth_code=xyz", "auth_code");
    expect_bad("product_id=3&user_id=42&time=1&nance=abcdefgh&auth_code="
               "g9079b12ef44c3ac1ea05bc7e8aee413af4150c97463b032a5c9f6db5facba2f",
               "auth_code");
    expect_bad("product_id=3&user_id=42&time=1&nance=abcdefgh&" AUTH "&src=%01", "src");
    expect_bad("product_id=3&user_id=42&time=1&nance=abcdefgh&" AUTH
               "&src=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
               "src");
    expect_bad("product_id=3&product_id=4&user_id=42&time=1&nance=abcdefgh&" AUTH, "product_id");
    expect_bad("product_id=3&user_id=42&time=1&nance=abc%zzdefgh&" AUTH, "nance");
    /* the first bad parameter in the documented order is named */
    expect_bad("product_id=x&user_id=y", "product_id");
}

int
main(void)
{
    RUN(test_good);
    RUN(test_bad);
    DONE();
}
