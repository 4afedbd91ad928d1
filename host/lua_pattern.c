/*
 * String patterns for the policy sandbox: find, match, gmatch and gsub, plus rep.
 *
 * Why not the stock ones: Lua's count hook never fires inside a C function, so a pattern such as
 * ("a*"):rep(30) .. "b" against a long subject backtracks for hours with no budget check. These versions refuse
 * subjects over SK_LUA_PAT_MAX_SUBJECT and patterns over SK_LUA_PAT_MAX_PATTERN bytes, and charge every matching
 * step to a per-call step budget equal to lua.instr_limit; passing it is the instruction budget error. The stock
 * string.rep loops n times even when the result is empty ((""):rep(1e18)), hence the rep below.
 *
 * The matcher implements the pattern language of the Lua 5.4 manual (§6.4.1): a recursive backtracker over single
 * character classes, sets, the quantifiers * + - ?, anchors, captures, back-references, %b and %f.
 */
#include <ctype.h>
#include <string.h>
#include <lauxlib.h>
#include "lua_vm.h"

#define PAT_ESC '%'
#define PAT_SPECIALS "^$*+?.([%-"
#define PAT_MAX_CAPTURES 32
#define PAT_MAX_DEPTH 200
#define CAP_OPEN (-1)
#define CAP_POS (-2)

typedef struct st_pat_state_t {
    lua_State *L;
    sk_lua_vm_t *vm;
    const char *subj, *subj_end, *pat_end;
    int depth, ncap;
    struct {
        const char *start;
        ptrdiff_t len; /* CAP_OPEN while open, CAP_POS for () */
    } cap[PAT_MAX_CAPTURES];
} pat_state_t;

static const char *do_match(pat_state_t *ms, const char *s, const char *p);

static void
charge(pat_state_t *ms, uint64_t n)
{
    ms->vm->pat_steps += n;
    if (ms->vm->pat_steps > ms->vm->instr_limit)
        sk_lua_budget_exhaust(ms->L, SK_LUA_BUDGET_INSTR);
}

static void
state_init(pat_state_t *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp)
{
    ms->L = L;
    ms->vm = sk_lua_vm_of(L);
    ms->subj = s;
    ms->subj_end = s + ls;
    ms->pat_end = p + lp;
    ms->depth = 0;
    ms->ncap = 0;
}

static void
check_caps(lua_State *L, size_t ls, size_t lp)
{
    if (ls > SK_LUA_PAT_MAX_SUBJECT)
        luaL_error(L, "pattern subject too long (%d bytes max)", SK_LUA_PAT_MAX_SUBJECT);
    if (lp > SK_LUA_PAT_MAX_PATTERN)
        luaL_error(L, "pattern too long (%d bytes max)", SK_LUA_PAT_MAX_PATTERN);
}

/* p is at the start of one single-character class; returns what follows it. Patterns are NUL-terminated Lua strings,
 * so reading *pat_end is safe. */
static const char *
class_end(pat_state_t *ms, const char *p)
{
    char c = *p++;
    if (c == PAT_ESC) {
        if (p >= ms->pat_end)
            luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (*p == '^')
            p++;
        do { /* the first character after [ or [^ is a member even when it is ']' */
            if (p >= ms->pat_end)
                luaL_error(ms->L, "malformed pattern (missing ']')");
            c = *p++;
            if (c == PAT_ESC && p < ms->pat_end)
                p++;
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

static int
class_match(int c, int cl)
{
    int res;
    switch (tolower(cl)) {
    case 'a':
        res = isalpha(c);
        break;
    case 'c':
        res = iscntrl(c);
        break;
    case 'd':
        res = isdigit(c);
        break;
    case 'g':
        res = isgraph(c);
        break;
    case 'l':
        res = islower(c);
        break;
    case 'p':
        res = ispunct(c);
        break;
    case 's':
        res = isspace(c);
        break;
    case 'u':
        res = isupper(c);
        break;
    case 'w':
        res = isalnum(c);
        break;
    case 'x':
        res = isxdigit(c);
        break;
    default:
        return cl == c;
    }
    if (isupper(cl))
        res = !res;
    return res != 0;
}

/* p is at '[' and ec at the closing ']'. */
static int
set_match(int c, const char *p, const char *ec)
{
    int want = 1;
    if (p[1] == '^') {
        want = 0;
        p++;
    }
    while (++p < ec) {
        if (*p == PAT_ESC) {
            p++;
            if (class_match(c, (unsigned char)*p))
                return want;
        } else if (p[1] == '-' && p + 2 < ec) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p)
                return want;
        } else if ((unsigned char)*p == c) {
            return want;
        }
    }
    return !want;
}

static int
single_match(pat_state_t *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->subj_end)
        return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.':
        return 1;
    case PAT_ESC:
        return class_match(c, (unsigned char)p[1]);
    case '[':
        return set_match(c, p, ep - 1);
    default:
        return (unsigned char)*p == c;
    }
}

