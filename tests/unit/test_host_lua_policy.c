/*
 * The policy engine (host/lua_policy.c, host/lua_status.c) with no server: the shipped defaults, argument passing,
 * return-type checks, validation messages, hot swap that keeps the old version, the policies.dir check, /status,
 * and the cost of one admit() call.
 */
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "host.h"
#include "lua_vm.h"
#include "sk_test.h"

static const char *
source_dir(void)
{
    const char *d = getenv("SK_SOURCE_DIR");
    return d != NULL ? d : "..";
}

static sk_host_t *
new_host(void)
{
    sk_host_t *h = calloc(1, sizeof(*h));
    ASSERT(h != NULL);
    sk_conf_defaults(&h->conf);
    snprintf(h->conf.policies_dir, sizeof(h->conf.policies_dir), "%s/policies", source_dir());
    return h;
}

static void
free_host(sk_host_t *h)
{
    sk_policy_status_free(h);
    free(h);
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static sk_policy_req_t
req(int64_t uid, uint32_t user_sec, uint32_t user_min, uint32_t ip_sec, uint32_t ip_min)
{
    return (sk_policy_req_t){.user_id = uid,
                             .product_id = 7,
                             .now = 1700000000,
                             .ip = "10.1.2.3",
                             .user_sec = user_sec,
                             .user_min = user_min,
                             .ip_sec = ip_sec,
                             .ip_min = ip_min};
}

static void
apply_one(sk_lua_thread_t *lt, const char *name, const char *src, int64_t rev)
{
    sk_policy_src_t ps = {.src = src, .len = strlen(src), .revision = rev};
    snprintf(ps.name, sizeof(ps.name), "%s", name);
    sk_snapshot_t snap = {.revision = rev, .npolicies = 1, .policies = &ps};
    sk_lua_thread_apply(lt, &snap);
}

/* The /status object of policy `name`, from a fresh array the caller deletes. */
static cJSON *
status_of(sk_host_t *h, const char *name, cJSON **arr)
{
    *arr = cJSON_CreateArray();
    sk_policy_status(h, *arr);
    cJSON *o;
    cJSON_ArrayForEach(o, *arr)
    {
        if (strcmp(cJSON_GetObjectItem(o, "name")->valuestring, name) == 0)
            return o;
    }
    return NULL;
}

static void
test_default_admit(void)
{
    sk_host_t *h = new_host();
    sk_lua_thread_t *lt = sk_lua_thread_new(h);
    ASSERT(lt != NULL);
    char reason[128];
    sk_policy_req_t r = req(1, 1, 10, 50, 500);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 1);
    r = req(1, 0, 0, 0, 0);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 1);
    r = req(1, 2, 2, 2, 2);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 0);
    ASSERT_STREQ(reason, "user: too many requests this second");
    r = req(1, 1, 11, 1, 11);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 0);
    ASSERT_STREQ(reason, "user: too many requests this minute");
    r = req(1, 1, 1, 51, 51);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 0);
    ASSERT_STREQ(reason, "ip: too many requests this second");
    r = req(1, 1, 1, 1, 501);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 0);
    ASSERT_STREQ(reason, "ip: too many requests this minute");
    /* a short buffer truncates the reason */
    char tiny[5];
    r = req(1, 9, 9, 9, 9);
    ASSERT_EQ(sk_policy_admit(lt, &r, tiny, sizeof(tiny)), 0);
    ASSERT_STREQ(tiny, "user");
    sk_lua_thread_free(lt);
    free_host(h);
}

static void
test_default_allow(void)
{
    sk_host_t *h = new_host();
    sk_lua_thread_t *lt = sk_lua_thread_new(h);
    sk_activity_t act = {.activity_id = 3, .product_id = 7, .total = 10, .buy_limit = 1, .buy_rate = 1.0};
    sk_policy_activity_t pa = {.activity = &act, .sold = 0, .left = 10};
    sk_policy_req_t r = req(5, 0, 0, 0, 0);
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ(sk_policy_allow(lt, &r, &pa), 1);
    act.buy_rate = 1e-12;
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ(sk_policy_allow(lt, &r, &pa), 0);
    act.buy_rate = 0.5;
    int yes = 0;
    for (int i = 0; i < 10000; i++)
        yes += sk_policy_allow(lt, &r, &pa);
    ASSERT(yes > 4500 && yes < 5500);
    /* no activity is a failed call, not a crash */
    ASSERT_EQ(sk_policy_allow(lt, &r, NULL), -1);
    sk_lua_thread_free(lt);
    free_host(h);
}

