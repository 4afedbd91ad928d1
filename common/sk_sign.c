/*
 * HMAC-SHA256 with reused OpenSSL 3 EVP_MAC contexts, and the SPEC §4 signature.
 *
 * A verification alternates two keys (the server secret, then the user's key), so the context keeps two slots, each
 * remembering the key it holds: re-initialising a slot with its own key (EVP_MAC_init with a NULL key) costs about half
 * of a re-key (STACK.md).
 */
#include "sk_sign.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define SLOT_KEY_MAX 128
#define NSLOTS 2

typedef struct st_sk_hmac_slot_t {
    EVP_MAC_CTX *ctx;
    unsigned char key[SLOT_KEY_MAX];
    size_t keylen; /* SIZE_MAX: the slot holds no reusable key */
    uint64_t last_use;
} sk_hmac_slot_t;

struct st_sk_hmac_t {
    EVP_MAC *mac;
    sk_hmac_slot_t slots[NSLOTS];
    uint64_t tick;
};

sk_hmac_t *
sk_hmac_new(void)
{
    sk_hmac_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    if ((h->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
        goto Error;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
    for (size_t i = 0; i < NSLOTS; i++) {
        sk_hmac_slot_t *s = &h->slots[i];
        s->keylen = SIZE_MAX;
        if ((s->ctx = EVP_MAC_CTX_new(h->mac)) == NULL || !EVP_MAC_CTX_set_params(s->ctx, params))
            goto Error;
    }
    return h;
Error:
    sk_hmac_free(h);
    return NULL;
}

void
sk_hmac_free(sk_hmac_t *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < NSLOTS; i++) {
        EVP_MAC_CTX_free(h->slots[i].ctx);
        OPENSSL_cleanse(h->slots[i].key, sizeof(h->slots[i].key));
    }
    EVP_MAC_free(h->mac);
    free(h);
}

int
sk_hmac_sha256(sk_hmac_t *h, const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32])
{
    sk_hmac_slot_t *slot = NULL, *lru = &h->slots[0];
    for (size_t i = 0; i < NSLOTS; i++) {
        sk_hmac_slot_t *s = &h->slots[i];
        if (s->keylen == keylen && CRYPTO_memcmp(s->key, key, keylen) == 0) {
            slot = s;
            break;
        }
        if (s->last_use < lru->last_use)
            lru = s;
    }
    int ok;
    if (slot != NULL) {
        ok = EVP_MAC_init(slot->ctx, NULL, 0, NULL);
    } else {
        slot = lru;
        ok = EVP_MAC_init(slot->ctx, key, keylen, NULL);
        if (ok && keylen <= SLOT_KEY_MAX) {
            memcpy(slot->key, key, keylen);
            slot->keylen = keylen;
        } else {
            slot->keylen = SIZE_MAX;
        }
    }
    slot->last_use = ++h->tick;
    size_t outlen = 0;
    if (!ok || !EVP_MAC_update(slot->ctx, msg, msglen) || !EVP_MAC_final(slot->ctx, out, &outlen, 32) || outlen != 32) {
        slot->keylen = SIZE_MAX;
        return -1;
    }
    return 0;
}

void
sk_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t md[32];
    unsigned mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        memset(md, 0, sizeof(md));
    sk_hex_encode(md, 32, out);
}

void
sk_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int
sk_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* Appends the decimal form of v (no padding) at p; returns the end. snprintf is a visible share of a request here. */
static char *
put_i64(char *p, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *p++ = '-';
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

int
sk_sign_user_key(sk_hmac_t *h, const char *secret, int64_t user_id, char out[65])
{
    char msg[32];
    memcpy(msg, "user:", 5);
    int n = (int)(put_i64(msg + 5, user_id) - msg);
    uint8_t md[32];
    if (sk_hmac_sha256(h, secret, strlen(secret), msg, (size_t)n, md) != 0)
        return -1;
    sk_hex_encode(md, 32, out);
    OPENSSL_cleanse(md, sizeof(md));
    return 0;
}

static int
sign_raw(sk_hmac_t *h, const char *user_key, const char *scope, int64_t user_id, int64_t product_id, int64_t time,
         const char *nance, uint8_t md[32])
{
    char msg[256];
    size_t sl = strlen(scope), nl = strlen(nance);
    if (sl + nl + 3 * 21 + 4 > sizeof(msg))
        return -1;
    char *p = msg;
    memcpy(p, scope, sl);
    p += sl;
    *p++ = ':';
    p = put_i64(p, user_id);
    *p++ = ':';
    p = put_i64(p, product_id);
    *p++ = ':';
    p = put_i64(p, time);
    *p++ = ':';
    memcpy(p, nance, nl);
    p += nl;
    return sk_hmac_sha256(h, user_key, strlen(user_key), msg, (size_t)(p - msg), md);
}

int
sk_sign_request(sk_hmac_t *h, const char *user_key, const char *scope, int64_t user_id, int64_t product_id, int64_t time,
                const char *nance, char out[65])
{
    uint8_t md[32];
    if (sign_raw(h, user_key, scope, user_id, product_id, time, nance, md) != 0)
        return -1;
    sk_hex_encode(md, 32, out);
    return 0;
}

/* Branch-free hex digit decode: -1 (all bits) for a non-hex character. */
static int
ct_hexval(unsigned char c)
{
    int d = c - '0', l = (c | 0x20) - 'a';
    int is_d = ((d >= 0) & (d <= 9)), is_l = ((l >= 0) & (l <= 5));
    return (is_d * d) | (is_l * (l + 10)) | -(!(is_d | is_l));
}

int
sk_sign_verify(sk_hmac_t *h, const char *secret, const char *scope, int64_t user_id, int64_t product_id, int64_t time,
               const char *nance, const char *auth_code, size_t auth_code_len)
{
    if (auth_code_len != 64)
        return 0;
    uint8_t given[32];
    int bad = 0;
    for (size_t i = 0; i < 32; i++) {
        int hi = ct_hexval((unsigned char)auth_code[2 * i]), lo = ct_hexval((unsigned char)auth_code[2 * i + 1]);
        bad |= (hi | lo) < 0;
        given[i] = (uint8_t)(((unsigned)hi << 4) | ((unsigned)lo & 15));
    }
    char user_key[65];
    uint8_t want[32];
    if (sk_sign_user_key(h, secret, user_id, user_key) != 0 ||
        sign_raw(h, user_key, scope, user_id, product_id, time, nance, want) != 0)
        return 0;
    int eq = CRYPTO_memcmp(given, want, 32) == 0;
    OPENSSL_cleanse(user_key, sizeof(user_key));
    return eq & !bad;
}
