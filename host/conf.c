/*
 * Configuration: `key = value` lines with `#` comments, keys as in SPEC §1. Every key is typed and bounded, and an
 * error names the file, the key and what was expected.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "host.h"
#include "sk_list.h"

enum { T_STR, T_UINT, T_BOOL, T_SIZE };

typedef struct st_conf_key_t {
    const char *name;
    int type;
    size_t off;
    size_t size;       /* strings: buffer size */
    uint64_t min, max; /* numbers */
    int (*check)(const char *value, char *why, size_t whylen);
} conf_key_t;

static int check_listen(const char *v, char *why, size_t whylen);
static int check_redis_addr(const char *v, char *why, size_t whylen);
static int check_queue_addr(const char *v, char *why, size_t whylen);
static int check_endpoints(const char *v, char *why, size_t whylen);
static int check_prefix(const char *v, char *why, size_t whylen);
static int check_plugins(const char *v, char *why, size_t whylen);
static int check_level(const char *v, char *why, size_t whylen);
static int check_node_id(const char *v, char *why, size_t whylen);
static void split_redis_addr(sk_config_t *c);

#define S(k, f, chk)                                                                                                               \
    {                                                                                                                              \
        k, T_STR, offsetof(sk_config_t, f), sizeof(((sk_config_t *)0)->f), 0, 0, chk                                               \
    }
#define U(k, f, lo, hi)                                                                                                            \
    {                                                                                                                              \
        k, T_UINT, offsetof(sk_config_t, f), sizeof(unsigned), lo, hi, NULL                                                        \
    }

static const conf_key_t keys[] = {
    S("plugins", plugins, check_plugins),
    S("plugin_dir", plugin_dir, NULL),
    S("node_id", node_id, check_node_id),
    U("threads", threads, 1, SK_MAX_THREADS),
    S("access.listen", access_listen, check_listen),
    S("admin.listen", admin_listen, check_listen),
    S("status.listen", status_listen, check_listen),
    S("redis.addr", redis_addr, check_redis_addr),
    S("redis.password", redis_password, NULL),
    U("redis.timeout_ms", redis_timeout_ms, 10, 60000),
    {"redis.cluster", T_BOOL, offsetof(sk_config_t, redis_cluster), sizeof(int), 0, 1, NULL},
    U("redis.wait_replicas", redis_wait_replicas, 0, 16),
    S("redis.queue_addr", redis_queue_addr, check_queue_addr),
    S("etcd.endpoints", etcd_endpoints, check_endpoints),
    S("etcd.prefix", etcd_prefix, check_prefix),
    S("auth.secret", auth_secret, NULL),
    U("auth.window", auth_window, 1, 86400),
    U("access.request_timeout_ms", access_request_timeout_ms, 100, 600000),
    S("access.referer_whitelist", access_referer_whitelist, NULL),
    S("access.trusted_proxies", access_trusted_proxies, NULL),
    U("access.max_inflight", access_max_inflight, 1, 10000000),
    U("access.limiter_max_entries", access_limiter_max_entries, 16, 100000000),
    {"http.max_body", T_SIZE, offsetof(sk_config_t, http_max_body), sizeof(size_t), 1, 64 * 1024 * 1024, NULL},
    U("http.idle_timeout_ms", http_idle_timeout_ms, 100, 3600000),
    {"http.http2", T_BOOL, offsetof(sk_config_t, http2), sizeof(int), 0, 1, NULL},
    U("lua.mem_limit_kb", lua_mem_limit_kb, 64, 1048576),
    U("lua.instr_limit", lua_instr_limit, 1000, 1000000000),
    S("logic.token_secret", logic_token_secret, NULL),
    U("logic.token_ttl", logic_token_ttl, 1, 31536000),
    S("admin.db", admin_db, NULL),
    S("admin.token", admin_token, NULL),
    S("policies.dir", policies_dir, NULL),
    S("log.level", log_level, check_level),
    S("log.file", log_file, NULL),
    S("admin.console_dir", admin_console_dir, NULL),
    S("admin.chart_js", admin_chart_js, NULL),
};

#undef S
#undef U

