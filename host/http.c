/*
 * HTTP: one h2o globalconf with one hostconf per listener (access, admin, status). Each listener's accept context
 * only knows its own hostconf, so a path registered on one port is never reachable through another. HTTP threads
 * each own an SO_REUSEPORT socket per listener; the admin listener belongs to the admin thread alone.
 */
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>
#include "host.h"
#include "metrics.h"
#include "sk_fmt.h"

typedef struct st_route_handler_t {
    h2o_handler_t super;
    sk_route_t *route;
} route_handler_t;

typedef struct st_host_handler_t {
    h2o_handler_t super;
    sk_host_t *host;
    sk_listener_t listener;
} host_handler_t;

static const char *listener_names[] = {"access", "admin", "status"};

static const char *
listen_addr(const sk_config_t *c, sk_listener_t l)
{
    return l == SK_LISTENER_ACCESS ? c->access_listen : l == SK_LISTENER_ADMIN ? c->admin_listen : c->status_listen;
}

static int
on_route_req(h2o_handler_t *self, h2o_req_t *req)
{
    route_handler_t *h = (route_handler_t *)self;
    sk_thread_t *thr = sk_thread_self();
    sk_plugin_t *p = h->route->plugin;
    if (h->route->cb(p->inst, thr->tstates[p->index], req) == 0)
        return 0;
    /* a route on "/" (the admin's console) sees every path first; what it declines still gets the host's paths */
    if (sk_status_handle(thr->host, h->route->listener, req) != 0)
        sk_http_reply(req, SK_E_NOT_FOUND, "not found", NULL);
    return 0;
}

/* /healthz on every listener (SPEC §5: the admin's too), /status and /metrics on the status listener, and a JSON 404
 * for the rest. */
static int
on_host_req(h2o_handler_t *self, h2o_req_t *req)
{
    host_handler_t *h = (host_handler_t *)self;
    if (sk_status_handle(h->host, h->listener, req) == 0)
        return 0;
    sk_http_reply(req, SK_E_NOT_FOUND, "not found", NULL);
    return 0;
}

