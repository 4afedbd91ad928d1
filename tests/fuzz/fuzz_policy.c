/*
 * The policy loader (host/lua_policy.c, lua_vm.c, lua_pattern.c): Lua source through sk_policy_validate, the
 * compile-and-validate step an etcd policy or a policies.dir file goes through before a node runs it. The sandbox's
 * budgets are set small (lua.mem_limit_kb 256, lua.instr_limit 20000) so that loops, pattern backtracking and
 * allocation bombs end within the run's timeout instead of looking like hangs.
 *
 * Input: byte 0 picks the policy name (limits.lua, buy_rate.lua, token.lua, or an unknown one); the rest is the source.
 *
 * Invariants: the verdict is 0 or -1, an unknown name or a binary chunk never validates, a refusal says why in a
 * NUL-terminated message that fits, and (through LeakSanitizer) a validation frees its whole Lua state.
 */
#include "fuzz_common.h"
#include "host.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sk_config_t c;
    static int ready;
    if (!ready) {
        sk_conf_defaults(&c);
        c.lua_mem_limit_kb = 256;
        c.lua_instr_limit = 20000;
        ready = 1;
    }
    if (size == 0)
        return 0;
    static const char *const names[4] = {"limits.lua", "buy_rate.lua", "token.lua", "other.lua"};
    const char *name = names[data[0] & 3];
    size_t len = size - 1;
    char *src = malloc(len + 1); /* exact size plus the NUL a C caller would have: ASan sees a read past it */
    memcpy(src, data + 1, len);
    src[len] = '\0';
    char err[512];
    memset(err, 0, sizeof(err));
    int rc = sk_policy_validate(&c, name, src, len, err, sizeof(err));
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        FUZZ_CHECK((data[0] & 3) != 3);
        FUZZ_CHECK(len == 0 || src[0] != '\x1b'); /* a precompiled chunk would bypass the compiler's checks */
    } else {
        FUZZ_CHECK(err[0] != '\0' && fuzz_terminated(err, sizeof(err)));
    }
    free(src);
    return 0;
}