static void
test_default_issue(void)
{
    sk_host_t *h = new_host();
    sk_lua_thread_t *lt = sk_lua_thread_new(h);
    sk_activity_t act = {.activity_id = 3, .product_id = 7, .total = 10, .buy_limit = 1, .buy_rate = 1.0};
    sk_policy_activity_t pa = {.activity = &act, .sold = 0, .left = 10};
    sk_policy_req_t r = req(42, 0, 0, 0, 0);
    char tok1[129], tok2[129];
    int64_t ttl = 0;
    ASSERT_EQ(sk_policy_issue(lt, &r, &pa, tok1, sizeof(tok1), &ttl), 0);
    ASSERT_EQ(ttl, 1800);
    ASSERT_EQ(strlen(tok1), 64);
    for (size_t i = 0; i < 64; i++)
        ASSERT(strchr("0123456789abcdef", tok1[i]) != NULL);
    ASSERT_EQ(sk_policy_issue(lt, &r, &pa, tok2, sizeof(tok2), &ttl), 0);
    ASSERT(strncmp(tok1, tok2, 32) != 0); /* the random half differs */
    /* the second half is HMAC(token_secret, "user:product:time") */
    sk_hmac_t *hm = sk_hmac_new();
    uint8_t mac[32];
    char hex[65];
    const char *msg = "42:7:1700000000";
    ASSERT_EQ(sk_hmac_sha256(hm, h->conf.logic_token_secret, strlen(h->conf.logic_token_secret), msg, strlen(msg), mac), 0);
    sk_hex_encode(mac, 32, hex);
    ASSERT(strncmp(tok1 + 32, hex, 32) == 0 && strncmp(tok2 + 32, hex, 32) == 0);
    sk_hmac_free(hm);
    /* a buffer too small for the token fails the call */
    char small[20];
    ASSERT_EQ(sk_policy_issue(lt, &r, &pa, small, sizeof(small), &ttl), -1);
    sk_lua_thread_free(lt);
    free_host(h);
}

static void
test_arguments(void)
{
    sk_host_t *h = new_host();
    sk_lua_thread_t *lt = sk_lua_thread_new(h);
    apply_one(lt, "token.lua",
              "function issue(r, a, secret)\n"
              "  r.junk = 'x'\n" /* a policy scribbling on its arguments changes nothing for the next call */
              "  return table.concat({a.activity_id, a.product_id, a.name, a.start_time, a.end_time, a.status,\n"
              "    a.total, a.sold, a.left, a.speed, a.buy_limit, a.buy_rate, r.user_id, r.product_id, r.now, r.ip,\n"
              "    tostring(r.user_sec), secret}, '|'), 77\n"
              "end",
              5);
    sk_activity_t act = {.activity_id = 3,
                         .product_id = 7,
                         .name = "pear",
                         .start_time = 100,
                         .end_time = 200,
                         .status = 1,
                         .total = 10,
                         .speed = 2,
                         .buy_limit = 1,
                         .buy_rate = 0.25};
    sk_policy_activity_t pa = {.activity = &act, .sold = 4, .left = 6};
    char tok[129];
    int64_t ttl = 0;
    for (int i = 0; i < 3; i++) {
        sk_policy_req_t r = req(42 + i, 0, 0, 0, 0);
        ASSERT_EQ(sk_policy_issue(lt, &r, &pa, tok, sizeof(tok), &ttl), 0);
        char want[200];
        snprintf(want, sizeof(want), "3|7|pear|100|200|1|10|4|6|2|1|0.25|%d|7|1700000000|10.1.2.3|nil|%s", 42 + i,
                 SK_DEV_TOKEN_SECRET);
        ASSERT_STREQ(tok, want);
        ASSERT_EQ(ttl, 77);
    }
    /* limits.lua sees the counts */
    apply_one(lt, "limits.lua",
              "function admit(r) return false, r.user_id..','..r.user_sec..','..r.user_min..','..r.ip_sec..','..r.ip_min end", 6);
    char reason[64];
    sk_policy_req_t r = req(9, 1, 2, 3, 4);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 0);
    ASSERT_STREQ(reason, "9,1,2,3,4");
    sk_lua_thread_free(lt);
    free_host(h);
}

