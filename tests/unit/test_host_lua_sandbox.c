/*
 * The Lua sandbox (host/lua_vm.c, host/lua_pattern.c) with no server: forbidden globals, escapes, budgets that a
 * policy's pcall cannot swallow, capped patterns, the seckill library, text-only loading.
 */
#include <time.h>
#include <lauxlib.h>
#include <lualib.h>
#include "host.h"
#include "lua_vm.h"
#include "sk_test.h"

#define MEM_KB 4096
#define INSTR 1000000

typedef struct st_eval_t {
    int ref;
    char out[256];
} eval_t;

static int
call_f(lua_State *L)
{
    eval_t *e = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref);
    lua_call(L, 0, 1);
    size_t len;
    const char *s = luaL_tolstring(L, -1, &len);
    snprintf(e->out, sizeof(e->out), "%.*s", (int)len, s);
    return 0;
}

/* Compiles src (which defines f) as "t.lua" and calls f(); out gets f's first result as a string. 0 or -1 + err. */
static int
eval(sk_lua_vm_t *vm, const char *src, char *out, char *err)
{
    sk_lua_slot_t slot;
    eval_t e = {0};
    out[0] = err[0] = '\0';
    if (sk_lua_vm_compile(vm, "t.lua", "f", src, strlen(src), &slot, err, 512) != 0)
        return -1;
    e.ref = slot.fn_ref;
    int rc = sk_lua_vm_run(vm, call_f, &e, err, 512);
    sk_lua_slot_release(vm, &slot);
    strcpy(out, e.out);
    return rc;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static sk_lua_vm_t *
new_vm(void)
{
    char err[256];
    sk_lua_vm_t *vm = sk_lua_vm_new(MEM_KB, INSTR, err, sizeof(err));
    if (vm == NULL)
        fprintf(stderr, "sk_lua_vm_new: %s\n", err);
    ASSERT(vm != NULL);
    return vm;
}

/* Asserts that `expr` evaluates to `want` inside f(). */
static void
expect(sk_lua_vm_t *vm, const char *expr, const char *want)
{
    char src[1024], out[256], err[512];
    snprintf(src, sizeof(src), "function f() return %s end", expr);
    if (eval(vm, src, out, err) != 0)
        fprintf(stderr, "%s: %s\n", expr, err);
    ASSERT_STREQ(out, want);
}

/* Asserts that running `body` inside f() fails with an error containing `needle`. */
static void
expect_fail(sk_lua_vm_t *vm, const char *body, const char *needle)
{
    char src[2048], out[256], err[512];
    snprintf(src, sizeof(src), "function f()\n%s\nend", body);
    int rc = eval(vm, src, out, err);
    if (rc == 0 || strstr(err, needle) == NULL)
        fprintf(stderr, "body: %s\nrc %d, out \"%s\", err \"%s\", wanted \"%s\"\n", body, rc, out, err, needle);
    ASSERT_EQ(rc, -1);
    ASSERT(strstr(err, needle) != NULL);
}

static void
test_forbidden_globals(void)
{
    sk_lua_vm_t *vm = new_vm();
    static const char *const absent[] = {"load",         "loadfile",     "dofile",      "require",    "collectgarbage",
                                         "getmetatable", "setmetatable", "rawset",      "rawget",     "rawequal",
                                         "rawlen",       "io",           "os",          "debug",      "package",
                                         "coroutine",    "warn",         "string.dump", "loadstring", "module"};
    for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
        char expr[128];
        snprintf(expr, sizeof(expr), "type(%s)", absent[i]);
        expect(vm, expr, "nil");
    }
    static const char *const present[] = {"assert",
                                          "error",
                                          "ipairs",
                                          "next",
                                          "pairs",
                                          "pcall",
                                          "xpcall",
                                          "select",
                                          "tonumber",
                                          "tostring",
                                          "type",
                                          "print",
                                          "string.find",
                                          "string.format",
                                          "table.insert",
                                          "table.concat",
                                          "math.floor",
                                          "utf8.char",
                                          "seckill.hmac_sha256",
                                          "seckill.sha256",
                                          "seckill.random",
                                          "seckill.random_hex",
                                          "seckill.now",
                                          "seckill.log"};
    for (size_t i = 0; i < sizeof(present) / sizeof(present[0]); i++) {
        char expr[128];
        snprintf(expr, sizeof(expr), "type(%s)", present[i]);
        expect(vm, expr, "function");
    }
    expect(vm, "_G == _ENV", "true");
    expect(vm, "_VERSION", "Lua 5.4");
    sk_lua_vm_free(vm);
}

