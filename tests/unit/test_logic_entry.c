/*
 * The logic layer's pure parts: queue entries, stored results, reply messages, the snapshot pre-check and the
 * EVALSHA call.
 */
#include "sk_test.h"
#include "logic/logic.h"
#include "sk_shard.h"

#define NF(a) (sizeof(a) / sizeof(a[0]))

static const char *const good_fv[] = {
    "id",  "n1:0:42", "reply", "test-reply-n1-0", "aid", "7",          "pid",      "3",
    "uid", "1001",    "ip",    "10.0.0.1",        "now", "1700000000", "deadline", "1700000003000"};

static void
lens(const char *const *fv, size_t n, size_t *out)
{
    for (size_t i = 0; i < n; ++i)
        out[i] = strlen(fv[i]);
}

/* The values of good_fv, however they were sent. */
static void
check_good(const sk_logic_entry_t *e)
{
    ASSERT_STREQ(e->sid, "1700000000123-5");
    ASSERT_EQ(e->sid_ms, 1700000000123LL);
    ASSERT_STREQ(e->id, "n1:0:42");
    ASSERT_STREQ(e->reply, "test-reply-n1-0");
    ASSERT_EQ(e->aid, 7);
    ASSERT_EQ(e->pid, 3);
    ASSERT_EQ(e->uid, 1001);
    ASSERT_STREQ(e->ip, "10.0.0.1");
    ASSERT_EQ(e->now, 1700000000);
    ASSERT_EQ(e->deadline, 1700000003000LL);
}

static void
test_entry_ok(void)
{
    size_t fl[NF(good_fv)];
    lens(good_fv, NF(good_fv), fl);
    sk_logic_entry_t e;
    char err[64] = "";
    ASSERT_EQ(sk_logic_entry_parse(&e, "1700000000123-5", 15, good_fv, fl, NF(good_fv), err, sizeof(err)), 0);
    check_good(&e);
}

static int
parse_packed(sk_logic_entry_t *e, const char *packed, char *err, size_t errlen)
{
    const char *fv[] = {"r", packed};
    size_t fl[] = {1, strlen(packed)};
    return sk_logic_entry_parse(e, "1700000000123-5", 15, fv, fl, 2, err, errlen);
}

static void
test_entry_packed(void)
{
    sk_logic_entry_t e;
    char err[64] = "";
    ASSERT_EQ(parse_packed(&e, "n1:0:42 test-reply-n1-0 7 3 1001 10.0.0.1 1700000000 1700000003000", err, sizeof(err)), 0);
    check_good(&e);
    /* a bad value names its field and keeps the route */
    ASSERT_EQ(parse_packed(&e, "n1:0:42 test-reply-n1-0 7 3 12x 10.0.0.1 1700000000 1700000003000", err, sizeof(err)), -1);
    ASSERT_STREQ(err, "bad field uid");
    ASSERT_STREQ(e.id, "n1:0:42");
    ASSERT_STREQ(e.reply, "test-reply-n1-0");
    /* too few words, too many, empty words, an empty value */
    ASSERT_EQ(parse_packed(&e, "n1:0:42 test-reply-n1-0 7 3 1001 10.0.0.1 1700000000", err, sizeof(err)), -1);
    ASSERT_STREQ(err, "missing field deadline");
    ASSERT_EQ(parse_packed(&e, "n1:0:42 test-reply-n1-0 7 3 1001 10.0.0.1 1700000000 1700000003000 9", err, sizeof(err)), -1);
    ASSERT_STREQ(err, "bad field deadline");
    ASSERT_EQ(parse_packed(&e, "n1:0:42  test-reply-n1-0 7 3 1001 10.0.0.1 1700000000 1700000003000", err, sizeof(err)), -1);
    ASSERT_STREQ(err, "bad field reply");
    ASSERT_STREQ(e.id, "");
    ASSERT_EQ(parse_packed(&e, "", err, sizeof(err)), -1);
    ASSERT_STREQ(err, "bad field id");
}

static void
test_entry_extra_field_tolerated(void)
{
    const char *fv[NF(good_fv) + 2];
    for (size_t i = 0; i < NF(good_fv); ++i)
        fv[i] = good_fv[i];
    fv[NF(good_fv)] = "src";
    fv[NF(good_fv) + 1] = "app";
    size_t fl[NF(fv)];
    lens(fv, NF(fv), fl);
    sk_logic_entry_t e;
    ASSERT_EQ(sk_logic_entry_parse(&e, "1-0", 3, fv, fl, NF(fv), NULL, 0), 0);
    ASSERT_EQ(e.uid, 1001);
}

