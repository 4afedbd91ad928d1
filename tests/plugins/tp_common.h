/*
 * Small plugins for the loader's tests. Each one is built as its own .so from a file that defines TP_* and includes
 * this header; the defaults describe a well-formed plugin.
 */
#include <stdio.h>
#include <string.h>
#include "seckill/plugin.h"

#ifndef TP_NAME
#define TP_NAME "tp_good"
#endif
#ifndef TP_ABI
#define TP_ABI SK_PLUGIN_ABI
#endif
#ifndef TP_SIZE
#define TP_SIZE sizeof(sk_plugin_desc_t)
#endif
#ifndef TP_SIG
#define TP_SIG SK_BUILD_SIGNATURE
#endif
#ifndef TP_FAIL_CREATE
#define TP_FAIL_CREATE 0
#endif

typedef struct st_tp_inst_t {
    const sk_host_api_t *api;
    sk_plugin_t *self;
} tp_inst_t;

static int
tp_on_req(void *inst, void *tstate, h2o_req_t *req)
{
    tp_inst_t *t = inst;
    (void)tstate;
    t->api->reply(req, 0, "hello from " TP_NAME, NULL);
    return 0;
}

static void *
tp_create(const sk_host_api_t *api, sk_plugin_t *self, char *err, size_t errlen)
{
    static tp_inst_t inst; /* test-only plugin: one instance per process */
    inst.api = api;
    inst.self = self;
    if (api->route(self, SK_LISTENER_STATUS, "/" TP_NAME, tp_on_req) != 0) {
        snprintf(err, errlen, "route refused");
        return NULL;
    }
    if (TP_FAIL_CREATE) {
        snprintf(err, errlen, "told to fail");
        return NULL;
    }
    return &inst;
}

static void
tp_destroy(void *inst)
{
    (void)inst;
}

static const sk_plugin_desc_t tp_desc = {
    .abi = TP_ABI,
    .size = TP_SIZE,
    .name = TP_NAME,
    .version = "0.0.1",
    .build_signature = TP_SIG,
    .create = tp_create,
    .destroy = tp_destroy,
};

SK_PLUGIN_EXPORT const sk_plugin_desc_t *
sk_plugin_entry(void)
{
    return &tp_desc;
}