static void
test_escapes_fail(void)
{
    sk_lua_vm_t *vm = new_vm();
    expect_fail(vm, "os.execute('touch /tmp/sk-lua-pwned')", "t.lua:2: attempt to index a nil value (global 'os')");
    expect_fail(vm, "io.open('/etc/passwd')", "global 'io'");
    expect_fail(vm, "load('return 1')", "global 'load'");
    expect_fail(vm, "require('os')", "global 'require'");
    expect_fail(vm, "return getmetatable('').__index", "global 'getmetatable'");
    expect_fail(vm, "return debug.getregistry()", "global 'debug'");
    expect_fail(vm, "return string.dump(f)", "field 'dump'");
    expect_fail(vm, "local s = ''; s.x = 1", "attempt to index");
    /* the string methods reach the capped table, which a policy can neither see nor change */
    expect(vm, "(function() string.find = nil; string.rep = nil; return ('abc'):find('b') end)()", "2");
    expect(vm, "('ab'):rep(2)", "abab");
    sk_lua_vm_free(vm);
}

static void
test_env_isolation(void)
{
    sk_lua_vm_t *vm = new_vm();
    char out[256], err[512];
    /* one policy clobbers its libraries and globals ... */
    ASSERT_EQ(eval(vm,
                   "X = 42; string.upper = nil; math.floor = nil; table.insert = nil; seckill.now = nil\n"
                   "function f() return X end",
                   out, err),
              0);
    ASSERT_STREQ(out, "42");
    /* ... the next one sees none of it */
    expect(vm, "tostring(X)", "nil");
    expect(vm, "string.upper('a') .. math.floor(1.5) .. type(table.insert) .. type(seckill.now)", "A1functionfunction");
    expect(vm, "('a'):upper()", "A");
    sk_lua_vm_free(vm);
}

static void
test_instruction_budget(void)
{
    sk_lua_vm_t *vm = new_vm();
    double t0 = now_s();
    expect_fail(vm, "while true do end", "instruction limit exceeded");
    /* pcall, xpcall, a looping handler, a tail-called pcall, nested pcalls: none gets past the budget */
    expect_fail(vm, "for i = 1, 100 do pcall(function() while true do end end) end return 'escaped'", "instruction limit exceeded");
    expect_fail(vm, "return pcall(function() while true do end end)", "instruction limit exceeded");
    expect_fail(vm, "return pcall(pcall, function() while true do end end)", "instruction limit exceeded");
    expect_fail(vm,
                "local ok = xpcall(function() while true do end end, function(e) while true do end end)\n"
                "while true do end",
                "instruction limit exceeded");
    expect_fail(vm, "return xpcall(function() while true do end end, function(e) return 'caught' end)",
                "instruction limit exceeded");
    expect_fail(vm, "local t = {3, 2, 1}; table.sort(t, function(a, b) while true do end end)", "instruction limit exceeded");
    expect_fail(vm, "local function r() return r() end return r()", "instruction limit exceeded");
    ASSERT(now_s() - t0 < 5.0);
    /* the budget is per call: the same state runs fine afterwards, call after call */
    for (int i = 0; i < 5; i++)
        expect(vm, "(function() local n = 0 for i = 1, 100000 do n = n + i end return n end)()", "5000050000");
    /* a normal error stays catchable */
    expect(vm, "select(2, pcall(error, 'boom', 0))", "boom");
    expect(vm, "select(2, xpcall(error, function(e) return 'handled: ' .. e end, 'x', 0))", "handled: x");
    /* top-level code is budgeted too */
    char out[256], err[512];
    ASSERT_EQ(eval(vm, "while true do end function f() end", out, err), -1);
    ASSERT(strstr(err, "t.lua: instruction limit exceeded") != NULL);
    sk_lua_vm_free(vm);
}

