/*
 * Redis keys that more than one plugin names (docs/DESIGN.md "Redis keys"). Pure code.
 */
#ifndef SK_KEYS_H
#define SK_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* Stored results live in one hash per activity and minute of the request's deadline (Redis clock), so that a result
 * costs a hash field instead of a key with its own TTL. A result only matters until the logic script refuses the
 * entry by its deadline and the access node has settled it; the bucket is kept this long past its minute. */
#define SK_RESULT_BUCKET_MS 60000
#define SK_RESULT_KEEP_S 600

/** Writes "sk:{a<aid>}:res:<minute of deadline_ms>" into buf. Returns its length, or -1 if it does not fit. */
int sk_result_key(char *buf, size_t cap, int64_t aid, int64_t deadline_ms);
/** Unix seconds at which the bucket of deadline_ms may go (its EXPIREAT). */
int64_t sk_result_keep_until(int64_t deadline_ms);

#endif