void
sk_conf_defaults(sk_config_t *c)
{
    char host[64] = "localhost";
    memset(c, 0, sizeof(*c));
    strcpy(c->plugins, "access,logic,admin");
    gethostname(host, sizeof(host) - 1);
    snprintf(c->node_id, sizeof(c->node_id), "%.60s-%d", host, (int)getpid());
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = n < 1 ? 1 : n > SK_MAX_THREADS ? SK_MAX_THREADS : (unsigned)n;
    strcpy(c->access_listen, "127.0.0.1:8082");
    strcpy(c->admin_listen, "127.0.0.1:8081");
    strcpy(c->status_listen, "127.0.0.1:8083");
    strcpy(c->redis_addr, "127.0.0.1:6379");
    c->redis_timeout_ms = 500;
    strcpy(c->etcd_endpoints, "http://127.0.0.1:2379");
    strcpy(c->etcd_prefix, "/seckill");
    strcpy(c->auth_secret, SK_DEV_AUTH_SECRET);
    c->auth_window = 60;
    c->access_request_timeout_ms = 3000;
    c->access_max_inflight = 100000;
    c->access_limiter_max_entries = 1000000;
    c->http_max_body = 65536;
    c->http_idle_timeout_ms = 10000;
    c->lua_mem_limit_kb = 4096;
    c->lua_instr_limit = 1000000;
    strcpy(c->logic_token_secret, SK_DEV_TOKEN_SECRET);
    c->logic_token_ttl = 1800;
    strcpy(c->admin_db, "var/seckill.db");
    strcpy(c->policies_dir, "policies");
    strcpy(c->log_level, "info");
    strcpy(c->admin_console_dir, "console");
    strcpy(c->admin_chart_js, "/usr/share/javascript/chart.js/chart.min.js");
    split_redis_addr(c);
}

int
sk_conf_parse_addr(const char *addr, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr)
        return -1;
    const char *h = addr, *he = colon;
    if (*h == '[') { /* [::1]:8080 */
        if (he[-1] != ']')
            return -1;
        ++h;
        --he;
    }
    size_t hl = (size_t)(he - h);
    if (hl == 0 || hl >= hostlen)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1)
        return -1;
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || colon[1] == '\0' || p > 65535 || !isdigit((unsigned char)colon[1]))
        return -1;
    *port = (uint16_t)p;
    return 0;
}

int
sk_addr_is_loopback(const char *addr)
{
    char host[64];
    uint16_t port;
    if (sk_conf_parse_addr(addr, host, sizeof(host), &port) != 0)
        return 0;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return strcmp(host, "::1") == 0;
}

static int
check_listen(const char *v, char *why, size_t whylen)
{
    char host[64];
    uint16_t port;
    if (sk_conf_parse_addr(v, host, sizeof(host), &port) != 0) {
        snprintf(why, whylen, "an IP:port address such as 127.0.0.1:8082");
        return -1;
    }
    return 0;
}

/* One IP:port, or a comma-separated list of them (the seeds of a Redis Cluster; a list without redis.cluster is refused
 * when the whole file is checked, since the keys may come in any order). */
static int
check_redis_addr(const char *v, char *why, size_t whylen)
{
    const char *p = v, *item;
    size_t len, n = 0;
    while (sk_list_next(&p, &item, &len)) {
        char one[64], host[64];
        uint16_t port;
        if (len >= sizeof(one))
            goto bad;
        memcpy(one, item, len);
        one[len] = '\0';
        if (sk_conf_parse_addr(one, host, sizeof(host), &port) != 0)
            goto bad;
        ++n;
    }
    if (n > 0)
        return 0;
bad:
    snprintf(why, whylen, "an IP:port address such as 127.0.0.1:6379, or with redis.cluster a comma-separated list of them");
    return -1;
}

/* Empty (the queue lives with the data), or one IP:port: a plain Redis, never a cluster, that holds only the request
 * queues (README "A separate queue Redis"). */
static int
check_queue_addr(const char *v, char *why, size_t whylen)
{
    char host[64];
    uint16_t port;
    if (*v == '\0' || (strlen(v) < 64 && strchr(v, ',') == NULL && sk_conf_parse_addr(v, host, sizeof(host), &port) == 0))
        return 0;
    snprintf(why, whylen, "empty, or one IP:port address such as 127.0.0.1:6380");
    return -1;
}