static const char *
match_balance(pat_state_t *ms, const char *s, const char *p)
{
    if (p + 1 >= ms->pat_end)
        luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= ms->subj_end || *s != *p)
        return NULL;
    const char *start = s;
    char open = p[0], close = p[1];
    int level = 1;
    while (++s < ms->subj_end) {
        if (*s == close) {
            if (--level == 0) {
                charge(ms, (uint64_t)(s - start));
                return s + 1;
            }
        } else if (*s == open) {
            level++;
        }
    }
    charge(ms, (uint64_t)(s - start));
    return NULL;
}

static const char *
match_backref(pat_state_t *ms, const char *s, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= ms->ncap || ms->cap[l].len == CAP_OPEN)
        luaL_error(ms->L, "invalid capture index %%%d", l + 1);
    ptrdiff_t len = ms->cap[l].len;
    if (len < 0 || ms->subj_end - s < len || memcmp(ms->cap[l].start, s, (size_t)len) != 0)
        return NULL;
    charge(ms, (uint64_t)len / 16);
    return s + len;
}

static const char *
open_capture(pat_state_t *ms, const char *s, const char *p, ptrdiff_t what)
{
    if (ms->ncap >= PAT_MAX_CAPTURES)
        luaL_error(ms->L, "too many captures");
    ms->cap[ms->ncap].start = s;
    ms->cap[ms->ncap].len = what;
    ms->ncap++;
    const char *r = do_match(ms, s, p);
    if (r == NULL)
        ms->ncap--;
    return r;
}

static const char *
close_capture(pat_state_t *ms, const char *s, const char *p)
{
    int l = ms->ncap - 1;
    while (l >= 0 && ms->cap[l].len != CAP_OPEN)
        l--;
    if (l < 0)
        luaL_error(ms->L, "invalid pattern capture");
    ms->cap[l].len = s - ms->cap[l].start;
    const char *r = do_match(ms, s, p);
    if (r == NULL)
        ms->cap[l].len = CAP_OPEN;
    return r;
}

static const char *
max_expand(pat_state_t *ms, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (single_match(ms, s + i, p, ep))
        i++;
    charge(ms, (uint64_t)i);
    for (; i >= 0; i--) {
        const char *r = do_match(ms, s + i, ep + 1);
        if (r != NULL)
            return r;
    }
    return NULL;
}

static const char *
min_expand(pat_state_t *ms, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = do_match(ms, s, ep + 1);
        if (r != NULL)
            return r;
        if (!single_match(ms, s, p, ep))
            return NULL;
        s++;
    }
}

