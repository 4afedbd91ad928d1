/*
 * The policy engine of SPEC §7: one sandboxed state per host thread holding limits.lua, buy_rate.lua and token.lua,
 * the calls admit / allow / issue with their return-type checks, hot swap from snapshots, and validation.
 *
 * A call builds its arguments inside the protected call (a full memory cap must raise, not abort) and reuses one r
 * table and one a table per policy, refilled on every call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lauxlib.h>
#include "host.h"
#include "lua_vm.h"

enum { POL_LIMITS = 0, POL_BUY_RATE = 1, POL_TOKEN = 2, POL_COUNT = 3 };

static const struct st_policy_def_t {
    const char *name, *fn;
} policy_defs[POL_COUNT] = {{"limits.lua", "admit"}, {"buy_rate.lua", "allow"}, {"token.lua", "issue"}};

#define TOKEN_MIN 16
#define TOKEN_MAX 128
#define TTL_MAX (10LL * 365 * 24 * 3600)

struct st_sk_lua_thread_t {
    sk_host_t *host;
    sk_lua_vm_t *vm;
    int caller_ref;
    sk_lua_slot_t slots[POL_COUNT];
    int from_file[POL_COUNT];
    struct {
        int64_t second;
        unsigned suppressed;
    } fail_log[POL_COUNT];
};

typedef struct st_call_t {
    int kind;
    const sk_lua_slot_t *slot;
    const sk_policy_req_t *r;
    const sk_policy_activity_t *a;
    const char *secret;
    int verdict;
    char *text; /* admit: the reason; issue: the token */
    size_t textcap;
    int64_t ttl; /* issue: 0 when the policy gave none */
} call_t;

static int
policy_index(const char *name)
{
    for (int i = 0; i < POL_COUNT; i++)
        if (strcmp(policy_defs[i].name, name) == 0)
            return i;
    return -1;
}

static int64_t
mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec;
}

