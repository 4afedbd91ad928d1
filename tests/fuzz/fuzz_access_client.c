/*
 * Who is asking (plugins/access/client.c): the trusted-proxy list, the client IP behind X-Forwarded-For, the Referer
 * whitelist and the Referer check.
 *
 * Input: lines. 1: the peer address; 2: access.trusted_proxies; 3: access.referer_whitelist; 4: the Referer (absent
 * when the input has fewer lines); 5...: X-Forwarded-For header values, in header order. Every piece is copied into a
 * buffer of its exact size, so that ASan sees any read past it.
 *
 * Invariants: a parsed address formats and parses back to itself; a parsed list is within its bounds and every entry
 * contains its own address; the client IP is the peer, or (only when the peer is trusted) one of the X-Forwarded-For
 * entries; an empty whitelist admits everything and a missing Referer fails a non-empty one; the Referer check does
 * not depend on letter case.
 */
#include <ctype.h>
#include "fuzz_common.h"
#include "access/client.h"

#define MAX_LINES 12

static void
check_ip_roundtrip(const uint8_t ip[16])
{
    char text[46];
    uint8_t back[16];
    sk_access_ip_format(ip, text, sizeof(text));
    FUZZ_CHECK(text[0] != '\0');
    FUZZ_CHECK(sk_access_ip_parse(text, strlen(text), back) == 0 && memcmp(ip, back, 16) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line[MAX_LINES];
    size_t len[MAX_LINES], n = 0, i = 0;
    while (i <= size && n < MAX_LINES) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t end = nl != NULL ? (size_t)(nl - data) : size;
        len[n] = end - i;
        line[n] = malloc(len[n] + 1);
        memcpy(line[n], data + i, len[n]);
        line[n][len[n]] = '\0';
        n++;
        if (nl == NULL)
            break;
        i = end + 1;
    }
    static const char *const empty = "";
    const char *peer_s = n > 0 ? line[0] : empty, *proxies = n > 1 ? line[1] : empty, *refs = n > 2 ? line[2] : empty;

    uint8_t peer[16];
    if (sk_access_ip_parse(peer_s, n > 0 ? len[0] : 0, peer) == 0)
        check_ip_roundtrip(peer);
    else
        FUZZ_CHECK(sk_access_ip_parse("127.0.0.1", 9, peer) == 0);

    static sk_access_netlist_t trusted;
    char err[128];
    if (sk_access_netlist_parse(proxies, &trusted, err, sizeof(err)) != 0) {
        FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
        trusted.n = 0;
    }
    FUZZ_CHECK(trusted.n <= SK_ACCESS_MAX_PROXIES);
    for (size_t k = 0; k < trusted.n; k++) {
        FUZZ_CHECK(trusted.nets[k].prefix <= 128);
        FUZZ_CHECK(sk_access_netlist_contains(&trusted, trusted.nets[k].addr));
    }

    /* X-Forwarded-For */
    const char *xff[MAX_LINES];
    size_t xfflen[MAX_LINES], nxff = 0;
    for (size_t k = 4; k < n; k++) {
        xff[nxff] = line[k];
        xfflen[nxff++] = len[k];
    }
    uint8_t client[16];
    sk_access_client_ip(&trusted, peer, xff, xfflen, nxff, client);
    if (memcmp(client, peer, 16) != 0) {
        FUZZ_CHECK(sk_access_netlist_contains(&trusted, peer));
        check_ip_roundtrip(client);
        /* it must be one of the entries, as written */
        int found = 0;
        for (size_t h = 0; h < nxff && !found; h++) {
            const char *v = xff[h], *end = v + xfflen[h];
            while (v <= end && !found) {
                const char *c = memchr(v, ',', (size_t)(end - v));
                const char *stop = c != NULL ? c : end, *s = v;
                while (s < stop && (*s == ' ' || *s == '\t'))
                    s++;
                while (stop > s && (stop[-1] == ' ' || stop[-1] == '\t'))
                    stop--;
                uint8_t ip[16];
                if (stop > s && sk_access_ip_parse(s, (size_t)(stop - s), ip) == 0 && memcmp(ip, client, 16) == 0)
                    found = 1;
                if (c == NULL)
                    break;
                v = c + 1;
            }
        }
        FUZZ_CHECK(found);
    }

    /* Referer */
    static sk_access_hostlist_t hosts;
    if (sk_access_hostlist_parse(refs, &hosts, err, sizeof(err)) != 0) {
        FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
        hosts.n = 0;
    }
    FUZZ_CHECK(hosts.n <= SK_ACCESS_MAX_REFERERS);
    for (size_t k = 0; k < hosts.n; k++) {
        FUZZ_CHECK(fuzz_terminated(hosts.hosts[k], sizeof(hosts.hosts[k])));
        for (const char *c = hosts.hosts[k]; *c != '\0'; c++)
            FUZZ_CHECK(!isupper((unsigned char)*c) && *c != '/' && *c != ' ' && *c != '@');
    }
    const char *referer = n > 3 ? line[3] : NULL;
    size_t rlen = n > 3 ? len[3] : 0;
    int ok = sk_access_referer_ok(&hosts, referer, rlen);
    FUZZ_CHECK(ok == 0 || ok == 1);
    if (hosts.n == 0)
        FUZZ_CHECK(ok == 1);
    else
        FUZZ_CHECK(sk_access_referer_ok(&hosts, NULL, 0) == 0);
    if (referer != NULL) {
        char *upper = malloc(rlen + 1);
        for (size_t k = 0; k < rlen; k++)
            upper[k] = (char)toupper((unsigned char)referer[k]);
        upper[rlen] = '\0';
        FUZZ_CHECK(sk_access_referer_ok(&hosts, upper, rlen) == ok);
        free(upper);
    }

    for (size_t k = 0; k < n; k++)
        free(line[k]);
    return 0;
}