static void
test_entry_bad_field_keeps_route(void)
{
    const char *fv[NF(good_fv)];
    for (size_t i = 0; i < NF(good_fv); ++i)
        fv[i] = good_fv[i];
    fv[9] = "12x"; /* uid */
    size_t fl[NF(fv)];
    lens(fv, NF(fv), fl);
    sk_logic_entry_t e;
    char err[64] = "";
    ASSERT_EQ(sk_logic_entry_parse(&e, "5-1", 3, fv, fl, NF(fv), err, sizeof(err)), -1);
    ASSERT_STREQ(err, "bad field uid");
    /* still answerable, and still acknowledgeable */
    ASSERT_STREQ(e.id, "n1:0:42");
    ASSERT_STREQ(e.reply, "test-reply-n1-0");
    ASSERT_STREQ(e.sid, "5-1");
}

static void
test_entry_missing_and_hostile(void)
{
    size_t fl[NF(good_fv)];
    lens(good_fv, NF(good_fv), fl);
    sk_logic_entry_t e;
    char err[64] = "";
    /* drop the last pair (deadline) */
    ASSERT_EQ(sk_logic_entry_parse(&e, "5-1", 3, good_fv, fl, NF(good_fv) - 2, err, sizeof(err)), -1);
    ASSERT_STREQ(err, "missing field deadline");
    ASSERT_STREQ(e.id, "n1:0:42");

    /* a deleted entry: no fields at all; the stream id is still usable for XACK */
    ASSERT_EQ(sk_logic_entry_parse(&e, "9-9", 3, NULL, NULL, 0, err, sizeof(err)), -1);
    ASSERT_STREQ(e.sid, "9-9");
    ASSERT_EQ(e.id[0], '\0');

    /* a space in the id would break the reply message; a missing reply leaves nothing to answer on */
    const char *fv[NF(good_fv)];
    for (size_t i = 0; i < NF(good_fv); ++i)
        fv[i] = good_fv[i];
    fv[1] = "a b";
    size_t fl2[NF(fv)];
    lens(fv, NF(fv), fl2);
    ASSERT_EQ(sk_logic_entry_parse(&e, "5-1", 3, fv, fl2, NF(fv), err, sizeof(err)), -1);
    ASSERT_STREQ(err, "bad field id");
    ASSERT_EQ(e.id[0], '\0');
    ASSERT_EQ(e.reply[0], '\0');

    /* overlong id, negative or overflowing numbers, bad stream id */
    char longid[300];
    memset(longid, 'x', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    fv[1] = longid;
    lens(fv, NF(fv), fl2);
    ASSERT_EQ(sk_logic_entry_parse(&e, "5-1", 3, fv, fl2, NF(fv), err, sizeof(err)), -1);
    fv[1] = good_fv[1];
    fv[5] = "-7";
    lens(fv, NF(fv), fl2);
    ASSERT_EQ(sk_logic_entry_parse(&e, "5-1", 3, fv, fl2, NF(fv), err, sizeof(err)), -1);
    ASSERT_STREQ(err, "bad field aid");
    fv[5] = "99999999999999999999";
    lens(fv, NF(fv), fl2);
    ASSERT_EQ(sk_logic_entry_parse(&e, "5-1", 3, fv, fl2, NF(fv), err, sizeof(err)), -1);
    fv[5] = "0";
    lens(fv, NF(fv), fl2);
    ASSERT_EQ(sk_logic_entry_parse(&e, "5-1", 3, fv, fl2, NF(fv), err, sizeof(err)), -1);
    ASSERT_EQ(sk_logic_entry_parse(&e, "51", 2, good_fv, fl, NF(good_fv), err, sizeof(err)), -1);
    ASSERT_STREQ(err, "bad stream id");
    /* an odd count ignores the dangling field name */
    ASSERT_EQ(sk_logic_entry_parse(&e, "5-1", 3, good_fv, fl, NF(good_fv) - 1, err, sizeof(err)), -1);
}

static void
test_result_roundtrip(void)
{
    sk_logic_result_t r;
    const char *s = "0 abcdef0123456789abcdef 1700001800";
    ASSERT_EQ(sk_logic_result_parse(&r, s, strlen(s)), 0);
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.token, "abcdef0123456789abcdef");
    ASSERT_EQ(r.expires_at, 1700001800);
    char buf[256];
    int n = sk_logic_reply_format(buf, sizeof(buf), "n1:0:42", &r);
    ASSERT_STREQ(buf, "n1:0:42 0 abcdef0123456789abcdef 1700001800");
    ASSERT_EQ(n, (int)strlen(buf));
    ASSERT_EQ(sk_logic_reply_format(buf, 10, "n1:0:42", &r), -1);

    s = "1007 - 0";
    ASSERT_EQ(sk_logic_result_parse(&r, s, strlen(s)), 0);
    ASSERT_EQ(r.code, 1007);
    ASSERT_STREQ(r.token, "-");
    sk_logic_result_set(&r, 1009);
    sk_logic_reply_format(buf, sizeof(buf), "x", &r);
    ASSERT_STREQ(buf, "x 1009 - 0");

    ASSERT_EQ(sk_logic_result_parse(&r, "1007", 4), -1);
    ASSERT_EQ(sk_logic_result_parse(&r, "1007 -", 6), -1);
    ASSERT_EQ(sk_logic_result_parse(&r, "x - 0", 5), -1);
    ASSERT_EQ(sk_logic_result_parse(&r, "1007  0", 7), -1);
    ASSERT_EQ(sk_logic_result_parse(&r, "1007 - 0x", 9), -1);
}

