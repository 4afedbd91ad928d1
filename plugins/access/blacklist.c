/*
 * Blacklist sets and overlays (see blacklist.h): open addressing over 16-byte keys, all-zero meaning empty (no user id
 * is 0, and "::" is never a client address).
 */
#include "blacklist.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "client.h"
#include "sk_form.h"

typedef struct st_table_t {
    uint8_t (*keys)[16];
    uint8_t *vals; /* overlays only */
    size_t mask, count;
} table_t;

struct st_sk_blset_t {
    atomic_size_t refs;
    table_t t[2];
};

struct st_sk_blbuild_t {
    uint8_t (*keys[2])[16];
    size_t n[2], cap[2];
};

struct st_sk_bloverlay_t {
    table_t t[2];
    size_t cap;
};

static const uint8_t zero_key[16];

static uint64_t
hash16(const uint8_t k[16])
{
    uint64_t a, b;
    memcpy(&a, k, 8);
    memcpy(&b, k + 8, 8);
    uint64_t x = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    return x;
}

int
sk_access_bl_key(int kind, const char *value, size_t len, uint8_t key[16])
{
    if (kind == SK_BL_USER) {
        int64_t uid;
        if (sk_parse_int64(value, len, 1, INT64_MAX, &uid) != 0)
            return -1;
        memset(key, 0, 16);
        memcpy(key, &uid, 8);
        return 0;
    }
    if (sk_access_ip_parse(value, len, key) != 0 || memcmp(key, zero_key, 16) == 0)
        return -1;
    return 0;
}

static int
table_init(table_t *t, size_t want, int with_vals)
{
    size_t n = 16;
    while (n < want * 2)
        n <<= 1;
    t->mask = n - 1;
    t->count = 0;
    t->keys = calloc(n, 16);
    t->vals = with_vals ? calloc(n, 1) : NULL;
    return t->keys != NULL && (!with_vals || t->vals != NULL) ? 0 : -1;
}

static void
table_free(table_t *t)
{
    free(t->keys);
    free(t->vals);
    t->keys = NULL;
    t->vals = NULL;
}

static size_t
table_slot(const table_t *t, const uint8_t key[16])
{
    size_t i = (size_t)hash16(key) & t->mask;
    while (memcmp(t->keys[i], zero_key, 16) != 0 && memcmp(t->keys[i], key, 16) != 0)
        i = (i + 1) & t->mask;
    return i;
}

static int
table_has(const table_t *t, const uint8_t key[16], size_t *slot)
{
    if (t->keys == NULL)
        return 0;
    size_t i = table_slot(t, key);
    *slot = i;
    return memcmp(t->keys[i], zero_key, 16) != 0;
}

sk_blbuild_t *
sk_access_blbuild_new(void)
{
    return calloc(1, sizeof(sk_blbuild_t));
}

int
sk_access_blbuild_add(sk_blbuild_t *b, int kind, const char *value, size_t len)
{
    uint8_t key[16];
    if (sk_access_bl_key(kind, value, len, key) != 0)
        return -1;
    if (b->n[kind] == b->cap[kind]) {
        size_t ncap = b->cap[kind] ? b->cap[kind] * 2 : 1024;
        void *p = realloc(b->keys[kind], ncap * 16);
        if (p == NULL)
            return -1;
        b->keys[kind] = p;
        b->cap[kind] = ncap;
    }
    memcpy(b->keys[kind][b->n[kind]++], key, 16);
    return 0;
}

size_t
sk_access_blbuild_count(const sk_blbuild_t *b)
{
    return b->n[0] + b->n[1];
}

void
sk_access_blbuild_free(sk_blbuild_t *b)
{
    if (b == NULL)
        return;
    free(b->keys[0]);
    free(b->keys[1]);
    free(b);
}

sk_blset_t *
sk_access_blbuild_finish(sk_blbuild_t *b)
{
    sk_blset_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto Error;
    atomic_init(&s->refs, 1);
    for (int k = 0; k < 2; k++) {
        if (table_init(&s->t[k], b->n[k], 0) != 0)
            goto Error;
        for (size_t i = 0; i < b->n[k]; i++) {
            size_t slot = table_slot(&s->t[k], b->keys[k][i]);
            if (memcmp(s->t[k].keys[slot], zero_key, 16) == 0) {
                memcpy(s->t[k].keys[slot], b->keys[k][i], 16);
                s->t[k].count++;
            }
        }
    }
    sk_access_blbuild_free(b);
    return s;
Error:
    if (s != NULL) {
        table_free(&s->t[0]);
        table_free(&s->t[1]);
        free(s);
    }
    sk_access_blbuild_free(b);
    return NULL;
}

sk_blset_t *
sk_access_blset_empty(void)
{
    sk_blbuild_t *b = sk_access_blbuild_new();
    return b != NULL ? sk_access_blbuild_finish(b) : NULL;
}

void
sk_access_blset_retain(sk_blset_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void
sk_access_blset_release(sk_blset_t *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    table_free(&s->t[0]);
    table_free(&s->t[1]);
    free(s);
}

int
sk_access_blset_has(const sk_blset_t *s, int kind, const uint8_t key[16])
{
    size_t slot = 0;
    return table_has(&s->t[kind], key, &slot);
}

size_t
sk_access_blset_size(const sk_blset_t *s, int kind)
{
    return s->t[kind].count;
}

sk_bloverlay_t *
sk_access_bloverlay_new(size_t cap)
{
    sk_bloverlay_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->cap = cap;
    if (table_init(&o->t[0], cap, 1) != 0 || table_init(&o->t[1], cap, 1) != 0) {
        sk_access_bloverlay_free(o);
        return NULL;
    }
    return o;
}

void
sk_access_bloverlay_free(sk_bloverlay_t *o)
{
    if (o == NULL)
        return;
    table_free(&o->t[0]);
    table_free(&o->t[1]);
    free(o);
}

void
sk_access_bloverlay_clear(sk_bloverlay_t *o)
{
    for (int k = 0; k < 2; k++) {
        if (o->t[k].count == 0)
            continue;
        memset(o->t[k].keys, 0, (o->t[k].mask + 1) * 16);
        memset(o->t[k].vals, 0, o->t[k].mask + 1);
        o->t[k].count = 0;
    }
}

int
sk_access_bloverlay_set(sk_bloverlay_t *o, int kind, const uint8_t key[16], int add)
{
    table_t *t = &o->t[kind];
    size_t slot = 0;
    if (!table_has(t, key, &slot)) {
        if (t->count >= o->cap)
            return -1;
        memcpy(t->keys[slot], key, 16);
        t->count++;
    }
    t->vals[slot] = add ? 1 : 0;
    return 0;
}

int
sk_access_bloverlay_get(const sk_bloverlay_t *o, int kind, const uint8_t key[16])
{
    size_t slot = 0;
    if (o->t[kind].count == 0 || !table_has(&o->t[kind], key, &slot))
        return -1;
    return o->t[kind].vals[slot];
}

size_t
sk_access_bloverlay_size(const sk_bloverlay_t *o)
{
    return o->t[0].count + o->t[1].count;
}

int
sk_access_blacklisted(const sk_blset_t *s, const sk_bloverlay_t *o, int kind, const uint8_t key[16])
{
    if (o != NULL) {
        int v = sk_access_bloverlay_get(o, kind, key);
        if (v >= 0)
            return v;
    }
    return s != NULL && sk_access_blset_has(s, kind, key);
}
