/*
 * The operators' console (SPEC §5 Console): GET / is the page, GET /console/<file> its assets from admin.console_dir,
 * GET /console/chart.js Debian's Chart.js from admin.chart_js, and GET /dashboard/data the live figures
 * (routes_dashboard.c). Nothing is built or fetched at run time: the files are read from disk on each request, on the
 * admin thread where blocking is allowed, so an edited file shows on the next reload.
 *
 * The page and its assets carry no secret, so they are served without the bearer token (the page asks for it and
 * sends it on every API call); /dashboard/data is API data and passes the same token and Origin checks as the rest.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "admin.h"

#define SK_CONSOLE_FILE_MAX (2 * 1024 * 1024) /* chart.min.js is 200 KB; nothing of ours comes near */

static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".png", "image/png"},
    {".svg", "image/svg+xml"},
    {".ico", "image/x-icon"},
};

const char *
sk_admin_console_type(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); ++i) {
        size_t el = strlen(types[i].ext);
        if (len > el && memcmp(name + len - el, types[i].ext, el) == 0)
            return types[i].type;
    }
    return NULL;
}

int
sk_admin_console_name_ok(const char *name, size_t len)
{
    /* one path segment of [A-Za-z0-9._-], not starting with a dot: no "..", no "/", no hidden files, no escapes
     * (h2o has already decoded %2e%2e into the normalized path, and such a path never reaches here as one segment) */
    if (len == 0 || len > 64 || name[0] == '.')
        return 0;
    for (size_t i = 0; i < len; ++i) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return sk_admin_console_type(name, len) != NULL;
}

/* Reads a regular file of at most SK_CONSOLE_FILE_MAX bytes. 0, or -1 with errno-like reason in *why. */
static int
read_file(const char *path, int follow, char **buf, size_t *len, const char **why)
{
    /* Debian's chart.js names are symlinks, so the configured file may be one; a console file may not */
    int fd = open(path, O_RDONLY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
    struct stat st;
    *buf = NULL;
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SK_CONSOLE_FILE_MAX) {
        *why = "not a regular file of at most 2 MiB";
        close(fd);
        return -1;
    }
    *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (*buf != NULL && got < (size_t)st.st_size) {
        ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (*buf == NULL || got != (size_t)st.st_size) {
        free(*buf);
        *buf = NULL;
        *why = "read failed";
        return -1;
    }
    *len = got;
    return 0;
}

static void
serve_file(sk_admin_t *inst, h2o_req_t *req, const char *path, int follow, const char *type)
{
    char *buf;
    size_t len;
    const char *why;
    if (read_file(path, follow, &buf, &len, &why) != 0) {
        inst->api->log(inst->self, SK_LOG_WARN, "console: cannot serve %s: %s", path, why);
        sk_admin_replyf(inst, req, SK_E_NOT_FOUND, NULL, "console file not found (see admin.console_dir, admin.chart_js)");
        return;
    }
    inst->api->reply_raw(req, 200, type, buf, len);
    free(buf);
}

int
sk_admin_route_console(void *instp, void *tstate, h2o_req_t *req)
{
    sk_admin_t *inst = instp;
    h2o_iovec_t p = req->path_normalized;
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/dashboard/data")))
        return sk_admin_route_dashboard(instp, tstate, req);
    int is_index = h2o_memis(p.base, p.len, H2O_STRLIT("/")) || h2o_memis(p.base, p.len, H2O_STRLIT("/index.html"));
    int is_asset = p.len > 9 && memcmp(p.base, "/console/", 9) == 0;
    if (!is_index && !is_asset)
        return -1; /* the host answers /healthz, or 404 */
    if (!sk_admin_method(req, "GET") && !sk_admin_method(req, "HEAD")) {
        sk_admin_reply(inst, req, SK_E_INVALID, "method: use GET", NULL);
        return 0;
    }
    char path[1100];
    if (is_index) {
        snprintf(path, sizeof(path), "%s/index.html", inst->conf->admin_console_dir);
        serve_file(inst, req, path, 0, "text/html; charset=utf-8");
        return 0;
    }
    const char *name = p.base + 9;
    size_t nlen = p.len - 9;
    if (h2o_memis(name, nlen, H2O_STRLIT("chart.js"))) {
        serve_file(inst, req, inst->conf->admin_chart_js, 1, "text/javascript; charset=utf-8");
        return 0;
    }
    if (!sk_admin_console_name_ok(name, nlen)) {
        sk_admin_reply(inst, req, SK_E_NOT_FOUND, "console file not found", NULL);
        return 0;
    }
    snprintf(path, sizeof(path), "%s/%.*s", inst->conf->admin_console_dir, (int)nlen, name);
    serve_file(inst, req, path, 0, sk_admin_console_type(name, nlen));
    return 0;
}