static void
test_token_ok(void)
{
    ASSERT(sk_logic_token_ok("0123456789abcdef"));
    ASSERT(!sk_logic_token_ok("0123456789abcde"));
    ASSERT(!sk_logic_token_ok("0123456789 abcdef"));
    ASSERT(!sk_logic_token_ok("0123456789abcdef\n"));
    char big[200];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ASSERT(!sk_logic_token_ok(big));
    big[128] = '\0';
    ASSERT(sk_logic_token_ok(big));
}

static void
test_precheck(void)
{
    sk_activity_t acts[3];
    memset(acts, 0, sizeof(acts));
    acts[0] = (sk_activity_t){.activity_id = 7, .product_id = 3, .status = 1, .total = 500, .buy_limit = 2};
    acts[1] = (sk_activity_t){.activity_id = 8, .product_id = 3, .status = 0, .total = 5, .buy_limit = 1};
    acts[2] = (sk_activity_t){.activity_id = 9, .product_id = 4, .status = 1, .total = 5, .buy_limit = 1};
    sk_snapshot_t snap = {.nactivities = 3, .activities = acts};
    sk_logic_entry_t e = {.aid = 7, .pid = 3, .uid = 1};
    const sk_activity_t *a;
    ASSERT_EQ(sk_logic_precheck(&snap, &e, &a), 0);
    ASSERT(a == &acts[0]);
    e.aid = 8;
    ASSERT_EQ(sk_logic_precheck(&snap, &e, &a), SK_E_DISABLED);
    ASSERT(a == NULL);
    e.aid = 9; /* exists, but for another product */
    ASSERT_EQ(sk_logic_precheck(&snap, &e, &a), SK_E_NOT_FOUND);
    e.aid = 10;
    ASSERT_EQ(sk_logic_precheck(&snap, &e, &a), SK_E_NOT_FOUND);
    sk_snapshot_t empty = {0};
    e.aid = 7;
    ASSERT_EQ(sk_logic_precheck(&empty, &e, &a), SK_E_NOT_FOUND);
}

static int
argis(const sk_logic_call_t *c, int i, const char *want)
{
    return c->argvlen[i] == strlen(want) && memcmp(c->argv[i], want, c->argvlen[i]) == 0;
}

/* The layout's names (common/sk_keys.h; test_common_keys.c checks them). */
static const char *
akey(sk_key_id_t id, int64_t aid)
{
    static char buf[8][96];
    static int n;
    char *b = buf[n++ % 8];
    ASSERT(sk_key_activity(b, 96, id, aid) > 0);
    return b;
}

static const char *
rkey(int64_t aid, int64_t deadline_ms)
{
    static char buf[96];
    ASSERT(sk_result_key(buf, sizeof(buf), aid, deadline_ms) > 0);
    return buf;
}