static void
test_memory_budget(void)
{
    sk_lua_vm_t *vm = new_vm();
    size_t base = vm->mem_used;
    expect_fail(vm, "local t = {} while true do t[#t + 1] = ('x'):rep(100) .. #t end", "memory limit exceeded");
    expect_fail(vm, "return ('x'):rep(1e9)", "memory limit exceeded");
    expect_fail(vm, "return string.rep('x', 1e9)", "memory limit exceeded");
    expect_fail(vm, "local ok = pcall(string.rep, 'x', 1e9) return 'escaped'", "memory limit exceeded");
    expect_fail(vm, "local ok = pcall(function() local t = {} while true do t[#t + 1] = {} end end) return 'escaped'",
                "memory limit exceeded");
    expect_fail(vm, "local s = 'x' while true do s = s .. s end", "memory limit exceeded");
    expect_fail(vm, "return table.concat({('y'):rep(3e6), ('y'):rep(3e6)})", "memory limit exceeded");
    /* still usable, and the garbage is gone */
    expect(vm, "1 + 1", "2");
    ASSERT(vm->mem_used < base + 256 * 1024);
    ASSERT(vm->mem_used <= vm->mem_limit);
    /* C loops that allocate nothing are bounded too */
    double t0 = now_s();
    expect(vm, "#(''):rep(1e18)", "0");
    expect_fail(vm, "table.move({}, 1, 1e15, 2)", "too many elements to move");
    ASSERT(now_s() - t0 < 1.0);
    sk_lua_vm_free(vm);
}

static void
test_pathological_patterns(void)
{
    sk_lua_vm_t *vm = new_vm();
    double t0 = now_s();
    expect_fail(vm, "return string.find(('a'):rep(100000), ('a*'):rep(30) .. 'b')", "pattern subject too long");
    expect_fail(vm, "return ('a'):rep(100000):find(('a*'):rep(30) .. 'b')", "pattern subject too long");
    expect_fail(vm, "return ('a'):match(('a.'):rep(200))", "pattern too long");
    /* under the length caps the backtracking is charged to the instruction budget, and pcall cannot catch it */
    expect_fail(vm, "return ('a'):rep(10000):find(('a*'):rep(30) .. 'b')", "instruction limit exceeded");
    expect_fail(vm, "pcall(string.match, ('a'):rep(10000), ('a-'):rep(20) .. 'b') return 'escaped'", "instruction limit exceeded");
    expect_fail(vm, "for w in ('a'):rep(10000):gmatch(('a*'):rep(20) .. 'b') do end", "instruction limit exceeded");
    expect_fail(vm, "return (('a'):rep(10000):gsub(('a*'):rep(20) .. 'b', ''))", "instruction limit exceeded");
    double took = now_s() - t0;
    fprintf(stderr, "  pathological patterns failed in %.3f s\n", took);
    ASSERT(took < 3.0);
    /* a plain find is linear and not capped */
    expect(vm, "(('a'):rep(100000) .. 'b'):find('b', 1, true)", "100001");
    expect(vm, "(('a'):rep(100000) .. 'b'):find('ab')", "100000");
    sk_lua_vm_free(vm);
}

static void
test_pattern_conformance(void)
{
    const char *dir = getenv("SK_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/unit/data/lua/patterns.lua", dir != NULL ? dir : "..");
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fprintf(stderr, "cannot open %s (set SK_SOURCE_DIR)\n", path);
    ASSERT(f != NULL);
    static char src[65536];
    size_t n = fread(src, 1, sizeof(src) - 1, f);
    fclose(f);
    src[n] = '\0';
    sk_lua_vm_t *vm = new_vm();
    char out[256], err[512];
    if (eval(vm, src, out, err) != 0)
        fprintf(stderr, "patterns.lua: %s\n", err);
    ASSERT_STREQ(out, "ok");
    sk_lua_vm_free(vm);
}