static void
expect_call_fails(const char *name, const char *src)
{
    sk_host_t *h = new_host();
    sk_lua_thread_t *lt = sk_lua_thread_new(h);
    apply_one(lt, name, src, 9);
    cJSON *arr;
    cJSON *st = status_of(h, name, &arr);
    ASSERT(st == NULL); /* it compiled: no error recorded */
    cJSON_Delete(arr);
    sk_activity_t act = {.activity_id = 3, .product_id = 7, .total = 10, .buy_limit = 1, .buy_rate = 1.0};
    sk_policy_activity_t pa = {.activity = &act, .sold = 0, .left = 10};
    sk_policy_req_t r = req(1, 0, 0, 0, 0);
    char text[129];
    int64_t ttl;
    int rc = strcmp(name, "limits.lua") == 0     ? sk_policy_admit(lt, &r, text, sizeof(text))
             : strcmp(name, "buy_rate.lua") == 0 ? sk_policy_allow(lt, &r, &pa)
                                                 : sk_policy_issue(lt, &r, &pa, text, sizeof(text), &ttl);
    if (rc != -1)
        fprintf(stderr, "%s: %s returned %d\n", name, src, rc);
    ASSERT_EQ(rc, -1);
    st = status_of(h, name, &arr);
    ASSERT(cJSON_GetObjectItem(st, "call_failures")->valueint == 1);
    ASSERT(strncmp(cJSON_GetObjectItem(st, "last_call_error")->valuestring, name, strlen(name)) == 0);
    cJSON_Delete(arr);
    /* and validation refuses the same source */
    char err[512];
    ASSERT_EQ(sk_policy_validate(&h->conf, name, src, strlen(src), err, sizeof(err)), -1);
    sk_lua_thread_free(lt);
    free_host(h);
}

static void
test_wrong_return_types(void)
{
    expect_call_fails("limits.lua", "function admit(r) return 1 end");
    expect_call_fails("limits.lua", "function admit(r) return nil end");
    expect_call_fails("limits.lua", "function admit(r) return 'true' end");
    expect_call_fails("limits.lua", "function admit(r) return false, 42 end");
    expect_call_fails("limits.lua", "function admit(r) return false, {} end");
    expect_call_fails("buy_rate.lua", "function allow(r, a) return 1 end");
    expect_call_fails("buy_rate.lua", "function allow(r, a) end");
    expect_call_fails("token.lua", "function issue(r, a, s) return 12345678901234567 end");
    expect_call_fails("token.lua", "function issue(r, a, s) return 'short' end");
    expect_call_fails("token.lua", "function issue(r, a, s) return ('x'):rep(129) end");
    expect_call_fails("token.lua", "function issue(r, a, s) return 'with a space in the token' end");
    expect_call_fails("token.lua", "function issue(r, a, s) return 'nul\\0in-the-token-here' end");
    expect_call_fails("token.lua", "function issue(r, a, s) return 'non-ascii-\\200-token-here' end");
    expect_call_fails("token.lua", "function issue(r, a, s) return ('x'):rep(32), '60' end");
    expect_call_fails("token.lua", "function issue(r, a, s) return ('x'):rep(32), 1.5 end");
    expect_call_fails("token.lua", "function issue(r, a, s) return ('x'):rep(32), 0 end");
    expect_call_fails("token.lua", "function issue(r, a, s) return ('x'):rep(32), -5 end");
    expect_call_fails("token.lua", "function issue(r, a, s) return ('x'):rep(32), true end");
    expect_call_fails("limits.lua", "function admit(r) error('boom') end");
    expect_call_fails("limits.lua", "function admit(r) while true do end end");
    expect_call_fails("limits.lua", "function admit(r) local t = {} while true do t[#t+1] = {} end end");
}

static void
expect_invalid(const char *name, const char *src, const char *needle)
{
    sk_config_t c;
    sk_conf_defaults(&c);
    char err[512] = "";
    int rc = sk_policy_validate(&c, name, src, strlen(src), err, sizeof(err));
    if (rc != -1 || strstr(err, needle) == NULL)
        fprintf(stderr, "%s: rc %d err \"%s\", wanted \"%s\"\n", src, rc, err, needle);
    ASSERT_EQ(rc, -1);
    ASSERT(strstr(err, needle) != NULL);
}

