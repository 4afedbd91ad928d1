/*
 * The console's file names: one safe segment with a known type, so that no request path reaches outside
 * admin.console_dir.
 */
#include "sk_test.h"
#include "admin/admin.h"

static int
ok(const char *s)
{
    return sk_admin_console_name_ok(s, strlen(s));
}

static void
test_names(void)
{
    ASSERT_EQ(ok("app.js"), 1);
    ASSERT_EQ(ok("app.css"), 1);
    ASSERT_EQ(ok("index.html"), 1);
    ASSERT_EQ(ok("logo-2_x.png"), 1);
    ASSERT_EQ(ok(""), 0);
    ASSERT_EQ(ok(".."), 0);
    ASSERT_EQ(ok("../app.js"), 0);
    ASSERT_EQ(ok("a/b.js"), 0);
    ASSERT_EQ(ok(".hidden.js"), 0);
    ASSERT_EQ(ok("app.js\\"), 0);
    ASSERT_EQ(ok("app%2e.js"), 0);
    ASSERT_EQ(ok("app.sh"), 0);
    ASSERT_EQ(ok("app"), 0);
    ASSERT_EQ(ok(".js"), 0);
    ASSERT_EQ(sk_admin_console_name_ok("app.js\0x", 8), 0); /* an embedded NUL */
    char big[80];
    memset(big, 'a', sizeof(big));
    memcpy(big + 61, ".js", 4);
    ASSERT_EQ(ok(big), 1); /* 64 bytes */
    memset(big, 'a', sizeof(big));
    memcpy(big + 62, ".js", 4);
    ASSERT_EQ(ok(big), 0); /* 65 */
}

static void
test_types(void)
{
    ASSERT_STREQ(sk_admin_console_type("a.html", 6), "text/html; charset=utf-8");
    ASSERT_STREQ(sk_admin_console_type("a.js", 4), "text/javascript; charset=utf-8");
    ASSERT_STREQ(sk_admin_console_type("a.css", 5), "text/css; charset=utf-8");
    ASSERT_STREQ(sk_admin_console_type("a.png", 5), "image/png");
    ASSERT_EQ(sk_admin_console_type("a.mjs", 5) == NULL, 1);
    ASSERT_EQ(sk_admin_console_type("js", 2) == NULL, 1);
}

int
main(void)
{
    RUN(test_names);
    RUN(test_types);
    DONE();
}
