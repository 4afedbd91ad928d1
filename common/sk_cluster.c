/*
 * Redis Cluster arithmetic and parsing (see sk_cluster.h). Everything here reads only the bytes it is given: the error
 * text of a redirect comes from the network, so its lengths are checked and an embedded NUL ends nothing early.
 */
#include "sk_cluster.h"
#include <arpa/inet.h>

#include <string.h>
#include <strings.h>

uint16_t
sk_cluster_crc16(const char *buf, size_t len)
{
    /* bitwise rather than table-driven: a key is short, and this stays obviously right */
    uint16_t crc = 0;
    for (size_t i = 0; i < len; ++i) {
        crc ^= (uint16_t)((uint16_t)(unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; ++b)
            crc = (crc & 0x8000) != 0 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned
sk_cluster_keyslot(const char *key, size_t len)
{
    size_t s, e;
    for (s = 0; s < len; ++s)
        if (key[s] == '{')
            break;
    if (s < len) {
        for (e = s + 1; e < len; ++e)
            if (key[e] == '}')
                break;
        /* "{}" (nothing between) or no closing brace: the whole key is hashed, as Redis' keyHashSlot does */
        if (e < len && e != s + 1)
            return sk_cluster_crc16(key + s + 1, e - s - 1) & (SK_CLUSTER_SLOTS - 1);
    }
    return sk_cluster_crc16(key, len) & (SK_CLUSTER_SLOTS - 1);
}

static int
name_is(const char *const *argv, const size_t *argvlen, int i, const char *name)
{
    size_t n = strlen(name);
    size_t len = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
    return len == n && strncasecmp(argv[i], name, n) == 0;
}

/* A non-negative decimal that fits an int, with no sign or blank. */
static int
parse_count(const char *s, size_t len, long *out)
{
    if (len == 0 || len > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int
sk_cluster_command_key(int argc, const char *const *argv, const size_t *argvlen)
{
    if (argc < 1 || argv == NULL)
        return -1;
    static const char *const keyless[] = {"SCRIPT",   "PING",      "INFO",     "TIME",   "WAIT",     "CLUSTER",
                                          "ASKING",   "AUTH",      "ECHO",     "DBSIZE", "FLUSHALL", "FLUSHDB",
                                          "CONFIG",   "CLIENT",    "COMMAND",  "MULTI",  "EXEC",     "DISCARD",
                                          "READONLY", "READWRITE", "FUNCTION", "SELECT", "QUIT",     "RANDOMKEY"};
    for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); ++i)
        if (name_is(argv, argvlen, 0, keyless[i]))
            return -1;
    if (name_is(argv, argvlen, 0, "EVAL") || name_is(argv, argvlen, 0, "EVALSHA") || name_is(argv, argvlen, 0, "EVAL_RO") ||
        name_is(argv, argvlen, 0, "EVALSHA_RO") || name_is(argv, argvlen, 0, "FCALL") || name_is(argv, argvlen, 0, "FCALL_RO")) {
        long n;
        if (argc < 4 || parse_count(argv[2], argvlen != NULL ? argvlen[2] : strlen(argv[2]), &n) != 0 || n == 0)
            return -1;
        return 3;
    }
    if (name_is(argv, argvlen, 0, "XREAD") || name_is(argv, argvlen, 0, "XREADGROUP")) {
        for (int i = 1; i + 1 < argc; ++i)
            if (name_is(argv, argvlen, i, "STREAMS"))
                return i + 1;
        return -1;
    }
    if (name_is(argv, argvlen, 0, "XGROUP") || name_is(argv, argvlen, 0, "XINFO"))
        return argc >= 3 ? 2 : -1;
    return argc >= 2 ? 1 : -1;
}

/* Parses a decimal in [min, max] from s[0..len). */
static int
parse_uint(const char *s, size_t len, unsigned long min, unsigned long max, unsigned long *out)
{
    if (len == 0 || len > 5)
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int
sk_cluster_parse_redirect(const char *err, size_t len, sk_cluster_redirect_t *out)
{
    out->kind = SK_CLUSTER_NONE;
    if (err == NULL)
        return -1;
    sk_cluster_redirect_kind_t kind;
    size_t p;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        kind = SK_CLUSTER_MOVED;
        p = 6;
    } else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        kind = SK_CLUSTER_ASK;
        p = 4;
    } else {
        return -1;
    }
    size_t sp = p;
    while (sp < len && err[sp] != ' ')
        ++sp;
    unsigned long slot, port;
    if (sp == len || parse_uint(err + p, sp - p, 0, SK_CLUSTER_SLOTS - 1, &slot) != 0)
        return -1;
    /* "host:port" to the end; the host may be IPv6 with colons of its own (Redis 7.0 writes it without brackets), so
     * the port follows the last colon */
    const char *addr = err + sp + 1;
    size_t alen = len - sp - 1, colon = alen;
    for (size_t i = 0; i < alen; ++i) {
        if (addr[i] == '\0' || addr[i] == ' ')
            return -1;
        if (addr[i] == ':')
            colon = i;
    }
    if (colon == alen || colon == 0 || parse_uint(addr + colon + 1, alen - colon - 1, 1, 65535, &port) != 0)
        return -1;
    const char *host = addr;
    size_t hlen = colon;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') { /* tolerate the bracketed form later Redis may write */
        host++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(out->host))
        return -1;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    /* the client connects to it without DNS, so it must be an IP literal (fuzz_cluster_redirect: "[[]]" left "[]") */
    unsigned char ip[16];
    if (inet_pton(AF_INET, out->host, ip) != 1 && inet_pton(AF_INET6, out->host, ip) != 1) {
        out->host[0] = '\0';
        return -1;
    }
    out->slot = (unsigned)slot;
    out->port = (uint16_t)port;
    out->kind = kind;
    return 0;
}

int
sk_cluster_is_retryable(const char *err, size_t len)
{
    static const char *const prefixes[] = {"TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN"};
    if (err == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); ++i) {
        size_t n = strlen(prefixes[i]);
        if (len >= n && memcmp(err, prefixes[i], n) == 0 && (len == n || err[n] == ' '))
            return 1;
    }
    return 0;
}
