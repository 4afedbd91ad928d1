/*
 * sk_cluster: the slot hash, the routing key of a command, and redirect parsing, checked against vectors Redis itself
 * produces (CLUSTER KEYSLOT on Redis 7.0.15, and the "-MOVED %d %s:%d" format of its cluster.c).
 */
#include "sk_test.h"
#include "sk_cluster.h"

#define KS(s) sk_cluster_keyslot((s), strlen(s))

static void
test_crc16(void)
{
    ASSERT_EQ(sk_cluster_crc16("123456789", 9), 0x31C3);
    ASSERT_EQ(sk_cluster_crc16("", 0), 0);
}

static void
test_keyslot(void)
{
    /* CLUSTER KEYSLOT answers */
    ASSERT_EQ(KS("foo"), 12182);
    ASSERT_EQ(KS("bar"), 5061);
    ASSERT_EQ(KS("hello"), 866);
    ASSERT_EQ(KS("123456789"), 12739);
    ASSERT_EQ(KS(""), 0);
    /* hash tags */
    ASSERT_EQ(KS("{user1000}.following"), KS("{user1000}.followers"));
    ASSERT_EQ(KS("{user1000}.following"), KS("user1000"));
    ASSERT_EQ(KS("foo{}{bar}"), sk_cluster_crc16("foo{}{bar}", 10) & 16383);
    ASSERT_EQ(KS("foo{{bar}}zap"), KS("{bar"));
    ASSERT_EQ(KS("foo{bar}{zap}"), KS("bar"));
    ASSERT_EQ(KS("{bar"), sk_cluster_crc16("{bar", 4) & 16383); /* no closing brace: the whole key */
    ASSERT_EQ(KS("sk:{a7}:sold"), KS("a7"));
    ASSERT_EQ(KS("sk:{a7}:stock"), KS("sk:{a7}:sold"));
    /* a NUL inside a key is a byte like any other */
    ASSERT(sk_cluster_keyslot("a\0b", 3) != sk_cluster_keyslot("a", 1));
    ASSERT_EQ(sk_cluster_keyslot("x{a\0b}y", 7), sk_cluster_keyslot("a\0b", 3));
}

static int
key_of(int argc, const char *const *argv)
{
    return sk_cluster_command_key(argc, argv, NULL);
}