static int
open_listener(const char *addr, char *err, size_t errlen)
{
    char host[64];
    uint16_t port;
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    if (sk_conf_parse_addr(addr, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "bad listen address %s", addr);
        return -1;
    }
    if (strchr(host, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        inet_pton(AF_INET6, host, &s6->sin6_addr);
        sslen = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        inet_pton(AF_INET, host, &s4->sin_addr);
        sslen = sizeof(*s4);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    if (fd < 0) {
        snprintf(err, errlen, "socket(): %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int
listener_used(sk_host_t *host, sk_listener_t l)
{
    switch (l) {
    case SK_LISTENER_ACCESS:
        return sk_conf_has_plugin(&host->conf, "access");
    case SK_LISTENER_ADMIN:
        return host->admin != NULL;
    default:
        return 1;
    }
}

int
sk_http_setup(sk_host_t *host, char *err, size_t errlen)
{
    h2o_config_init(&host->h2o_conf);
    host->h2o_conf.server_name = h2o_iovec_init(H2O_STRLIT("seckilld"));
    host->h2o_conf.max_request_entity_size = host->conf.http_max_body;
    host->h2o_conf.http1.req_timeout = host->conf.http_idle_timeout_ms;
    host->h2o_conf.http1.upgrade_to_http2 = host->conf.http2;
    host->h2o_conf.http2.idle_timeout = host->conf.http_idle_timeout_ms;

    for (int l = 0; l < 3; ++l) {
        char name[32];
        snprintf(name, sizeof(name), "%s", listener_names[l]);
        host->hostconfs[l] = h2o_config_register_host(&host->h2o_conf, h2o_iovec_init(name, strlen(name)), 65535);
        host->hostlists[l][0] = host->hostconfs[l];
        host->hostlists[l][1] = NULL;
        /* plugin routes, longest path first so that a prefix never shadows a longer path */
        for (size_t pass = 128; pass > 0; --pass) {
            for (size_t i = 0; i < host->nroutes; ++i) {
                sk_route_t *r = &host->routes[i];
                if ((int)r->listener != l || strlen(r->path) != pass - 1)
                    continue;
                h2o_pathconf_t *pc = h2o_config_register_path(host->hostconfs[l], r->path, 0);
                route_handler_t *h = (route_handler_t *)h2o_create_handler(pc, sizeof(*h));
                h->super.on_req = on_route_req;
                h->route = r;
                r->pathconf = pc;
            }
        }
        host_handler_t *hh = (host_handler_t *)h2o_create_handler(&host->hostconfs[l]->fallback_path, sizeof(*hh));
        hh->super.on_req = on_host_req;
        hh->host = host;
        hh->listener = (sk_listener_t)l;
    }
    for (int l = 0; l < 3; ++l)
        host->listen_fds[l] = -1;
    /* open every socket now, so that a port in use fails the start, not a thread */
    for (int l = 0; l < 3; ++l) {
        if (!listener_used(host, (sk_listener_t)l))
            continue;
        size_t n = l == SK_LISTENER_ADMIN ? 1 : host->nhttp;
        for (size_t i = 0; i < n; ++i) {
            int fd = open_listener(listen_addr(&host->conf, (sk_listener_t)l), err, errlen);
            if (fd < 0)
                return -1;
            sk_thread_t *thr = l == SK_LISTENER_ADMIN ? host->admin : host->http[i];
            thr->listen_fds[l] = fd;
        }
        host->listen_fds[l] = 0;
    }
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err);

static void
on_accept_resume(sk_timer_t *t, void *data)
{
    (void)t;
    sk_thread_t *thr = data;
    for (int l = 0; l < 3; ++l)
        if (thr->listen_socks[l] != NULL && !h2o_socket_is_reading(thr->listen_socks[l]))
            h2o_socket_read_start(thr->listen_socks[l], on_accept);
}

static void
on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_accept_ctx_t *ac = listener->data;
    sk_thread_t *thr = (sk_thread_t *)((char *)ac->ctx - offsetof(sk_thread_t, h2o_ctx));
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock == NULL) {
        /* Out of fds, the connection stays in the backlog and the listener stays readable: h2o would try again on
         * every loop pass and spin a core (44% measured) while nothing gets in. This thread stops accepting for
         * 100 ms instead; fds come back as connections end or reach http.idle_timeout_ms. */
        if (errno == EMFILE || errno == ENFILE) {
            for (int l = 0; l < 3; ++l)
                if (thr->listen_socks[l] != NULL && h2o_socket_is_reading(thr->listen_socks[l]))
                    h2o_socket_read_stop(thr->listen_socks[l]);
            sk_timer_start(thr->accept_resume, 100);
        }
        return;
    }
    if (thr->conns != NULL && listener == thr->listen_socks[SK_LISTENER_ACCESS]) {
        struct sockaddr_storage ss;
        socklen_t len = h2o_socket_getpeername(sock, (struct sockaddr *)&ss);
        if (len != 0)
            sk_conn_map_note(thr->conns, (struct sockaddr *)&ss, len, h2o_socket_get_fd(sock));
    }
    h2o_accept(ac, sock);
}

void
sk_http_thread_init(sk_thread_t *thr)
{
    sk_host_t *host = thr->host;
    h2o_context_init(&thr->h2o_ctx, thr->h2o_loop, &host->h2o_conf);
    thr->metrics = sk_metrics_thread_new(host);
    thr->accept_resume = sk_timer_new(thr, on_accept_resume, thr);
    if (thr->listen_fds[SK_LISTENER_ACCESS] > 0)
        thr->conns = sk_conn_map_new(); /* NULL only means no probing */
    for (int l = 0; l < 3; ++l) {
        if (thr->listen_fds[l] <= 0)
            continue;
        h2o_accept_ctx_t *ac = &thr->accept_ctx[l];
        memset(ac, 0, sizeof(*ac));
        ac->ctx = &thr->h2o_ctx;
        ac->hosts = host->hostlists[l];
        h2o_socket_t *sock = h2o_evloop_socket_create(thr->h2o_loop, thr->listen_fds[l], H2O_SOCKET_FLAG_DONT_READ);
        sock->data = ac;
        thr->listen_socks[l] = sock;
        h2o_socket_read_start(sock, on_accept);
    }
}

void
sk_http_close_listeners(sk_thread_t *thr)
{
    for (int l = 0; l < 3; ++l) {
        if (thr->listen_socks[l] == NULL)
            continue;
        h2o_socket_read_stop(thr->listen_socks[l]);
        h2o_socket_close(thr->listen_socks[l]); /* closes the fd too */
        thr->listen_socks[l] = NULL;
        thr->listen_fds[l] = -1;
    }
}

void
sk_http_thread_dispose(sk_thread_t *thr)
{
    sk_timer_free(thr->accept_resume);
    thr->accept_resume = NULL;
    sk_http_close_listeners(thr);
    sk_conn_map_free(thr->conns);
    thr->conns = NULL;
    h2o_context_dispose(&thr->h2o_ctx);
    /* libh2o 2.2.5 (evloop) destroys the context's queue but never frees it */
    free(thr->h2o_ctx.queue);
    thr->h2o_ctx.queue = NULL;
    sk_metrics_thread_free(thr->metrics);
    thr->metrics = NULL;
}

/* ---- replies ---- */

static int
http_status_of(int code)
{
    switch (code) {
    case SK_OK:
        return 200;
    case SK_E_INVALID:
        return 400;
    case SK_E_NOT_FOUND:
        return 404;
    case SK_E_AUTH:
    case SK_E_ADMIN_AUTH:
        return 401;
    case SK_E_DENIED:
    case SK_E_NOT_STARTED:
    case SK_E_DISABLED:
        return 403;
    case SK_E_ENDED:
    case SK_E_SOLD_OUT:
        return 410;
    case SK_E_TIMEOUT:
        return 504;
    case SK_E_RATE_LIMITED:
    case SK_E_NOT_SELECTED:
        return 429;
    case SK_E_ALREADY_BOUGHT:
    case SK_E_CONFLICT:
        return 409;
    default:
        return 503;
    }
}

/* JSON string escaping of a message; control and non-ASCII bytes that are not valid UTF-8 become \u00XX. */
static size_t
json_escape(char *dst, const char *src, size_t cap)
{
    size_t o = 0;
    for (const unsigned char *s = (const unsigned char *)src; *s != '\0' && o + 8 < cap; ++s) {
        if (*s == '"' || *s == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)*s;
        } else if (*s < 0x20 || *s == 0x7f) {
            o += (size_t)sprintf(dst + o, "\\u%04x", *s);
        } else {
            dst[o++] = (char)*s;
        }
    }
    dst[o] = '\0';
    return o;
}

static void
send_body(h2o_req_t *req, int status, const char *content_type, size_t ctlen, h2o_iovec_t body, int code)
{
    req->res.status = status;
    req->res.reason = status == 200 ? "OK" : "Error";
    req->res.content_length = body.len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, ctlen);
    if (req->path_normalized.len >= 5 && memcmp(req->path_normalized.base, "/sec/", 5) == 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    if (code == SK_E_RATE_LIMITED || code == SK_E_NOT_SELECTED)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    sk_metrics_observe(req, code);
    h2o_send_inline(req, body.base, body.len);
}

void
sk_http_reply(h2o_req_t *req, int code, const char *message, const char *data_json)
{
    char msg[1024];
    size_t ml = json_escape(msg, message != NULL ? message : "", sizeof(msg));
    const char *data = data_json != NULL ? data_json : "null";
    size_t dl = strlen(data);
    char *buf = h2o_mem_alloc_pool(&req->pool, ml + dl + 64), *p = buf;
    memcpy(p, "{\"code\":", 8);
    p = sk_put_i64(p + 8, code);
    memcpy(p, ",\"message\":\"", 12);
    memcpy(p += 12, msg, ml);
    memcpy(p += ml, "\",\"data\":", 9);
    memcpy(p += 9, data, dl);
    p += dl;
    *p++ = '}';
    send_body(req, http_status_of(code), H2O_STRLIT("application/json"), h2o_iovec_init(buf, (size_t)(p - buf)), code);
}

void
sk_http_reply_raw(h2o_req_t *req, int http_status, const char *content_type, const char *body, size_t len)
{
    char *copy = h2o_mem_alloc_pool(&req->pool, len + 1);
    memcpy(copy, body, len);
    int code = http_status == 200 ? SK_OK : -http_status;
    send_body(req, http_status, content_type, strlen(content_type), h2o_iovec_init(copy, len), code);
}

int
sk_http_req_body(h2o_req_t *req, h2o_iovec_t *body)
{
    sk_thread_t *thr = sk_thread_self();
    if (thr != NULL && req->entity.len > thr->host->conf.http_max_body)
        return -1;
    *body = req->entity.base != NULL ? req->entity : h2o_iovec_init("", 0);
    return 0;
}
