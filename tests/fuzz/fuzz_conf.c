/*
 * The configuration file (host/conf.c): sk_conf_load over a file holding the input, plus --set overrides.
 *
 * Input: the file text, optionally followed by "\n%%\n" and override lines ("key=value", one per line).
 *
 * Invariants: every string field stays NUL-terminated inside its array; every number is inside its key's bounds; the
 * listen addresses and the first Redis address parse as IP:port (split into redis_host / redis_port); a list of Redis
 * addresses only with redis.cluster; a failure says why in a NUL-terminated message.
 */
#include <fcntl.h>
#include <unistd.h>
#include "fuzz_common.h"
#include "host.h"

static char path[64];
static int fd = -1;
static sk_config_t defaults;

static void
remove_file(void)
{
    unlink(path);
}

#define TERM(field) FUZZ_CHECK(fuzz_terminated(c.field, sizeof(c.field)))

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* one file, rewritten in place, and the defaults computed once (they read /sys for the CPU count) */
    if (fd < 0) {
        /* tmpfs: on the ext4 /tmp the rewrite cost 12 times the executions per second */
        snprintf(path, sizeof(path), "%s/sk-fuzz-conf-%d.conf", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        FUZZ_CHECK(fd >= 0);
        atexit(remove_file);
        sk_conf_defaults(&defaults);
    }
    const uint8_t *sep = memmem(data, size, "\n%%\n", 4);
    size_t flen = sep != NULL ? (size_t)(sep - data) : size;
    FUZZ_CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, data, flen, 0) == (ssize_t)flen);

    char *ov[16], *ovbuf = NULL;
    size_t nov = 0;
    if (sep != NULL) {
        size_t olen = size - flen - 4;
        ovbuf = malloc(olen + 1);
        memcpy(ovbuf, sep + 4, olen);
        ovbuf[olen] = '\0';
        for (char *p = ovbuf; nov < 16;) {
            ov[nov++] = p;
            char *nl = strchr(p, '\n');
            if (nl == NULL)
                break;
            *nl = '\0';
            p = nl + 1;
        }
    }

    static sk_config_t c;
    char err[512];
    memset(err, 0, sizeof(err));
    c = defaults;
    if (sk_conf_load(&c, path, ov, nov, err, sizeof(err)) == 0) {
        TERM(plugins);
        TERM(plugin_dir);
        TERM(node_id);
        TERM(access_listen);
        TERM(admin_listen);
        TERM(status_listen);
        TERM(redis_addr);
        TERM(redis_password);
        TERM(redis_host);
        TERM(etcd_endpoints);
        TERM(etcd_prefix);
        TERM(auth_secret);
        TERM(access_referer_whitelist);
        TERM(access_trusted_proxies);
        TERM(logic_token_secret);
        TERM(admin_db);
        TERM(admin_token);
        TERM(policies_dir);
        TERM(log_level);
        TERM(log_file);
        FUZZ_CHECK(c.threads >= 1 && c.threads <= SK_MAX_THREADS);
        FUZZ_CHECK(c.redis_timeout_ms >= 10 && c.redis_timeout_ms <= 60000 && c.redis_wait_replicas <= 16);
        FUZZ_CHECK(c.auth_window >= 1 && c.auth_window <= 86400);
        FUZZ_CHECK(c.access_request_timeout_ms >= 100 && c.access_request_timeout_ms <= 600000);
        FUZZ_CHECK(c.access_max_inflight >= 1 && c.access_limiter_max_entries >= 16);
        FUZZ_CHECK(c.http_max_body >= 1 && c.http_max_body <= 64 * 1024 * 1024);
        FUZZ_CHECK(c.http_idle_timeout_ms >= 100 && c.lua_mem_limit_kb >= 64 && c.lua_instr_limit >= 1000);
        FUZZ_CHECK(c.logic_token_ttl >= 1 && (c.redis_cluster == 0 || c.redis_cluster == 1) && (c.http2 == 0 || c.http2 == 1));
        FUZZ_CHECK(c.etcd_prefix[0] == '/' && strlen(c.etcd_prefix) >= 2);
        char host[64];
        uint16_t port;
        FUZZ_CHECK(sk_conf_parse_addr(c.access_listen, host, sizeof(host), &port) == 0);
        FUZZ_CHECK(sk_conf_parse_addr(c.admin_listen, host, sizeof(host), &port) == 0);
        FUZZ_CHECK(sk_conf_parse_addr(c.status_listen, host, sizeof(host), &port) == 0);
        FUZZ_CHECK(c.redis_host[0] != '\0');
        FUZZ_CHECK(c.redis_cluster || strchr(c.redis_addr, ',') == NULL);
        if (!c.redis_cluster) {
            FUZZ_CHECK(sk_conf_parse_addr(c.redis_addr, host, sizeof(host), &port) == 0);
            FUZZ_CHECK(strcmp(host, c.redis_host) == 0 && port == c.redis_port);
        }
        memset(err, 0, sizeof(err));
        if (sk_conf_check_exposure(&c, err, sizeof(err)) != 0)
            FUZZ_CHECK(err[0] != '\0' && fuzz_terminated(err, sizeof(err)));
        FUZZ_CHECK(sk_conf_has_plugin(&c, "access") == 0 || sk_conf_has_plugin(&c, "access") == 1);
    } else {
        FUZZ_CHECK(err[0] != '\0' && fuzz_terminated(err, sizeof(err)));
    }
    free(ovbuf);
    return 0;
}
