/*
 * Per-node request counters for the limits policy (SPEC §7 "Counts"). Pure code: the caller passes the clock.
 *
 * A key is 16 bytes plus a kind (user or IP). For each key the limiter keeps one-second buckets; `sec` is the count of
 * the current calendar second and `min` the sum of the last 60 buckets, the current one included. Thread-safe (striped
 * mutexes); bounded by max_entries: when full, the least recently touched entry is evicted, and entries idle for 60 s
 * are reclaimed as the limiter is used.
 */
#ifndef SK_ACCESS_LIMITER_H
#define SK_ACCESS_LIMITER_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_sk_limiter_t sk_limiter_t;

enum { SK_LIMIT_USER = 0, SK_LIMIT_IP = 1 };

/** NULL on allocation failure. max_entries >= 1. */
sk_limiter_t *sk_access_limiter_new(size_t max_entries);
void sk_access_limiter_free(sk_limiter_t *l);
/** Counts one request of `key` (16 bytes) at unix second `now` and returns the counts including it. */
void sk_access_limiter_hit(sk_limiter_t *l, int kind, const uint8_t key[16], int64_t now, uint32_t *sec, uint32_t *min);
/** Starts loading the hash bucket of `key` so that a later hit's cache miss overlaps other work. Changes nothing. */
void sk_access_limiter_prefetch(sk_limiter_t *l, int kind, const uint8_t key[16]);
/** The counts of `key` at `now` without counting (0/0 when unknown). */
void sk_access_limiter_peek(sk_limiter_t *l, int kind, const uint8_t key[16], int64_t now, uint32_t *sec, uint32_t *min);
/** Entries held now (any thread). */
size_t sk_access_limiter_size(sk_limiter_t *l);
/** Entries evicted while still live because the limiter was full (any thread). */
uint64_t sk_access_limiter_evictions(sk_limiter_t *l);
/** A user id as a limiter key. */
void sk_access_limiter_user_key(int64_t user_id, uint8_t key[16]);

#endif
