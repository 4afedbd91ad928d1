/*
 * The /sec/ router and what every endpoint needs from a request: its parameters, its client address, its Referer.
 */
#include "access.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

int64_t
sk_access_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
sk_access_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
sk_access_handle(void *inst, void *tstate, h2o_req_t *req)
{
    sk_access_t *a = inst;
    sk_access_thread_t *t = tstate;
    if (t == NULL)
        return -1;
    h2o_iovec_t path = req->path_normalized;
    int (*handler)(sk_access_thread_t *, h2o_req_t *) = NULL;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/sec/kill")))
        handler = sk_access_kill;
    else if (h2o_memis(path.base, path.len, H2O_STRLIT("/sec/info")))
        handler = sk_access_info;
    else if (h2o_memis(path.base, path.len, H2O_STRLIT("/sec/result")))
        handler = sk_access_result;
    else if (h2o_memis(path.base, path.len, H2O_STRLIT("/sec/list")))
        handler = sk_access_list;
    else
        return -1;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        a->api->reply(req, SK_E_INVALID, "invalid request: method must be GET or POST", NULL);
        return 0;
    }
    return handler(t, req);
}

static int
form_content_type(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0)
        return 1;
    h2o_iovec_t v = req->headers.entries[i].value;
    static const char want[] = "application/x-www-form-urlencoded";
    size_t wl = sizeof(want) - 1;
    /* parameters such as "; charset=utf-8" may follow */
    return v.len >= wl && h2o_lcstris(v.base, wl, want, wl) && (v.len == wl || v.base[wl] == ';' || v.base[wl] == ' ');
}

int
sk_access_read_form(sk_access_thread_t *t, h2o_req_t *req, sk_form_t *f)
{
    const sk_host_api_t *api = t->a->api;
    char msg[160];
    sk_form_init(f);
    if (req->query_at != SIZE_MAX) {
        size_t off = req->query_at + 1;
        if (sk_form_parse(f, req->path.base + off, req->path.len - off) != 0)
            goto Invalid;
    }
    if (req->entity.base != NULL && req->entity.len > 0) {
        h2o_iovec_t body;
        if (api->req_body(req, &body) != 0) {
            api->reply(req, SK_E_INVALID, "invalid request: body too large", NULL);
            return -1;
        }
        if (!form_content_type(req)) {
            api->reply(req, SK_E_INVALID, "invalid request: Content-Type must be application/x-www-form-urlencoded", NULL);
            return -1;
        }
        if (sk_form_parse(f, body.base, body.len) != 0)
            goto Invalid;
    }
    return 0;
Invalid:
    snprintf(msg, sizeof(msg), "invalid parameter: %s", f->error);
    api->reply(req, SK_E_INVALID, msg, NULL);
    return -1;
}

void
sk_access_client_addr(sk_access_t *a, h2o_req_t *req, uint8_t ip[16])
{
    struct sockaddr_storage ss;
    memset(ip, 0, 16);
    memset(&ss, 0, sizeof(ss));
    if (req->conn->callbacks->get_peername == NULL || req->conn->callbacks->get_peername(req->conn, (void *)&ss) == 0)
        return;
    uint8_t peer[16];
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const void *)&ss;
        memset(peer, 0, 10);
        peer[10] = peer[11] = 0xff;
        memcpy(peer + 12, &sin->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        memcpy(peer, &((const struct sockaddr_in6 *)(const void *)&ss)->sin6_addr, 16);
    } else {
        return;
    }
    if (a->trusted.n == 0 || !sk_access_netlist_contains(&a->trusted, peer)) {
        memcpy(ip, peer, 16);
        return;
    }
    const char *vals[16];
    size_t lens[16], n = 0;
    for (ssize_t i = -1; n < 16 && (i = h2o_find_header(&req->headers, H2O_TOKEN_X_FORWARDED_FOR, i)) >= 0;) {
        vals[n] = req->headers.entries[i].value.base;
        lens[n++] = req->headers.entries[i].value.len;
    }
    sk_access_client_ip(&a->trusted, peer, vals, lens, n, ip);
}

int
sk_access_referer_allowed(sk_access_t *a, h2o_req_t *req)
{
    if (a->referers.n == 0)
        return 1;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_REFERER, -1);
    if (i < 0)
        return 0;
    return sk_access_referer_ok(&a->referers, req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

/* Length of a valid UTF-8 sequence at s (overlongs, surrogates and > U+10FFFF refused), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (n == 0 || n > len || c > 0xf4)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

size_t
sk_access_json_escape(char *dst, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = u[i];
        if (o + 7 > cap)
            return (size_t)-1;
        size_t n;
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c >= 0x80 && (n = utf8_len(u + i, len - i)) > 0) {
            memcpy(dst + o, u + i, n);
            o += n;
            i += n - 1;
        } else if (c < 0x20 || c >= 0x7f) {
            /* control bytes and broken UTF-8 are escaped one by one so the JSON stays valid */
            memcpy(dst + o, "\\u00", 4);
            dst[o + 4] = hex[c >> 4];
            dst[o + 5] = hex[c & 15];
            o += 6;
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
    return o;
}
