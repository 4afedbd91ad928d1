/*
 * The etcd gateway parser, fed streams recorded from etcd 3.4.23 (tests/unit/data/etcd) and malformed ones.
 */
#include "sk_test.h"
#include "etcd_parse.h"

typedef struct st_collect_t {
    size_t n;
    char objs[64][4096];
} collect_t;

static int
on_obj(void *arg, const char *obj, size_t len)
{
    collect_t *c = arg;
    ASSERT(c->n < 64 && len < 4096);
    ASSERT_EQ(strlen(obj), len);
    memcpy(c->objs[c->n], obj, len + 1);
    c->n++;
    return 0;
}

static char *
read_data(const char *name, size_t *len)
{
    const char *dir = getenv("SK_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/unit/data/etcd/%s", dir != NULL ? dir : "../..", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s (set SK_SOURCE_DIR)\n", path);
        abort();
    }
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void
test_b64(void)
{
    char out[64];
    size_t n;
    ASSERT_EQ(sk_b64_encode("/seckill/", 9, out), 12);
    ASSERT_STREQ(out, "L3NlY2tpbGwv");
    sk_b64_encode("ab", 2, out);
    ASSERT_STREQ(out, "YWI=");
    sk_b64_encode("a", 1, out);
    ASSERT_STREQ(out, "YQ==");
    sk_b64_encode("", 0, out);
    ASSERT_STREQ(out, "");
    ASSERT_EQ(sk_b64_decode("L3NlY2tpbGwv", 12, out, &n), 0);
    ASSERT_EQ(n, 9);
    ASSERT_STREQ(out, "/seckill/");
    ASSERT_EQ(sk_b64_decode("YWI=", 4, out, &n), 0);
    ASSERT_STREQ(out, "ab");
    ASSERT_EQ(sk_b64_decode("YQ==", 4, out, &n), 0);
    ASSERT_STREQ(out, "a");
    ASSERT_EQ(sk_b64_decode("YQ", 2, out, &n), 0); /* unpadded */
    ASSERT_STREQ(out, "a");
    ASSERT_EQ(sk_b64_decode("", 0, out, &n), 0);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(sk_b64_decode("Y", 1, out, &n), -1);
    ASSERT_EQ(sk_b64_decode("YQ=", 3, out, &n), -1);
    ASSERT_EQ(sk_b64_decode("Y Q==", 5, out, &n), -1);
    ASSERT_EQ(sk_b64_decode("YQ==YQ==", 8, out, &n), -1);
    ASSERT_EQ(sk_b64_decode("a-_b", 4, out, &n), -1); /* URL-safe alphabet is not etcd's */
    /* round trip of every byte value */
    unsigned char all[256];
    char enc[400], dec[300];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    size_t el = sk_b64_encode(all, 256, enc);
    ASSERT_EQ(sk_b64_decode(enc, el, dec, &n), 0);
    ASSERT_EQ(n, 256);
    ASSERT(memcmp(dec, all, 256) == 0);
}

static void
test_numbers(void)
{
    cJSON *o = cJSON_Parse("{\"a\":\"9223372036854775807\",\"b\":12,\"c\":\"-3\",\"d\":\"12x\",\"e\":1.5,\"f\":\"\","
                           "\"g\":true,\"h\":\"99999999999999999999\",\"i\":1e300}");
    int64_t v = 7;
    ASSERT_EQ(sk_etcd_json_i64(o, "a", &v), 0);
    ASSERT(v == INT64_MAX);
    ASSERT_EQ(sk_etcd_json_i64(o, "b", &v), 0);
    ASSERT_EQ(v, 12);
    ASSERT_EQ(sk_etcd_json_i64(o, "c", &v), 0);
    ASSERT_EQ(v, -3);
    ASSERT_EQ(sk_etcd_json_i64(o, "missing", &v), 0); /* zero values are omitted */
    ASSERT_EQ(v, 0);
    ASSERT_EQ(sk_etcd_json_i64(o, "d", &v), -1);
    ASSERT_EQ(sk_etcd_json_i64(o, "e", &v), -1);
    ASSERT_EQ(sk_etcd_json_i64(o, "f", &v), -1);
    ASSERT_EQ(sk_etcd_json_i64(o, "g", &v), -1);
    ASSERT_EQ(sk_etcd_json_i64(o, "h", &v), -1);
    ASSERT_EQ(sk_etcd_json_i64(o, "i", &v), -1);
    cJSON_Delete(o);
}

static void
test_splitter_joined_and_split(void)
{
    sk_json_splitter_t s;
    collect_t c = {0};
    sk_json_splitter_init(&s, 1024);
    /* An error object joined to the next object on one line, braces and quotes inside strings. */
    const char *line = "{\"error\":{\"message\":\"a } \\\" {\"}}{\"result\":{\"x\":[1,{\"y\":\"]\"}]}}\n";
    ASSERT_EQ(sk_json_splitter_feed(&s, line, strlen(line), on_obj, &c), 0);
    ASSERT_EQ(c.n, 2);
    ASSERT_STREQ(c.objs[0], "{\"error\":{\"message\":\"a } \\\" {\"}}");
    ASSERT_STREQ(c.objs[1], "{\"result\":{\"x\":[1,{\"y\":\"]\"}]}}");
    /* The same bytes one at a time: the same objects. */
    collect_t c2 = {0};
    for (size_t i = 0; i < strlen(line); i++)
        ASSERT_EQ(sk_json_splitter_feed(&s, line + i, 1, on_obj, &c2), 0);
    ASSERT_EQ(c2.n, 2);
    ASSERT_STREQ(c2.objs[0], c.objs[0]);
    ASSERT_STREQ(c2.objs[1], c.objs[1]);
    /* An escaped backslash right before the closing quote. */
    collect_t c3 = {0};
    const char *esc = "  {\"k\":\"a\\\\\"} junk {\"k\":2}";
    ASSERT_EQ(sk_json_splitter_feed(&s, esc, strlen(esc), on_obj, &c3), 0);
    ASSERT_EQ(c3.n, 2);
    ASSERT_STREQ(c3.objs[0], "{\"k\":\"a\\\\\"}");
    ASSERT_STREQ(c3.objs[1], "{\"k\":2}");
    sk_json_splitter_dispose(&s);
}

static void
test_splitter_limit(void)
{
    sk_json_splitter_t s;
    collect_t c = {0};
    sk_json_splitter_init(&s, 16);
    const char *big = "{\"k\":\"0123456789abcdef\"}";
    ASSERT_EQ(sk_json_splitter_feed(&s, big, strlen(big), on_obj, &c), -1);
    ASSERT_EQ(c.n, 0);
    sk_json_splitter_reset(&s);
    ASSERT_EQ(sk_json_splitter_feed(&s, "{\"k\":1}", 7, on_obj, &c), 0);
    ASSERT_EQ(c.n, 1);
    sk_json_splitter_dispose(&s);
}

/* The recorded stream: created, the answer to a progress_request (watch_id -1), a PUT without "type", a DELETE, a
 * transaction of two puts, progress notifications, and the error etcd sends when it shuts down (no newline). */
static void
test_recorded_stream(void)
{
    size_t len;
    char *data = read_data("watch_stream.txt", &len);
    for (size_t chunk = 1; chunk <= 4096; chunk *= 7) {
        sk_json_splitter_t s;
        collect_t *c = calloc(1, sizeof(*c));
        sk_json_splitter_init(&s, 1 << 16);
        for (size_t off = 0; off < len; off += chunk)
            ASSERT_EQ(sk_json_splitter_feed(&s, data + off, off + chunk <= len ? chunk : len - off, on_obj, c), 0);
        ASSERT_EQ(c->n, 11);
        sk_watch_msg_t m;
        char err[256];
        ASSERT_EQ(sk_etcd_parse_watch(c->objs[0], strlen(c->objs[0]), &m, err, sizeof(err)), 0);
        ASSERT_EQ(m.kind, SK_WATCH_CREATED);
        ASSERT_EQ(m.revision, 7);
        sk_watch_msg_dispose(&m);
        ASSERT_EQ(sk_etcd_parse_watch(c->objs[1], strlen(c->objs[1]), &m, err, sizeof(err)), 0);
        ASSERT_EQ(m.kind, SK_WATCH_PROGRESS);
        ASSERT_EQ(m.watch_id, -1);
        sk_watch_msg_dispose(&m);
        ASSERT_EQ(sk_etcd_parse_watch(c->objs[2], strlen(c->objs[2]), &m, err, sizeof(err)), 0);
        ASSERT_EQ(m.kind, SK_WATCH_EVENTS);
        ASSERT_EQ(m.events.n, 1);
        ASSERT_STREQ(m.events.kvs[0].key, "/seckill/products/2");
        ASSERT_STREQ(m.events.kvs[0].value, "{\"product_id\":2,\"product_name\":\"pear\",\"product_total\":10,\"status\":1}");
        ASSERT_EQ(m.events.kvs[0].is_delete, 0);
        ASSERT_EQ(m.events.kvs[0].mod_revision, 7);
        sk_watch_msg_dispose(&m);
        ASSERT_EQ(sk_etcd_parse_watch(c->objs[5], strlen(c->objs[5]), &m, err, sizeof(err)), 0);
        ASSERT_EQ(m.kind, SK_WATCH_EVENTS);
        ASSERT_STREQ(m.events.kvs[0].key, "/seckill/activities/4");
        ASSERT_EQ(m.events.kvs[0].is_delete, 1);
        ASSERT_EQ(m.events.kvs[0].vlen, 0);
        ASSERT_EQ(m.events.kvs[0].mod_revision, 10);
        sk_watch_msg_dispose(&m);
        ASSERT_EQ(sk_etcd_parse_watch(c->objs[6], strlen(c->objs[6]), &m, err, sizeof(err)), 0);
        ASSERT_EQ(m.events.n, 2);
        ASSERT_STREQ(m.events.kvs[1].key, "/seckill/products/6");
        ASSERT_EQ(m.events.kvs[1].mod_revision, 11);
        sk_watch_msg_dispose(&m);
        ASSERT_EQ(sk_etcd_parse_watch(c->objs[7], strlen(c->objs[7]), &m, err, sizeof(err)), 0);
        ASSERT_EQ(m.kind, SK_WATCH_PROGRESS);
        ASSERT_EQ(m.watch_id, 0);
        ASSERT_EQ(m.revision, 11);
        sk_watch_msg_dispose(&m);
        ASSERT_EQ(sk_etcd_parse_watch(c->objs[10], strlen(c->objs[10]), &m, err, sizeof(err)), 0);
        ASSERT_EQ(m.kind, SK_WATCH_ERROR);
        ASSERT_STREQ(m.reason, "etcd: transport is closing");
        sk_watch_msg_dispose(&m);
        sk_json_splitter_dispose(&s);
        free(c);
    }
    free(data);
}

static void
test_recorded_compacted(void)
{
    size_t len;
    char *data = read_data("watch_compacted.txt", &len);
    sk_json_splitter_t s;
    collect_t *c = calloc(1, sizeof(*c));
    sk_json_splitter_init(&s, 1 << 16);
    ASSERT_EQ(sk_json_splitter_feed(&s, data, len, on_obj, c), 0);
    ASSERT_EQ(c->n, 3);
    sk_watch_msg_t m;
    char err[256];
    ASSERT_EQ(sk_etcd_parse_watch(c->objs[1], strlen(c->objs[1]), &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.kind, SK_WATCH_CANCELED);
    ASSERT_EQ(m.compact_revision, 5);
    ASSERT_EQ(m.revision, 0);
    sk_watch_msg_dispose(&m);
    ASSERT_EQ(sk_etcd_parse_watch(c->objs[2], strlen(c->objs[2]), &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.kind, SK_WATCH_ERROR);
    sk_watch_msg_dispose(&m);
    sk_json_splitter_dispose(&s);
    free(c);
    free(data);
}

static void
test_watch_classify_order(void)
{
    sk_watch_msg_t m;
    char err[256];
    /* created wins over events; canceled over events */
    const char *a = "{\"result\":{\"header\":{\"revision\":\"3\"},\"created\":true,\"canceled\":true}}";
    ASSERT_EQ(sk_etcd_parse_watch(a, strlen(a), &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.kind, SK_WATCH_CREATED);
    sk_watch_msg_dispose(&m);
    const char *b = "{\"result\":{\"header\":{\"revision\":\"3\"},\"canceled\":true,\"cancel_reason\":\"x\","
                    "\"events\":[{\"kv\":{\"key\":\"YQ==\"}}]}}";
    ASSERT_EQ(sk_etcd_parse_watch(b, strlen(b), &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.kind, SK_WATCH_CANCELED);
    ASSERT_EQ(m.compact_revision, 0);
    ASSERT_STREQ(m.reason, "x");
    sk_watch_msg_dispose(&m);
    /* an empty events array is a progress notification */
    const char *c = "{\"result\":{\"header\":{\"revision\":\"12\"},\"events\":[]}}";
    ASSERT_EQ(sk_etcd_parse_watch(c, strlen(c), &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.kind, SK_WATCH_PROGRESS);
    ASSERT_EQ(m.revision, 12);
    sk_watch_msg_dispose(&m);
    /* numbers as JSON numbers are accepted too; "type":"PUT" explicit */
    const char *d = "{\"result\":{\"header\":{\"revision\":5},\"events\":[{\"type\":\"PUT\",\"kv\":{\"key\":\"YQ==\","
                    "\"value\":\"Yg==\",\"mod_revision\":5}}]}}";
    ASSERT_EQ(sk_etcd_parse_watch(d, strlen(d), &m, err, sizeof(err)), 0);
    ASSERT_EQ(m.kind, SK_WATCH_EVENTS);
    ASSERT_EQ(m.events.kvs[0].mod_revision, 5);
    ASSERT_STREQ(m.events.kvs[0].value, "b");
    sk_watch_msg_dispose(&m);
}

static void
test_watch_malformed(void)
{
    const char *bad[] = {
        "{\"result\":",                                                                          /* truncated */
        "{\"result\":{\"header\":{\"revision\":\"3\"}}} x",                                      /* trailing garbage */
        "[1,2]",                                                                                 /* not an object */
        "{\"foo\":1}",                                                                           /* not a watch message */
        "{\"result\":{\"header\":{\"revision\":\"3x\"}}}",                                       /* bad number */
        "{\"result\":{\"header\":{},\"events\":[{\"kv\":{\"key\":\"!!!!\"}}]}}",                 /* bad base64 key */
        "{\"result\":{\"header\":{},\"events\":[{\"kv\":{\"key\":\"YQ==\",\"value\":\"Y\"}}]}}", /* bad base64 */
        "{\"result\":{\"header\":{},\"events\":[{\"kv\":{\"value\":\"YQ==\"}}]}}",               /* no key */
        "{\"result\":{\"header\":{},\"events\":[{\"type\":\"MERGE\",\"kv\":{\"key\":\"YQ==\"}}]}}",
        "{\"result\":{\"header\":{},\"events\":[{\"kv\":{\"key\":\"YQBi\"}}]}}", /* NUL inside the key */
        "{\"result\":{\"header\":{},\"events\":{}}}",
        "{\"result\":{\"header\":{},\"watch_id\":\"1.5\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sk_watch_msg_t m;
        char err[256] = "";
        if (sk_etcd_parse_watch(bad[i], strlen(bad[i]), &m, err, sizeof(err)) != -1) {
            fprintf(stderr, "accepted bad message %zu: %s\n", i, bad[i]);
            abort();
        }
        ASSERT(err[0] != '\0');
        ASSERT(m.events.kvs == NULL);
    }
}

static void
test_range(void)
{
    size_t len;
    char *data = read_data("range.json", &len);
    sk_etcd_kvs_t k;
    char err[256];
    ASSERT_EQ(sk_etcd_parse_range(data, len, &k, err, sizeof(err)), 0);
    ASSERT_EQ(k.revision, 11);
    ASSERT_EQ(k.n, 7);
    ASSERT_STREQ(k.kvs[2].key, "/seckill/policies/limits.lua");
    ASSERT_STREQ(k.kvs[2].value, "function admit(r) return true end");
    ASSERT_EQ(k.kvs[2].mod_revision, 9);
    sk_etcd_kvs_dispose(&k);
    free(data);
    data = read_data("range_empty.json", &len);
    ASSERT_EQ(sk_etcd_parse_range(data, len, &k, err, sizeof(err)), 0);
    ASSERT_EQ(k.revision, 11);
    ASSERT_EQ(k.n, 0);
    sk_etcd_kvs_dispose(&k);
    free(data);
    const char *e = "{\"error\":\"etcdserver: mvcc: required revision has been compacted\",\"code\":11}";
    ASSERT_EQ(sk_etcd_parse_range(e, strlen(e), &k, err, sizeof(err)), -1);
    ASSERT_STREQ(err, "etcd: etcdserver: mvcc: required revision has been compacted");
    const char *b = "{\"header\":{\"revision\":\"2\"},\"kvs\":[{\"key\":\"YQ==\"},{\"key\":\"%%%\"}]}";
    ASSERT_EQ(sk_etcd_parse_range(b, strlen(b), &k, err, sizeof(err)), -1);
    ASSERT(k.kvs == NULL);
}

static const char *good_activity = "{\"activity_id\":7,\"activity_name\":\"pear sale\",\"product_id\":\"3\","
                                   "\"start_time\":1530928052,\"end_time\":1530989052,\"total\":20,\"status\":1,"
                                   "\"speed\":0,\"buy_limit\":1,\"buy_rate\":0.2}";

static void
test_activity_values(void)
{
    sk_activity_t a;
    char err[256];
    ASSERT_EQ(sk_etcd_parse_activity(good_activity, strlen(good_activity), &a, err, sizeof(err)), 0);
    ASSERT_EQ(a.activity_id, 7);
    ASSERT_EQ(a.product_id, 3);
    ASSERT_STREQ(a.name, "pear sale");
    ASSERT_EQ(a.end_time, 1530989052);
    ASSERT_EQ(a.total, 20);
    ASSERT_EQ(a.status, 1);
    ASSERT(a.buy_rate > 0.19 && a.buy_rate < 0.21);
    struct {
        const char *from, *to, *want;
    } cases[] = {
        {"\"total\":20", "\"total\":0", "total out of range"},
        {"\"total\":20", "\"total\":1000000001", "total out of range"},
        {"\"status\":1", "\"status\":2", "status out of range"},
        {"\"speed\":0", "\"speed\":-1", "speed out of range"},
        {"\"buy_limit\":1", "\"buy_limit\":0", "buy_limit out of range"},
        {"\"buy_rate\":0.2", "\"buy_rate\":0", "buy_rate must be in (0, 1]"},
        {"\"buy_rate\":0.2", "\"buy_rate\":1.5", "buy_rate must be in (0, 1]"},
        {"\"buy_rate\":0.2", "\"buy_rate\":\"x\"", "buy_rate is not a number"},
        {"\"end_time\":1530989052", "\"end_time\":1530928052", "start_time must be before end_time"},
        {"\"activity_name\":\"pear sale\"", "\"activity_name\":\"\"", "activity_name must be 1-128 bytes"},
        {"\"activity_name\":\"pear sale\"", "\"activity_name\":5", "activity_name is not a string"},
        {"\"product_id\":\"3\"", "\"product_id\":\"3a\"", "product_id is not an integer"},
        {"\"product_id\":\"3\",", "", "missing product_id"},
        {"\"total\":20", "\"total\":20.5", "total is not an integer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char v[1024];
        const char *p = strstr(good_activity, cases[i].from);
        ASSERT(p != NULL);
        snprintf(v, sizeof(v), "%.*s%s%s", (int)(p - good_activity), good_activity, cases[i].to, p + strlen(cases[i].from));
        err[0] = '\0';
        ASSERT_EQ(sk_etcd_parse_activity(v, strlen(v), &a, err, sizeof(err)), -1);
        if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0) {
            fprintf(stderr, "case %zu: got \"%s\", want \"%s\"\n", i, err, cases[i].want);
            abort();
        }
    }
    for (int w = 128; w <= 129; w++) {
        char v[600];
        snprintf(v, sizeof(v),
                 "{\"activity_id\":7,\"activity_name\":\"%0*d\",\"product_id\":3,\"start_time\":1,\"end_time\":2,"
                 "\"total\":1,\"status\":1,\"speed\":0,\"buy_limit\":1,\"buy_rate\":1}",
                 w, 0);
        ASSERT_EQ(sk_etcd_parse_activity(v, strlen(v), &a, err, sizeof(err)), w == 128 ? 0 : -1);
    }
    ASSERT_EQ(sk_etcd_parse_activity("{\"activity_id\":1", 16, &a, err, sizeof(err)), -1);
    ASSERT_STREQ(err, "bad JSON");
    ASSERT_EQ(sk_etcd_parse_activity("[]", 2, &a, err, sizeof(err)), -1);
    char *huge = malloc(SK_ETCD_MAX_VALUE + 2);
    memset(huge, ' ', SK_ETCD_MAX_VALUE + 1);
    memcpy(huge, good_activity, strlen(good_activity));
    ASSERT_EQ(sk_etcd_parse_activity(huge, SK_ETCD_MAX_VALUE + 1, &a, err, sizeof(err)), -1);
    ASSERT(strstr(err, "larger") != NULL);
    ASSERT_EQ(sk_etcd_parse_activity(huge, strlen(good_activity) + 10, &a, err, sizeof(err)), 0);
    free(huge);
}

static void
test_product_values(void)
{
    sk_product_t p;
    char err[256];
    const char *v = "{\"product_id\":\"12\",\"product_name\":\"pear\",\"product_total\":\"100\",\"status\":0}";
    ASSERT_EQ(sk_etcd_parse_product(v, strlen(v), &p, err, sizeof(err)), 0);
    ASSERT_EQ(p.product_id, 12);
    ASSERT_EQ(p.total, 100);
    ASSERT_EQ(p.status, 0);
    ASSERT_STREQ(p.name, "pear");
    const char *b = "{\"product_id\":12,\"product_name\":\"pear\",\"product_total\":0,\"status\":0}";
    ASSERT_EQ(sk_etcd_parse_product(b, strlen(b), &p, err, sizeof(err)), -1);
    ASSERT(strstr(err, "product_total") != NULL);
    const char *c = "{\"product_id\":0,\"product_name\":\"pear\",\"product_total\":1,\"status\":0}";
    ASSERT_EQ(sk_etcd_parse_product(c, strlen(c), &p, err, sizeof(err)), -1);
    ASSERT(strstr(err, "product_id") != NULL);
    ASSERT_EQ(sk_etcd_parse_product("not json", 8, &p, err, sizeof(err)), -1);
}

typedef struct st_fuzz_t {
    size_t objects, parsed;
} fuzz_t;

static int
on_fuzz_obj(void *arg, const char *obj, size_t len)
{
    fuzz_t *f = arg;
    sk_watch_msg_t m;
    char err[256] = "";
    f->objects++;
    if (sk_etcd_parse_watch(obj, len, &m, err, sizeof(err)) == 0) {
        f->parsed++;
        for (size_t i = 0; i < m.events.n; i++)
            ASSERT(m.events.kvs[i].key != NULL && m.events.kvs[i].value != NULL);
        sk_watch_msg_dispose(&m);
    } else {
        ASSERT(err[0] != '\0');
    }
    return 0;
}

/* The recorded stream with random bytes replaced, fed in random chunks: every object either parses or fails with an
 * error; nothing crashes (run under ASan in the sanitizer build). */
static void
test_mutated_streams(void)
{
    size_t len;
    char *data = read_data("watch_stream.txt", &len);
    char *buf = malloc(len);
    uint32_t seed = 12345;
    size_t total_parsed = 0, total_failed = 0;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, data, len);
        int flips = 1 + round % 8;
        for (int k = 0; k < flips; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            static const char alphabet[] = "{}[]\"\\:,0aZ=+/ \n\x01\xff";
            buf[at] = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
        }
        sk_json_splitter_t s;
        fuzz_t f = {0};
        sk_json_splitter_init(&s, 1 << 16);
        for (size_t off = 0; off < len;) {
            seed = seed * 1103515245u + 12345u;
            size_t n = 1 + (seed >> 8) % 700;
            if (n > len - off)
                n = len - off;
            if (sk_json_splitter_feed(&s, buf + off, n, on_fuzz_obj, &f) != 0)
                sk_json_splitter_reset(&s);
            off += n;
        }
        sk_json_splitter_dispose(&s);
        total_parsed += f.parsed;
        total_failed += f.objects - f.parsed;
    }
    /* most objects survive a few flips somewhere else in the stream; some must have been refused */
    ASSERT(total_parsed > 3000);
    ASSERT(total_failed > 100);
    free(buf);
    free(data);
}

int
main(void)
{
    RUN(test_b64);
    RUN(test_numbers);
    RUN(test_splitter_joined_and_split);
    RUN(test_splitter_limit);
    RUN(test_recorded_stream);
    RUN(test_recorded_compacted);
    RUN(test_watch_classify_order);
    RUN(test_watch_malformed);
    RUN(test_range);
    RUN(test_activity_values);
    RUN(test_product_values);
    RUN(test_mutated_streams);
    DONE();
}
