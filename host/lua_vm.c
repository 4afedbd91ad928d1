/*
 * The sandboxed Lua state: a capped allocator, a count hook, the per-policy _ENV of SPEC §7 and the seckill library.
 *
 * Budgets. Every budgeted call (sk_lua_vm_run) arms the count hook at lua.instr_limit. When a budget runs out, the
 * state is marked exhausted and the hook re-armed at one instruction, so every instruction after that raises the
 * budget error again; the sandbox's pcall and xpcall re-raise it and skip the policy's message handler. The allocator
 * refuses to grow past lua.mem_limit_kb; Lua then collects and retries, and only its final LUA_ERRMEM counts as the
 * memory budget. All host work on the state runs inside lua_pcall, so hitting the cap never reaches the panic handler.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lauxlib.h>
#include <lualib.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include "host.h"
#include "lua_vm.h"

/* Addresses used as unforgeable keys: the budget error's value and the registry key of the library templates. */
static const char budget_sentinel = 0;
static const char templates_key = 0;

/* table.move loops over its range even when it holds only nils, which neither allocates nor runs the count hook. */
#define SK_LUA_MOVE_MAX (1 << 20)

sk_lua_vm_t *
sk_lua_vm_of(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    return ud;
}

static void *
on_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sk_lua_vm_t *vm = ud;
    size_t old = ptr != NULL ? osize : 0; /* with ptr == NULL, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        vm->mem_used -= old;
        return NULL;
    }
    if (nsize > old && (vm->mem_used >= vm->mem_limit || nsize - old > vm->mem_limit - vm->mem_used))
        return NULL; /* Lua runs an emergency collection and retries once before raising LUA_ERRMEM */
    void *n = realloc(ptr, nsize);
    if (n != NULL)
        vm->mem_used = vm->mem_used - old + nsize;
    return n;
}

static int
on_panic(lua_State *L)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)";
    sk_logf(SK_LOG_ERROR, "lua", "unprotected Lua error, aborting: %s", msg);
    return 0; /* Lua aborts */
}

static void
on_count(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    sk_lua_budget_exhaust(L, SK_LUA_BUDGET_INSTR);
}

int
sk_lua_budget_exhaust(lua_State *L, int kind)
{
    sk_lua_vm_t *vm = sk_lua_vm_of(L);
    if (vm->exhausted == SK_LUA_BUDGET_OK) {
        vm->exhausted = kind;
        lua_sethook(L, on_count, LUA_MASKCOUNT, 1);
    }
    lua_pushlightuserdata(L, (void *)&budget_sentinel);
    return lua_error(L);
}

/* The sandbox's pcall: like Lua's, but a budget error or LUA_ERRMEM passes through. */
static int
sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
    if (status == LUA_OK)
        return lua_gettop(L);
    sk_lua_vm_t *vm = sk_lua_vm_of(L);
    if (status == LUA_ERRMEM || vm->exhausted != SK_LUA_BUDGET_OK)
        return sk_lua_budget_exhaust(L, SK_LUA_BUDGET_MEM);
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
}

/* Runs the policy's message handler only while no budget is exhausted: the budget error is raised from inside the
 * count hook, where Lua allows no further hooks, so a handler run there could loop unchecked. */
static int
xpcall_handler(lua_State *L)
{
    if (sk_lua_vm_of(L)->exhausted != SK_LUA_BUDGET_OK)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int
sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, xpcall_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1); /* [f, h, args..., true] */
    lua_pushvalue(L, 1);   /* [f, h, args..., true, f] */
    lua_rotate(L, 3, 2);   /* [f, h, true, f, args...] */
    int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
    if (status == LUA_OK)
        return lua_gettop(L) - 2;
    sk_lua_vm_t *vm = sk_lua_vm_of(L);
    if (status == LUA_ERRMEM || vm->exhausted != SK_LUA_BUDGET_OK)
        return sk_lua_budget_exhaust(L, SK_LUA_BUDGET_MEM);
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
}

static int
sb_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
    if (e >= f && (lua_Unsigned)e - (lua_Unsigned)f >= SK_LUA_MOVE_MAX)
        return luaL_error(L, "too many elements to move (%d max)", SK_LUA_MOVE_MAX);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* ---- the seckill library; upvalue 1 of each function is the policy's name ---- */

