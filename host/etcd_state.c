/*
 * The node's model of the etcd prefix and the snapshot builder. A bad value never replaces a good one: the key keeps
 * its last good version and carries an error for /status until a good value or a delete arrives (SPEC §6).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sk_sign.h"
#include "etcd_parse.h"
#include "etcd_state.h"
#include "snapshot.h"

const char *const sk_etcd_policy_names[SK_ETCD_NPOLICIES] = {"buy_rate.lua", "limits.lua", "token.lua"};

enum { KIND_ACTIVITY = 1, KIND_PRODUCT = 2 };

typedef struct st_entry_t {
    char *key;
    int kind;
    int seen;
    int has_good;
    union {
        sk_activity_t a;
        sk_product_t p;
    } good;
    char *error;
    int64_t error_rev;
} entry_t;

typedef struct st_policy_t {
    const char *name;
    char *file_src; /* NULL when there is no good file version */
    size_t file_len;
    char file_sha[65];
    char *etcd_src; /* the last good etcd version, NULL if none */
    size_t etcd_len;
    char etcd_sha[65];
    int64_t etcd_rev;
    int key_present, seen;
    char bad_sha[65]; /* the last source that failed, so a relist does not compile it again */
    char *error;
    int64_t error_rev;
} policy_t;

struct st_sk_etcd_state_t {
    sk_etcd_state_hooks_t hooks;
    entry_t **entries; /* sorted by key */
    size_t n, cap;
    policy_t policies[SK_ETCD_NPOLICIES];
    int64_t revision;
};

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n != 0 ? n : 1);
    if (q == NULL)
        abort();
    return q;
}

