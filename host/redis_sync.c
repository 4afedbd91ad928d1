/*
 * The blocking Redis client of start-up (the node-id lock, the first health check). With redis.cluster it tries each
 * seed of redis.addr in turn and follows MOVED / ASK (at most MAX_HOPS), so a keyed command reaches its slot's master
 * without knowing the slot map; a keyless command runs on the first seed that answers.
 */
#include <stdlib.h>
#include <string.h>
#include "host.h"
#include "sk_cluster.h"
#include "sk_list.h"

#define DEFAULT_TIMEOUT_MS 500
#define MAX_HOPS 5

/* Connects and AUTHs; NULL with err. */
static redisContext *
open_ctx(const sk_config_t *c, const char *ip, uint16_t port, struct timeval tv, char *err, size_t errlen)
{
    redisContext *ctx = redisConnectWithTimeout(ip, port, tv);
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (ctx->err != 0) {
        snprintf(err, errlen, "connect %s:%u: %s", ip, (unsigned)port, ctx->errstr);
        goto Fail;
    }
    if (redisSetTimeout(ctx, tv) != REDIS_OK) {
        snprintf(err, errlen, "cannot set the socket timeout: %s", ctx->errstr);
        goto Fail;
    }
    if (c->redis_password[0] != '\0') {
        redisReply *a = redisCommand(ctx, "AUTH %s", c->redis_password);
        if (a == NULL) {
            snprintf(err, errlen, "AUTH: %s", ctx->errstr);
            goto Fail;
        }
        int refused = a->type == REDIS_REPLY_ERROR;
        if (refused)
            snprintf(err, errlen, "AUTH: %s", a->str);
        freeReplyObject(a);
        if (refused)
            goto Fail;
    }
    return ctx;
Fail:
    redisFree(ctx);
    return NULL;
}

/* Sends the formatted command (after ASKING when `asking`) and reads its reply; NULL with err on I/O failure. */
static redisReply *
run_on(redisContext *ctx, const char *cmd, size_t len, int asking, char *err, size_t errlen)
{
    if (asking) {
        redisReply *a = redisCommand(ctx, "ASKING");
        if (a == NULL) {
            snprintf(err, errlen, "ASKING: %s", ctx->errstr);
            return NULL;
        }
        freeReplyObject(a);
    }
    void *reply = NULL;
    if (redisAppendFormattedCommand(ctx, cmd, len) != REDIS_OK || redisGetReply(ctx, &reply) != REDIS_OK) {
        snprintf(err, errlen, "%s", ctx->err != 0 ? ctx->errstr : "no reply");
        if (reply != NULL)
            freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

/* Follows redirects from the reply of one node; frees what it replaces. */
static redisReply *
follow(const sk_config_t *c, redisReply *reply, const char *cmd, size_t len, struct timeval tv, char *err, size_t errlen)
{
    for (int hop = 0; reply != NULL && reply->type == REDIS_REPLY_ERROR; ++hop) {
        sk_cluster_redirect_t rd;
        if (sk_cluster_parse_redirect(reply->str, reply->len, &rd) != 0)
            break;
        if (hop == MAX_HOPS) {
            snprintf(err, errlen, "too many redirects (last: %s)", reply->str);
            freeReplyObject(reply);
            return NULL;
        }
        freeReplyObject(reply);
        reply = NULL;
        redisContext *ctx = open_ctx(c, rd.host, rd.port, tv, err, errlen);
        if (ctx == NULL)
            return NULL;
        reply = run_on(ctx, cmd, len, rd.kind == SK_CLUSTER_ASK, err, errlen);
        redisFree(ctx);
    }
    return reply;
}

redisReply *
sk_redis_sync_command(const sk_config_t *c, char *err, size_t errlen, const char *fmt, ...)
{
    unsigned ms = c->redis_timeout_ms != 0 ? c->redis_timeout_ms : DEFAULT_TIMEOUT_MS;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) {
        snprintf(err, errlen, "cannot format the command");
        return NULL;
    }
    redisReply *reply = NULL;
    if (!c->redis_cluster) {
        redisContext *ctx = open_ctx(c, c->redis_host, c->redis_port, tv, err, errlen);
        if (ctx != NULL) {
            reply = run_on(ctx, cmd, (size_t)len, 0, err, errlen);
            redisFree(ctx);
        }
        goto Exit;
    }
    /* the seeds in order until one accepts the connection; its answer (or redirect chain) decides */
    const char *p = c->redis_addr, *item;
    size_t ilen;
    while (sk_list_next(&p, &item, &ilen)) {
        char one[64], ip[64];
        uint16_t port;
        if (ilen >= sizeof(one))
            continue;
        memcpy(one, item, ilen);
        one[ilen] = '\0';
        if (sk_conf_parse_addr(one, ip, sizeof(ip), &port) != 0)
            continue;
        redisContext *ctx = open_ctx(c, ip, port, tv, err, errlen);
        if (ctx == NULL)
            continue;
        reply = run_on(ctx, cmd, (size_t)len, 0, err, errlen);
        redisFree(ctx);
        if (reply != NULL)
            reply = follow(c, reply, cmd, (size_t)len, tv, err, errlen);
        break; /* sent: a transport failure now may have run it, so no other seed gets it again */
    }
Exit:
    redisFreeCommand(cmd);
    return reply;
}
