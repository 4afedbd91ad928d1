/*
 * The HTTP/1.1 pieces of seckill-bench: a response parser shared by the load generator and the admin client, and a
 * blocking one-shot client with a deadline for the admin API. Included by tools/seckill-bench.c only.
 */
#ifndef SK_BENCH_HTTP_H
#define SK_BENCH_HTTP_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_HTTP_MAX_BODY (64u << 20)

typedef struct st_bench_resp_t {
    int status;
    int close;        /* the server said "Connection: close" (or spoke HTTP/1.0 without keep-alive) */
    const char *body; /* points into the buffer, or into the scratch buffer for a chunked body */
    size_t body_len;
    size_t consumed; /* bytes of the input this response used */
} bench_resp_t;

static inline uint64_t
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
bench_hdr_is(const char *name, size_t nlen, const char *want)
{
    size_t wl = strlen(want);
    return nlen == wl && strncasecmp(name, want, wl) == 0;
}

/* Decodes a complete chunked body starting at p. Returns the bytes of input used (through the final CRLF, trailers
 * skipped), 0 when incomplete, -1 when malformed or larger than cap. */
static long
bench_dechunk(const char *p, size_t len, char *out, size_t cap, size_t *outlen)
{
    size_t i = 0, o = 0;
    for (;;) {
        size_t sz = 0, digits = 0;
        while (i < len) {
            char c = p[i];
            int d = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
            if (d < 0)
                break;
            if (sz > (SIZE_MAX >> 4) || ++digits > 15)
                return -1;
            sz = sz * 16 + (size_t)d;
            i++;
        }
        if (i >= len)
            return 0;
        if (digits == 0)
            return -1;
        const char *eol = memchr(p + i, '\n', len - i); /* chunk extensions are skipped */
        if (eol == NULL)
            return 0;
        i = (size_t)(eol - p) + 1;
        if (sz == 0) {
            /* trailers end with an empty line */
            for (;;) {
                const char *e = memchr(p + i, '\n', len - i);
                if (e == NULL)
                    return 0;
                size_t l = (size_t)(e - (p + i));
                i = (size_t)(e - p) + 1;
                if (l == 0 || (l == 1 && p[i - 2] == '\r'))
                    break;
            }
            *outlen = o;
            return (long)i;
        }
        if (len - i < sz + 2)
            return 0;
        if (cap - o < sz)
            return -1;
        memcpy(out + o, p + i, sz);
        o += sz;
        i += sz;
        if (p[i] == '\r')
            i++;
        if (i >= len)
            return 0;
        if (p[i] != '\n')
            return -1;
        i++;
    }
}

/* Parses one response at the start of buf. Returns 1 with r filled, 0 when more bytes are needed, -1 when it is not
 * HTTP or is larger than the caller's buffers. A chunked body is decoded into scratch. */
static int
bench_parse_response(const char *buf, size_t len, char *scratch, size_t scratch_cap, bench_resp_t *r)
{
    const char *end = NULL;
    for (size_t i = 3; i < len; i++) {
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            end = buf + i + 1;
            break;
        }
    }
    if (end == NULL)
        return len > 16384 ? -1 : 0;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
        status = status * 10 + (buf[i] - '0');
    }
    memset(r, 0, sizeof(*r));
    r->status = status;
    r->close = buf[7] == '0';
    int chunked = 0;
    long long clen = -1;
    const char *line = memchr(buf, '\n', (size_t)(end - buf)) + 1;
    while (line < end - 2) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon != NULL) {
            size_t nlen = (size_t)(colon - line);
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            size_t vlen = (size_t)(ve - v);
            if (bench_hdr_is(line, nlen, "content-length")) {
                clen = 0;
                for (size_t i = 0; i < vlen; i++) {
                    if (v[i] < '0' || v[i] > '9' || clen > (long long)BENCH_HTTP_MAX_BODY)
                        return -1;
                    clen = clen * 10 + (v[i] - '0');
                }
            } else if (bench_hdr_is(line, nlen, "transfer-encoding")) {
                chunked = vlen >= 7 && strncasecmp(ve - 7, "chunked", 7) == 0;
            } else if (bench_hdr_is(line, nlen, "connection")) {
                if (vlen == 5 && strncasecmp(v, "close", 5) == 0)
                    r->close = 1;
                else if (vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0)
                    r->close = 0;
            }
        }
        line = eol + 1;
    }
    size_t hlen = (size_t)(end - buf);
    if (status == 204 || status == 304 || (status >= 100 && status < 200)) {
        r->consumed = hlen;
        r->body = end;
        return 1;
    }
    if (chunked) {
        size_t outlen = 0;
        long used = bench_dechunk(end, len - hlen, scratch, scratch_cap, &outlen);
        if (used <= 0)
            return (int)used;
        r->body = scratch;
        r->body_len = outlen;
        r->consumed = hlen + (size_t)used;
        return 1;
    }
    if (clen < 0)
        return -1; /* a body delimited by the close is not something /sec/kill or the admin sends */
    if (len - hlen < (size_t)clen)
        return hlen + (size_t)clen > scratch_cap ? -1 : 0;
    r->body = end;
    r->body_len = (size_t)clen;
    r->consumed = hlen + (size_t)clen;
    return 1;
}