static void
test_call_build(void)
{
    sk_activity_t act = {.activity_id = 7, .product_id = 3, .status = 1, .total = 500, .buy_limit = 2, .speed = 10};
    sk_logic_entry_t e = {.aid = 7, .pid = 3, .uid = 1001, .deadline = 1700000003000LL, .sid_ms = 1700000000123LL};
    strcpy(e.id, "n1:0:42");
    strcpy(e.reply, "test-reply-n1-0");
    sk_logic_pre_t pre = {.code = 0, .allow = 1, .ttl = 1800};
    strcpy(pre.token, "tok0123456789abcdef");
    static sk_logic_call_t c; /* about 60 KiB */
    const sk_logic_entry_t *es[1] = {&e};
    const sk_logic_pre_t *ps[1] = {&pre};
    ASSERT_EQ(sk_logic_call_build(&c, "0123456789012345678901234567890123456789", &act, es, ps, 1), 0);
    ASSERT_EQ(c.argc, 3 + SK_LOGIC_CALL_NKEYS + 1 + SK_LOGIC_CALL_NARGS + SK_LOGIC_CALL_ENTRY_ARGS);
    ASSERT(argis(&c, 0, "EVALSHA"));
    ASSERT(argis(&c, 2, "8"));
    ASSERT(argis(&c, 3, akey(SK_KEY_TOTAL, 7)));
    ASSERT(argis(&c, 4, akey(SK_KEY_SOLD, 7)));
    ASSERT(argis(&c, 5, akey(SK_KEY_USERS, 7)));
    ASSERT(argis(&c, 6, akey(SK_KEY_TOKENS, 7)));
    ASSERT(argis(&c, 7, akey(SK_KEY_WINS, 7)));
    ASSERT(argis(&c, 8, akey(SK_KEY_EXPIRY, 7)));
    ASSERT(argis(&c, 9, akey(SK_KEY_DRY, 7)));
    /* the result bucket is the minute of the deadline */
    ASSERT(argis(&c, 10, rkey(7, 1700000003000LL)));
    ASSERT(argis(&c, 11, "7"));
    ASSERT(argis(&c, 12, "3"));
    ASSERT(argis(&c, 13, "2"));
    ASSERT(argis(&c, 14, "10"));
    ASSERT(argis(&c, 15, "500"));
    ASSERT(argis(&c, 16, akey(SK_KEY_SEC_PREFIX, 7)));
    /* an unsharded activity is bucket 0 of 1 */
    ASSERT(argis(&c, 17, "0"));
    ASSERT(argis(&c, 18, "1"));
    ASSERT(argis(&c, 19, "1700000003000"));
    ASSERT(argis(&c, 20, "1700000000123"));
    ASSERT(argis(&c, 21, "0"));
    ASSERT(argis(&c, 22, "1"));
    ASSERT(argis(&c, 23, "tok0123456789abcdef"));
    ASSERT(argis(&c, 24, "1800"));
    ASSERT(argis(&c, 25, "1001"));
    ASSERT(argis(&c, 26, "test-reply-n1-0"));
    ASSERT(argis(&c, 27, "n1:0:42"));
    /* kept for SK_RESULT_KEEP_S past the end of its minute */
    ASSERT(argis(&c, 28, "1700000640"));

    /* two entries: keys first, then each entry's arguments, in order */
    sk_logic_entry_t e2 = e;
    e2.uid = 1002;
    e2.deadline = 1700000041000LL; /* the next minute */
    strcpy(e2.id, "n1:0:43");
    sk_logic_pre_t pre2 = pre;
    pre2.code = SK_E_DISABLED; /* a pre-decided code carries no token even if one was issued */
    const sk_logic_entry_t *es2[2] = {&e, &e2};
    const sk_logic_pre_t *ps2[2] = {&pre, &pre2};
    ASSERT_EQ(sk_logic_call_build(&c, "sha", &act, es2, ps2, 2), 0);
    ASSERT(argis(&c, 2, "9"));
    ASSERT(argis(&c, 10, rkey(7, 1700000003000LL)));
    ASSERT(argis(&c, 11, rkey(7, 1700000041000LL)));
    ASSERT(argis(&c, 20, "1700000003000"));
    ASSERT(argis(&c, 30, "1700000041000"));
    ASSERT(argis(&c, 32, "1009"));
    ASSERT(argis(&c, 33, "0"));
    ASSERT(argis(&c, 34, "-"));
    ASSERT(argis(&c, 35, "0"));
    ASSERT(argis(&c, 36, "1002"));
    ASSERT(argis(&c, 38, "n1:0:43"));
    ASSERT(argis(&c, 39, "1700000700"));

    /* pre-decided codes alone need no activity */
    const sk_logic_pre_t *ps3[1] = {&pre2};
    const sk_logic_entry_t *es3[1] = {&e2};
    ASSERT_EQ(sk_logic_call_build(&c, "sha", NULL, es3, ps3, 1), 0);
    ASSERT(argis(&c, 12, "3"));
    /* a decision for the script needs the activity */
    ASSERT_EQ(sk_logic_call_build(&c, "sha", NULL, es, ps, 1), -1);
    /* one call is one activity */
    e2.aid = 8;
    ASSERT_EQ(sk_logic_call_build(&c, "sha", &act, es2, ps2, 2), -1);
    ASSERT_EQ(sk_logic_call_build(&c, "sha", &act, es, ps, 0), -1);
    /* a full batch of the longest ids and channels fits */
    static sk_logic_entry_t big[SK_LOGIC_BATCH];
    const sk_logic_entry_t *eb[SK_LOGIC_BATCH];
    const sk_logic_pre_t *pb[SK_LOGIC_BATCH];
    sk_logic_pre_t bigpre = pre;
    memset(bigpre.token, 'x', SK_LOGIC_TOKEN_MAX);
    bigpre.token[SK_LOGIC_TOKEN_MAX] = '\0';
    for (size_t i = 0; i < SK_LOGIC_BATCH; ++i) {
        big[i] = e;
        big[i].uid = INT64_MAX;
        big[i].deadline = INT64_MAX;
        big[i].sid_ms = INT64_MAX;
        memset(big[i].id, 'i', sizeof(big[i].id) - 1);
        big[i].id[sizeof(big[i].id) - 1] = '\0';
        memset(big[i].reply, 'r', sizeof(big[i].reply) - 1);
        big[i].reply[sizeof(big[i].reply) - 1] = '\0';
        eb[i] = &big[i];
        pb[i] = &bigpre;
    }
    act.activity_id = 7;
    ASSERT_EQ(sk_logic_call_build(&c, "0123456789012345678901234567890123456789", &act, eb, pb, SK_LOGIC_BATCH), 0);
    ASSERT_EQ(c.argc, SK_LOGIC_CALL_ARGC - 1);
    /* redis.wait_replicas: the hold flag goes last, and fits even a full batch; only once */
    ASSERT_EQ(sk_logic_call_hold(&c), 0);
    ASSERT_EQ(c.argc, SK_LOGIC_CALL_ARGC);
    ASSERT(argis(&c, c.argc - 1, "1"));
    ASSERT_EQ(sk_logic_call_hold(&c), -1);

    /* a bucket of a sharded activity: its own tag on every key, its share of the stock, its index and the count */
    char tag[SK_SHARD_TAG_MAX], want[128];
    ASSERT(sk_shard_tag(tag, sizeof(tag), 7, 2, 3) > 0);
    sk_logic_bucket_t bk = {.tag = tag, .index = 2, .count = 3};
    ASSERT_EQ(sk_logic_call_build_bucket(&c, "sha", &act, &bk, es, ps, 1), 0);
    sk_key_bucket(want, sizeof(want), SK_KEY_TOTAL, tag);
    ASSERT(argis(&c, 3, want));
    sk_key_bucket(want, sizeof(want), SK_KEY_DRY, tag);
    ASSERT(argis(&c, 9, want));
    sk_result_key_bucket(want, sizeof(want), tag, 1700000003000LL);
    ASSERT(argis(&c, 10, want));
    ASSERT(argis(&c, 11, "7"));   /* the activity, not the bucket */
    ASSERT(argis(&c, 15, "166")); /* 500 over 3: 167, 167, 166 */
    sk_key_bucket(want, sizeof(want), SK_KEY_SEC_PREFIX, tag);
    ASSERT(argis(&c, 16, want));
    ASSERT(argis(&c, 17, "2"));
    ASSERT(argis(&c, 18, "3"));
    bk.index = 3; /* out of range */
    ASSERT_EQ(sk_logic_call_build_bucket(&c, "sha", &act, &bk, es, ps, 1), -1);
}

static void
test_code_index_and_sha(void)
{
    ASSERT_EQ(sk_logic_code_index(0), SK_LOGIC_C_OK);
    ASSERT_EQ(sk_logic_code_index(1007), SK_LOGIC_C_SOLD_OUT);
    ASSERT_EQ(sk_logic_code_index(1013), SK_LOGIC_C_UNAVAILABLE);
    ASSERT_EQ(sk_logic_code_index(4242), SK_LOGIC_C_OTHER);
    char sha[41];
    sk_logic_script_sha("abc", sha);
    ASSERT_STREQ(sha, "a9993e364706816aba3e25717850c26c9cd0d89d");
    sk_logic_script_sha(sk_script_logic_stock, sha);
    ASSERT_EQ(strlen(sha), 40);
}

int
main(void)
{
    RUN(test_entry_ok);
    RUN(test_entry_packed);
    RUN(test_entry_extra_field_tolerated);
    RUN(test_entry_bad_field_keeps_route);
    RUN(test_entry_missing_and_hostile);
    RUN(test_result_roundtrip);
    RUN(test_token_ok);
    RUN(test_precheck);
    RUN(test_call_build);
    RUN(test_code_index_and_sha);
    DONE();
}
