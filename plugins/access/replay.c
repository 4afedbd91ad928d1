/*
 * Replay cache (see replay.h): per stripe, an open-addressing table of (fingerprint, expiry) with linear probing and
 * backward-shift deletion, plus a FIFO of insertions that decides what to forget first.
 */
#include "replay.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#define NSTRIPES 8

typedef struct st_slot_t {
    uint64_t fp; /* 0 = empty */
    int64_t expires;
} slot_t;

typedef struct st_stripe_t {
    pthread_mutex_t mu;
    slot_t *table; /* 2 x cap slots, a power of two */
    size_t mask;
    slot_t *fifo; /* cap entries, insertion order */
    size_t cap, fifo_head, fifo_len, count;
} stripe_t;

struct st_sk_replay_t {
    uint64_t k0, k1;
    stripe_t stripes[NSTRIPES];
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                                                   \
    do {                                                                                                                           \
        v0 += v1;                                                                                                                  \
        v1 = ROTL(v1, 13);                                                                                                         \
        v1 ^= v0;                                                                                                                  \
        v0 = ROTL(v0, 32);                                                                                                         \
        v2 += v3;                                                                                                                  \
        v3 = ROTL(v3, 16);                                                                                                         \
        v3 ^= v2;                                                                                                                  \
        v0 += v3;                                                                                                                  \
        v3 = ROTL(v3, 21);                                                                                                         \
        v3 ^= v0;                                                                                                                  \
        v2 += v1;                                                                                                                  \
        v1 = ROTL(v1, 17);                                                                                                         \
        v1 ^= v2;                                                                                                                  \
        v2 = ROTL(v2, 32);                                                                                                         \
    } while (0)

/* SipHash-2-4 */
static uint64_t
siphash(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56, m;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&m, in + i, 8);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

sk_replay_t *
sk_access_replay_new(size_t capacity)
{
    sk_replay_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (RAND_bytes((unsigned char *)&r->k0, 8) != 1 || RAND_bytes((unsigned char *)&r->k1, 8) != 1) {
        free(r);
        return NULL;
    }
    /* a power of two per stripe, so that the table (twice as large: load at most 1/2) is one too */
    size_t per = 64;
    while (per * NSTRIPES < capacity)
        per <<= 1;
    for (size_t i = 0; i < NSTRIPES; i++) {
        stripe_t *s = &r->stripes[i];
        s->cap = per;
        s->mask = 2 * per - 1;
        pthread_mutex_init(&s->mu, NULL);
        if ((s->table = malloc(2 * per * sizeof(slot_t))) == NULL || (s->fifo = malloc(per * sizeof(slot_t))) == NULL) {
            sk_access_replay_free(r);
            return NULL;
        }
        /* touch every page now: first-touch page faults would otherwise land on requests */
        memset(s->table, 0, 2 * per * sizeof(slot_t));
        memset(s->fifo, 0, per * sizeof(slot_t));
    }
    return r;
}

void
sk_access_replay_free(sk_replay_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < NSTRIPES; i++) {
        if (r->stripes[i].table != NULL)
            pthread_mutex_destroy(&r->stripes[i].mu);
        free(r->stripes[i].table);
        free(r->stripes[i].fifo);
    }
    free(r);
}

static size_t
probe(const stripe_t *s, uint64_t fp)
{
    size_t i = (size_t)(fp * 0x9e3779b97f4a7c15ULL >> 20) & s->mask;
    while (s->table[i].fp != 0 && s->table[i].fp != fp)
        i = (i + 1) & s->mask;
    return i;
}

static void
table_delete(stripe_t *s, size_t i)
{
    /* backward-shift deletion keeps every probe chain unbroken without tombstones */
    size_t j = i;
    for (;;) {
        j = (j + 1) & s->mask;
        if (s->table[j].fp == 0)
            break;
        size_t home = (size_t)(s->table[j].fp * 0x9e3779b97f4a7c15ULL >> 20) & s->mask;
        /* move j back to i when its home is not cyclically within (i, j] */
        if (((j - home) & s->mask) >= ((j - i) & s->mask)) {
            s->table[i] = s->table[j];
            i = j;
        }
    }
    s->table[i].fp = 0;
    s->count--;
}

/* Forgets the oldest insertion; the table entry goes only if it was not renewed since. */
static void
fifo_pop(stripe_t *s)
{
    slot_t old = s->fifo[s->fifo_head];
    s->fifo_head = (s->fifo_head + 1) % s->cap;
    s->fifo_len--;
    size_t i = probe(s, old.fp);
    if (s->table[i].fp == old.fp && s->table[i].expires == old.expires)
        table_delete(s, i);
}

static uint64_t
fingerprint(const sk_replay_t *r, int64_t user_id, const char *nance, size_t len)
{
    uint8_t buf[8 + 128];
    if (len > 128)
        len = 128;
    memcpy(buf, &user_id, 8);
    memcpy(buf + 8, nance, len);
    uint64_t fp = siphash(r->k0, r->k1, buf, 8 + len);
    return fp != 0 ? fp : 1;
}

void
sk_access_replay_prefetch(sk_replay_t *r, int64_t user_id, const char *nance, size_t len)
{
    uint64_t fp = fingerprint(r, user_id, nance, len);
    const stripe_t *s = &r->stripes[fp >> 61];
    /* table and mask never change after creation, so reading them unlocked is safe; the prefetch is only a hint */
    __builtin_prefetch(&s->table[(size_t)(fp * 0x9e3779b97f4a7c15ULL >> 20) & s->mask], 1);
}

int
sk_access_replay_check(sk_replay_t *r, int64_t user_id, const char *nance, size_t len, int64_t expires, int64_t now)
{
    uint64_t fp = fingerprint(r, user_id, nance, len);
    stripe_t *s = &r->stripes[fp >> 61];
    int seen = 0;
    pthread_mutex_lock(&s->mu);
    while (s->fifo_len > 0 && s->fifo[s->fifo_head].expires <= now)
        fifo_pop(s);
    size_t i = probe(s, fp);
    if (s->table[i].fp == fp && s->table[i].expires > now) {
        seen = 1;
    } else {
        if (s->fifo_len == s->cap) {
            fifo_pop(s);
            i = probe(s, fp);
        }
        if (s->table[i].fp != fp)
            s->count++;
        s->table[i].fp = fp;
        s->table[i].expires = expires;
        s->fifo[(s->fifo_head + s->fifo_len) % s->cap] = s->table[i];
        s->fifo_len++;
    }
    pthread_mutex_unlock(&s->mu);
    return seen;
}

size_t
sk_access_replay_size(sk_replay_t *r)
{
    size_t n = 0;
    for (size_t i = 0; i < NSTRIPES; i++)
        n += __atomic_load_n(&r->stripes[i].count, __ATOMIC_RELAXED);
    return n;
}
