/*
 * sk_keys: the Redis layout, and the Python tests' copy of it (tests/integration/sk_wire.py reads the format table of
 * common/sk_keys.c; this test checks that what it derives equals what the C functions write).
 */
#define _POSIX_C_SOURCE 200809L /* popen */
#include "sk_test.h"
#include "sk_keys.h"

#include <stdlib.h>

/* The keys of sk_wire.keys_sample(), in its order and with its arguments. */
static int
sample(char out[][96])
{
    int n = 0;
    sk_key_node(out[n++], 96, "n1");
    snprintf(out[n++], 96, "%s", sk_key_const(SK_KEY_LOGIC_ALIVE));
    sk_key_activity(out[n++], 96, SK_KEY_QUEUE, 7);
    sk_key_nonce(out[n++], 96, 7, 42, "abc");
    for (sk_key_id_t id = SK_KEY_TOTAL; id <= SK_KEY_SEC_PREFIX; ++id)
        sk_key_activity(out[n++], 96, id, 7);
    sk_result_key(out[n++], 96, 7, 1700000000000);
    snprintf(out[n++], 96, "%s", sk_key_blacklist("user"));
    snprintf(out[n++], 96, "%s", sk_key_blacklist("ip"));
    snprintf(out[n++], 96, "%s", sk_key_const(SK_KEY_BLACKLIST_NOTICE));
    sk_key_reply(out[n++], 96, "n1", 3);
    return n;
}

static void
test_names(void)
{
    char k[20][96];
    int n = sample(k);
    ASSERT_EQ(n, 17);
    /* the exact names are the table's; here, what callers rely on: the arguments land where they belong, and every
     * key of one activity carries its tag {a7}, so one script of that activity stays in one cluster slot */
    ASSERT(strstr(k[0], ":n1") != NULL);
    ASSERT(strstr(k[3], ":42:abc") != NULL);
    for (int i = 2; i <= 12; ++i)
        ASSERT(strstr(k[i], "{a7}:") != NULL);
    ASSERT(strstr(k[12], ":28333333") != NULL); /* the minute of the deadline */
    ASSERT(strstr(k[16], ":n1:3") != NULL);
    for (int i = 0; i < n; ++i)
        for (int j = i + 1; j < n; ++j)
            ASSERT(strcmp(k[i], k[j]) != 0);
    ASSERT(sk_key_activity(k[0], 96, SK_KEY_NODE, 7) == -1);
    ASSERT(sk_key_blacklist("host") == NULL);
    ASSERT(sk_key_const(SK_KEY_NONCE) == NULL);
    ASSERT(sk_key_format(SK_KEY_COUNT) == NULL);
    char small[8];
    ASSERT(sk_key_activity(small, sizeof(small), SK_KEY_TOTAL, 7) == -1);
    ASSERT(sk_key_node(small, sizeof(small), "a-long-node-id") == -1);
}

static void
test_python_agrees(void)
{
    const char *src = getenv("SK_SOURCE_DIR");
    if (src == NULL) {
        fprintf(stderr, "SK_SOURCE_DIR not set (run under ctest): the Python side is not checked\n");
        return;
    }
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "python3 '%s/tests/integration/sk_wire.py' --keys-sample", src);
    FILE *p = popen(cmd, "r");
    ASSERT(p != NULL);
    char k[20][96], line[256];
    int n = sample(k), i = 0;
    while (fgets(line, sizeof(line), p) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        ASSERT(i < n);
        ASSERT_STREQ(line, k[i]);
        i++;
    }
    ASSERT_EQ(pclose(p), 0);
    ASSERT_EQ(i, n);
}

int
main(void)
{
    RUN(test_names);
    RUN(test_python_agrees);
    DONE();
}
