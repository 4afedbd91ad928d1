/*
 * The per-node replay cache (SPEC §3 step 5): has this node already seen (user_id, nance) within its validity?
 *
 * Bounded: it remembers at most `capacity` pairs and forgets the oldest first. It stores a keyed 64-bit SipHash of the
 * pair (the key is random per process), so a false "seen" needs a hash collision an attacker cannot aim for; the
 * cluster-wide check in Redis stays the authority. Thread-safe (striped mutexes). Pure code: the caller passes the clock.
 */
#ifndef SK_ACCESS_REPLAY_H
#define SK_ACCESS_REPLAY_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_sk_replay_t sk_replay_t;

/** Capacity is rounded up to a power of two (at least 512). NULL on allocation failure. */
sk_replay_t *sk_access_replay_new(size_t capacity);
void sk_access_replay_free(sk_replay_t *r);
/** 1 when the pair was seen and has not expired at `now`; otherwise records it until `expires` and returns 0. */
int sk_access_replay_check(sk_replay_t *r, int64_t user_id, const char *nance, size_t len, int64_t expires, int64_t now);
/** Starts loading the memory that a later check of the pair will touch, so that the cache miss overlaps other work
 * (the signature check). Changes nothing. */
void sk_access_replay_prefetch(sk_replay_t *r, int64_t user_id, const char *nance, size_t len);
/** Pairs held (any thread; includes expired ones not yet reclaimed). */
size_t sk_access_replay_size(sk_replay_t *r);

#endif
