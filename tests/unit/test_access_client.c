/*
 * Client IP behind trusted proxies, and the Referer whitelist.
 */
#include "sk_test.h"
#include "access/client.h"

static const char *
fmt(const uint8_t ip[16])
{
    static char buf[64];
    sk_access_ip_format(ip, buf, sizeof(buf));
    return buf;
}

static void
client(const sk_access_netlist_t *trusted, const char *peer, const char *h1, const char *h2, uint8_t out[16])
{
    uint8_t p[16];
    ASSERT_EQ(sk_access_ip_parse(peer, strlen(peer), p), 0);
    const char *v[2] = {h1, h2};
    size_t l[2] = {h1 ? strlen(h1) : 0, h2 ? strlen(h2) : 0};
    sk_access_client_ip(trusted, p, v, l, h2 ? 2 : h1 ? 1 : 0, out);
}

static void
test_xff(void)
{
    sk_access_netlist_t t;
    char err[128];
    ASSERT_EQ(sk_access_netlist_parse(" 10.0.0.1, 192.168.0.0/16 ,::1", &t, err, sizeof(err)), 0);
    ASSERT_EQ(t.n, 3);
    uint8_t out[16];
    /* an untrusted peer is the client whatever it claims */
    client(&t, "8.8.8.8", "1.2.3.4", NULL, out);
    ASSERT_STREQ(fmt(out), "8.8.8.8");
    /* a trusted peer: the rightmost untrusted entry */
    client(&t, "10.0.0.1", "1.2.3.4, 5.6.7.8, 192.168.3.4", NULL, out);
    ASSERT_STREQ(fmt(out), "5.6.7.8");
    /* across two headers, the last header is nearest */
    client(&t, "10.0.0.1", "1.2.3.4", "192.168.1.1", out);
    ASSERT_STREQ(fmt(out), "1.2.3.4");
    /* all trusted: the leftmost */
    client(&t, "::1", "192.168.9.9,10.0.0.1", NULL, out);
    ASSERT_STREQ(fmt(out), "192.168.9.9");
    /* no header: the peer */
    client(&t, "10.0.0.1", NULL, NULL, out);
    ASSERT_STREQ(fmt(out), "10.0.0.1");
    /* garbage stops the walk at the last trusted hop */
    client(&t, "10.0.0.1", "1.2.3.4, junk, 192.168.7.7", NULL, out);
    ASSERT_STREQ(fmt(out), "192.168.7.7");
    client(&t, "10.0.0.1", "2001:db8::1", NULL, out);
    ASSERT_STREQ(fmt(out), "2001:db8::1");
    /* 192.168.0.0/16 does not cover 192.169.0.1 */
    client(&t, "10.0.0.1", "192.169.0.1", NULL, out);
    ASSERT_STREQ(fmt(out), "192.169.0.1");
    ASSERT_EQ(sk_access_netlist_parse("10.0.0.1, nope", &t, err, sizeof(err)), -1);
    ASSERT(strstr(err, "nope") != NULL);
    ASSERT_EQ(sk_access_netlist_parse("10.0.0.0/33", &t, err, sizeof(err)), -1);
    ASSERT_EQ(sk_access_netlist_parse("", &t, err, sizeof(err)), 0);
    ASSERT_EQ(t.n, 0);
}

static int
ref_ok(const sk_access_hostlist_t *l, const char *r)
{
    return sk_access_referer_ok(l, r, r ? strlen(r) : 0);
}

static void
test_referer(void)
{
    sk_access_hostlist_t l;
    char err[128];
    ASSERT_EQ(sk_access_hostlist_parse("", &l, err, sizeof(err)), 0);
    ASSERT_EQ(ref_ok(&l, NULL), 1); /* empty list: anything goes */
    ASSERT_EQ(sk_access_hostlist_parse("Shop.Example.com, m.example.com:8443", &l, err, sizeof(err)), 0);
    ASSERT_EQ(ref_ok(&l, NULL), 0);
    ASSERT_EQ(ref_ok(&l, ""), 0);
    ASSERT_EQ(ref_ok(&l, "https://shop.example.com/item/3?x=1"), 1);
    ASSERT_EQ(ref_ok(&l, "https://SHOP.example.com"), 1);
    ASSERT_EQ(ref_ok(&l, "http://shop.example.com:8080/"), 1); /* host-only entries take any port */
    ASSERT_EQ(ref_ok(&l, "https://user:pw@shop.example.com/"), 1);
    ASSERT_EQ(ref_ok(&l, "https://evil.com/shop.example.com"), 0);
    ASSERT_EQ(ref_ok(&l, "https://shop.example.com.evil.com/"), 0);
    ASSERT_EQ(ref_ok(&l, "https://shop.example.com@evil.com/"), 0);
    ASSERT_EQ(ref_ok(&l, "shop.example.com"), 0);
    ASSERT_EQ(ref_ok(&l, "https://m.example.com:8443/a"), 1);
    ASSERT_EQ(ref_ok(&l, "https://m.example.com/a"), 0); /* host:port entries need that port */
    ASSERT_EQ(sk_access_hostlist_parse("a.com/path", &l, err, sizeof(err)), -1);
}

int
main(void)
{
    RUN(test_xff);
    RUN(test_referer);
    DONE();
}