/* Returns the end of the match of p at s, or NULL. Tail positions loop instead of recursing, as in Lua. */
static const char *
do_match(pat_state_t *ms, const char *s, const char *p)
{
    if (++ms->depth > PAT_MAX_DEPTH)
        luaL_error(ms->L, "pattern too complex");
    for (;;) {
        charge(ms, 1);
        if (p == ms->pat_end)
            break;
        if (*p == '(') {
            s = p[1] == ')' ? open_capture(ms, s, p + 2, CAP_POS) : open_capture(ms, s, p + 1, CAP_OPEN);
            break;
        }
        if (*p == ')') {
            s = close_capture(ms, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == ms->pat_end) {
            if (s != ms->subj_end)
                s = NULL;
            break;
        }
        if (*p == PAT_ESC && p[1] == 'b') {
            if ((s = match_balance(ms, s, p + 2)) == NULL)
                break;
            p += 4;
            continue;
        }
        if (*p == PAT_ESC && p[1] == 'f') {
            p += 2;
            if (*p != '[')
                luaL_error(ms->L, "missing '[' after '%%f' in pattern");
            const char *ep = class_end(ms, p);
            int prev = s == ms->subj ? '\0' : (unsigned char)s[-1];
            int cur = s < ms->subj_end ? (unsigned char)*s : '\0';
            if (!set_match(prev, p, ep - 1) && set_match(cur, p, ep - 1)) {
                p = ep;
                continue;
            }
            s = NULL;
            break;
        }
        if (*p == PAT_ESC && isdigit((unsigned char)p[1])) {
            if ((s = match_backref(ms, s, p[1])) == NULL)
                break;
            p += 2;
            continue;
        }
        const char *ep = class_end(ms, p);
        if (!single_match(ms, s, p, ep)) {
            if (*ep == '*' || *ep == '?' || *ep == '-') {
                p = ep + 1;
                continue;
            }
            s = NULL;
            break;
        }
        if (*ep == '?') {
            const char *r = do_match(ms, s + 1, ep + 1);
            if (r != NULL) {
                s = r;
                break;
            }
            p = ep + 1;
            continue;
        }
        if (*ep == '+') {
            s = max_expand(ms, s + 1, p, ep);
            break;
        }
        if (*ep == '*') {
            s = max_expand(ms, s, p, ep);
            break;
        }
        if (*ep == '-') {
            s = min_expand(ms, s, p, ep);
            break;
        }
        s++;
        p = ep;
    }
    ms->depth--;
    return s;
}

static void
push_capture(pat_state_t *ms, int i, const char *s, const char *e)
{
    if (i >= ms->ncap) {
        if (i != 0)
            luaL_error(ms->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(ms->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = ms->cap[i].len;
    if (len == CAP_OPEN)
        luaL_error(ms->L, "unfinished capture");
    if (len == CAP_POS)
        lua_pushinteger(ms->L, (ms->cap[i].start - ms->subj) + 1);
    else
        lua_pushlstring(ms->L, ms->cap[i].start, (size_t)len);
}

/* With s == NULL (string.find) only the explicit captures are pushed. */
static int
push_captures(pat_state_t *ms, const char *s, const char *e)
{
    int n = ms->ncap == 0 && s != NULL ? 1 : ms->ncap;
    luaL_checkstack(ms->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(ms, i, s, e);
    return n;
}

/* Lua's rule for a start index: negative counts from the end, 0 and too small mean 1. Result is 1-based. */
static size_t
start_index(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static int
no_specials(const char *p, size_t l)
{
    for (size_t i = 0; i < l; i++)
        if (p[i] != '\0' && strchr(PAT_SPECIALS, p[i]) != NULL)
            return 0;
    return 1;
}

static int
find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
        /* a plain search is linear: no cap needed */
        const char *hit = memmem(s + init, ls - init, p, lp);
        if (hit != NULL) {
            lua_pushinteger(L, (hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)((size_t)(hit - s) + lp));
            return 2;
        }
        luaL_pushfail(L);
        return 1;
    }
    check_caps(L, ls, lp);
    pat_state_t ms;
    state_init(&ms, L, s, ls, p, lp);
    int anchor = *p == '^';
    if (anchor)
        p++;
    const char *s1 = s + init;
    do {
        ms.ncap = 0;
        ms.depth = 0;
        const char *e = do_match(&ms, s1, p);
        if (e != NULL) {
            if (!find)
                return push_captures(&ms, s1, e);
            lua_pushinteger(L, (s1 - s) + 1);
            lua_pushinteger(L, e - s);
            return push_captures(&ms, NULL, NULL) + 2;
        }
    } while (s1++ < ms.subj_end && !anchor);
    luaL_pushfail(L);
    return 1;
}

static int
sb_find(lua_State *L)
{
    return find_aux(L, 1);
}

static int
sb_match(lua_State *L)
{
    return find_aux(L, 0);
}

typedef struct st_gmatch_t {
    const char *src, *p, *last;
    pat_state_t ms;
} gmatch_t;

/* upvalues: the subject, the pattern (both kept alive for the pointers in gmatch_t) and the gmatch_t userdata */
static int
gmatch_next(lua_State *L)
{
    gmatch_t *g = lua_touserdata(L, lua_upvalueindex(3));
    g->ms.L = L;
    g->ms.vm = sk_lua_vm_of(L);
    for (const char *src = g->src; src <= g->ms.subj_end; src++) {
        g->ms.ncap = 0;
        g->ms.depth = 0;
        const char *e = do_match(&g->ms, src, g->p);
        if (e != NULL && e != g->last) {
            g->src = g->last = e;
            return push_captures(&g->ms, src, e);
        }
    }
    return 0;
}

static int
sb_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_index(luaL_optinteger(L, 3, 1), ls) - 1;
    check_caps(L, ls, lp);
    if (init > ls)
        init = ls + 1; /* past the end: no match at all */
    lua_settop(L, 2);
    gmatch_t *g = lua_newuserdatauv(L, sizeof(*g), 0);
    state_init(&g->ms, L, s, ls, p, lp);
    g->src = s + init;
    g->p = p;
    g->last = NULL;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

static void
add_repl_string(pat_state_t *ms, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = ms->L;
    size_t l;
    const char *news = lua_tolstring(L, 3, &l);
    const char *p;
    while ((p = memchr(news, PAT_ESC, l)) != NULL) {
        luaL_addlstring(b, news, (size_t)(p - news));
        p++; /* a trailing '%' sees the terminating NUL and fails below */
        if (*p == PAT_ESC) {
            luaL_addchar(b, *p);
        } else if (*p == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit((unsigned char)*p)) {
            push_capture(ms, *p - '1', s, e);
            luaL_tolstring(L, -1, NULL);
            lua_remove(L, -2);
            luaL_addvalue(b);
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", PAT_ESC);
        }
        l -= (size_t)(p + 1 - news);
        news = p + 1;
    }
    luaL_addlstring(b, news, l);
}

/* Appends the replacement of the match [s, e); returns whether the text changed. */
static int
add_value(pat_state_t *ms, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = ms->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(ms, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(ms, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_repl_string(ms, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1))
        return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int
sb_gsub(lua_State *L)
{
    size_t srcl, lp;
    const char *src = luaL_checklstring(L, 1, &srcl);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)srcl + 1);
    luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                     "string/function/table");
    check_caps(L, srcl, lp);
    pat_state_t ms;
    state_init(&ms, L, src, srcl, p, lp);
    int anchor = *p == '^';
    if (anchor)
        p++;
    const char *lastmatch = NULL;
    lua_Integer n = 0;
    int changed = 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    while (n < max_n) {
        ms.ncap = 0;
        ms.depth = 0;
        const char *e = do_match(&ms, src, p);
        if (e != NULL && e != lastmatch) {
            n++;
            changed = add_value(&ms, &b, src, e, tr) | changed;
            src = lastmatch = e;
        } else if (src < ms.subj_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, src, (size_t)(ms.subj_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

static int
sb_rep(lua_State *L)
{
    size_t l, lsep;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || (l == 0 && lsep == 0)) {
        lua_pushliteral(L, "");
        return 1;
    }
    sk_lua_vm_t *vm = sk_lua_vm_of(L);
    size_t per = l + lsep;
    /* total = n*per - lsep; over the state's whole memory cap it can only end in the memory budget error */
    if (per < l || (uint64_t)n > ((uint64_t)vm->mem_limit + lsep) / per)
        return sk_lua_budget_exhaust(L, SK_LUA_BUDGET_MEM);
    size_t total = (size_t)n * per - lsep;
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, total);
    for (lua_Integer i = 0; i < n; i++) {
        memcpy(out, s, l);
        out += l;
        if (lsep > 0 && i + 1 < n) {
            memcpy(out, sep, lsep);
            out += lsep;
        }
    }
    luaL_pushresultsize(&b, total);
    return 1;
}

void
sk_lua_pattern_install(lua_State *L, int idx)
{
    static const luaL_Reg fns[] = {{"find", sb_find}, {"match", sb_match}, {"gmatch", sb_gmatch},
                                   {"gsub", sb_gsub}, {"rep", sb_rep},     {NULL, NULL}};
    lua_pushvalue(L, idx);
    luaL_setfuncs(L, fns, 0);
    lua_pop(L, 1);
}
