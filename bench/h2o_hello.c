/*
 * h2o_hello: the baseline of every SecKill performance figure.
 *
 * A bare libh2o evloop HTTP/1.1 server that answers every path with 200 and a small JSON body
 * (content-length set, keep-alive). Each thread has its own evloop, h2o context and SO_REUSEPORT
 * listen socket, which is the same shape as seckilld's HTTP threads, so "seckilld / h2o_hello" in
 * one wrk round isolates the cost of our own code.
 *
 *   h2o_hello [-a ADDR] [-p PORT] [-t THREADS]     (defaults 127.0.0.1, 8090, 1)
 *
 * SIGTERM or SIGINT stops it (exit 0).
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <h2o.h>

#define HELLO_MAX_THREADS 64
#define HELLO_BODY "{\"code\":0,\"message\":\"ok\",\"data\":\"hello\"}"

typedef struct st_hello_thread_t {
    pthread_t tid;
    h2o_globalconf_t *config;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    int fd;
} hello_thread_t;

/* Written by the signal handler, read by every loop between two polls. */
static atomic_int stop_requested;

static void
on_signal(int signo)
{
    (void)signo;
    atomic_store(&stop_requested, 1);
}

static int
on_req(h2o_handler_t *self, h2o_req_t *req)
{
    static const char body[] = HELLO_BODY;
    (void)self;
    req->res.status = 200;
    req->res.reason = "OK";
    /* Without a content-length h2o_send_inline falls back to chunked encoding (STACK.md). */
    req->res.content_length = sizeof(body) - 1;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, body, sizeof(body) - 1);
    return 0;
}

static void
on_accept(h2o_socket_t *listener, const char *err)
{
    hello_thread_t *t = listener->data;
    h2o_socket_t *sock;

    if (err != NULL)
        return;
    if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
        return;
    h2o_accept(&t->accept_ctx, sock);
}

static int
open_listener(const char *addr, int port)
{
    struct sockaddr_in sin;
    int fd, on = 1;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
        fprintf(stderr, "h2o_hello: bad address %s\n", addr);
        return -1;
    }
    if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
        goto fail;
    /* One listen socket per thread, balanced by the kernel, as in seckilld. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, SOMAXCONN) != 0)
        goto fail;
    return fd;
fail:
    fprintf(stderr, "h2o_hello: listen on %s:%d: %s\n", addr, port, strerror(errno));
    if (fd != -1)
        close(fd);
    return -1;
}

static void *
run_thread(void *arg)
{
    hello_thread_t *t = arg;

    while (!atomic_load(&stop_requested)) {
        /* h2o_evloop_run returns -1 on EINTR; the bounded wait also lets every thread see the stop flag. */
        if (h2o_evloop_run(t->loop, 200) != 0 && errno != EINTR) {
            perror("h2o_hello: h2o_evloop_run");
            break;
        }
    }
    h2o_socket_read_stop(t->listener);
    h2o_socket_close(t->listener);
    return NULL;
}

static void
usage(void)
{
    fprintf(stderr, "usage: h2o_hello [-a ADDR] [-p PORT] [-t THREADS]\n");
}

int
main(int argc, char **argv)
{
    static h2o_globalconf_t config;
    static hello_thread_t threads[HELLO_MAX_THREADS];
    const char *addr = "127.0.0.1";
    int port = 8090, nthreads = 1, opt, i;
    struct sigaction sa;
    h2o_hostconf_t *host;
    h2o_pathconf_t *path;
    h2o_handler_t *handler;

    while ((opt = getopt(argc, argv, "a:p:t:h")) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 't':
            nthreads = atoi(optarg);
            break;
        default:
            usage();
            return opt == 'h' ? 0 : 2;
        }
    }
    if (port <= 0 || port > 65535 || nthreads < 1 || nthreads > HELLO_MAX_THREADS) {
        usage();
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: the poll must return so the loop sees the flag */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    h2o_config_init(&config);
    config.max_request_entity_size = 65536;
    host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    path = h2o_config_register_path(host, "/", 0);
    handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = on_req;

    for (i = 0; i < nthreads; ++i) {
        hello_thread_t *t = &threads[i];
        t->config = &config;
        t->loop = h2o_evloop_create();
        h2o_context_init(&t->ctx, t->loop, &config);
        t->accept_ctx.ctx = &t->ctx;
        t->accept_ctx.hosts = config.hosts;
        if ((t->fd = open_listener(addr, port)) == -1)
            return 1;
        t->listener = h2o_evloop_socket_create(t->loop, t->fd, H2O_SOCKET_FLAG_DONT_READ);
        t->listener->data = t;
        h2o_socket_read_start(t->listener, on_accept);
    }
    fprintf(stderr, "h2o_hello: listening on http://%s:%d/ with %d thread(s)\n", addr, port, nthreads);

    for (i = 1; i < nthreads; ++i) {
        if (pthread_create(&threads[i].tid, NULL, run_thread, &threads[i]) != 0) {
            fprintf(stderr, "h2o_hello: pthread_create failed\n");
            return 1;
        }
    }
    run_thread(&threads[0]);
    for (i = 1; i < nthreads; ++i)
        pthread_join(threads[i].tid, NULL);
    fprintf(stderr, "h2o_hello: stopped\n");
    return 0;
}
