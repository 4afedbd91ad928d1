/*
 * The access plugin's control-thread state, shared by control.c (the live poll) and blacklist_load.c.
 */
#ifndef SK_ACCESS_CONTROL_H
#define SK_ACCESS_CONTROL_H

#include "access.h"

typedef struct st_sk_access_blop_t {
    uint8_t kind, add;
    uint8_t key[16];
} sk_access_blop_t;

struct st_sk_access_control_t {
    sk_access_t *a;
    sk_thread_t *thr;
    sk_redis_t *redis, *sub;
    sk_redis_t *queue; /* redis.queue_addr's connection for XLEN, or NULL (the queues are on redis) */
    int closing;

    /* live poll */
    sk_timer_t *poll_timer;
    unsigned poll_outstanding;
    int poll_failed;
    int64_t poll_t0_ms; /* real time when TIME was sent */
    int64_t offset_ms;
    sk_access_live_t *building, *last;
    /* The live-logic count alone may fail to read while Redis answers otherwise (on a Redis Cluster its key's master
     * can be failing over): the last good count then stands for SK_ACCESS_ALIVE_HOLD_MS before no logic counts. */
    int alive_failed;
    int64_t alive_last, alive_ok_ms; /* the last good count, and when it was read (monotonic ms) */

    /* blacklists */
    sk_timer_t *bl_timer;
    int bl_loading, bl_again; /* a load is running; another was asked for meanwhile */
    int bl_kind;
    char bl_cursor[32];
    sk_blbuild_t *bl_build;
    sk_access_blop_t *bl_ops; /* changes announced while a load runs, replayed onto its result */
    size_t bl_nops, bl_ops_since_load;
    int bl_ops_overflow;
};

#endif
