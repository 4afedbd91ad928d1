/*
 * Sliding one-minute counters with exact one-second buckets (see limiter.h).
 *
 * Most keys make a few requests a minute, so an entry keeps up to NINLINE (second, count) pairs inline and only moves
 * to a 60-slot ring when it is busier. Entries live in a preallocated array per stripe (calloc'd, so untouched pages
 * cost nothing), linked into a hash chain and an LRU list by 32-bit indices.
 */
#include "limiter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#define WINDOW 60
#define NINLINE 4
#define RING_MODE 0xff
#define MAX_STRIPES 16
#define NIL 0 /* indices are stored +1 so that calloc'd memory means "none" */

typedef struct st_entry_t {
    uint8_t key[16];
    uint8_t kind;
    uint8_t nb; /* inline pairs in use, or RING_MODE */
    uint32_t hnext, prev, next;
    uint32_t last; /* newest second counted */
    union {
        struct {
            uint32_t sec, count;
        } pairs[NINLINE];
        struct {
            uint32_t *slots; /* WINDOW counters, slot s % WINDOW holds second s */
            uint32_t total;
        } ring;
    } u;
} entry_t;

typedef struct st_stripe_t {
    pthread_mutex_t mu;
    entry_t *e;
    uint32_t cap, bump, free_head, count;
    uint32_t *heads, mask;
    uint32_t lru_head, lru_tail; /* head = least recently touched */
    uint32_t head_last;          /* a lower bound of the head's last second: skips touching a cold entry */
    uint64_t evictions;
} stripe_t;

struct st_sk_limiter_t {
    size_t nstripes;
    uint64_t seed;
    stripe_t stripes[MAX_STRIPES];
};

static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t
hash_key(const sk_limiter_t *l, int kind, const uint8_t key[16])
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    return mix64(mix64(a ^ l->seed) ^ b ^ ((uint64_t)kind << 56));
}

static uint32_t
pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n && p < (1u << 30))
        p <<= 1;
    return p;
}

sk_limiter_t *
sk_access_limiter_new(size_t max_entries)
{
    if (max_entries < 1)
        max_entries = 1;
    if (max_entries > (1u << 30))
        max_entries = 1u << 30;
    sk_limiter_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    /* striping only pays off with room to spare; small limits keep one exact LRU order */
    l->nstripes = max_entries >= 4096 ? MAX_STRIPES : 1;
    if (RAND_bytes((unsigned char *)&l->seed, sizeof(l->seed)) != 1)
        l->seed = (uint64_t)(uintptr_t)l * 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < l->nstripes; i++) {
        stripe_t *s = &l->stripes[i];
        s->cap = (uint32_t)(max_entries / l->nstripes + (i < max_entries % l->nstripes ? 1 : 0));
        uint32_t nb = pow2_at_least(s->cap);
        s->mask = nb - 1;
        pthread_mutex_init(&s->mu, NULL);
        if ((s->e = calloc(s->cap, sizeof(entry_t))) == NULL || (s->heads = calloc(nb, sizeof(uint32_t))) == NULL) {
            sk_access_limiter_free(l);
            return NULL;
        }
    }
    return l;
}

void
sk_access_limiter_free(sk_limiter_t *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->nstripes; i++) {
        stripe_t *s = &l->stripes[i];
        if (s->e != NULL) {
            for (uint32_t j = 0; j < s->bump; j++)
                if (s->e[j].nb == RING_MODE)
                    free(s->e[j].u.ring.slots);
            pthread_mutex_destroy(&s->mu);
        }
        free(s->e);
        free(s->heads);
    }
    free(l);
}

static entry_t *
at(stripe_t *s, uint32_t idx1)
{
    return &s->e[idx1 - 1];
}

static void
lru_unlink(stripe_t *s, uint32_t i)
{
    entry_t *e = at(s, i);
    if (e->prev != NIL)
        at(s, e->prev)->next = e->next;
    else
        s->lru_head = e->next;
    if (e->next != NIL)
        at(s, e->next)->prev = e->prev;
    else
        s->lru_tail = e->prev;
    e->prev = e->next = NIL;
}

static void
lru_append(stripe_t *s, uint32_t i)
{
    entry_t *e = at(s, i);
    e->prev = s->lru_tail;
    e->next = NIL;
    if (s->lru_tail != NIL)
        at(s, s->lru_tail)->next = i;
    else
        s->lru_head = i;
    s->lru_tail = i;
}

