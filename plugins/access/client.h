/*
 * Who is asking: the client IP behind trusted proxies, and the Referer whitelist (SPEC §3). Pure code.
 */
#ifndef SK_ACCESS_CLIENT_H
#define SK_ACCESS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#define SK_ACCESS_MAX_PROXIES 64
#define SK_ACCESS_MAX_REFERERS 64

/** IPv4 addresses are held as IPv4-mapped IPv6 (::ffff:a.b.c.d), so both families share one 16-byte form. */
typedef struct st_sk_access_net_t {
    uint8_t addr[16];
    unsigned prefix; /* 128 for a single address */
} sk_access_net_t;

typedef struct st_sk_access_netlist_t {
    size_t n;
    sk_access_net_t nets[SK_ACCESS_MAX_PROXIES];
} sk_access_netlist_t;

typedef struct st_sk_access_hostlist_t {
    size_t n;
    char hosts[SK_ACCESS_MAX_REFERERS][128]; /* lowercase; "host" or "host:port" */
} sk_access_hostlist_t;

/** Parses an IPv4 or IPv6 address (no brackets, no port). 0, or -1. */
int sk_access_ip_parse(const char *s, size_t len, uint8_t out[16]);
/** Formats as dotted IPv4 when mapped, else IPv6. out needs 46 bytes. */
void sk_access_ip_format(const uint8_t ip[16], char *out, size_t cap);
/** Parses "a, b/24, c" (IPs or CIDR). 0, or -1 with err naming the bad entry. */
int sk_access_netlist_parse(const char *csv, sk_access_netlist_t *l, char *err, size_t errlen);
int sk_access_netlist_contains(const sk_access_netlist_t *l, const uint8_t ip[16]);
/** The client: `peer`, or when the peer is trusted, the first untrusted address walking the X-Forwarded-For values
 * (`xff[0..nxff)`, in header order) from the right. An unparsable entry stops the walk at the last trusted hop. */
void sk_access_client_ip(const sk_access_netlist_t *trusted, const uint8_t peer[16], const char *const *xff, const size_t *xfflen,
                         size_t nxff, uint8_t out[16]);
/** Parses "a.example, b.example:8080". 0, or -1 with err. */
int sk_access_hostlist_parse(const char *csv, sk_access_hostlist_t *l, char *err, size_t errlen);
/** 1 when the list is empty, or the Referer URL's host (or host:port) is in it; a missing Referer (NULL) fails a
 * non-empty list. */
int sk_access_referer_ok(const sk_access_hostlist_t *l, const char *referer, size_t len);

#endif
