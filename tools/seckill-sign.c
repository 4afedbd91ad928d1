/*
 * seckill-sign: prints a user_key, or signs a /sec/kill or /sec/result request (SPEC §4), for tests and integrators.
 *
 *   seckill-sign [-s SECRET] user-key USER_ID
 *   seckill-sign [-s SECRET | -k USER_KEY] [-S kill|result] sign USER_ID PRODUCT_ID [TIME [NANCE]]
 *
 * The secret comes from -s, else from the environment variable SECKILL_AUTH_SECRET. A client that only holds its
 * user_key signs with -k. `sign` prints the query string to append to /sec/kill? (or /sec/result?).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>
#include "sk_form.h"
#include "sk_sign.h"

static void
usage(FILE *out)
{
    fprintf(out, "usage: seckill-sign [-s SECRET] user-key USER_ID\n"
                 "       seckill-sign [-s SECRET | -k USER_KEY] [-S kill|result] sign USER_ID PRODUCT_ID [TIME [NANCE]]\n"
                 "The secret is -s or $SECKILL_AUTH_SECRET (auth.secret of the server). TIME defaults to now, NANCE to\n"
                 "16 random characters. `sign` prints the query string for /sec/kill (or /sec/result with -S result).\n");
}

static int
parse_id(const char *s, const char *what, int64_t min, int64_t *out)
{
    if (sk_parse_int64(s, strlen(s), min, INT64_MAX, out) != 0) {
        fprintf(stderr, "seckill-sign: %s must be a decimal integer (got \"%s\")\n", what, s);
        return -1;
    }
    return 0;
}

static int
nance_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 8 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int
main(int argc, char **argv)
{
    const char *secret = getenv("SECKILL_AUTH_SECRET"), *user_key = NULL, *scope = "kill";
    int opt;
    while ((opt = getopt(argc, argv, "s:k:S:h")) != -1) {
        switch (opt) {
        case 's':
            secret = optarg;
            break;
        case 'k':
            user_key = optarg;
            break;
        case 'S':
            scope = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (strcmp(scope, "kill") != 0 && strcmp(scope, "result") != 0) {
        fprintf(stderr, "seckill-sign: -S must be kill or result\n");
        return 2;
    }
    const char *cmd = argv[optind++];
    sk_hmac_t *h = sk_hmac_new();
    if (h == NULL) {
        fprintf(stderr, "seckill-sign: OpenSSL HMAC unavailable\n");
        return 1;
    }
    int rc = 2;
    char key[65], code[65];
    int64_t uid, pid, t;
    if (strcmp(cmd, "user-key") == 0 && argc - optind == 1) {
        if (secret == NULL) {
            fprintf(stderr, "seckill-sign: no secret: give -s SECRET or set SECKILL_AUTH_SECRET\n");
        } else if (parse_id(argv[optind], "USER_ID", 1, &uid) == 0 && sk_sign_user_key(h, secret, uid, key) == 0) {
            printf("%s\n", key);
            rc = 0;
        }
    } else if (strcmp(cmd, "sign") == 0 && argc - optind >= 2 && argc - optind <= 4) {
        char nance[65];
        if (parse_id(argv[optind], "USER_ID", 1, &uid) != 0 || parse_id(argv[optind + 1], "PRODUCT_ID", 1, &pid) != 0)
            goto Exit;
        t = (int64_t)time(NULL);
        if (argc - optind >= 3 && parse_id(argv[optind + 2], "TIME", 0, &t) != 0)
            goto Exit;
        if (argc - optind == 4) {
            if (!nance_ok(argv[optind + 3])) {
                fprintf(stderr, "seckill-sign: NANCE must be 8-64 characters of [A-Za-z0-9_-]\n");
                goto Exit;
            }
            snprintf(nance, sizeof(nance), "%s", argv[optind + 3]);
        } else {
            static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            unsigned char rnd[16];
            if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
                fprintf(stderr, "seckill-sign: no randomness\n");
                rc = 1;
                goto Exit;
            }
            for (size_t i = 0; i < sizeof(rnd); i++)
                nance[i] = alphabet[rnd[i] % 62];
            nance[sizeof(rnd)] = '\0';
        }
        if (user_key == NULL) {
            if (secret == NULL) {
                fprintf(stderr, "seckill-sign: no key: give -k USER_KEY, -s SECRET or set SECKILL_AUTH_SECRET\n");
                goto Exit;
            }
            if (sk_sign_user_key(h, secret, uid, key) != 0) {
                rc = 1;
                goto Exit;
            }
            user_key = key;
        }
        if (sk_sign_request(h, user_key, scope, uid, pid, t, nance, code) != 0) {
            rc = 1;
            goto Exit;
        }
        printf("product_id=%" PRId64 "&user_id=%" PRId64 "&time=%" PRId64 "&nance=%s&auth_code=%s\n", pid, uid, t, nance, code);
        rc = 0;
    } else {
        usage(stderr);
    }
Exit:
    sk_hmac_free(h);
    return rc;
}