static char *
xstrndup(const char *s, size_t n)
{
    char *p = xrealloc(NULL, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void logmsg(sk_etcd_state_t *st, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void
logmsg(sk_etcd_state_t *st, int level, const char *fmt, ...)
{
    if (st->hooks.log == NULL)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    st->hooks.log(st->hooks.arg, level, buf);
}

sk_etcd_state_t *
sk_etcd_state_new(const sk_etcd_state_hooks_t *hooks)
{
    sk_etcd_state_t *st = xrealloc(NULL, sizeof(*st));
    memset(st, 0, sizeof(*st));
    st->hooks = *hooks;
    for (size_t i = 0; i < SK_ETCD_NPOLICIES; i++)
        st->policies[i].name = sk_etcd_policy_names[i];
    return st;
}

static void
entry_free(entry_t *e)
{
    free(e->key);
    free(e->error);
    free(e);
}

void
sk_etcd_state_free(sk_etcd_state_t *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->n; i++)
        entry_free(st->entries[i]);
    free(st->entries);
    for (size_t i = 0; i < SK_ETCD_NPOLICIES; i++) {
        free(st->policies[i].file_src);
        free(st->policies[i].etcd_src);
        free(st->policies[i].error);
    }
    free(st);
}

static policy_t *
find_policy(sk_etcd_state_t *st, const char *name)
{
    for (size_t i = 0; i < SK_ETCD_NPOLICIES; i++)
        if (strcmp(st->policies[i].name, name) == 0)
            return &st->policies[i];
    return NULL;
}

/* Binary search; returns the index of key, or where it would go with *found = 0. */
static size_t
find_entry(const sk_etcd_state_t *st, const char *key, int *found)
{
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->entries[mid]->key, key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static void
remove_entry_at(sk_etcd_state_t *st, size_t i)
{
    entry_free(st->entries[i]);
    memmove(st->entries + i, st->entries + i + 1, (st->n - i - 1) * sizeof(*st->entries));
    st->n--;
}

static void
set_error(char **slot, int64_t *slot_rev, const char *err, int64_t rev)
{
    free(*slot);
    *slot = err != NULL ? xstrndup(err, strlen(err)) : NULL;
    *slot_rev = rev;
}

/* The id in "activities/<id>": canonical decimal only, so "7" and "07" cannot be two keys of one activity. */
static int
parse_key_id(const char *s, int64_t *id)
{
    if (s[0] < '1' || s[0] > '9' || strlen(s) > 19)
        return -1;
    int64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        if (v > (INT64_MAX - (*p - '0')) / 10)
            return -1;
        v = v * 10 + (*p - '0');
    }
    *id = v;
    return 0;
}

int
sk_etcd_state_set_file_policy(sk_etcd_state_t *st, const char *name, const char *src, size_t len)
{
    policy_t *p = find_policy(st, name);
    if (p == NULL)
        return -1;
    free(p->file_src);
    p->file_src = NULL;
    p->file_len = 0;
    p->file_sha[0] = '\0';
    if (src == NULL)
        return -1;
    char err[256] = "";
    sk_sha256_hex(src, len, p->file_sha);
    if (st->hooks.validate(st->hooks.arg, name, src, len, err, sizeof(err)) != 0) {
        logmsg(st, SK_LOG_ERROR, "policy file %s does not validate: %s", name, err);
        if (p->etcd_src == NULL)
            st->hooks.record(st->hooks.arg, name, p->file_sha, 0, err);
        p->file_sha[0] = '\0';
        return -1;
    }
    p->file_src = xstrndup(src, len);
    p->file_len = len;
    if (p->etcd_src == NULL)
        st->hooks.record(st->hooks.arg, name, p->file_sha, 0, NULL);
    return 0;
}

static int
apply_policy(sk_etcd_state_t *st, policy_t *p, const char *key, const char *value, size_t len, int64_t rev, int is_delete)
{
    if (is_delete) {
        int changed = p->etcd_src != NULL;
        free(p->etcd_src);
        p->etcd_src = NULL;
        p->etcd_len = 0;
        p->etcd_rev = 0;
        p->key_present = 0;
        p->bad_sha[0] = '\0';
        set_error(&p->error, &p->error_rev, NULL, 0);
        if (changed)
            st->hooks.record(st->hooks.arg, p->name, p->file_src != NULL ? p->file_sha : "", 0,
                             p->file_src != NULL ? NULL : "no good etcd or file version");
        return changed;
    }
    p->key_present = 1;
    char sha[65], err[256] = "";
    sk_sha256_hex(value, len, sha);
    if (p->etcd_src != NULL && strcmp(sha, p->etcd_sha) == 0) {
        set_error(&p->error, &p->error_rev, NULL, 0);
        if (p->etcd_rev == rev)
            return 0;
        p->etcd_rev = rev;
        st->hooks.record(st->hooks.arg, p->name, sha, rev, NULL);
        return 1;
    }
    if (strcmp(sha, p->bad_sha) == 0) {
        p->error_rev = rev;
        return 0;
    }
    if (len > SK_ETCD_MAX_VALUE)
        snprintf(err, sizeof(err), "policy larger than %d bytes", SK_ETCD_MAX_VALUE);
    if (err[0] != '\0' || st->hooks.validate(st->hooks.arg, p->name, value, len, err, sizeof(err)) != 0) {
        memcpy(p->bad_sha, sha, sizeof(sha));
        set_error(&p->error, &p->error_rev, err, rev);
        logmsg(st, SK_LOG_ERROR, "etcd key %s (revision %lld) skipped, the last good version stays: %s", key, (long long)rev, err);
        st->hooks.record(st->hooks.arg, p->name, sha, rev, err);
        return 0;
    }
    free(p->etcd_src);
    p->etcd_src = xstrndup(value, len);
    p->etcd_len = len;
    memcpy(p->etcd_sha, sha, sizeof(sha));
    p->etcd_rev = rev;
    p->bad_sha[0] = '\0';
    set_error(&p->error, &p->error_rev, NULL, 0);
    st->hooks.record(st->hooks.arg, p->name, sha, rev, NULL);
    return 1;
}

static int
apply_entry(sk_etcd_state_t *st, const char *key, int kind, const char *idstr, const char *value, size_t len, int64_t rev,
            int is_delete)
{
    int found;
    size_t i = find_entry(st, key, &found);
    if (is_delete) {
        if (!found)
            return 0;
        int changed = st->entries[i]->has_good;
        remove_entry_at(st, i);
        return changed;
    }
    if (!found) {
        if (st->n >= SK_ETCD_MAX_KEYS) {
            logmsg(st, SK_LOG_ERROR, "etcd key %s ignored: more than %d keys", key, SK_ETCD_MAX_KEYS);
            return 0;
        }
        if (st->n == st->cap) {
            st->cap = st->cap != 0 ? st->cap * 2 : 64;
            st->entries = xrealloc(st->entries, st->cap * sizeof(*st->entries));
        }
        entry_t *e = xrealloc(NULL, sizeof(*e));
        memset(e, 0, sizeof(*e));
        e->key = xstrndup(key, strlen(key));
        e->kind = kind;
        memmove(st->entries + i + 1, st->entries + i, (st->n - i) * sizeof(*st->entries));
        st->entries[i] = e;
        st->n++;
    }
    entry_t *e = st->entries[i];
    e->seen = 1;

    char err[256] = "";
    int64_t id = 0;
    sk_activity_t a;
    sk_product_t p;
    if (parse_key_id(idstr, &id) != 0) {
        snprintf(err, sizeof(err), "the key does not end in a canonical decimal id");
    } else if (kind == KIND_ACTIVITY) {
        if (sk_etcd_parse_activity(value, len, &a, err, sizeof(err)) == 0 && a.activity_id != id)
            snprintf(err, sizeof(err), "activity_id %lld does not match the key", (long long)a.activity_id);
    } else {
        if (sk_etcd_parse_product(value, len, &p, err, sizeof(err)) == 0 && p.product_id != id)
            snprintf(err, sizeof(err), "product_id %lld does not match the key", (long long)p.product_id);
    }
    if (err[0] != '\0') {
        set_error(&e->error, &e->error_rev, err, rev);
        logmsg(st, SK_LOG_ERROR, "etcd key %s (revision %lld) skipped%s: %s", key, (long long)rev,
               e->has_good ? ", the last good version stays" : "", err);
        return 0;
    }
    set_error(&e->error, &e->error_rev, NULL, 0);
    int changed;
    if (kind == KIND_ACTIVITY) {
        changed = !e->has_good || memcmp(&e->good.a, &a, sizeof(a)) != 0;
        e->good.a = a;
    } else {
        changed = !e->has_good || memcmp(&e->good.p, &p, sizeof(p)) != 0;
        e->good.p = p;
    }
    e->has_good = 1;
    return changed;
}

int
sk_etcd_state_apply(sk_etcd_state_t *st, const char *key, const char *value, size_t len, int64_t mod_revision, int is_delete)
{
    if (value == NULL) {
        value = "";
        len = 0;
    }
    if (strncmp(key, "activities/", 11) == 0)
        return apply_entry(st, key, KIND_ACTIVITY, key + 11, value, len, mod_revision, is_delete);
    if (strncmp(key, "products/", 9) == 0)
        return apply_entry(st, key, KIND_PRODUCT, key + 9, value, len, mod_revision, is_delete);
    if (strncmp(key, "policies/", 9) == 0) {
        policy_t *p = find_policy(st, key + 9);
        if (p == NULL) {
            /* other nodes' business (a newer version), or a typo an operator should hear about */
            if (!is_delete) {
                char known[128] = "";
                for (size_t i = 0, n = 0; i < SK_ETCD_NPOLICIES && n < sizeof(known); i++)
                    n += (size_t)snprintf(known + n, sizeof(known) - n, "%s%s", i > 0 ? ", " : "", sk_etcd_policy_names[i]);
                logmsg(st, SK_LOG_WARN, "%.200s: not a policy this node runs (%s); ignored", key, known);
            }
            return 0;
        }
        p->seen = 1;
        return apply_policy(st, p, key, value, len, mod_revision, is_delete);
    }
    return 0;
}

void
sk_etcd_state_relist_begin(sk_etcd_state_t *st)
{
    for (size_t i = 0; i < st->n; i++)
        st->entries[i]->seen = 0;
    for (size_t i = 0; i < SK_ETCD_NPOLICIES; i++)
        st->policies[i].seen = 0;
}

size_t
sk_etcd_state_relist_end(sk_etcd_state_t *st, void (*gone)(void *arg, const char *key), void *arg)
{
    size_t removed = 0;
    for (size_t i = st->n; i-- > 0;) {
        if (st->entries[i]->seen)
            continue;
        if (gone != NULL)
            gone(arg, st->entries[i]->key);
        remove_entry_at(st, i);
        removed++;
    }
    for (size_t i = 0; i < SK_ETCD_NPOLICIES; i++) {
        policy_t *p = &st->policies[i];
        if (p->seen || !p->key_present)
            continue;
        char key[80];
        snprintf(key, sizeof(key), "policies/%s", p->name);
        if (gone != NULL)
            gone(arg, key);
        apply_policy(st, p, key, NULL, 0, 0, 1);
        removed++;
    }
    return removed;
}

void
sk_etcd_state_set_revision(sk_etcd_state_t *st, int64_t revision)
{
    if (revision > st->revision)
        st->revision = revision;
}

void
sk_etcd_state_reset_revision(sk_etcd_state_t *st, int64_t revision)
{
    st->revision = revision;
}

int64_t
sk_etcd_state_revision(const sk_etcd_state_t *st)
{
    return st->revision;
}

const sk_snapshot_t *
sk_etcd_state_build(const sk_etcd_state_t *st)
{
    size_t na = 0, np = 0, npol = 0;
    for (size_t i = 0; i < st->n; i++) {
        if (!st->entries[i]->has_good)
            continue;
        if (st->entries[i]->kind == KIND_ACTIVITY)
            na++;
        else
            np++;
    }
    sk_activity_t *acts = xrealloc(NULL, (na != 0 ? na : 1) * sizeof(*acts));
    sk_product_t *prods = xrealloc(NULL, (np != 0 ? np : 1) * sizeof(*prods));
    na = np = 0;
    for (size_t i = 0; i < st->n; i++) {
        const entry_t *e = st->entries[i];
        if (!e->has_good)
            continue;
        if (e->kind == KIND_ACTIVITY)
            acts[na++] = e->good.a;
        else
            prods[np++] = e->good.p;
    }
    sk_policy_src_t pols[SK_ETCD_NPOLICIES];
    for (size_t i = 0; i < SK_ETCD_NPOLICIES; i++) {
        const policy_t *p = &st->policies[i];
        sk_policy_src_t *d = &pols[npol];
        memset(d, 0, sizeof(*d));
        snprintf(d->name, sizeof(d->name), "%s", p->name);
        if (p->etcd_src != NULL) {
            d->src = p->etcd_src;
            d->len = p->etcd_len;
            d->revision = p->etcd_rev;
            memcpy(d->sha256, p->etcd_sha, sizeof(d->sha256));
        } else if (p->file_src != NULL) {
            d->src = p->file_src;
            d->len = p->file_len;
            d->revision = 0;
            memcpy(d->sha256, p->file_sha, sizeof(d->sha256));
        } else {
            continue;
        }
        npol++;
    }
    const sk_snapshot_t *s = sk_snapshot_new(st->revision, prods, np, acts, na, pols, npol);
    free(acts);
    free(prods);
    return s;
}

static void
add_error(cJSON *arr, const char *key, int64_t rev, const char *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", key);
    cJSON_AddNumberToObject(o, "revision", (double)rev);
    cJSON_AddStringToObject(o, "error", err);
    cJSON_AddItemToArray(arr, o);
}

size_t
sk_etcd_state_errors(const sk_etcd_state_t *st, cJSON *arr, size_t max)
{
    size_t total = 0;
    for (size_t i = 0; i < SK_ETCD_NPOLICIES; i++) {
        const policy_t *p = &st->policies[i];
        if (p->error == NULL)
            continue;
        if (total++ < max) {
            char key[80];
            snprintf(key, sizeof(key), "policies/%s", p->name);
            add_error(arr, key, p->error_rev, p->error);
        }
    }
    for (size_t i = 0; i < st->n; i++) {
        const entry_t *e = st->entries[i];
        if (e->error == NULL)
            continue;
        if (total++ < max)
            add_error(arr, e->key, e->error_rev, e->error);
    }
    return total;
}