/* The first address of redis.addr: the single Redis, or the first seed. */
static void
split_redis_addr(sk_config_t *c)
{
    const char *p = c->redis_addr, *item;
    size_t len;
    char one[64];
    if (!sk_list_next(&p, &item, &len) || len >= sizeof(one))
        return;
    memcpy(one, item, len);
    one[len] = '\0';
    sk_conf_parse_addr(one, c->redis_host, sizeof(c->redis_host), &c->redis_port);
}

static int
check_endpoints(const char *v, char *why, size_t whylen)
{
    const char *p = v, *item;
    size_t len;
    if (*p == '\0')
        goto bad;
    while (sk_list_next(&p, &item, &len)) {
        if (len <= 8 || (strncmp(item, "http://", 7) != 0 && strncmp(item, "https://", 8) != 0))
            goto bad;
        for (size_t i = 0; i < len; ++i)
            if (isspace((unsigned char)item[i]))
                goto bad;
    }
    return 0;
bad:
    snprintf(why, whylen, "a comma-separated list of http:// URLs");
    return -1;
}

static int
check_prefix(const char *v, char *why, size_t whylen)
{
    size_t len = strlen(v);
    if (len < 2 || v[0] != '/' || v[len - 1] == '/') {
        snprintf(why, whylen, "a key prefix such as /seckill (leading '/', no trailing '/')");
        return -1;
    }
    return 0;
}

static int
check_plugins(const char *v, char *why, size_t whylen)
{
    const char *p = v, *item;
    size_t len;
    while (sk_list_next(&p, &item, &len)) {
        if (len == 0 || len > 32)
            goto bad;
        for (size_t i = 0; i < len; ++i)
            if (!(isalnum((unsigned char)item[i]) || item[i] == '_' || item[i] == '-'))
                goto bad;
    }
    return 0;
bad:
    snprintf(why, whylen, "a comma-separated list of plugin names such as access,logic,admin");
    return -1;
}

static int
check_level(const char *v, char *why, size_t whylen)
{
    if (strcmp(v, "debug") && strcmp(v, "info") && strcmp(v, "warn") && strcmp(v, "error")) {
        snprintf(why, whylen, "one of debug, info, warn, error");
        return -1;
    }
    return 0;
}

static int
check_node_id(const char *v, char *why, size_t whylen)
{
    size_t len = strlen(v);
    if (len == 0 || len > 100)
        goto bad;
    for (size_t i = 0; i < len; ++i)
        if (!(isalnum((unsigned char)v[i]) || strchr("-_.", v[i]) != NULL))
            goto bad;
    return 0;
bad:
    snprintf(why, whylen, "1-100 characters of [A-Za-z0-9._-]");
    return -1;
}

static const conf_key_t *
find_key(const char *name)
{
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); ++i)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

int
sk_conf_set(sk_config_t *c, const char *key, const char *value, char *err, size_t errlen)
{
    const conf_key_t *k = find_key(key);
    char why[160];
    if (k == NULL) {
        snprintf(err, errlen, "unknown key \"%s\"", key);
        return -1;
    }
    char *field = (char *)c + k->off;
    switch (k->type) {
    case T_STR:
        if (strlen(value) >= k->size) {
            snprintf(err, errlen, "%s: expected at most %zu bytes", key, k->size - 1);
            return -1;
        }
        if (k->check != NULL && k->check(value, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s: expected %s, got \"%.100s\"", key, why, value);
            return -1;
        }
        strcpy(field, value);
        break;
    case T_UINT:
    case T_SIZE: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (!isdigit((unsigned char)value[0]) || *end != '\0' || errno != 0 || v < k->min || v > k->max) {
            snprintf(err, errlen, "%s: expected an integer from %llu to %llu, got \"%.100s\"", key, (unsigned long long)k->min,
                     (unsigned long long)k->max, value);
            return -1;
        }
        if (k->type == T_UINT)
            *(unsigned *)field = (unsigned)v;
        else
            *(size_t *)field = (size_t)v;
    } break;
    case T_BOOL:
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "on") == 0) {
            *(int *)field = 1;
        } else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 || strcmp(value, "off") == 0) {
            *(int *)field = 0;
        } else {
            snprintf(err, errlen, "%s: expected true or false, got \"%.100s\"", key, value);
            return -1;
        }
        break;
    }
    if (strcmp(key, "redis.addr") == 0)
        split_redis_addr(c);
    if (strcmp(key, "redis.queue_addr") == 0) {
        c->redis_queue_host[0] = '\0';
        c->redis_queue_port = 0;
        if (c->redis_queue_addr[0] != '\0')
            sk_conf_parse_addr(c->redis_queue_addr, c->redis_queue_host, sizeof(c->redis_queue_host), &c->redis_queue_port);
    }
    return 0;
}

