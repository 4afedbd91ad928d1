/*
 * hiredis on h2o's own event loop (STACK.md): h2o watches a dup of hiredis' fd with H2O_SOCKET_FLAG_DONT_READ, so
 * readiness comes from h2o_socket_read_start and hiredis does the reading itself. Writes are batched: once connected,
 * addWrite arms a 0 ms timer, so every command queued during one loop pass leaves in one write(). Only a write that
 * the kernel could not take whole, and the connect itself, wait for writability with h2o_socket_notify_write.
 *
 * The libev side is hiredis' own adapters/libev.h, wrapped so that the client learns when a context is gone.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <hiredis/adapters/libev.h>
#include "redis_adapter.h"

typedef struct st_h2o_adapter_t {
    redisAsyncContext *ac;
    h2o_socket_t *sock;
    sk_timer_t *flush;
    sk_redis_dead_cb on_dead;
    int want_write;  /* hiredis asked for a write and did not take it back */
    int flush_armed; /* the 0 ms timer is linked */
    int in_write;    /* inside redisAsyncHandleWrite: a new addWrite means "the kernel buffer is full" */
    int *dead_flag;  /* set to 1 by cleanup, so a caller up the stack knows the adapter is gone */
} h2o_adapter_t;

static void on_sock_write(h2o_socket_t *sock, const char *err);

static void
on_sock_read(h2o_socket_t *sock, const char *err)
{
    (void)err; /* with DONT_READ h2o reads nothing; hiredis sees the EOF or the error itself */
    h2o_adapter_t *a = sock->data;
    redisAsyncHandleRead(a->ac); /* may free `a` */
}

/* Runs hiredis' write path; returns with `a` possibly freed. */
static void
handle_write(h2o_adapter_t *a)
{
    int dead = 0;
    a->dead_flag = &dead;
    a->in_write = 1;
    redisAsyncHandleWrite(a->ac);
    if (!dead) {
        a->in_write = 0;
        a->dead_flag = NULL;
    }
}

static void
on_sock_write(h2o_socket_t *sock, const char *err)
{
    (void)err; /* a failed connect shows up in hiredis' own SO_ERROR check */
    h2o_adapter_t *a = sock->data;
    if (a->want_write)
        handle_write(a);
}

static void
on_flush(sk_timer_t *t, void *data)
{
    (void)t;
    h2o_adapter_t *a = data;
    a->flush_armed = 0;
    if (a->want_write)
        handle_write(a);
}

static void
add_read(void *privdata)
{
    h2o_adapter_t *a = privdata;
    if (!h2o_socket_is_reading(a->sock))
        h2o_socket_read_start(a->sock, on_sock_read);
}

static void
del_read(void *privdata)
{
    h2o_adapter_t *a = privdata;
    if (h2o_socket_is_reading(a->sock))
        h2o_socket_read_stop(a->sock);
}

static void
add_write(void *privdata)
{
    h2o_adapter_t *a = privdata;
    a->want_write = 1;
    if ((a->ac->c.flags & REDIS_CONNECTED) != 0 && !a->in_write) {
        if (!a->flush_armed) {
            a->flush_armed = 1;
            sk_timer_start(a->flush, 0);
        }
        return;
    }
    /* fires once and asserts if one is pending; there is no cancel, so del_write only clears want_write */
    if (!h2o_socket_is_writing(a->sock))
        h2o_socket_notify_write(a->sock, on_sock_write);
}

static void
del_write(void *privdata)
{
    h2o_adapter_t *a = privdata;
    a->want_write = 0;
}

static void
cleanup(void *privdata)
{
    h2o_adapter_t *a = privdata;
    redisAsyncContext *ac = a->ac;
    if (a->dead_flag != NULL)
        *a->dead_flag = 1;
    if (h2o_socket_is_reading(a->sock))
        h2o_socket_read_stop(a->sock);
    h2o_socket_close(a->sock); /* closes only the dup; hiredis closes its own fd */
    sk_timer_free(a->flush);
    ac->ev.data = NULL;
    ac->ev.addRead = ac->ev.delRead = ac->ev.addWrite = ac->ev.delWrite = NULL;
    ac->ev.cleanup = NULL;
    sk_redis_dead_cb on_dead = a->on_dead;
    free(a);
    on_dead(ac);
}

int
sk_redis_h2o_attach(redisAsyncContext *ac, sk_thread_t *thr, sk_redis_dead_cb on_dead)
{
    if (ac->ev.data != NULL || thr->h2o_loop == NULL)
        return -1;
    h2o_adapter_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -1;
    /* one fd, one owner: h2o closes its dup, hiredis its original */
    int fd = fcntl(ac->c.fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        free(a);
        return -1;
    }
    a->flush = sk_timer_new(thr, on_flush, a);
    if (a->flush == NULL) {
        close(fd);
        free(a);
        return -1;
    }
    a->ac = ac;
    a->on_dead = on_dead;
    a->sock = h2o_evloop_socket_create(thr->h2o_loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    a->sock->data = a;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = a;
    return 0;
}

/* ---- libev ---- */

/* hiredis' libev adapter owns ev.data; our hook runs its cleanup, then tells the client */
typedef struct st_ev_wrap_t {
    redisLibevEvents *inner;
    sk_redis_dead_cb on_dead;
} ev_wrap_t;

static void
wrap_add_read(void *privdata)
{
    redisLibevAddRead(((ev_wrap_t *)privdata)->inner);
}

static void
wrap_del_read(void *privdata)
{
    redisLibevDelRead(((ev_wrap_t *)privdata)->inner);
}

static void
wrap_add_write(void *privdata)
{
    redisLibevAddWrite(((ev_wrap_t *)privdata)->inner);
}

static void
wrap_del_write(void *privdata)
{
    redisLibevDelWrite(((ev_wrap_t *)privdata)->inner);
}

static void
wrap_cleanup(void *privdata)
{
    ev_wrap_t *w = privdata;
    redisAsyncContext *ac = w->inner->context;
    redisLibevCleanup(w->inner);
    ac->ev.data = NULL;
    ac->ev.addRead = ac->ev.delRead = ac->ev.addWrite = ac->ev.delWrite = NULL;
    ac->ev.cleanup = NULL;
    sk_redis_dead_cb on_dead = w->on_dead;
    free(w);
    on_dead(ac);
}

int
sk_redis_ev_attach(redisAsyncContext *ac, sk_thread_t *thr, sk_redis_dead_cb on_dead)
{
    if (ac->ev.data != NULL || thr->ev_loop == NULL)
        return -1;
    ev_wrap_t *w = malloc(sizeof(*w));
    if (w == NULL)
        return -1;
    if (redisLibevAttach(thr->ev_loop, ac) != REDIS_OK) {
        free(w);
        return -1;
    }
    w->inner = ac->ev.data;
    w->on_dead = on_dead;
    ac->ev.addRead = wrap_add_read;
    ac->ev.delRead = wrap_del_read;
    ac->ev.addWrite = wrap_add_write;
    ac->ev.delWrite = wrap_del_write;
    ac->ev.cleanup = wrap_cleanup;
    ac->ev.data = w;
    return 0;
}
