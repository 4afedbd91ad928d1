/*
 * Client IP and Referer checks (see client.h).
 */
#include "client.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sk_list.h"

int
sk_access_ip_parse(const char *s, size_t len, uint8_t out[16])
{
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, buf, &v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &v4, 4);
        return 0;
    }
    struct in6_addr v6;
    if (inet_pton(AF_INET6, buf, &v6) == 1) {
        memcpy(out, &v6, 16);
        return 0;
    }
    return -1;
}

static int
is_mapped(const uint8_t ip[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(ip, prefix, 12) == 0;
}

void
sk_access_ip_format(const uint8_t ip[16], char *out, size_t cap)
{
    const char *r = is_mapped(ip) ? inet_ntop(AF_INET, ip + 12, out, (socklen_t)cap) : inet_ntop(AF_INET6, ip, out, (socklen_t)cap);
    if (r == NULL && cap > 0)
        out[0] = '\0';
}

static void
trim(const char **s, size_t *len)
{
    while (*len > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

/* The next entry of a comma-separated list, blanks trimmed; 0 at the end. */
static int
csv_next(const char **p, const char **item, size_t *len)
{
    if (!sk_list_next(p, item, len))
        return 0;
    trim(item, len);
    return 1;
}

int
sk_access_netlist_parse(const char *csv, sk_access_netlist_t *l, char *err, size_t errlen)
{
    l->n = 0;
    const char *p = csv, *item;
    size_t len;
    while (csv_next(&p, &item, &len)) {
        if (len == 0)
            continue;
        if (l->n >= SK_ACCESS_MAX_PROXIES) {
            snprintf(err, errlen, "more than %d entries", SK_ACCESS_MAX_PROXIES);
            return -1;
        }
        sk_access_net_t *n = &l->nets[l->n];
        const char *slash = memchr(item, '/', len);
        size_t alen = slash != NULL ? (size_t)(slash - item) : len;
        long prefix = 128;
        if (sk_access_ip_parse(item, alen, n->addr) != 0)
            goto Bad;
        if (slash != NULL) {
            char num[8];
            size_t nlen = len - alen - 1;
            if (nlen == 0 || nlen >= sizeof(num))
                goto Bad;
            memcpy(num, slash + 1, nlen);
            num[nlen] = '\0';
            char *end;
            prefix = strtol(num, &end, 10);
            if (*end != '\0' || prefix < 0)
                goto Bad;
            if (is_mapped(n->addr))
                prefix += 96;
            if (prefix > 128)
                goto Bad;
        }
        n->prefix = (unsigned)prefix;
        l->n++;
        continue;
    Bad:
        snprintf(err, errlen, "bad address \"%.*s\"", (int)(len > 64 ? 64 : len), item);
        return -1;
    }
    return 0;
}

static int
net_contains(const sk_access_net_t *n, const uint8_t ip[16])
{
    unsigned full = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->addr, ip, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (n->addr[full] & mask) == (ip[full] & mask);
}

int
sk_access_netlist_contains(const sk_access_netlist_t *l, const uint8_t ip[16])
{
    for (size_t i = 0; i < l->n; i++)
        if (net_contains(&l->nets[i], ip))
            return 1;
    return 0;
}

void
sk_access_client_ip(const sk_access_netlist_t *trusted, const uint8_t peer[16], const char *const *xff, const size_t *xfflen,
                    size_t nxff, uint8_t out[16])
{
    memcpy(out, peer, 16);
    if (!sk_access_netlist_contains(trusted, peer))
        return;
    /* walk the entries from the right: the last header's last entry was appended by the nearest proxy */
    for (size_t h = nxff; h-- > 0;) {
        const char *v = xff[h];
        size_t end = xfflen[h];
        while (end > 0) {
            size_t start = end;
            while (start > 0 && v[start - 1] != ',')
                start--;
            const char *item = v + start;
            size_t len = end - start;
            trim(&item, &len);
            end = start > 0 ? start - 1 : 0;
            if (len == 0)
                continue;
            uint8_t ip[16];
            if (sk_access_ip_parse(item, len, ip) != 0)
                return; /* garbage: the last trusted hop is all we know for sure */
            memcpy(out, ip, 16);
            if (!sk_access_netlist_contains(trusted, ip))
                return;
        }
    }
}

int
sk_access_hostlist_parse(const char *csv, sk_access_hostlist_t *l, char *err, size_t errlen)
{
    l->n = 0;
    const char *p = csv, *item;
    size_t len;
    while (csv_next(&p, &item, &len)) {
        if (len == 0)
            continue;
        if (l->n >= SK_ACCESS_MAX_REFERERS || len >= sizeof(l->hosts[0])) {
            snprintf(err, errlen, "too many or too long entries");
            return -1;
        }
        for (size_t i = 0; i < len; i++) {
            char c = item[i];
            if (c == '/' || c == ' ' || c == '@') {
                snprintf(err, errlen, "bad host \"%.*s\": give a host or host:port", (int)(len > 64 ? 64 : len), item);
                return -1;
            }
            l->hosts[l->n][i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        l->hosts[l->n][len] = '\0';
        l->n++;
    }
    return 0;
}

static int
host_eq(const char *want, const char *s, size_t len)
{
    if (strlen(want) != len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != want[i])
            return 0;
    }
    return 1;
}

int
sk_access_referer_ok(const sk_access_hostlist_t *l, const char *referer, size_t len)
{
    if (l->n == 0)
        return 1;
    if (referer == NULL || len == 0 || len > 4096)
        return 0;
    const char *sep = memmem(referer, len, "://", 3);
    if (sep == NULL)
        return 0;
    const char *auth = sep + 3, *end = referer + len;
    const char *stop = auth;
    while (stop < end && *stop != '/' && *stop != '?' && *stop != '#')
        stop++;
    const char *at = memrchr(auth, '@', (size_t)(stop - auth));
    if (at != NULL)
        auth = at + 1;
    size_t alen = (size_t)(stop - auth);
    /* the host without the port: IPv6 literals are bracketed */
    size_t hlen = alen;
    if (alen > 0 && auth[0] == '[') {
        const char *rb = memchr(auth, ']', alen);
        if (rb == NULL)
            return 0;
        hlen = (size_t)(rb - auth) + 1;
    } else {
        const char *colon = memchr(auth, ':', alen);
        if (colon != NULL)
            hlen = (size_t)(colon - auth);
    }
    if (hlen == 0)
        return 0;
    for (size_t i = 0; i < l->n; i++) {
        const char *want = l->hosts[i];
        int with_port = want[0] == '[' ? strstr(want, "]:") != NULL : strchr(want, ':') != NULL;
        if (host_eq(want, auth, with_port ? alen : hlen))
            return 1;
    }
    return 0;
}