static void
remove_entry(sk_limiter_t *l, stripe_t *s, uint32_t i)
{
    entry_t *e = at(s, i);
    uint32_t *pp = &s->heads[hash_key(l, e->kind, e->key) & s->mask];
    while (*pp != i)
        pp = &at(s, *pp)->hnext;
    *pp = e->hnext;
    lru_unlink(s, i);
    if (e->nb == RING_MODE)
        free(e->u.ring.slots);
    memset(e, 0, sizeof(*e));
    e->hnext = s->free_head; /* the free list reuses the chain link */
    s->free_head = i;
    s->count--;
}

static int
is_idle(const entry_t *e, uint32_t now)
{
    return now >= e->last && now - e->last >= WINDOW;
}

static uint32_t
find(sk_limiter_t *l, stripe_t *s, uint64_t h, int kind, const uint8_t key[16])
{
    for (uint32_t i = s->heads[h & s->mask]; i != NIL; i = at(s, i)->hnext) {
        entry_t *e = at(s, i);
        if (e->kind == kind && memcmp(e->key, key, 16) == 0)
            return i;
    }
    (void)l;
    return NIL;
}

static uint32_t
insert(sk_limiter_t *l, stripe_t *s, uint64_t h, int kind, const uint8_t key[16], uint32_t now)
{
    if (s->count >= s->cap) {
        if (!is_idle(at(s, s->lru_head), now))
            s->evictions++;
        remove_entry(l, s, s->lru_head);
    }
    uint32_t i;
    if (s->free_head != NIL) {
        i = s->free_head;
        s->free_head = at(s, i)->hnext;
    } else {
        i = ++s->bump;
    }
    entry_t *e = at(s, i);
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, 16);
    e->kind = (uint8_t)kind;
    e->last = now;
    e->hnext = s->heads[h & s->mask];
    s->heads[h & s->mask] = i;
    lru_append(s, i);
    s->count++;
    return i;
}

/* Advances a ring to `now`, clearing the slots of seconds that left the window. */
static void
ring_advance(entry_t *e, uint32_t now)
{
    if (now <= e->last)
        return;
    if (now - e->last >= WINDOW) {
        memset(e->u.ring.slots, 0, WINDOW * sizeof(uint32_t));
        e->u.ring.total = 0;
    } else {
        for (uint32_t s = e->last + 1; s != now + 1; s++) {
            e->u.ring.total -= e->u.ring.slots[s % WINDOW];
            e->u.ring.slots[s % WINDOW] = 0;
        }
    }
    e->last = now;
}

/* Drops inline pairs that left the window (pairs are kept oldest first). */
static void
pairs_expire(entry_t *e, uint32_t now)
{
    uint8_t k = 0;
    while (k < e->nb && now - e->u.pairs[k].sec >= WINDOW)
        k++;
    if (k > 0) {
        memmove(e->u.pairs, e->u.pairs + k, (size_t)(e->nb - k) * sizeof(e->u.pairs[0]));
        e->nb = (uint8_t)(e->nb - k);
    }
}

static int
to_ring(entry_t *e)
{
    uint32_t *slots = calloc(WINDOW, sizeof(uint32_t));
    if (slots == NULL)
        return -1;
    uint32_t total = 0, last = e->last;
    for (uint8_t k = 0; k < e->nb; k++) {
        slots[e->u.pairs[k].sec % WINDOW] += e->u.pairs[k].count;
        total += e->u.pairs[k].count;
    }
    e->nb = RING_MODE;
    e->u.ring.slots = slots;
    e->u.ring.total = total;
    e->last = last;
    return 0;
}

static void
count_hit(entry_t *e, uint32_t now, uint32_t *sec, uint32_t *min)
{
    if (e->nb != RING_MODE) {
        pairs_expire(e, now);
        if (e->nb > 0 && e->u.pairs[e->nb - 1].sec == now) {
            e->u.pairs[e->nb - 1].count++;
        } else if (e->nb < NINLINE) {
            e->u.pairs[e->nb].sec = now;
            e->u.pairs[e->nb].count = 1;
            e->nb++;
        } else if (to_ring(e) != 0) {
            /* out of memory: keep exact counts of what fits by merging the newest pair into this second */
            e->u.pairs[e->nb - 1].sec = now;
            e->u.pairs[e->nb - 1].count++;
        }
        if (e->nb != RING_MODE) {
            e->last = now;
            uint32_t total = 0;
            for (uint8_t k = 0; k < e->nb; k++)
                total += e->u.pairs[k].count;
            *sec = e->u.pairs[e->nb - 1].count;
            *min = total;
            return;
        }
    }
    ring_advance(e, now);
    if (e->u.ring.slots[now % WINDOW] != UINT32_MAX) {
        e->u.ring.slots[now % WINDOW]++;
        e->u.ring.total++;
    }
    *sec = e->u.ring.slots[now % WINDOW];
    *min = e->u.ring.total;
}

