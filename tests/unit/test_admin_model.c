/*
 * The admin plugin's pure code: field rules, parameter parsing (form and JSON), the Origin and Bearer checks, the
 * blacklist cursor, the etcd values and the winners' list entries.
 */
#include "sk_test.h"
#include "admin/admin.h"

static int
parse(sk_form_t *f, const char *query, const char *ctype, const char *body, char *err, size_t errlen)
{
    return sk_admin_params_parse(f, query, query ? strlen(query) : 0, ctype, ctype ? strlen(ctype) : 0, body,
                                 body ? strlen(body) : 0, err, errlen);
}

static void
test_text(void)
{
    ASSERT_EQ(sk_admin_text_ok("pear", 4, 128), 1);
    ASSERT_EQ(sk_admin_text_ok("\xe6\xa2\xa8\xe5\xad\x90", 6, 128), 1); /* 梨子 */
    ASSERT_EQ(sk_admin_text_ok("", 0, 128), 0);
    ASSERT_EQ(sk_admin_text_ok("a\tb", 3, 128), 0);
    ASSERT_EQ(sk_admin_text_ok("\xe6\xa2", 2, 128), 0);     /* truncated sequence */
    ASSERT_EQ(sk_admin_text_ok("\xc0\xaf", 2, 128), 0);     /* overlong */
    ASSERT_EQ(sk_admin_text_ok("\xed\xa0\x80", 3, 128), 0); /* surrogate */
    char big[130];
    memset(big, 'x', sizeof(big));
    ASSERT_EQ(sk_admin_text_ok(big, 128, 128), 1);
    ASSERT_EQ(sk_admin_text_ok(big, 129, 128), 0);
}

static void
test_ip_and_names(void)
{
    char out[64];
    ASSERT_EQ(sk_admin_ip_canonical("1.2.3.4", 7, out, sizeof(out)), 0);
    ASSERT_STREQ(out, "1.2.3.4");
    ASSERT_EQ(sk_admin_ip_canonical("::0001", 6, out, sizeof(out)), 0);
    ASSERT_STREQ(out, "::1");
    ASSERT_EQ(sk_admin_ip_canonical("2001:DB8::1", 11, out, sizeof(out)), 0);
    ASSERT_STREQ(out, "2001:db8::1");
    ASSERT_EQ(sk_admin_ip_canonical("1.2.3", 5, out, sizeof(out)), -1);
    ASSERT_EQ(sk_admin_ip_canonical("1.2.3.256", 9, out, sizeof(out)), -1);
    ASSERT_EQ(sk_admin_ip_canonical("example.com", 11, out, sizeof(out)), -1);
    ASSERT_EQ(sk_admin_ip_canonical("", 0, out, sizeof(out)), -1);
    ASSERT_EQ(sk_admin_policy_name_ok("limits.lua", 10), 1);
    ASSERT_EQ(sk_admin_policy_name_ok("token.lua", 9), 1);
    ASSERT_EQ(sk_admin_policy_name_ok("evil.lua", 8), 0);
    ASSERT_EQ(sk_admin_policy_name_ok("limits.lu", 9), 0);
    ASSERT_EQ(sk_admin_token_ok("0123456789abcdef", 16), 1);
    ASSERT_EQ(sk_admin_token_ok("0123456789abcde", 15), 0);
    ASSERT_EQ(sk_admin_token_ok("0123456789 abcdef", 17), 0);
}

static void
test_origin_bearer(void)
{
    ASSERT_EQ(sk_admin_origin_ok("http://127.0.0.1:8081", 21, "127.0.0.1:8081", 14), 1);
    ASSERT_EQ(sk_admin_origin_ok("http://Admin.Example", 20, "admin.example:80", 16), 1);
    ASSERT_EQ(sk_admin_origin_ok("https://admin.example", 21, "admin.example:443", 17), 1);
    ASSERT_EQ(sk_admin_origin_ok("http://evil.example", 19, "127.0.0.1:8081", 14), 0);
    ASSERT_EQ(sk_admin_origin_ok("http://127.0.0.1:9999", 21, "127.0.0.1:8081", 14), 0);
    ASSERT_EQ(sk_admin_origin_ok("null", 4, "127.0.0.1:8081", 14), 0);
    ASSERT_EQ(sk_admin_origin_ok("http://a@127.0.0.1:8081", 23, "127.0.0.1:8081", 14), 0);
    const char *tok;
    size_t len;
    ASSERT_EQ(sk_admin_bearer("Bearer abc ", 11, &tok, &len), 0);
    ASSERT_EQ(len, 3);
    ASSERT_EQ(memcmp(tok, "abc", 3), 0);
    ASSERT_EQ(sk_admin_bearer("bearer x", 8, &tok, &len), 0);
    ASSERT_EQ(sk_admin_bearer("Basic abc", 9, &tok, &len), -1);
}