static void
policy_log(lua_State *L, const char *text, size_t len)
{
    sk_lua_vm_t *vm = sk_lua_vm_of(L);
    const char *name = lua_tostring(L, lua_upvalueindex(1));
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    if (ts.tv_sec != vm->log_second) {
        if (vm->log_dropped > 0)
            sk_logf(SK_LOG_WARN, "lua", "%u policy log lines dropped (%d per second max)", vm->log_dropped, SK_LUA_LOG_PER_SEC);
        vm->log_second = ts.tv_sec;
        vm->log_lines = 0;
        vm->log_dropped = 0;
    }
    if (++vm->log_lines > SK_LUA_LOG_PER_SEC) {
        vm->log_dropped++;
        return;
    }
    char line[SK_LUA_LOG_MAX + 1];
    size_t n = len < SK_LUA_LOG_MAX ? len : SK_LUA_LOG_MAX;
    for (size_t i = 0; i < n; i++)
        line[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
    line[n] = '\0';
    sk_logf(SK_LOG_INFO, name != NULL ? name : "lua", "%s%s", line, len > n ? " (truncated)" : "");
}

static int
sk_fn_log(lua_State *L)
{
    size_t len;
    const char *msg = luaL_tolstring(L, 1, &len);
    policy_log(L, msg, len);
    return 0;
}

/* print goes to the same bounded log: a daemon's stdout is nobody's console */
static int
sb_print(lua_State *L)
{
    char line[SK_LUA_LOG_MAX + 1];
    size_t used = 0;
    int n = lua_gettop(L);
    for (int i = 1; i <= n && used < SK_LUA_LOG_MAX; i++) {
        size_t len;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1)
            line[used++] = '\t';
        size_t take = len < SK_LUA_LOG_MAX - used ? len : SK_LUA_LOG_MAX - used;
        memcpy(line + used, s, take);
        used += take;
        lua_pop(L, 1);
    }
    policy_log(L, line, used);
    return 0;
}

static int
sk_fn_hmac_sha256(lua_State *L)
{
    size_t klen, mlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *msg = luaL_checklstring(L, 2, &mlen);
    sk_lua_vm_t *vm = sk_lua_vm_of(L);
    uint8_t mac[32];
    char hex[65];
    if (sk_hmac_sha256(vm->hmac, key, klen, msg, mlen, mac) != 0)
        return luaL_error(L, "hmac_sha256 failed");
    sk_hex_encode(mac, sizeof(mac), hex);
    lua_pushlstring(L, hex, 64);
    return 1;
}

static int
sk_fn_sha256(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    char hex[65];
    sk_sha256_hex(s, len, hex);
    lua_pushlstring(L, hex, 64);
    return 1;
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: fast, per state, seeded from RAND_bytes; seckill.random() is a lottery, not a secret */
static uint64_t
rng_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static int
sk_fn_random(lua_State *L)
{
    lua_pushnumber(L, (double)(rng_next(sk_lua_vm_of(L)->rng) >> 11) * 0x1.0p-53);
    return 1;
}

static int
sk_fn_random_hex(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 64, 1, "expected 1 to 64 bytes");
    sk_lua_vm_t *vm = sk_lua_vm_of(L);
    char hex[129];
    if (vm->rand_left < (size_t)n) {
        if (RAND_bytes(vm->rand_buf, (int)sizeof(vm->rand_buf)) != 1) {
            vm->rand_left = 0;
            return luaL_error(L, "random_hex: no randomness available");
        }
        vm->rand_left = sizeof(vm->rand_buf);
    }
    uint8_t *buf = vm->rand_buf + sizeof(vm->rand_buf) - vm->rand_left;
    sk_hex_encode(buf, (size_t)n, hex);
    OPENSSL_cleanse(buf, (size_t)n);
    vm->rand_left -= (size_t)n;
    lua_pushlstring(L, hex, (size_t)n * 2);
    return 1;
}

/* Integer unix seconds, the same unit as r.now. */
static int
sk_fn_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec);
    return 1;
}

/* ---- state construction ---- */

static void
push_copy(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_createtable(L, 0, 32);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

/* Builds the library templates every policy's _ENV copies from, and points the string metatable at the capped string
 * table (the metatable is per lua_State and getmetatable is not in the sandbox, so policies cannot reach it). */
static int
setup_state(lua_State *L)
{
    static const char *const base_names[] = {"assert", "error",    "ipairs",   "next", "pairs",
                                             "select", "tonumber", "tostring", "type", "_VERSION"};
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);
    lua_createtable(L, 0, 8); /* 6: the templates */

    lua_createtable(L, 0, 16);
    for (size_t i = 0; i < sizeof(base_names) / sizeof(base_names[0]); i++) {
        lua_getfield(L, 1, base_names[i]);
        lua_setfield(L, -2, base_names[i]);
    }
    lua_pushcfunction(L, sb_pcall);
    lua_setfield(L, -2, "pcall");
    lua_pushcfunction(L, sb_xpcall);
    lua_setfield(L, -2, "xpcall");
    lua_setfield(L, 6, "_base");

    push_copy(L, 2);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    sk_lua_pattern_install(L, -1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 2);
    lua_setfield(L, 6, "string");

    push_copy(L, 3);
    lua_getfield(L, -1, "move");
    lua_pushcclosure(L, sb_move, 1);
    lua_setfield(L, -2, "move");
    lua_setfield(L, 6, "table");

    push_copy(L, 4);
    lua_setfield(L, 6, "math");
    push_copy(L, 5);
    lua_setfield(L, 6, "utf8");

    lua_pushvalue(L, 6);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &templates_key);
    lua_settop(L, 0);
    return 0;
}