static void
count_peek(const entry_t *e, uint32_t now, uint32_t *sec, uint32_t *min)
{
    *sec = *min = 0;
    if (now - e->last >= WINDOW)
        return;
    if (e->nb != RING_MODE) {
        for (uint8_t k = 0; k < e->nb; k++) {
            if (now - e->u.pairs[k].sec < WINDOW)
                *min += e->u.pairs[k].count;
            if (e->u.pairs[k].sec == now)
                *sec = e->u.pairs[k].count;
        }
        return;
    }
    uint32_t total = e->u.ring.total;
    for (uint32_t s = e->last + 1; s != now + 1; s++)
        total -= e->u.ring.slots[s % WINDOW];
    *min = total;
    *sec = now == e->last ? e->u.ring.slots[now % WINDOW] : 0;
}

static stripe_t *
stripe_of(sk_limiter_t *l, uint64_t h)
{
    return &l->stripes[(h >> 59) & (l->nstripes - 1)];
}

void
sk_access_limiter_hit(sk_limiter_t *l, int kind, const uint8_t key[16], int64_t now64, uint32_t *sec, uint32_t *min)
{
    uint64_t h = hash_key(l, kind, key);
    stripe_t *s = stripe_of(l, h);
    uint32_t now = (uint32_t)now64;
    pthread_mutex_lock(&s->mu);
    /* reclaim idle entries as we go, a couple per call, so that the table does not fill with the dead; the head only
     * gets younger, so until head_last + WINDOW nothing can be idle and the (cold) head is left alone */
    if (now >= s->head_last && now - s->head_last >= WINDOW) {
        for (int k = 0; k < 2 && s->lru_head != NIL && is_idle(at(s, s->lru_head), now); k++)
            remove_entry(l, s, s->lru_head);
        s->head_last = s->lru_head != NIL ? at(s, s->lru_head)->last : now;
    }
    uint32_t i = find(l, s, h, kind, key);
    if (i == NIL) {
        i = insert(l, s, h, kind, key, now);
    } else {
        lru_unlink(s, i);
        lru_append(s, i);
    }
    entry_t *e = at(s, i);
    /* a clock that stepped back counts into the newest second instead of rewriting history */
    if (now < e->last)
        now = e->last;
    count_hit(e, now, sec, min);
    pthread_mutex_unlock(&s->mu);
}

void
sk_access_limiter_prefetch(sk_limiter_t *l, int kind, const uint8_t key[16])
{
    uint64_t h = hash_key(l, kind, key);
    const stripe_t *s = stripe_of(l, h);
    /* heads and mask never change after creation; the prefetch is only a hint and reads nothing under contention */
    __builtin_prefetch(&s->heads[h & s->mask], 0);
}

void
sk_access_limiter_peek(sk_limiter_t *l, int kind, const uint8_t key[16], int64_t now64, uint32_t *sec, uint32_t *min)
{
    uint64_t h = hash_key(l, kind, key);
    stripe_t *s = stripe_of(l, h);
    uint32_t now = (uint32_t)now64;
    *sec = *min = 0;
    pthread_mutex_lock(&s->mu);
    uint32_t i = find(l, s, h, kind, key);
    if (i != NIL) {
        entry_t *e = at(s, i);
        count_peek(e, now < e->last ? e->last : now, sec, min);
    }
    pthread_mutex_unlock(&s->mu);
}

size_t
sk_access_limiter_size(sk_limiter_t *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->nstripes; i++)
        n += __atomic_load_n(&l->stripes[i].count, __ATOMIC_RELAXED);
    return n;
}

uint64_t
sk_access_limiter_evictions(sk_limiter_t *l)
{
    uint64_t n = 0;
    for (size_t i = 0; i < l->nstripes; i++)
        n += __atomic_load_n(&l->stripes[i].evictions, __ATOMIC_RELAXED);
    return n;
}

void
sk_access_limiter_user_key(int64_t user_id, uint8_t key[16])
{
    memset(key, 0, 16);
    memcpy(key, &user_id, sizeof(user_id));
}
