/*
 * The sandboxed Lua state behind the policy engine (lua_vm.c, lua_pattern.c), shared by lua_policy.c.
 *
 * One sk_lua_vm_t is one lua_State, used by one thread only. Its allocator caps the memory at lua.mem_limit_kb and a
 * count hook caps every budgeted call at lua.instr_limit instructions. Once a budget is exhausted the state stays
 * "exhausted" until the budgeted call returns: every further instruction raises the budget error again and the
 * sandbox's pcall/xpcall re-raise it, so a policy cannot catch it and carry on.
 */
#ifndef SK_LUA_VM_H
#define SK_LUA_VM_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "sk_sign.h"
#include "host.h"

/* The pattern functions (find, match, gmatch, gsub) refuse longer subjects and patterns, and their backtracking is
 * charged against the instruction budget, because the count hook never fires inside a C function. */
#define SK_LUA_PAT_MAX_SUBJECT 16384
#define SK_LUA_PAT_MAX_PATTERN 256
/* A policy source larger than this is refused before compiling. */
#define SK_LUA_MAX_SOURCE (256 * 1024)
/* seckill.log / print: bytes per line, and lines per second per state (the rest is counted and dropped). */
#define SK_LUA_LOG_MAX 512
#define SK_LUA_LOG_PER_SEC 50

enum { SK_LUA_BUDGET_OK = 0, SK_LUA_BUDGET_INSTR = 1, SK_LUA_BUDGET_MEM = 2 };

typedef struct st_sk_lua_vm_t {
    lua_State *L;
    size_t mem_used, mem_limit; /* mem_limit is what the allocator enforces now */
    size_t mem_cap;             /* lua.mem_limit_kb in bytes */
    int compiling;
    unsigned instr_limit;
    uint64_t pat_steps; /* pattern steps in the current budgeted call */
    int exhausted;      /* SK_LUA_BUDGET_*: sticky until the budgeted call returns */
    sk_hmac_t *hmac;
    uint64_t rng[4]; /* xoshiro256** for seckill.random() */
    /* seckill.random_hex() draws from RAND_bytes 1 KB at a time: one call per token cost the logic layer about a
     * tenth of its CPU (OpenSSL 3 takes its DRBG lock per call). Used bytes are wiped. */
    uint8_t rand_buf[1024];
    size_t rand_left;
    int64_t log_second;
    unsigned log_lines, log_dropped;
} sk_lua_vm_t;

/* A compiled policy: registry references to its entry function and its reused argument tables. */
typedef struct st_sk_lua_slot_t {
    int fn_ref, r_ref, a_ref;
    char sha256[65];
    int64_t revision; /* etcd mod_revision, 0 for the file in policies.dir */
} sk_lua_slot_t;

/** A fresh sandboxed state. NULL with err when the state cannot be built (e.g. mem_limit_kb too small). */
sk_lua_vm_t *sk_lua_vm_new(unsigned mem_limit_kb, unsigned instr_limit, char *err, size_t errlen);
void sk_lua_vm_free(sk_lua_vm_t *vm);

/** Runs fn(L) with a light userdata `ud` as its only argument, protected and under both budgets. fn must leave
 * nothing the caller needs on the stack (copy results into ud). Returns 0, or -1 with the Lua error or the budget
 * that was exhausted in err. The stack is empty afterwards. */
int sk_lua_vm_run(sk_lua_vm_t *vm, lua_CFunction fn, void *ud, char *err, size_t errlen);

/** The same with a C closure kept in the registry (e.g. one whose upvalues hold pre-interned keys). */
int sk_lua_vm_run_ref(sk_lua_vm_t *vm, int fn_ref, void *ud, char *err, size_t errlen);

/** Compiles `src` (text only) as chunk `name` into a fresh _ENV, runs the chunk under the budgets and requires a global
 * function `fn_name`. On success `slot` holds new references (its sha256/revision are left to the caller); on failure
 * it holds none. Errors carry the line number ("limits.lua:3: ..."). The compile may use lua.mem_limit_kb on top of
 * what the state already holds, so that a policy that filled the state can still be replaced. */
int sk_lua_vm_compile(sk_lua_vm_t *vm, const char *name, const char *fn_name, const char *src, size_t len, sk_lua_slot_t *slot,
                      char *err, size_t errlen);

/** An empty slot, and dropping a slot's references. */
void sk_lua_slot_init(sk_lua_slot_t *slot);
void sk_lua_slot_release(sk_lua_vm_t *vm, sk_lua_slot_t *slot);

/** The vm that owns L (it is the allocator's userdata). */
sk_lua_vm_t *sk_lua_vm_of(lua_State *L);

/** Marks the budget `kind` exhausted and raises the budget error. Never returns. */
int sk_lua_budget_exhaust(lua_State *L, int kind);

/** Replaces find, match, gmatch, gsub and rep in the string table at `idx` with the capped versions (lua_pattern.c). */
void sk_lua_pattern_install(lua_State *L, int idx);

/* ---- lua_status.c ---- */
/** Counts `n` failed calls of policy `name` and keeps the last error for /status. Any thread; takes a mutex, which
 * only failing calls pay. */
void sk_lua_status_call_failed(sk_host_t *host, const char *name, const char *err, uint64_t n);

#endif
