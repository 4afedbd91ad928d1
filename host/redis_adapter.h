/*
 * hiredis event-loop adapters used by redis_client.c, implemented in redis_adapters.c (internal to the host).
 */
#ifndef SK_REDIS_ADAPTER_H
#define SK_REDIS_ADAPTER_H

#include <hiredis/async.h>
#include "host.h"

/** Called from hiredis' cleanup hook, once per context, after every pending callback of `ac` ran and before hiredis
 * frees `ac`. */
typedef void (*sk_redis_dead_cb)(redisAsyncContext *ac);

/** Attaches `ac` to the h2o evloop of `thr` (an HTTP or ADMIN thread): h2o watches a dup of hiredis' fd, and the
 * commands queued during one loop pass are written together by a 0 ms timer. Call before
 * redisAsyncSetConnectCallback. Returns 0, or -1 (nothing attached). */
int sk_redis_h2o_attach(redisAsyncContext *ac, sk_thread_t *thr, sk_redis_dead_cb on_dead);

/** Attaches `ac` to the libev loop of `thr` (CONTROL or WORKER) with hiredis' adapters/libev.h. Returns 0 or -1. */
int sk_redis_ev_attach(redisAsyncContext *ac, sk_thread_t *thr, sk_redis_dead_cb on_dead);

#endif
