/*
 * The Redis scripts of the logic layer. Redis runs them in Lua 5.1: numbers are doubles, and GET of a missing key is
 * false, hence `tonumber(redis.call('GET', k) or '0')`. Redis 7 replicates script effects, so TIME before a write is
 * allowed.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include "logic.h"

void
sk_logic_script_sha(const char *script, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    out[0] = '\0';
    if (EVP_Digest(script, strlen(script), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
        return;
    for (unsigned i = 0; i < mdlen; ++i)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}