/* Pushes a fresh _ENV for policy `name`: its own copies of every library table. */
static void
push_env(lua_State *L, const char *name)
{
    static const char *const libs[] = {"string", "table", "math", "utf8"};
    static const luaL_Reg seckill_fns[] = {{"hmac_sha256", sk_fn_hmac_sha256},
                                           {"sha256", sk_fn_sha256},
                                           {"random", sk_fn_random},
                                           {"random_hex", sk_fn_random_hex},
                                           {"now", sk_fn_now},
                                           {"log", sk_fn_log},
                                           {NULL, NULL}};
    lua_rawgetp(L, LUA_REGISTRYINDEX, &templates_key);
    lua_getfield(L, -1, "_base");
    push_copy(L, -1); /* [T, base, env] */
    lua_remove(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
        lua_getfield(L, -2, libs[i]);
        push_copy(L, -1);
        lua_setfield(L, -3, libs[i]);
        lua_pop(L, 1);
    }
    lua_createtable(L, 0, 8);
    lua_pushstring(L, name);
    luaL_setfuncs(L, seckill_fns, 1);
    lua_setfield(L, -2, "seckill");
    lua_pushstring(L, name);
    lua_pushcclosure(L, sb_print, 1);
    lua_setfield(L, -2, "print");
    lua_remove(L, -2); /* [env] */
}

sk_lua_vm_t *
sk_lua_vm_new(unsigned mem_limit_kb, unsigned instr_limit, char *err, size_t errlen)
{
    sk_lua_vm_t *vm = calloc(1, sizeof(*vm));
    if (vm == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    vm->mem_limit = vm->mem_cap = (size_t)mem_limit_kb * 1024;
    vm->instr_limit = instr_limit == 0 ? 1 : instr_limit > INT_MAX ? INT_MAX : instr_limit;
    if ((vm->hmac = sk_hmac_new()) == NULL) {
        snprintf(err, errlen, "cannot create an HMAC context");
        goto fail;
    }
    if (RAND_bytes((unsigned char *)vm->rng, sizeof(vm->rng)) != 1) {
        snprintf(err, errlen, "RAND_bytes failed");
        goto fail;
    }
    vm->rng[0] |= 1; /* xoshiro must not start from all zeros */
    if ((vm->L = lua_newstate(on_alloc, vm)) == NULL) {
        snprintf(err, errlen, "lua.mem_limit_kb = %u is too small for a Lua state", mem_limit_kb);
        goto fail;
    }
    lua_atpanic(vm->L, on_panic);
    lua_pushcfunction(vm->L, setup_state);
    if (lua_pcall(vm->L, 0, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "cannot build the Lua sandbox (lua.mem_limit_kb = %u): %s", mem_limit_kb,
                 lua_type(vm->L, -1) == LUA_TSTRING ? lua_tostring(vm->L, -1) : "?");
        goto fail;
    }
    return vm;
fail:
    sk_lua_vm_free(vm);
    return NULL;
}

void
sk_lua_vm_free(sk_lua_vm_t *vm)
{
    if (vm == NULL)
        return;
    if (vm->L != NULL)
        lua_close(vm->L);
    sk_hmac_free(vm->hmac);
    OPENSSL_cleanse(vm->rand_buf, sizeof(vm->rand_buf));
    free(vm);
}

static int
run(sk_lua_vm_t *vm, lua_CFunction fn, int fn_ref, void *ud, char *err, size_t errlen)
{
    lua_State *L = vm->L;
    lua_settop(L, 0);
    if (!vm->compiling) /* a state still over the cap (a policy kept it all) gets no more */
        vm->mem_limit = vm->mem_cap > vm->mem_used ? vm->mem_cap : vm->mem_used;
    vm->exhausted = SK_LUA_BUDGET_OK;
    vm->pat_steps = 0;
    lua_sethook(L, on_count, LUA_MASKCOUNT, (int)vm->instr_limit);
    if (fn != NULL)
        lua_pushcfunction(L, fn);
    else
        lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlightuserdata(L, ud);
    int status = lua_pcall(L, 1, 0, 0);
    lua_sethook(L, NULL, 0, 0);
    int kind = vm->exhausted;
    vm->exhausted = SK_LUA_BUDGET_OK;
    if (status == LUA_ERRMEM && kind == SK_LUA_BUDGET_OK)
        kind = SK_LUA_BUDGET_MEM;
    /* kind is checked even on LUA_OK: `return pcall(f)` can tail-return past the exhausted state */
    if (status == LUA_OK && kind == SK_LUA_BUDGET_OK) {
        lua_settop(L, 0);
        return 0;
    }
    if (kind == SK_LUA_BUDGET_INSTR)
        snprintf(err, errlen, "instruction limit exceeded (lua.instr_limit = %u)", vm->instr_limit);
    else if (kind == SK_LUA_BUDGET_MEM)
        snprintf(err, errlen, "memory limit exceeded (lua.mem_limit_kb = %zu)", vm->mem_cap / 1024);
    else if (lua_type(L, -1) == LUA_TSTRING)
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
    else
        snprintf(err, errlen, "error object is a %s value", luaL_typename(L, -1));
    lua_settop(L, 0);
    if (kind == SK_LUA_BUDGET_MEM)
        lua_gc(L, LUA_GCCOLLECT);
    return -1;
}

int
sk_lua_vm_run(sk_lua_vm_t *vm, lua_CFunction fn, void *ud, char *err, size_t errlen)
{
    return run(vm, fn, LUA_NOREF, ud, err, errlen);
}

int
sk_lua_vm_run_ref(sk_lua_vm_t *vm, int fn_ref, void *ud, char *err, size_t errlen)
{
    return run(vm, NULL, fn_ref, ud, err, errlen);
}

typedef struct st_compile_t {
    const char *name, *fn_name, *src;
    size_t len;
    sk_lua_slot_t *slot;
} compile_t;

static int
do_compile(lua_State *L)
{
    compile_t *c = lua_touserdata(L, 1);
    char chunkname[80];
    snprintf(chunkname, sizeof(chunkname), "=%s", c->name);
    if (luaL_loadbufferx(L, c->src, c->len, chunkname, "t") != LUA_OK)
        return lua_error(L);
    push_env(L, c->name); /* [ud, chunk, env] */
    lua_pushvalue(L, -1);
    if (lua_setupvalue(L, -3, 1) == NULL) /* a main chunk's first upvalue is _ENV */
        lua_pop(L, 1);
    lua_pushvalue(L, -2);
    lua_call(L, 0, 0);
    if (lua_getfield(L, -1, c->fn_name) != LUA_TFUNCTION)
        return luaL_error(L, "%s: no function %s (expected: function %s(...) ... end)", c->name, c->fn_name, c->fn_name);
    c->slot->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 8);
    c->slot->r_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 12);
    c->slot->a_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