static void
test_command_key(void)
{
    const char *eval0[] = {"EVAL", "return 1", "0"};
    ASSERT_EQ(key_of(3, eval0), -1);
    const char *eval0arg[] = {"EVAL", "return 1", "0", "notakey"};
    ASSERT_EQ(key_of(4, eval0arg), -1);
    const char *eval2[] = {"eval", "return 1", "2", "k1", "k2", "a"};
    ASSERT_EQ(key_of(6, eval2), 3);
    const char *evalsha1[] = {"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "1", "k"};
    ASSERT_EQ(key_of(4, evalsha1), 3);
    const char *evalsha_short[] = {"EVALSHA", "sha", "1"}; /* says 1 key, has none: never reads past argc */
    ASSERT_EQ(key_of(3, evalsha_short), -1);
    const char *evalbad[] = {"EVAL", "s", "x1", "k"};
    ASSERT_EQ(key_of(4, evalbad), -1);
    const char *xrg[] = {"XREADGROUP", "GROUP", "g", "c", "COUNT", "10", "BLOCK", "0", "STREAMS", "s1", ">"};
    ASSERT_EQ(key_of(11, xrg), 9);
    const char *xr[] = {"xread", "streams", "s1", "0"};
    ASSERT_EQ(key_of(4, xr), 2);
    const char *xrnone[] = {"XREAD", "COUNT", "1", "STREAMS"};
    ASSERT_EQ(key_of(4, xrnone), -1);
    const char *xg[] = {"XGROUP", "CREATE", "stream", "g", "$", "MKSTREAM"};
    ASSERT_EQ(key_of(6, xg), 2);
    const char *xi[] = {"XINFO", "STREAM", "s"};
    ASSERT_EQ(key_of(3, xi), 2);
    const char *ping[] = {"PING"};
    ASSERT_EQ(key_of(1, ping), -1);
    const char *pingmsg[] = {"PING", "hello"};
    ASSERT_EQ(key_of(2, pingmsg), -1);
    const char *script[] = {"SCRIPT", "LOAD", "return 1"};
    ASSERT_EQ(key_of(3, script), -1);
    const char *wait[] = {"WAIT", "1", "100"};
    ASSERT_EQ(key_of(3, wait), -1);
    const char *info[] = {"INFO", "server"};
    ASSERT_EQ(key_of(2, info), -1);
    const char *pub[] = {"PUBLISH", "ch", "m"};
    ASSERT_EQ(key_of(3, pub), 1);
    const char *set[] = {"SET", "k", "v"};
    ASSERT_EQ(key_of(3, set), 1);
    /* with lengths: a name is compared by length, not up to a NUL */
    const char *set2[] = {"SETX", "k"};
    size_t lens[] = {3, 1};
    ASSERT_EQ(sk_cluster_command_key(2, set2, lens), 1);
    const char *pingx[] = {"PINGPONG", "x"};
    size_t plens[] = {4, 1};
    ASSERT_EQ(sk_cluster_command_key(2, pingx, plens), -1);
    ASSERT_EQ(sk_cluster_command_key(0, NULL, NULL), -1);
}

static int
parse(const char *s, sk_cluster_redirect_t *r)
{
    return sk_cluster_parse_redirect(s, strlen(s), r);
}

static void
test_redirect_good(void)
{
    sk_cluster_redirect_t r;
    ASSERT_EQ(parse("MOVED 3999 127.0.0.1:6381", &r), 0);
    ASSERT_EQ(r.kind, SK_CLUSTER_MOVED);
    ASSERT_EQ(r.slot, 3999);
    ASSERT_STREQ(r.host, "127.0.0.1");
    ASSERT_EQ(r.port, 6381);
    ASSERT_EQ(parse("ASK 16383 10.0.0.2:1", &r), 0);
    ASSERT_EQ(r.kind, SK_CLUSTER_ASK);
    ASSERT_EQ(r.slot, 16383);
    ASSERT_STREQ(r.host, "10.0.0.2");
    ASSERT_EQ(r.port, 1);
    ASSERT_EQ(parse("MOVED 0 127.0.0.1:65535", &r), 0);
    ASSERT_EQ(r.slot, 0);
    ASSERT_EQ(r.port, 65535);
    /* Redis 7.0.15 writes "%s:%d" with the node's ip as is: IPv6 without brackets, the port after the last colon */
    ASSERT_EQ(parse("MOVED 12182 ::1:7002", &r), 0);
    ASSERT_STREQ(r.host, "::1");
    ASSERT_EQ(r.port, 7002);
    ASSERT_EQ(parse("ASK 5 fe80::1:2:3:7000", &r), 0);
    ASSERT_STREQ(r.host, "fe80::1:2:3");
    ASSERT_EQ(r.port, 7000);
    ASSERT_EQ(parse("MOVED 7 [::1]:7003", &r), 0); /* the bracketed form, should a later Redis write it */
    ASSERT_STREQ(r.host, "::1");
}

static void
test_redirect_bad(void)
{
    static const char *const bad[] = {"",
                                      "MOVED",
                                      "MOVED ",
                                      "MOVED 3999",
                                      "MOVED 3999 ",
                                      "MOVED 3999 127.0.0.1",
                                      "MOVED 3999 127.0.0.1:",
                                      "MOVED 3999 :6379",
                                      "MOVED 16384 127.0.0.1:6379",
                                      "MOVED 99999 127.0.0.1:6379",
                                      "MOVED -1 127.0.0.1:6379",
                                      "MOVED +1 127.0.0.1:6379",
                                      "MOVED x 127.0.0.1:6379",
                                      "MOVED 1  127.0.0.1:6379",
                                      "MOVED 1 127.0.0.1:0",
                                      "MOVED 1 127.0.0.1:65536",
                                      "MOVED 1 127.0.0.1:123456",
                                      "MOVED 1 127.0.0.1:-1",
                                      "MOVED 1 127.0.0.1:80x",
                                      "MOVED 1 127.0.0.1:80 extra",
                                      "MOVED 1 []:80",
                                      "moved 1 127.0.0.1:80",
                                      "ASK",
                                      "ASKING 1 127.0.0.1:80",
                                      "ERR unknown command",
                                      "TRYAGAIN Multiple keys request during rehashing of slot",
                                      "CROSSSLOT Keys in request don't hash to the same slot"};
    sk_cluster_redirect_t r;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        r.kind = SK_CLUSTER_MOVED;
        if (parse(bad[i], &r) != -1) {
            fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
            abort();
        }
        ASSERT_EQ(r.kind, SK_CLUSTER_NONE);
    }
    /* a host longer than the buffer */
    char huge[512];
    int n = snprintf(huge, sizeof(huge), "MOVED 1 ");
    memset(huge + n, 'a', 300);
    snprintf(huge + n + 300, sizeof(huge) - (size_t)n - 300, ":6379");
    ASSERT_EQ(parse(huge, &r), -1);
    /* a host that fits but is no IP literal (the client never resolves names), and the longest IPv6 text */
    n = snprintf(huge, sizeof(huge), "MOVED 1 %.*s:6379", 63,
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    ASSERT_EQ(sk_cluster_parse_redirect(huge, (size_t)n, &r), -1);
    ASSERT_EQ(parse("ASK 6 [[]]:7", &r), -1);
    ASSERT_EQ(parse("MOVED 6 redis.example:6379", &r), -1);
    ASSERT_EQ(parse("MOVED 6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255:6379", &r), 0);
    ASSERT_STREQ(r.host, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
    n = snprintf(huge, sizeof(huge), "MOVED 1 %.*s:6379", 64,
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    ASSERT_EQ(sk_cluster_parse_redirect(huge, (size_t)n, &r), -1);
    /* a huge string, without a NUL at its end: only len bytes are read */
    size_t big = 1 << 20;
    char *p = malloc(big);
    ASSERT(p != NULL);
    memset(p, '9', big);
    memcpy(p, "MOVED ", 6);
    ASSERT_EQ(sk_cluster_parse_redirect(p, big, &r), -1);
    memcpy(p, "MOVED 1 127.0.0.1:", 18);
    ASSERT_EQ(sk_cluster_parse_redirect(p, big, &r), -1);
    free(p);
    /* embedded NULs, in the host, the slot and the port */
    static const char nul_host[] = "MOVED 1 127.0\0.0.1:6379", nul_slot[] = "MOVED 1\0 127.0.0.1:6379",
                      nul_port[] = "MOVED 1 127.0.0.1:63\0";
    ASSERT_EQ(sk_cluster_parse_redirect(nul_host, sizeof(nul_host) - 1, &r), -1);
    ASSERT_EQ(sk_cluster_parse_redirect(nul_slot, sizeof(nul_slot) - 1, &r), -1);
    ASSERT_EQ(sk_cluster_parse_redirect(nul_port, sizeof(nul_port) - 1, &r), -1);
    /* a length shorter than the text: the tail is not looked at */
    ASSERT_EQ(sk_cluster_parse_redirect("MOVED 1 127.0.0.1:6379", 18, &r), -1);
    ASSERT_EQ(sk_cluster_parse_redirect(NULL, 0, &r), -1);
}

static void
test_retryable(void)
{
    ASSERT(sk_cluster_is_retryable("TRYAGAIN Multiple keys request during rehashing of slot", 55));
    ASSERT(sk_cluster_is_retryable("CLUSTERDOWN The cluster is down", 31));
    ASSERT(sk_cluster_is_retryable("CLUSTERDOWN", 11));
    ASSERT(sk_cluster_is_retryable("LOADING Redis is loading the dataset in memory", 46));
    ASSERT(sk_cluster_is_retryable("MASTERDOWN Link with MASTER is down", 35));
    ASSERT(!sk_cluster_is_retryable("MOVED 1 127.0.0.1:6379", 22));
    ASSERT(!sk_cluster_is_retryable("ERR TRYAGAIN", 12));
    ASSERT(!sk_cluster_is_retryable("TRYAGAINX", 9));
    ASSERT(!sk_cluster_is_retryable("TRYAGA", 6));
    ASSERT(!sk_cluster_is_retryable(NULL, 0));
    ASSERT(!sk_cluster_is_retryable("NOSCRIPT No matching script", 27));
}

int
main(void)
{
    RUN(test_crc16);
    RUN(test_keyslot);
    RUN(test_command_key);
    RUN(test_redirect_good);
    RUN(test_redirect_bad);
    RUN(test_retryable);
    DONE();
}