static void
test_validate(void)
{
    sk_config_t c;
    sk_conf_defaults(&c);
    char err[512];
    const char *good = "function admit(r) if r.user_id == 42 then while true do end end return true end";
    ASSERT_EQ(sk_policy_validate(&c, "limits.lua", good, strlen(good), err, sizeof(err)), 0);
    expect_invalid("limits.lua", "function admit(r)\n  return true\nx x\nend", "limits.lua:3:");
    expect_invalid("limits.lua", "function admit(r)\n  return true\nx x\nend",
                   "'end' expected (to close 'function' at line 1) near 'x'");
    expect_invalid("buy_rate.lua", "function allow(r, a)\n  return (\nend", "buy_rate.lua:3:");
    expect_invalid("limits.lua", "function allow(r) return true end", "limits.lua: no function admit");
    expect_invalid("limits.lua", "admit = 5", "no function admit");
    expect_invalid("limits.lua", "while true do end", "limits.lua: instruction limit exceeded");
    expect_invalid("limits.lua", "function admit(r) while true do end end", "instruction limit exceeded");
    expect_invalid("limits.lua", "local t = {} while true do t[#t+1] = 'x' .. #t end", "memory limit exceeded");
    expect_invalid("limits.lua", "function admit(r) return ('x'):rep(1e10) end", "memory limit exceeded");
    expect_invalid("limits.lua", "function admit(r) return string.find(('a'):rep(100000), ('a*'):rep(30) .. 'b') == nil end",
                   "pattern subject too long");
    expect_invalid("limits.lua", "function admit(r)\n  os.execute('id')\n  return true\nend",
                   "limits.lua:2: attempt to index a nil value (global 'os')");
    expect_invalid("limits.lua", "local f = io.open('/etc/passwd')\nfunction admit(r) return true end",
                   "limits.lua:1: attempt to index a nil value (global 'io')");
    expect_invalid("limits.lua", "local i = getmetatable('').__index\nfunction admit(r) return true end", "global 'getmetatable'");
    expect_invalid("limits.lua", "\x1bLua\x54\x00 whatever", "attempt to load a binary chunk");
    expect_invalid("token.lua", "function issue(r, a, s) return 'abc' end", "token.lua: the token has 3 bytes");
    expect_invalid("evil.lua", "function admit(r) return true end", "unknown policy");
    /* the shipped files pass */
    ASSERT_EQ(sk_policy_check_dir(&c, err, sizeof(err)), -1); /* cwd has no policies/ */
    snprintf(c.policies_dir, sizeof(c.policies_dir), "%s/policies", source_dir());
    if (sk_policy_check_dir(&c, err, sizeof(err)) != 0)
        fprintf(stderr, "check_dir: %s\n", err);
    ASSERT_EQ(sk_policy_check_dir(&c, err, sizeof(err)), 0);
}

static void
test_check_dir(void)
{
    sk_config_t c;
    sk_conf_defaults(&c);
    char dir[] = "/tmp/sk-lua-test-XXXXXX", path[600], err[1024];
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(c.policies_dir, sizeof(c.policies_dir), "%s", dir);
    const char *files[][2] = {{"limits.lua", "function admit(r) return true end"},
                              {"buy_rate.lua", "function allow(r, a) return true end"},
                              {"token.lua", "function issue(r, a, s)\n  return s:sub(1, 16) +\nend"}};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i][0]);
        FILE *f = fopen(path, "w");
        fputs(files[i][1], f);
        fclose(f);
    }
    ASSERT_EQ(sk_policy_check_dir(&c, err, sizeof(err)), -1);
    ASSERT(strstr(err, "token.lua:3:") != NULL && strstr(err, dir) != NULL);
    snprintf(path, sizeof(path), "%s/token.lua", dir);
    unlink(path);
    ASSERT_EQ(sk_policy_check_dir(&c, err, sizeof(err)), -1);
    ASSERT(strstr(err, "cannot open") != NULL && strstr(err, "token.lua") != NULL);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i][0]);
        unlink(path);
    }
    rmdir(dir);
}

/* Records a good version the way the etcd layer does once it validated it. */
static void
record_good(sk_host_t *h, const char *src, int64_t rev)
{
    char sha[65];
    sk_sha256_hex(src, strlen(src), sha);
    sk_policy_record(h, "limits.lua", sha, rev, NULL);
}