int
sk_lua_vm_compile(sk_lua_vm_t *vm, const char *name, const char *fn_name, const char *src, size_t len, sk_lua_slot_t *slot,
                  char *err, size_t errlen)
{
    sk_lua_slot_init(slot);
    if (len > SK_LUA_MAX_SOURCE) {
        snprintf(err, errlen, "%s: source too large (%zu bytes, %d max)", name, len, SK_LUA_MAX_SOURCE);
        return -1;
    }
    compile_t c = {.name = name, .fn_name = fn_name, .src = src, .len = len, .slot = slot};
    /* headroom for the new version even when the old one holds the whole cap; the old one is dropped after a swap */
    vm->mem_limit = vm->mem_used + vm->mem_cap;
    vm->compiling = 1;
    int rc = sk_lua_vm_run(vm, do_compile, &c, err, errlen);
    vm->compiling = 0;
    vm->mem_limit = vm->mem_cap > vm->mem_used ? vm->mem_cap : vm->mem_used;
    if (rc == 0)
        return 0;
    if (strncmp(err, name, strlen(name)) != 0) { /* budget errors name no chunk */
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s: %s", name, err);
        snprintf(err, errlen, "%s", tmp);
    }
    sk_lua_slot_release(vm, slot);
    return -1;
}

void
sk_lua_slot_init(sk_lua_slot_t *slot)
{
    memset(slot, 0, sizeof(*slot));
    slot->fn_ref = slot->r_ref = slot->a_ref = LUA_NOREF;
}

static int
do_release(lua_State *L)
{
    sk_lua_slot_t *slot = lua_touserdata(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, slot->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, slot->r_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, slot->a_ref);
    return 0;
}

void
sk_lua_slot_release(sk_lua_vm_t *vm, sk_lua_slot_t *slot)
{
    if (slot->fn_ref != LUA_NOREF || slot->r_ref != LUA_NOREF || slot->a_ref != LUA_NOREF) {
        lua_pushcfunction(vm->L, do_release);
        lua_pushlightuserdata(vm->L, slot);
        lua_pcall(vm->L, 1, 0, 0); /* unref only rewrites existing registry slots; protected anyway */
        lua_settop(vm->L, 0);
    }
    sk_lua_slot_init(slot);
}