static void
test_cursor(void)
{
    uint64_t c;
    uint32_t s;
    char out[48];
    ASSERT_EQ(sk_admin_cursor_parse("0", 1, &c, &s), 0);
    ASSERT_EQ(c, 0);
    ASSERT_EQ(s, 0);
    ASSERT_EQ(sk_admin_cursor_parse("1234-5", 6, &c, &s), 0);
    ASSERT_EQ(c, 1234);
    ASSERT_EQ(s, 5);
    ASSERT_EQ(sk_admin_cursor_parse("18446744073709551615", 20, &c, &s), 0);
    ASSERT(c == UINT64_MAX);
    ASSERT_EQ(sk_admin_cursor_parse("18446744073709551616", 20, &c, &s), -1);
    ASSERT_EQ(sk_admin_cursor_parse("-5", 2, &c, &s), -1);
    ASSERT_EQ(sk_admin_cursor_parse("12-", 3, &c, &s), -1);
    ASSERT_EQ(sk_admin_cursor_parse("abc", 3, &c, &s), -1);
    ASSERT_EQ(sk_admin_cursor_parse("", 0, &c, &s), -1);
    sk_admin_cursor_format(77, 0, out, sizeof(out));
    ASSERT_STREQ(out, "77");
    sk_admin_cursor_format(77, 3, out, sizeof(out));
    ASSERT_STREQ(out, "77-3");
}

static void
test_params(void)
{
    sk_form_t f;
    char err[160];
    ASSERT_EQ(parse(&f, "a=1", "application/x-www-form-urlencoded", "product_name=%E6%A2%A8&product_total=100", err, sizeof(err)),
              0);
    ASSERT_STREQ(sk_form_get(&f, "a")->value, "1");
    ASSERT_STREQ(sk_form_get(&f, "product_name")->value, "\xe6\xa2\xa8");
    ASSERT_EQ(parse(&f, NULL, "application/json; charset=utf-8",
                    "{\"product_name\":\"pear\",\"product_total\":100,\"buy_rate\":0.2,\"status\":true,\"x\":null}", err,
                    sizeof(err)),
              0);
    ASSERT_STREQ(sk_form_get(&f, "product_total")->value, "100");
    ASSERT_STREQ(sk_form_get(&f, "buy_rate")->value, "0.2");
    ASSERT_STREQ(sk_form_get(&f, "status")->value, "1");
    ASSERT(sk_form_get(&f, "x") == NULL);
    /* JSON without a Content-Type is recognised by its brace */
    ASSERT_EQ(parse(&f, NULL, NULL, " {\"user_id\":\"9223372036854775807\"}", err, sizeof(err)), 0);
    ASSERT_STREQ(sk_form_get(&f, "user_id")->value, "9223372036854775807");
    ASSERT_EQ(parse(&f, NULL, "application/json", "{\"user_id\":9223372036854775807}", err, sizeof(err)), -1);
    ASSERT(strstr(err, "user_id") != NULL);
    ASSERT_EQ(parse(&f, NULL, "application/json", "[1,2]", err, sizeof(err)), -1);
    ASSERT_EQ(parse(&f, NULL, "application/json", "{\"a\":{\"b\":1}}", err, sizeof(err)), -1);
    ASSERT(strstr(err, "a:") == err);
    ASSERT_EQ(parse(&f, "a=1", "application/json", "{\"a\":2}", err, sizeof(err)), -1);
    ASSERT(strstr(err, "duplicate") != NULL);
    ASSERT_EQ(parse(&f, NULL, NULL, "a=%zz", err, sizeof(err)), -1);
}

static void
test_product(void)
{
    sk_form_t f;
    sk_product_t p;
    char err[160];
    ASSERT_EQ(parse(&f, NULL, NULL, "product_name=pear&product_total=100", err, sizeof(err)), 0);
    ASSERT_EQ(sk_admin_product_from_params(&f, &p, err, sizeof(err)), 0);
    ASSERT_STREQ(p.name, "pear");
    ASSERT_EQ(p.total, 100);
    ASSERT_EQ(p.status, 1);
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"product_total=100", "product_name: missing"},
        {"product_name=&product_total=1", "product_name:"},
        {"product_name=a", "product_total: missing"},
        {"product_name=a&product_total=0", "product_total:"},
        {"product_name=a&product_total=1000000001", "product_total:"},
        {"product_name=a&product_total=1x", "product_total:"},
        {"product_name=a&product_total=1&status=2", "status:"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        ASSERT_EQ(parse(&f, NULL, NULL, bad[i].body, err, sizeof(err)), 0);
        ASSERT_EQ(sk_admin_product_from_params(&f, &p, err, sizeof(err)), -1);
        ASSERT(strncmp(err, bad[i].field, strlen(bad[i].field)) == 0);
    }
}

