/*
 * HMAC-SHA256 on OpenSSL's SHA-256 block functions, and the SPEC §4 signature.
 *
 * HMAC(K, m) = H(K^opad || H(K^ipad || m)). The two states after the first block depend on the key alone, so a context
 * keeps them for the last keys it saw (the server secret, mostly): a verification then costs the message blocks only.
 * The EVP_MAC route (re-init, provider dispatch, parameter arrays) cost about twice as much per request; the SHA256_*
 * functions are deprecated in OpenSSL 3 but are the same assembly (SHA-NI where the CPU has it) without the dispatch.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "sk_sign.h"
#include "sk_fmt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define SLOT_KEY_MAX 128
#define NSLOTS 2
#define BLOCK 64

/* The inner and outer states of one key, after its padded block. */
typedef struct st_sk_hmac_pads_t {
    SHA256_CTX inner, outer;
} sk_hmac_pads_t;

typedef struct st_sk_hmac_slot_t {
    sk_hmac_pads_t pads;
    unsigned char key[SLOT_KEY_MAX];
    size_t keylen; /* SIZE_MAX: the slot holds no key */
    uint64_t last_use;
} sk_hmac_slot_t;

struct st_sk_hmac_t {
    sk_hmac_slot_t slots[NSLOTS];
    uint64_t tick;
};

sk_hmac_t *
sk_hmac_new(void)
{
    sk_hmac_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    for (size_t i = 0; i < NSLOTS; i++)
        h->slots[i].keylen = SIZE_MAX;
    return h;
}

void
sk_hmac_free(sk_hmac_t *h)
{
    if (h == NULL)
        return;
    OPENSSL_cleanse(h, sizeof(*h));
    free(h);
}

static int
pads_init(sk_hmac_pads_t *p, const void *key, size_t keylen)
{
    unsigned char k[BLOCK], pad[BLOCK];
    memset(k, 0, sizeof(k));
    if (keylen > BLOCK) {
        /* RFC 2104: a key longer than a block is replaced by its hash */
        SHA256_CTX c;
        if (!SHA256_Init(&c) || !SHA256_Update(&c, key, keylen) || !SHA256_Final(k, &c))
            return -1;
    } else if (keylen > 0) {
        memcpy(k, key, keylen);
    }
    for (size_t i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    int ok = SHA256_Init(&p->inner) && SHA256_Update(&p->inner, pad, BLOCK);
    for (size_t i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    ok = ok && SHA256_Init(&p->outer) && SHA256_Update(&p->outer, pad, BLOCK);
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(pad, sizeof(pad));
    return ok ? 0 : -1;
}

static int
pads_mac(const sk_hmac_pads_t *p, const void *msg, size_t msglen, uint8_t out[32])
{
    SHA256_CTX c = p->inner;
    uint8_t ih[32];
    int ok = SHA256_Update(&c, msg, msglen) && SHA256_Final(ih, &c);
    c = p->outer;
    ok = ok && SHA256_Update(&c, ih, sizeof(ih)) && SHA256_Final(out, &c);
    OPENSSL_cleanse(&c, sizeof(c));
    return ok ? 0 : -1;
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
    if (slot == NULL) {
        slot = lru;
        slot->keylen = SIZE_MAX;
        if (pads_init(&slot->pads, key, keylen) != 0)
            return -1;
        if (keylen <= SLOT_KEY_MAX) {
            memcpy(slot->key, key, keylen);
            slot->keylen = keylen;
        }
    }
    slot->last_use = ++h->tick;
    return pads_mac(&slot->pads, msg, msglen, out);
}

/* One MAC under a key that will not come back (a user key): no slot is looked up or evicted for it. */
static int
hmac_once(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32])
{
    sk_hmac_pads_t p;
    int rc = pads_init(&p, key, keylen) == 0 ? pads_mac(&p, msg, msglen, out) : -1;
    OPENSSL_cleanse(&p, sizeof(p));
    return rc;
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

int
sk_sign_user_key(sk_hmac_t *h, const char *secret, int64_t user_id, char out[65])
{
    char msg[32];
    memcpy(msg, "user:", 5);
    int n = (int)(sk_put_i64(msg + 5, user_id) - msg);
    uint8_t md[32];
    if (sk_hmac_sha256(h, secret, strlen(secret), msg, (size_t)n, md) != 0)
        return -1;
    sk_hex_encode(md, 32, out);
    OPENSSL_cleanse(md, sizeof(md));
    return 0;
}

static int
sign_raw(sk_hmac_t *h, const char *user_key, const char *scope, int64_t user_id, int64_t product_id, int64_t time,
         const char *nance, int once, uint8_t md[32])
{
    char msg[256];
    size_t sl = strlen(scope), nl = strlen(nance);
    if (sl + nl + 3 * 21 + 4 > sizeof(msg))
        return -1;
    char *p = msg;
    memcpy(p, scope, sl);
    p += sl;
    *p++ = ':';
    p = sk_put_i64(p, user_id);
    *p++ = ':';
    p = sk_put_i64(p, product_id);
    *p++ = ':';
    p = sk_put_i64(p, time);
    *p++ = ':';
    memcpy(p, nance, nl);
    p += nl;
    size_t kl = strlen(user_key);
    return once ? hmac_once(user_key, kl, msg, (size_t)(p - msg), md) : sk_hmac_sha256(h, user_key, kl, msg, (size_t)(p - msg), md);
}

int
sk_sign_request(sk_hmac_t *h, const char *user_key, const char *scope, int64_t user_id, int64_t product_id, int64_t time,
                const char *nance, char out[65])
{
    uint8_t md[32];
    if (sign_raw(h, user_key, scope, user_id, product_id, time, nance, 0, md) != 0)
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
        sign_raw(h, user_key, scope, user_id, product_id, time, nance, 1, want) != 0)
        return 0;
    int eq = CRYPTO_memcmp(given, want, 32) == 0;
    OPENSSL_cleanse(user_key, sizeof(user_key));
    return eq & !bad;
}