static char *
trim(char *s)
{
    while (isspace((unsigned char)*s))
        ++s;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int
sk_conf_load(sk_config_t *c, const char *file, char **overrides, size_t noverrides, char *err, size_t errlen)
{
    char msg[512];
    if (file != NULL) {
        FILE *fp = fopen(file, "r");
        if (fp == NULL) {
            snprintf(err, errlen, "%s: cannot open: %s", file, strerror(errno));
            return -1;
        }
        char line[4096];
        unsigned lineno = 0;
        while (fgets(line, sizeof(line), fp) != NULL) {
            ++lineno;
            size_t len = strlen(line);
            if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
                snprintf(err, errlen, "%s:%u: line longer than %zu bytes", file, lineno, sizeof(line) - 2);
                fclose(fp);
                return -1;
            }
            char *s = trim(line);
            if (*s == '\0' || *s == '#')
                continue;
            char *eq = strchr(s, '=');
            if (eq == NULL) {
                snprintf(err, errlen, "%s:%u: expected `key = value`", file, lineno);
                fclose(fp);
                return -1;
            }
            *eq = '\0';
            char *key = trim(s), *value = trim(eq + 1);
            size_t vl = strlen(value);
            if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') { /* optional quotes keep spaces */
                value[vl - 1] = '\0';
                ++value;
            }
            if (sk_conf_set(c, key, value, msg, sizeof(msg)) != 0) {
                snprintf(err, errlen, "%s:%u: %s", file, lineno, msg);
                fclose(fp);
                return -1;
            }
        }
        fclose(fp);
    }
    for (size_t i = 0; i < noverrides; ++i) {
        char kv[4096];
        snprintf(kv, sizeof(kv), "%s", overrides[i]);
        char *eq = strchr(kv, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "--set %.100s: expected key=value", overrides[i]);
            return -1;
        }
        *eq = '\0';
        if (sk_conf_set(c, trim(kv), eq + 1, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "--set: %s", msg);
            return -1;
        }
    }
    if (!c->redis_cluster && strchr(c->redis_addr, ',') != NULL) {
        snprintf(err, errlen, "redis.addr: a list of addresses needs redis.cluster = true");
        return -1;
    }
    return 0;
}

int
sk_conf_has_plugin(const sk_config_t *c, const char *name)
{
    size_t nl = strlen(name), len;
    const char *p = c->plugins, *item;
    while (sk_list_next(&p, &item, &len))
        if (len == nl && memcmp(item, name, nl) == 0)
            return 1;
    return 0;
}

int
sk_conf_check_exposure(const sk_config_t *c, char *err, size_t errlen)
{
    struct {
        const char *plugin, *key, *addr;
    } ls[] = {{"access", "access.listen", c->access_listen},
              {"admin", "admin.listen", c->admin_listen},
              {NULL, "status.listen", c->status_listen}};
    for (size_t i = 0; i < sizeof(ls) / sizeof(ls[0]); ++i) {
        if (ls[i].plugin != NULL && !sk_conf_has_plugin(c, ls[i].plugin))
            continue;
        if (sk_addr_is_loopback(ls[i].addr))
            continue;
        if (strcmp(c->auth_secret, SK_DEV_AUTH_SECRET) == 0) {
            snprintf(err, errlen, "auth.secret: still the shipped default while %s (%s) is not on loopback", ls[i].key, ls[i].addr);
            return -1;
        }
        if (strcmp(c->logic_token_secret, SK_DEV_TOKEN_SECRET) == 0) {
            snprintf(err, errlen, "logic.token_secret: still the shipped default while %s (%s) is not on loopback", ls[i].key,
                     ls[i].addr);
            return -1;
        }
        if (ls[i].plugin != NULL && strcmp(ls[i].plugin, "admin") == 0 && c->admin_token[0] == '\0') {
            snprintf(err, errlen, "admin.token: must be set while admin.listen (%s) is not on loopback", ls[i].addr);
            return -1;
        }
    }
    return 0;
}
