/* The plugin loader refuses a missing, wrong-ABI, wrong-size, wrong-signature, duplicate or failing plugin, and undoes
 * what a failing plugin registered. The small plugins live in tests/plugins. */
#include <stdlib.h>
#include "host.h"
#include "sk_test.h"

static char dir[512];

static const char *
plugin_path(const char *name)
{
    static char path[600];
    snprintf(path, sizeof(path), "%s/%s.so", dir, name);
    return path;
}

static sk_host_t *
new_host(void)
{
    sk_host_t *h = calloc(1, sizeof(*h));
    sk_conf_defaults(&h->conf);
    return h;
}

static void
expect_refusal(const char *name, const char *needle)
{
    sk_host_t *h = new_host();
    char err[1024] = "";
    ASSERT_EQ(sk_plugin_load_one(h, plugin_path(name), err, sizeof(err)), -1);
    if (strstr(err, needle) == NULL) {
        fprintf(stderr, "%s: error \"%s\" lacks \"%s\"\n", name, err, needle);
        abort();
    }
    ASSERT_EQ(h->nplugins, 0);
    ASSERT_EQ(h->nroutes, 0);
    free(h);
}

static void
test_good_and_duplicate(void)
{
    sk_host_t *h = new_host();
    char err[1024];
    ASSERT_EQ(sk_plugin_load_one(h, plugin_path("tp_good"), err, sizeof(err)), 0);
    ASSERT_EQ(h->nplugins, 1);
    ASSERT_EQ(h->nroutes, 1);
    ASSERT_STREQ(h->routes[0].path, "/tp_good");
    /* the same file again, and another file with the same plugin name */
    ASSERT_EQ(sk_plugin_load_one(h, plugin_path("tp_good"), err, sizeof(err)), -1);
    ASSERT(strstr(err, "already loaded") != NULL);
    ASSERT_EQ(sk_plugin_load_one(h, plugin_path("tp_dup"), err, sizeof(err)), -1);
    ASSERT(strstr(err, "already loaded") != NULL);
    ASSERT_EQ(h->nplugins, 1);
    ASSERT_EQ(h->nroutes, 1);
    /* a failing plugin's route is undone, the good one's kept */
    ASSERT_EQ(sk_plugin_load_one(h, plugin_path("tp_fail"), err, sizeof(err)), -1);
    ASSERT(strstr(err, "told to fail") != NULL);
    ASSERT_EQ(h->nroutes, 1);
    ASSERT_STREQ(h->routes[0].path, "/tp_good");
    sk_plugins_destroy(h);
    ASSERT_EQ(h->nplugins, 0);
    free(h);
}

static void
test_refusals(void)
{
    expect_refusal("does_not_exist", "cannot load plugin");
    expect_refusal("tp_no_entry", "not a seckill plugin");
    expect_refusal("tp_bad_abi", "ABI");
    expect_refusal("tp_bad_size", "size");
    expect_refusal("tp_bad_sig", "signature");
    expect_refusal("tp_fail", "told to fail");
}

int
main(void)
{
    const char *b = getenv("SK_BUILD_DIR");
    snprintf(dir, sizeof(dir), "%s/test-plugins", b != NULL ? b : "build");
    RUN(test_good_and_duplicate);
    RUN(test_refusals);
    DONE();
}