static void
copy_text(char *dst, size_t cap, const char *src, size_t len)
{
    if (cap == 0)
        return;
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* ---- the call, inside the protected call ---- */

/* The argument keys, interned once as upvalues of the caller closure: lua_setfield would look each C string up in
 * Lua's string cache (a strcmp) on every call. */
enum {
    K_USER_ID = 1,
    K_PRODUCT_ID,
    K_NOW,
    K_IP,
    K_USER_SEC,
    K_USER_MIN,
    K_IP_SEC,
    K_IP_MIN,
    K_ACTIVITY_ID,
    K_TOTAL,
    K_SOLD,
    K_LEFT,
    K_SPEED,
    K_BUY_LIMIT,
    K_BUY_RATE,
    K_START_TIME,
    K_END_TIME,
    K_STATUS,
    K_NAME,
    K_END
};
static const char *const key_names[K_END] = {NULL,        "user_id",  "product_id",  "now",      "ip",     "user_sec", "user_min",
                                             "ip_sec",    "ip_min",   "activity_id", "total",    "sold",   "left",     "speed",
                                             "buy_limit", "buy_rate", "start_time",  "end_time", "status", "name"};

static void
set_int(lua_State *L, int key, int64_t v)
{
    lua_pushvalue(L, lua_upvalueindex(key));
    lua_pushinteger(L, (lua_Integer)v);
    lua_rawset(L, -3);
}

static void
set_str(lua_State *L, int key, const char *v)
{
    lua_pushvalue(L, lua_upvalueindex(key));
    lua_pushstring(L, v);
    lua_rawset(L, -3);
}

static void
fill_req(lua_State *L, const sk_policy_req_t *r, int counts)
{
    set_int(L, K_USER_ID, r->user_id);
    set_int(L, K_PRODUCT_ID, r->product_id);
    set_int(L, K_NOW, r->now);
    set_str(L, K_IP, r->ip != NULL ? r->ip : "");
    if (counts) {
        set_int(L, K_USER_SEC, r->user_sec);
        set_int(L, K_USER_MIN, r->user_min);
        set_int(L, K_IP_SEC, r->ip_sec);
        set_int(L, K_IP_MIN, r->ip_min);
    }
}

static void
fill_activity(lua_State *L, const sk_policy_activity_t *pa)
{
    const sk_activity_t *a = pa->activity;
    set_int(L, K_ACTIVITY_ID, a->activity_id);
    set_int(L, K_PRODUCT_ID, a->product_id);
    set_int(L, K_TOTAL, a->total);
    set_int(L, K_SOLD, pa->sold);
    set_int(L, K_LEFT, pa->left);
    set_int(L, K_SPEED, a->speed);
    set_int(L, K_BUY_LIMIT, a->buy_limit);
    lua_pushvalue(L, lua_upvalueindex(K_BUY_RATE));
    lua_pushnumber(L, a->buy_rate);
    lua_rawset(L, -3);
    set_int(L, K_START_TIME, a->start_time);
    set_int(L, K_END_TIME, a->end_time);
    set_int(L, K_STATUS, a->status);
    set_str(L, K_NAME, a->name);
}

static int
check_results(lua_State *L, call_t *c)
{
    const char *name = policy_defs[c->kind].name, *fn = policy_defs[c->kind].fn;
    int t1 = lua_type(L, -2), t2 = lua_type(L, -1);
    if (c->kind != POL_TOKEN) {
        if (t1 != LUA_TBOOLEAN)
            return luaL_error(L, "%s: %s returned %s, expected a boolean", name, fn, lua_typename(L, t1));
        c->verdict = lua_toboolean(L, -2);
        if (c->kind == POL_LIMITS && !c->verdict) {
            if (t2 == LUA_TSTRING) {
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                copy_text(c->text, c->textcap, s, len);
            } else if (t2 == LUA_TNIL) {
                copy_text(c->text, c->textcap, "rate limited", 12);
            } else {
                return luaL_error(L, "%s: admit returned false and %s, expected a reason string", name, lua_typename(L, t2));
            }
        }
        return 0;
    }
    if (t1 != LUA_TSTRING)
        return luaL_error(L, "%s: issue returned %s, expected a token string", name, lua_typename(L, t1));
    size_t len;
    const char *tok = lua_tolstring(L, -2, &len);
    if (len < TOKEN_MIN || len > TOKEN_MAX)
        return luaL_error(L, "%s: the token has %d bytes, expected %d to %d", name, (int)(len > 9999 ? 9999 : len), TOKEN_MIN,
                          TOKEN_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)tok[i] < 0x21 || (unsigned char)tok[i] > 0x7e)
            return luaL_error(L, "%s: the token has a byte that is not printable ASCII (at %d)", name, (int)i + 1);
    if (len >= c->textcap)
        return luaL_error(L, "%s: the token does not fit the caller's buffer (%d bytes)", name, (int)c->textcap);
    c->ttl = 0;
    if (t2 == LUA_TNUMBER) {
        int ok;
        lua_Integer ttl = lua_tointegerx(L, -1, &ok);
        if (!ok || ttl < 1 || ttl > TTL_MAX)
            return luaL_error(L, "%s: the TTL must be an integer from 1 to %d seconds", name, (int)TTL_MAX);
        c->ttl = ttl;
    } else if (t2 != LUA_TNIL) {
        return luaL_error(L, "%s: issue returned a %s as TTL, expected an integer or nothing", name, lua_typename(L, t2));
    }
    copy_text(c->text, c->textcap, tok, len);
    return 0;
}

static int
do_call(lua_State *L)
{
    call_t *c = lua_touserdata(L, 1);
    int nargs = 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->slot->fn_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->slot->r_ref);
    fill_req(L, c->r, c->kind == POL_LIMITS);
    if (c->kind != POL_LIMITS) {
        if (c->a == NULL || c->a->activity == NULL)
            return luaL_error(L, "%s: called without an activity", policy_defs[c->kind].name);
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->slot->a_ref);
        fill_activity(L, c->a);
        nargs++;
    }
    if (c->kind == POL_TOKEN) {
        lua_pushstring(L, c->secret);
        nargs++;
    }
    lua_call(L, nargs, 2);
    return check_results(L, c);
}