static void
test_activity(void)
{
    sk_form_t f;
    sk_activity_t a;
    sk_product_t p = {.product_id = 1, .total = 100, .status = 1};
    unsigned changed;
    char err[160];
    ASSERT_EQ(parse(&f, NULL, NULL, "activity_name=sale&product_id=1&start_time=1000&end_time=5000&total=10&buy_rate=0.5&speed=3",
                    err, sizeof(err)),
              0);
    ASSERT_EQ(sk_admin_activity_from_params(&f, 0, &a, &changed, err, sizeof(err)), 0);
    ASSERT_EQ(a.status, 1);
    ASSERT_EQ(a.buy_limit, 1);
    ASSERT_EQ(a.speed, 3);
    ASSERT(a.buy_rate == 0.5);
    ASSERT_EQ(sk_admin_activity_check(&a, &p, 2000, 1, err, sizeof(err)), 0);
    ASSERT_EQ(sk_admin_activity_check(&a, &p, 6000, 1, err, sizeof(err)), -1);
    ASSERT(strncmp(err, "end_time:", 9) == 0);
    p.total = 5;
    ASSERT_EQ(sk_admin_activity_check(&a, &p, 2000, 1, err, sizeof(err)), -1);
    ASSERT(strncmp(err, "total:", 6) == 0);
    p.total = 100;
    /* update: only the given fields change */
    ASSERT_EQ(parse(&f, NULL, NULL, "activity_id=1&end_time=900", err, sizeof(err)), 0);
    ASSERT_EQ(sk_admin_activity_from_params(&f, 1, &a, &changed, err, sizeof(err)), 0);
    ASSERT_EQ(changed, SK_ADMIN_F_END);
    ASSERT_EQ(a.total, 10);
    ASSERT_EQ(sk_admin_activity_check(&a, &p, 0, 0, err, sizeof(err)), -1);
    ASSERT(strncmp(err, "start_time:", 11) == 0);
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"product_id=1&start_time=1&end_time=2&total=1", "activity_name: missing"},
        {"activity_name=a&start_time=1&end_time=2&total=1", "product_id: missing"},
        {"activity_name=a&product_id=1&end_time=2&total=1", "start_time: missing"},
        {"activity_name=a&product_id=1&start_time=1&total=1", "end_time: missing"},
        {"activity_name=a&product_id=1&start_time=1&end_time=2", "total: missing"},
        {"activity_name=a&product_id=0&start_time=1&end_time=2&total=1", "product_id:"},
        {"activity_name=a&product_id=1&start_time=-1&end_time=2&total=1", "start_time:"},
        {"activity_name=a&product_id=1&start_time=1&end_time=2&total=0", "total:"},
        {"activity_name=a&product_id=1&start_time=1&end_time=2&total=1&status=3", "status:"},
        {"activity_name=a&product_id=1&start_time=1&end_time=2&total=1&speed=-1", "speed:"},
        {"activity_name=a&product_id=1&start_time=1&end_time=2&total=1&buy_limit=0", "buy_limit:"},
        {"activity_name=a&product_id=1&start_time=1&end_time=2&total=1&buy_rate=0", "buy_rate:"},
        {"activity_name=a&product_id=1&start_time=1&end_time=2&total=1&buy_rate=1.5", "buy_rate:"},
        {"activity_name=a&product_id=1&start_time=1&end_time=2&total=1&buy_rate=nan", "buy_rate:"},
        {"activity_name=a&product_id=1&start_time=1&end_time=2&total=1&buy_rate=%200.5", "buy_rate:"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        ASSERT_EQ(parse(&f, NULL, NULL, bad[i].body, err, sizeof(err)), 0);
        ASSERT_EQ(sk_admin_activity_from_params(&f, 0, &a, &changed, err, sizeof(err)), -1);
        if (strncmp(err, bad[i].field, strlen(bad[i].field)) != 0)
            fprintf(stderr, "case %zu: %s\n", i, err);
        ASSERT(strncmp(err, bad[i].field, strlen(bad[i].field)) == 0);
    }
}