/* A non-blocking TCP socket connecting to ip:port (connect in progress or done). -1 on failure. */
static int
bench_tcp_open(const char *ip, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Waits for fd to be ready for ev until the monotonic deadline. 0, or -1 on timeout or error. */
static int
bench_wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= deadline)
            return -1;
        struct pollfd p = {.fd = fd, .events = ev};
        int n = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
        if (n > 0)
            return (p.revents & (POLLERR | POLLNVAL)) && !(p.revents & ev) ? -1 : 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

typedef struct st_bench_http_result_t {
    int status;
    char *body; /* NUL-terminated; free it with bench_http_result_free */
    size_t body_len;
    char *mem; /* the block body points into */
} bench_http_result_t;

static void
bench_http_result_free(bench_http_result_t *res)
{
    free(res->mem);
    memset(res, 0, sizeof(*res));
}

/* One request on a fresh connection ("Connection: close"), all within timeout_ms. Fills res and returns 0 when a whole
 * response arrived (whatever its status), -1 on a connect, I/O, parse error or timeout (err names it). */
static int
bench_http_call(const char *ip, int port, const char *method, const char *path, const char *ctype, const char *body,
                size_t body_len, const char *bearer, int timeout_ms, bench_http_result_t *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int fd = bench_tcp_open(ip, port);
    char *head = NULL, *in = NULL, *scratch = NULL;
    if (fd < 0) {
        snprintf(err, errlen, "connect %s:%d: %s", ip, port, strerror(errno));
        goto Error;
    }
    if (bench_wait_fd(fd, POLLOUT, deadline) != 0) {
        snprintf(err, errlen, "connect %s:%d: timed out or refused", ip, port);
        goto Error;
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
        snprintf(err, errlen, "connect %s:%d: %s", ip, port, strerror(soerr ? soerr : errno));
        goto Error;
    }
    int has_bearer = bearer != NULL && *bearer != '\0';
    size_t hcap =
        256 + strlen(method) + strlen(path) + strlen(ip) + (ctype ? strlen(ctype) : 0) + (has_bearer ? strlen(bearer) : 0);
    head = malloc(hcap);
    int hl = snprintf(head, hcap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\nContent-Length: %zu\r\n", method, path, ip,
                      port, body_len);
    if (ctype != NULL)
        hl += snprintf(head + hl, hcap - (size_t)hl, "Content-Type: %s\r\n", ctype);
    if (has_bearer)
        hl += snprintf(head + hl, hcap - (size_t)hl, "Authorization: Bearer %s\r\n", bearer);
    hl += snprintf(head + hl, hcap - (size_t)hl, "\r\n");
    const char *parts[2] = {head, body};
    size_t lens[2] = {(size_t)hl, body_len};
    for (int k = 0; k < 2; k++) {
        size_t off = 0;
        while (off < lens[k]) {
            ssize_t w = write(fd, parts[k] + off, lens[k] - off);
            if (w > 0) {
                off += (size_t)w;
            } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (bench_wait_fd(fd, POLLOUT, deadline) != 0) {
                    snprintf(err, errlen, "%s %s: send timed out", method, path);
                    goto Error;
                }
            } else {
                snprintf(err, errlen, "%s %s: send: %s", method, path, strerror(errno));
                goto Error;
            }
        }
    }
    size_t cap = 65536, len = 0;
    in = malloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap >= BENCH_HTTP_MAX_BODY) {
                snprintf(err, errlen, "%s %s: response too large", method, path);
                goto Error;
            }
            cap *= 2;
            in = realloc(in, cap + 1);
        }
        ssize_t r = read(fd, in + len, cap - len);
        if (r > 0) {
            len += (size_t)r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (bench_wait_fd(fd, POLLIN, deadline) != 0) {
                snprintf(err, errlen, "%s %s: no answer within %d ms", method, path, timeout_ms);
                goto Error;
            }
            continue;
        }
        break; /* EOF (or reset): parse what arrived */
    }
    bench_resp_t r;
    scratch = malloc(len + 1);
    if (bench_parse_response(in, len, scratch, len, &r) != 1) {
        snprintf(err, errlen, "%s %s: malformed or truncated response (%zu bytes)", method, path, len);
        goto Error;
    }
    res->status = r.status;
    if (r.body == scratch) {
        res->mem = scratch;
        scratch = NULL;
    } else {
        res->mem = in;
        in = NULL;
    }
    res->body = (char *)r.body;
    res->body[r.body_len] = '\0';
    res->body_len = r.body_len;
    free(head);
    free(in);
    free(scratch);
    close(fd);
    return 0;
Error:
    free(head);
    free(in);
    free(scratch);
    if (fd >= 0)
        close(fd);
    return -1;
}

#endif