static void
test_swap_keeps_old(void)
{
    sk_host_t *h = new_host();
    sk_lua_thread_t *lt = sk_lua_thread_new(h);
    char reason[64];
    sk_policy_req_t r = req(1, 0, 0, 0, 0);
    cJSON *arr, *st;

    /* threads record only failures: the etcd layer says what is in effect */
    st = status_of(h, "limits.lua", &arr);
    ASSERT(st == NULL);
    cJSON_Delete(arr);

    const char *v1 = "function admit(r) return false, 'v1' end";
    apply_one(lt, "limits.lua", v1, 11);
    record_good(h, v1, 11);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 0);
    ASSERT_STREQ(reason, "v1");
    st = status_of(h, "limits.lua", &arr);
    ASSERT_EQ(cJSON_GetObjectItem(st, "revision")->valueint, 11);
    ASSERT_STREQ(cJSON_GetObjectItem(st, "source")->valuestring, "etcd");
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(st, "error")));
    cJSON_Delete(arr);

    static const char *const bad[] = {
        "function admit(r)\n  return false, 'v2'\nx x\nend",
        "while true do end\nfunction admit(r) return false, 'v2' end",
        "local t = {} while true do t[#t+1] = {} end",
        "local x = string.find(('a'):rep(100000), ('a*'):rep(30) .. 'b')\nfunction admit(r) return true end",
        "os.execute('id')\nfunction admit(r) return true end",
        "io.open('/etc/passwd')\nfunction admit(r) return true end",
        "local x = getmetatable('').__index\nfunction admit(r) return true end",
        "function allow(r) return true end",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        apply_one(lt, "limits.lua", bad[i], 12 + (int64_t)i);
        ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 0);
        ASSERT_STREQ(reason, "v1");
        st = status_of(h, "limits.lua", &arr);
        ASSERT_EQ(cJSON_GetObjectItem(st, "revision")->valueint, 11);
        ASSERT_EQ(cJSON_GetObjectItem(st, "error_revision")->valueint, 12 + (int)i);
        const char *e = cJSON_GetObjectItem(st, "error")->valuestring;
        ASSERT(e != NULL && strncmp(e, "limits.lua", 10) == 0);
        cJSON_Delete(arr);
    }

    /* the version in effect recorded again (every thread, every snapshot) keeps the error visible ... */
    record_good(h, v1, 11);
    st = status_of(h, "limits.lua", &arr);
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(st, "error")));
    cJSON_Delete(arr);
    /* ... a good new one clears it */
    const char *v3 = "function admit(r) return false, 'v3' end";
    apply_one(lt, "limits.lua", v3, 30);
    record_good(h, v3, 30);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 0);
    ASSERT_STREQ(reason, "v3");
    st = status_of(h, "limits.lua", &arr);
    ASSERT_EQ(cJSON_GetObjectItem(st, "revision")->valueint, 30);
    ASSERT(cJSON_IsNull(cJSON_GetObjectItem(st, "error")));
    ASSERT_EQ(strlen(cJSON_GetObjectItem(st, "sha256")->valuestring), 64);
    cJSON_Delete(arr);

    /* a snapshot without the policy brings the file back */
    sk_snapshot_t empty = {0};
    sk_lua_thread_apply(lt, &empty);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 1);
    /* a bad version on a fresh thread leaves the file version serving */
    sk_lua_thread_t *lt2 = sk_lua_thread_new(h);
    apply_one(lt2, "limits.lua", "x x", 40);
    ASSERT_EQ(sk_policy_admit(lt2, &r, reason, sizeof(reason)), 1);
    sk_lua_thread_free(lt2);
    sk_lua_thread_free(lt);
    free_host(h);
}

static void
test_no_version_falls_back_to_file(void)
{
    sk_host_t *h = new_host();
    char dir[] = "/tmp/sk-lua-test-XXXXXX", path[600], reason[64];
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(h->conf.policies_dir, sizeof(h->conf.policies_dir), "%s", dir);
    sk_lua_thread_t *lt = sk_lua_thread_new(h); /* no files yet: nothing loaded */
    ASSERT(lt != NULL);
    sk_policy_req_t r = req(1, 0, 0, 0, 0);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), -1);
    snprintf(path, sizeof(path), "%s/limits.lua", dir);
    FILE *f = fopen(path, "w");
    fputs("function admit(r) return false, 'from the file' end", f);
    fclose(f);
    apply_one(lt, "limits.lua", "x x", 3);
    ASSERT_EQ(sk_policy_admit(lt, &r, reason, sizeof(reason)), 0);
    ASSERT_STREQ(reason, "from the file");
    unlink(path);
    rmdir(dir);
    sk_lua_thread_free(lt);
    free_host(h);
}