static void
test_overlap(void)
{
    sk_activity_t a = {.activity_id = 1, .product_id = 1, .start_time = 100, .end_time = 200, .status = 1};
    sk_activity_t b = a;
    b.activity_id = 2;
    b.start_time = 199;
    b.end_time = 300;
    ASSERT_EQ(sk_admin_activities_overlap(&a, &b), 1);
    b.start_time = 200; /* [100,200) and [200,300) touch but do not overlap */
    ASSERT_EQ(sk_admin_activities_overlap(&a, &b), 0);
    b.start_time = 150;
    b.status = 0;
    ASSERT_EQ(sk_admin_activities_overlap(&a, &b), 0);
    b.status = 1;
    b.product_id = 2;
    ASSERT_EQ(sk_admin_activities_overlap(&a, &b), 0);
    b.product_id = 1;
    b.activity_id = 1; /* itself (an update) */
    ASSERT_EQ(sk_admin_activities_overlap(&a, &b), 0);
}

static void
test_json(void)
{
    sk_activity_t a = {.activity_id = 7,
                       .product_id = 3,
                       .start_time = 1530928052,
                       .end_time = 1530989052,
                       .total = 20,
                       .status = 1,
                       .speed = 1,
                       .buy_limit = 1,
                       .buy_rate = 0.2};
    snprintf(a.name, sizeof(a.name), "pear sale");
    char *s = sk_admin_activity_json(&a);
    ASSERT_STREQ(s, "{\"activity_id\":7,\"activity_name\":\"pear sale\",\"product_id\":3,\"start_time\":1530928052,"
                    "\"end_time\":1530989052,\"total\":20,\"status\":1,\"speed\":1,\"buy_limit\":1,\"buy_rate\":0.2,\"shards\":1}");
    cJSON_free(s);
    sk_product_t p = {.product_id = 3, .total = 100, .status = 1};
    snprintf(p.name, sizeof(p.name), "\xe6\xa2\xa8\xe5\xad\x90");
    s = sk_admin_product_json(&p);
    ASSERT_STREQ(s, "{\"product_id\":3,\"product_name\":\"\xe6\xa2\xa8\xe5\xad\x90\",\"product_total\":100,\"status\":1}");
    cJSON_free(s);
}

static void
test_winner(void)
{
    sk_admin_winner_t w;
    const char *line = "42 abcdef0123456789 1700000000 1700001800";
    ASSERT_EQ(sk_admin_winner_parse(line, strlen(line), &w), 0);
    ASSERT_EQ(w.user_id, 42);
    ASSERT_STREQ(w.token, "abcdef0123456789");
    ASSERT_EQ(w.issued_at, 1700000000);
    ASSERT_EQ(w.expires_at, 1700001800);
    ASSERT_EQ(sk_admin_winner_parse("42 tok 1", 8, &w), -1);
    ASSERT_EQ(sk_admin_winner_parse("x tok 1 2", 9, &w), -1);
}

static void
test_token_state(void)
{
    const char *live = "42 3 7 1700000000 1700001800";
    ASSERT_STREQ(sk_admin_token_state(live, strlen(live)), "live");
    const char *used = "42 3 7 1700000000 1700001800 99";
    ASSERT_STREQ(sk_admin_token_state(used, strlen(used)), "consumed");
    const char *c = "42 3 7 1700000000 1700001800 cancelled";
    ASSERT_STREQ(sk_admin_token_state(c, strlen(c)), "cancelled");
    const char *x = "42 3 7 1700000000 1700001800 expired";
    ASSERT_STREQ(sk_admin_token_state(x, strlen(x)), "expired");
    const char *bad = "42 3 7 1700000000 1700001800 zz";
    ASSERT_STREQ(sk_admin_token_state(bad, strlen(bad)), "unknown");
    ASSERT_STREQ(sk_admin_token_state("42 3", 4), "unknown");
    ASSERT_STREQ(sk_admin_token_state(NULL, 0), "unknown");
    /* the length bounds the read: a prefix of a longer value */
    ASSERT_STREQ(sk_admin_token_state(used, strlen(live)), "live");
}

int
main(void)
{
    RUN(test_text);
    RUN(test_ip_and_names);
    RUN(test_origin_bearer);
    RUN(test_cursor);
    RUN(test_params);
    RUN(test_product);
    RUN(test_activity);
    RUN(test_overlap);
    RUN(test_json);
    RUN(test_winner);
    RUN(test_token_state);
    DONE();
}
