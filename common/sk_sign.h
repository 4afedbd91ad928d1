/*
 * The SPEC §4 signature, HMAC-SHA256 with a reused OpenSSL MAC context, and a constant-time compare.
 * Pure code with no I/O: the access plugin, the tools and the tests all link it.
 */
#ifndef SK_SIGN_H
#define SK_SIGN_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_sk_hmac_t sk_hmac_t;

/** A reusable HMAC-SHA256 context. Not thread-safe: keep one per thread. NULL on allocation failure. */
sk_hmac_t *sk_hmac_new(void);
void sk_hmac_free(sk_hmac_t *h);
/** out receives 32 bytes. Returns 0, or -1 on an OpenSSL failure. */
int sk_hmac_sha256(sk_hmac_t *h, const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32]);
/** SHA-256 of data as 64 lowercase hex characters plus NUL. */
void sk_sha256_hex(const void *data, size_t len, char out[65]);
/** Lowercase hex of n bytes; out needs 2n+1 bytes. */
void sk_hex_encode(const uint8_t *in, size_t n, char *out);
/** Constant-time equality of two equal-length buffers (1 when equal). */
int sk_ct_equal(const void *a, const void *b, size_t n);

/** user_key = hex(HMAC-SHA256(secret, "user:" + user_id)). */
int sk_sign_user_key(sk_hmac_t *h, const char *secret, int64_t user_id, char out[65]);
/** auth_code = hex(HMAC-SHA256(user_key, scope:user_id:product_id:time:nance)). */
int sk_sign_request(sk_hmac_t *h, const char *user_key, const char *scope, int64_t user_id, int64_t product_id, int64_t time,
                    const char *nance, char out[65]);
/** 1 when auth_code (hex, either case, any length) is the right signature, 0 otherwise. Constant time in the code. */
int sk_sign_verify(sk_hmac_t *h, const char *secret, const char *scope, int64_t user_id, int64_t product_id, int64_t time,
                   const char *nance, const char *auth_code, size_t auth_code_len);

#endif
