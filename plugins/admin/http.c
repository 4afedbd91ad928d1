/*
 * Request plumbing shared by the admin routes: the Bearer and Origin checks, parameter reading, JSON replies, and the
 * reference that lets a Redis callback find out whether its request still exists.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "admin.h"
#include "sk_sign.h"

int64_t
sk_admin_now(void)
{
    return (int64_t)time(NULL);
}

static h2o_iovec_t
header(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

int
sk_admin_check_access(sk_admin_t *inst, h2o_req_t *req)
{
    /* A browser on another site must not drive the admin with the operator's network position (CSRF). */
    h2o_iovec_t origin = header(req, "origin");
    if (origin.base != NULL) {
        h2o_iovec_t host = req->input.authority;
        if (!sk_admin_origin_ok(origin.base, origin.len, host.base, host.len)) {
            sk_admin_reply(inst, req, SK_E_ADMIN_AUTH, "cross-origin request refused", NULL);
            return -1;
        }
    }
    if (!inst->has_token)
        return 0;
    h2o_iovec_t auth = header(req, "authorization");
    const char *tok;
    size_t toklen;
    char sha[65];
    if (auth.base == NULL || sk_admin_bearer(auth.base, auth.len, &tok, &toklen) != 0) {
        sk_admin_reply(inst, req, SK_E_ADMIN_AUTH, "admin token missing (Authorization: Bearer)", NULL);
        return -1;
    }
    /* Comparing digests keeps the compare constant-time even when the lengths differ. */
    sk_sha256_hex(tok, toklen, sha);
    if (!sk_ct_equal(sha, inst->token_sha, 64)) {
        sk_admin_reply(inst, req, SK_E_ADMIN_AUTH, "admin token wrong", NULL);
        return -1;
    }
    return 0;
}

int
sk_admin_params(sk_admin_t *inst, h2o_req_t *req, sk_form_t *f)
{
    h2o_iovec_t body = h2o_iovec_init(NULL, 0);
    char err[160];
    if (inst->api->req_body(req, &body) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, "body: larger than http.max_body", NULL);
        return -1;
    }
    const char *query = NULL;
    size_t qlen = 0;
    if (req->query_at != SIZE_MAX) {
        query = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    h2o_iovec_t ctype = header(req, "content-type");
    if (sk_admin_params_parse(f, query, qlen, ctype.base, ctype.len, body.base, body.len, err, sizeof(err)) != 0) {
        sk_admin_reply(inst, req, SK_E_INVALID, err, NULL);
        return -1;
    }
    return 0;
}

int
sk_admin_method(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

void
sk_admin_reply(sk_admin_t *inst, h2o_req_t *req, int code, const char *message, cJSON *data)
{
    char *json = data != NULL ? cJSON_PrintUnformatted(data) : NULL;
    if (data != NULL && json == NULL) {
        inst->api->reply(req, SK_E_UNAVAILABLE, "out of memory", NULL);
    } else {
        inst->api->reply(req, code, message, json);
    }
    cJSON_free(json);
    cJSON_Delete(data);
}

void
sk_admin_replyf(sk_admin_t *inst, h2o_req_t *req, int code, cJSON *data, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sk_admin_reply(inst, req, code, msg, data);
}

/* The request pool holds a slot pointing at the reference; disposing the pool clears ref->req. */
static void
on_req_dispose(void *p)
{
    sk_admin_reqref_t **slot = p;
    if (*slot != NULL) {
        (*slot)->req = NULL;
        (*slot)->slot = NULL;
    }
}

void
sk_admin_reqref_set(sk_admin_t *inst, sk_admin_reqref_t *ref, h2o_req_t *req)
{
    ref->req = req;
    ref->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*ref->slot), on_req_dispose);
    *ref->slot = ref;
    ref->active = 1;
    atomic_fetch_add(&inst->inflight, 1);
}

h2o_req_t *
sk_admin_reqref_take(sk_admin_t *inst, sk_admin_reqref_t *ref)
{
    h2o_req_t *req = ref->req;
    if (ref->slot != NULL)
        *ref->slot = NULL;
    if (ref->active)
        atomic_fetch_sub(&inst->inflight, 1);
    ref->active = 0;
    ref->req = NULL;
    ref->slot = NULL;
    if (inst->ts == NULL || inst->ts->disposing)
        return NULL;
    return req;
}
