/*
 * Blacklist sets (SPEC §5 "Blacklist"). Pure code.
 *
 * The control thread builds an immutable set from Redis and hands one shared, refcounted copy to every HTTP thread.
 * Changes announced between two full loads go into a small per-thread overlay that is consulted first and cleared when
 * the next full set arrives.
 */
#ifndef SK_ACCESS_BLACKLIST_H
#define SK_ACCESS_BLACKLIST_H

#include <stddef.h>
#include <stdint.h>

enum { SK_BL_USER = 0, SK_BL_IP = 1 };

typedef struct st_sk_blset_t sk_blset_t;
typedef struct st_sk_blbuild_t sk_blbuild_t;
typedef struct st_sk_bloverlay_t sk_bloverlay_t;

/** The 16-byte key of a blacklist value: a user id (decimal, 1..2^63-1) or an IPv4/IPv6 address. 0, or -1 when the value
 * is not one. */
int sk_access_bl_key(int kind, const char *value, size_t len, uint8_t key[16]);

sk_blbuild_t *sk_access_blbuild_new(void);
/** Adds a raw value from Redis; an unparsable one is skipped (returns -1). */
int sk_access_blbuild_add(sk_blbuild_t *b, int kind, const char *value, size_t len);
/** Values added so far (with duplicates). */
size_t sk_access_blbuild_count(const sk_blbuild_t *b);
/** Builds the immutable set (refcount 1) and frees the builder. NULL on allocation failure (the builder is freed). */
sk_blset_t *sk_access_blbuild_finish(sk_blbuild_t *b);
void sk_access_blbuild_free(sk_blbuild_t *b);

/** An empty set (refcount 1). */
sk_blset_t *sk_access_blset_empty(void);
void sk_access_blset_retain(sk_blset_t *s);
void sk_access_blset_release(sk_blset_t *s);
int sk_access_blset_has(const sk_blset_t *s, int kind, const uint8_t key[16]);
size_t sk_access_blset_size(const sk_blset_t *s, int kind);

/** A per-thread overlay of at most `cap` keys. */
sk_bloverlay_t *sk_access_bloverlay_new(size_t cap);
void sk_access_bloverlay_free(sk_bloverlay_t *o);
void sk_access_bloverlay_clear(sk_bloverlay_t *o);
/** Records add (1) or remove (0). -1 when full (the caller should ask for a full reload). */
int sk_access_bloverlay_set(sk_bloverlay_t *o, int kind, const uint8_t key[16], int add);
/** 1 added, 0 removed, -1 not in the overlay. */
int sk_access_bloverlay_get(const sk_bloverlay_t *o, int kind, const uint8_t key[16]);
size_t sk_access_bloverlay_size(const sk_bloverlay_t *o);

/** The verdict: overlay first, then the set. */
int sk_access_blacklisted(const sk_blset_t *s, const sk_bloverlay_t *o, int kind, const uint8_t key[16]);

#endif