static void
test_failing_calls_recover(void)
{
    sk_host_t *h = new_host();
    sk_lua_thread_t *lt = sk_lua_thread_new(h);
    char reason[64];
    /* fails only for one user: the others are served */
    apply_one(lt, "limits.lua", "function admit(r) if r.user_id == 42 then while true do end end return true end", 2);
    sk_policy_req_t r42 = req(42, 0, 0, 0, 0), r1 = req(1, 0, 0, 0, 0);
    double t0 = now_s();
    ASSERT_EQ(sk_policy_admit(lt, &r42, reason, sizeof(reason)), -1);
    ASSERT(now_s() - t0 < 1.0);
    ASSERT_EQ(sk_policy_admit(lt, &r1, reason, sizeof(reason)), 1);
    /* a policy that keeps the whole memory cap in a global: later calls fail or pass, never crash */
    apply_one(lt, "limits.lua",
              "hog = {}\nfunction admit(r)\n  if r.user_id == 42 then while true do hog[#hog + 1] = {} end end\n"
              "  return true\nend",
              3);
    ASSERT_EQ(sk_policy_admit(lt, &r42, reason, sizeof(reason)), -1);
    for (int i = 0; i < 100; i++) {
        sk_policy_req_t ri = req(1000 + i, 0, 0, 0, 0);
        char ip[32];
        snprintf(ip, sizeof(ip), "10.9.%d.%d", i, i); /* new strings to intern */
        ri.ip = ip;
        int rc = sk_policy_admit(lt, &ri, reason, sizeof(reason));
        ASSERT(rc == -1 || rc == 1);
    }
    /* replacing the policy frees the hog */
    apply_one(lt, "limits.lua", "function admit(r) return true end", 4);
    ASSERT_EQ(sk_policy_admit(lt, &r42, reason, sizeof(reason)), 1);
    ASSERT(lt != NULL);
    cJSON *arr;
    cJSON *st = status_of(h, "limits.lua", &arr);
    ASSERT(cJSON_GetObjectItem(st, "call_failures")->valueint >= 2);
    cJSON_Delete(arr);
    sk_lua_thread_free(lt);
    free_host(h);
}

static void
test_small_memory_cap(void)
{
    sk_host_t *h = new_host();
    h->conf.lua_mem_limit_kb = 64; /* the smallest the config accepts */
    sk_lua_thread_t *lt = sk_lua_thread_new(h);
    if (lt != NULL) {
        char reason[64];
        sk_policy_req_t r = req(1, 0, 0, 0, 0);
        int rc = sk_policy_admit(lt, &r, reason, sizeof(reason));
        ASSERT(rc == 1 || rc == -1);
        sk_lua_thread_free(lt);
    }
    free_host(h);
}

static void
bench_admit(void)
{
    sk_host_t *h = new_host();
    sk_lua_thread_t *lt = sk_lua_thread_new(h);
    char reason[64];
    int n = 200000, yes = 0;
    for (int i = 0; i < 1000; i++) { /* warm up */
        sk_policy_req_t r = req(i, 1, 1, 1, 1);
        yes += sk_policy_admit(lt, &r, reason, sizeof(reason));
    }
    struct timespec c0, c1;
    double t0 = now_s();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    for (int i = 0; i < n; i++) {
        sk_policy_req_t r = req(i, 1, (uint32_t)(i % 20), 1, 1);
        yes += sk_policy_admit(lt, &r, reason, sizeof(reason));
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    double wall = (now_s() - t0) * 1e9 / n;
    double cpu = ((double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec)) / n;
    fprintf(stderr, "  limits.lua admit(): %.0f ns CPU, %.0f ns wall per call (%d calls, default policy)\n", cpu, wall, n);
    ASSERT(yes > n / 2);
    sk_lua_thread_free(lt);
    free_host(h);
}

int
main(void)
{
    char err[128];
    ASSERT_EQ(sk_log_open(getenv("SK_TEST_VERBOSE") != NULL ? "debug" : "warn", NULL, err, sizeof(err)), 0);
    RUN(test_default_admit);
    RUN(test_default_allow);
    RUN(test_default_issue);
    RUN(test_arguments);
    RUN(test_wrong_return_types);
    RUN(test_validate);
    RUN(test_check_dir);
    RUN(test_swap_keeps_old);
    RUN(test_no_version_falls_back_to_file);
    RUN(test_failing_calls_recover);
    RUN(test_small_memory_cap);
    RUN(bench_admit);
    DONE();
}