static int
do_make_caller(lua_State *L)
{
    int *ref = lua_touserdata(L, 1);
    for (int k = 1; k < K_END; k++)
        lua_pushstring(L, key_names[k]);
    lua_pushcclosure(L, do_call, K_END - 1);
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* The registry reference of do_call as a closure over the interned keys, or LUA_NOREF with err. */
static int
make_caller(sk_lua_vm_t *vm, char *err, size_t errlen)
{
    int ref = LUA_NOREF;
    if (sk_lua_vm_run(vm, do_make_caller, &ref, err, errlen) != 0)
        return LUA_NOREF;
    return ref;
}

/* Runs one call on vm; err names the policy. */
static int
call_slot(sk_lua_vm_t *vm, int caller_ref, call_t *c, char *err, size_t errlen)
{
    const char *name = policy_defs[c->kind].name;
    if (c->slot->fn_ref == LUA_NOREF) {
        snprintf(err, errlen, "%s: no version of this policy is loaded", name);
        return -1;
    }
    if (sk_lua_vm_run_ref(vm, caller_ref, c, err, errlen) == 0)
        return 0;
    size_t nl = strlen(name);
    if (strncmp(err, name, nl) != 0 && nl + 3 <= errlen) {
        /* "<name>: <err>", in place; the tail of a long message is what gives way */
        size_t el = strnlen(err, errlen - 1);
        if (el > errlen - nl - 3)
            el = errlen - nl - 3;
        memmove(err + nl + 2, err, el);
        memcpy(err, name, nl);
        err[nl] = ':';
        err[nl + 1] = ' ';
        err[nl + 2 + el] = '\0';
    }
    return -1;
}

/* At most one error line per policy per second and thread; the lines in between are counted. */
static void
call_failed(sk_lua_thread_t *lt, int kind, const char *err)
{
    sk_lua_status_call_failed(lt->host, policy_defs[kind].name, err, 1);
    int64_t now = mono_seconds();
    if (lt->fail_log[kind].second == now) {
        lt->fail_log[kind].suppressed++;
        return;
    }
    unsigned more = lt->fail_log[kind].suppressed;
    lt->fail_log[kind].second = now;
    lt->fail_log[kind].suppressed = 0;
    if (more > 0)
        sk_logf(SK_LOG_ERROR, "lua", "policy call failed (revision %lld): %s (%u more failures not logged)",
                (long long)lt->slots[kind].revision, err, more);
    else
        sk_logf(SK_LOG_ERROR, "lua", "policy call failed (revision %lld): %s", (long long)lt->slots[kind].revision, err);
}

static int
run_call(sk_lua_thread_t *lt, call_t *c)
{
    char err[512];
    if (lt == NULL) {
        sk_logf(SK_LOG_ERROR, "lua", "policy %s called on a thread without a Lua state", policy_defs[c->kind].name);
        return -1;
    }
    c->slot = &lt->slots[c->kind];
    if (call_slot(lt->vm, lt->caller_ref, c, err, sizeof(err)) == 0)
        return 0;
    call_failed(lt, c->kind, err);
    return -1;
}

int
sk_policy_admit(sk_lua_thread_t *lt, const sk_policy_req_t *r, char *reason, size_t reasonlen)
{
    call_t c = {.kind = POL_LIMITS, .r = r, .text = reason, .textcap = reasonlen};
    if (reasonlen > 0)
        reason[0] = '\0';
    return run_call(lt, &c) == 0 ? c.verdict : -1;
}

int
sk_policy_allow(sk_lua_thread_t *lt, const sk_policy_req_t *r, const sk_policy_activity_t *a)
{
    call_t c = {.kind = POL_BUY_RATE, .r = r, .a = a};
    return run_call(lt, &c) == 0 ? c.verdict : -1;
}

int
sk_policy_issue(sk_lua_thread_t *lt, const sk_policy_req_t *r, const sk_policy_activity_t *a, char *token, size_t tokencap,
                int64_t *ttl)
{
    if (lt == NULL) {
        sk_logf(SK_LOG_ERROR, "lua", "policy token.lua called on a thread without a Lua state");
        return -1;
    }
    call_t c = {.kind = POL_TOKEN, .r = r, .a = a, .secret = lt->host->conf.logic_token_secret, .text = token, .textcap = tokencap};
    if (run_call(lt, &c) != 0)
        return -1;
    *ttl = c.ttl > 0 ? c.ttl : (int64_t)lt->host->conf.logic_token_ttl;
    return 0;
}

/* ---- loading ---- */

static int
read_source(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(SK_LUA_MAX_SOURCE + 1);
    size_t n = buf != NULL ? fread(buf, 1, SK_LUA_MAX_SOURCE + 1, f) : 0;
    int bad = buf == NULL || ferror(f);
    fclose(f);
    if (bad || n > SK_LUA_MAX_SOURCE) {
        snprintf(err, errlen, bad ? "cannot read %s" : "%s is larger than %d bytes", path, SK_LUA_MAX_SOURCE);
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;
}

/* Compiles into a fresh _ENV and swaps on success; on failure the loaded version stays and the error is recorded.
 * Successes are not recorded: the etcd layer, which validated the version first, is the one that says what is in
 * effect, and a thread that applies a snapshot late must not flip /status back to an older version. */
static int
load_into(sk_lua_thread_t *lt, int i, const char *src, size_t len, int64_t revision, int from_file, int record)
{
    const char *name = policy_defs[i].name;
    char sha[65], err[512];
    sk_lua_slot_t fresh;
    sk_sha256_hex(src, len, sha);
    if (sk_lua_vm_compile(lt->vm, name, policy_defs[i].fn, src, len, &fresh, err, sizeof(err)) != 0) {
        sk_logf(SK_LOG_ERROR, "lua", "policy %s revision %lld (sha256 %.12s…) rejected, %s: %s", name, (long long)revision, sha,
                lt->slots[i].fn_ref != LUA_NOREF ? "the previous version stays" : "no version loaded", err);
        if (record)
            sk_policy_record(lt->host, name, sha, revision, err);
        return -1;
    }
    memcpy(fresh.sha256, sha, sizeof(sha));
    fresh.revision = revision;
    sk_lua_slot_release(lt->vm, &lt->slots[i]);
    lua_gc(lt->vm->L, LUA_GCCOLLECT); /* give back at once what the old version held */
    lt->slots[i] = fresh;
    lt->from_file[i] = from_file;
    return 0;
}

static int
load_file(sk_lua_thread_t *lt, int i, int record)
{
    char path[600], err[700];
    char *src;
    size_t len;
    snprintf(path, sizeof(path), "%s/%s", lt->host->conf.policies_dir, policy_defs[i].name);
    if (read_source(path, &src, &len, err, sizeof(err)) != 0) {
        sk_logf(SK_LOG_ERROR, "lua", "policy %s: %s", policy_defs[i].name, err);
        if (record)
            sk_policy_record(lt->host, policy_defs[i].name, "", 0, err);
        return -1;
    }
    int rc = load_into(lt, i, src, len, 0, 1, record);
    free(src);
    return rc;
}

sk_lua_thread_t *
sk_lua_thread_new(sk_host_t *host)
{
    char err[256];
    sk_lua_thread_t *lt = calloc(1, sizeof(*lt));
    if (lt == NULL)
        return NULL;
    lt->host = host;
    for (int i = 0; i < POL_COUNT; i++)
        sk_lua_slot_init(&lt->slots[i]);
    if ((lt->vm = sk_lua_vm_new(host->conf.lua_mem_limit_kb, host->conf.lua_instr_limit, err, sizeof(err))) == NULL) {
        sk_logf(SK_LOG_ERROR, "lua", "cannot create a Lua state: %s", err);
        free(lt);
        return NULL;
    }
    if ((lt->caller_ref = make_caller(lt->vm, err, sizeof(err))) == LUA_NOREF) {
        sk_logf(SK_LOG_ERROR, "lua", "cannot create a Lua state: %s", err);
        sk_lua_vm_free(lt->vm);
        free(lt);
        return NULL;
    }
    /* the files serve until the first snapshot arrives; the etcd layer has already recorded their state */
    for (int i = 0; i < POL_COUNT; i++)
        load_file(lt, i, 0);
    return lt;
}

void
sk_lua_thread_free(sk_lua_thread_t *lt)
{
    if (lt == NULL)
        return;
    sk_lua_vm_free(lt->vm); /* drops the slots' references with the state */
    free(lt);
}

void
sk_lua_thread_apply(sk_lua_thread_t *lt, const sk_snapshot_t *snap)
{
    if (lt == NULL || snap == NULL)
        return;
    for (int i = 0; i < POL_COUNT; i++) {
        const sk_policy_src_t *ps = NULL;
        for (size_t k = 0; k < snap->npolicies && ps == NULL; k++)
            if (strcmp(snap->policies[k].name, policy_defs[i].name) == 0)
                ps = &snap->policies[k];
        if (ps == NULL) {
            if (lt->slots[i].fn_ref == LUA_NOREF || !lt->from_file[i])
                load_file(lt, i, 1);
            continue;
        }
        char sha[65];
        sk_sha256_hex(ps->src, ps->len, sha);
        if (lt->slots[i].fn_ref != LUA_NOREF && strcmp(sha, lt->slots[i].sha256) == 0) {
            /* same source under a new revision (or the file again): nothing to compile */
            lt->slots[i].revision = ps->revision;
            lt->from_file[i] = ps->revision == 0;
            continue;
        }
        if (load_into(lt, i, ps->src, ps->len, ps->revision, ps->revision == 0, 1) != 0 && lt->slots[i].fn_ref == LUA_NOREF)
            load_file(lt, i, 1); /* with no good version at all, the file serves */
    }
}

/* ---- validation ---- */

int
sk_policy_validate(const sk_config_t *c, const char *name, const char *src, size_t len, char *err, size_t errlen)
{
    int i = policy_index(name);
    if (i < 0) {
        snprintf(err, errlen, "unknown policy \"%.64s\" (expected limits.lua, buy_rate.lua or token.lua)", name);
        return -1;
    }
    sk_lua_vm_t *vm = sk_lua_vm_new(c->lua_mem_limit_kb, c->lua_instr_limit, err, errlen);
    if (vm == NULL)
        return -1;
    sk_lua_slot_t slot;
    int rc = -1, caller_ref = make_caller(vm, err, errlen);
    if (caller_ref != LUA_NOREF && sk_lua_vm_compile(vm, name, policy_defs[i].fn, src, len, &slot, err, errlen) == 0) {
        /* a sample call with plausible arguments proves the entry point runs and returns the right types */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t now = ts.tv_sec;
        sk_activity_t act = {.activity_id = 1,
                             .product_id = 1,
                             .name = "sample",
                             .start_time = now - 60,
                             .end_time = now + 3600,
                             .total = 100,
                             .status = 1,
                             .speed = 0,
                             .buy_limit = 1,
                             .buy_rate = 0.5};
        sk_policy_activity_t pa = {.activity = &act, .sold = 10, .left = 90};
        sk_policy_req_t r = {
            .user_id = 1, .product_id = 1, .now = now, .ip = "127.0.0.1", .user_sec = 1, .user_min = 1, .ip_sec = 1, .ip_min = 1};
        char text[TOKEN_MAX + 1];
        call_t call = {
            .kind = i, .slot = &slot, .r = &r, .a = &pa, .secret = c->logic_token_secret, .text = text, .textcap = sizeof(text)};
        rc = call_slot(vm, caller_ref, &call, err, errlen);
        sk_lua_slot_release(vm, &slot);
    }
    sk_lua_vm_free(vm);
    return rc;
}

int
sk_policy_check_dir(const sk_config_t *c, char *err, size_t errlen)
{
    for (int i = 0; i < POL_COUNT; i++) {
        char path[600], msg[700];
        char *src;
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", c->policies_dir, policy_defs[i].name);
        if (read_source(path, &src, &len, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "policies.dir: %s", msg);
            return -1;
        }
        int rc = sk_policy_validate(c, policy_defs[i].name, src, len, msg, sizeof(msg));
        free(src);
        if (rc != 0) {
            snprintf(err, errlen, "policy file %s: %s", path, msg);
            return -1;
        }
    }
    return 0;
}