static void
test_seckill_lib(void)
{
    sk_lua_vm_t *vm = new_vm();
    expect(vm, "seckill.sha256('abc')", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* RFC 4231 test case 2 */
    expect(vm, "seckill.hmac_sha256('Jefe', 'what do ya want for nothing?')",
           "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    expect(vm, "seckill.hmac_sha256('Jefe', 'what do ya want for nothing?')",
           "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    expect(vm, "seckill.hmac_sha256('', '')", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    expect(vm,
           "(function() local lo, hi = 1, 0 for i = 1, 10000 do local x = seckill.random()\n"
           " if x < lo then lo = x end if x > hi then hi = x end end\n"
           " return lo >= 0 and lo < 0.01 and hi < 1 and hi > 0.99 end)()",
           "true");
    expect(vm, "#seckill.random_hex(16) .. (seckill.random_hex(16)):match('^%x+$'):len()", "3232");
    expect(vm, "seckill.random_hex(8) ~= seckill.random_hex(8)", "true");
    /* across many refills of the state's random buffer (1 KB): every draw fresh, odd sizes straddling a refill */
    expect(vm,
           "(function() local seen, n = {}, 0 for i = 1, 2000 do local h = seckill.random_hex(i % 64 + 1) "
           "if #h ~= 2 * (i % 64 + 1) or not h:match('^%x+$') then return 'bad ' .. i end "
           "if #h >= 16 then if seen[h] then return 'repeat ' .. i end seen[h] = true n = n + 1 end end return n end)()",
           "1777");
    expect_fail(vm, "return seckill.random_hex(0)", "expected 1 to 64 bytes");
    expect_fail(vm, "return seckill.random_hex(65)", "expected 1 to 64 bytes");
    expect(vm, "math.type(seckill.now())", "integer");
    char expr[128];
    snprintf(expr, sizeof(expr), "math.abs(seckill.now() - %lld) <= 2", (long long)time(NULL));
    expect(vm, expr, "true");
    /* logging is bounded and never fails the call */
    /* past SK_LUA_LOG_PER_SEC lines in one second the rest is dropped (retried in case a second boundary hits) */
    for (int attempt = 0; attempt < 3 && vm->log_dropped == 0; attempt++)
        expect(vm, "(function() for i = 1, 200 do seckill.log(('z'):rep(5000)) end print('a', 1, nil) return 1 end)()", "1");
    ASSERT(vm->log_dropped > 0);
    ASSERT(vm->log_lines == SK_LUA_LOG_PER_SEC + vm->log_dropped);
    sk_lua_vm_free(vm);
}

typedef struct st_dump_t {
    char buf[4096];
    size_t len;
} dump_t;

static int
on_dump(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    dump_t *d = ud;
    if (d->len + sz > sizeof(d->buf))
        return 1;
    memcpy(d->buf + d->len, p, sz);
    d->len += sz;
    return 0;
}

static void
test_bytecode_refused(void)
{
    /* real bytecode from a plain state, fed to the sandbox */
    static dump_t d;
    lua_State *L = luaL_newstate();
    ASSERT_EQ(luaL_loadstring(L, "function f() return 'from bytecode' end"), LUA_OK);
    ASSERT_EQ(lua_dump(L, on_dump, &d, 0), 0);
    lua_close(L);
    ASSERT(d.len > 4 && d.buf[0] == '\x1b');
    sk_lua_vm_t *vm = new_vm();
    sk_lua_slot_t slot;
    char err[512];
    ASSERT_EQ(sk_lua_vm_compile(vm, "t.lua", "f", d.buf, d.len, &slot, err, sizeof(err)), -1);
    ASSERT(strstr(err, "attempt to load a binary chunk") != NULL);
    ASSERT_EQ(slot.fn_ref, LUA_NOREF);
    sk_lua_vm_free(vm);
}

int
main(void)
{
    char err[128];
    ASSERT_EQ(sk_log_open("warn", NULL, err, sizeof(err)), 0); /* the log tests write 50 info lines */
    RUN(test_forbidden_globals);
    RUN(test_escapes_fail);
    RUN(test_env_isolation);
    RUN(test_instruction_budget);
    RUN(test_memory_budget);
    RUN(test_pathological_patterns);
    RUN(test_pattern_conformance);
    RUN(test_seckill_lib);
    RUN(test_bytecode_refused);
    DONE();
}
