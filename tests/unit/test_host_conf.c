/* Config parsing, the errors that name the key, and the SPEC §1 start-up refusals. */
#include <unistd.h>
#include "host.h"
#include "sk_test.h"

static char tmpfile_path[64];

static const char *
write_conf(const char *text)
{
    strcpy(tmpfile_path, "/tmp/sk-conf-XXXXXX");
    int fd = mkstemp(tmpfile_path);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, text, strlen(text)), (long long)strlen(text));
    close(fd);
    return tmpfile_path;
}

static void
test_defaults(void)
{
    sk_config_t c;
    sk_conf_defaults(&c);
    ASSERT_STREQ(c.plugins, "access,logic,admin");
    ASSERT_STREQ(c.access_listen, "127.0.0.1:8082");
    ASSERT_STREQ(c.admin_listen, "127.0.0.1:8081");
    ASSERT_STREQ(c.status_listen, "127.0.0.1:8083");
    ASSERT_STREQ(c.redis_addr, "127.0.0.1:6379");
    ASSERT_EQ(c.redis_port, 6379);
    ASSERT_EQ(c.redis_timeout_ms, 500);
    ASSERT_STREQ(c.etcd_prefix, "/seckill");
    ASSERT_EQ(c.auth_window, 60);
    ASSERT_EQ(c.access_request_timeout_ms, 3000);
    ASSERT_EQ(c.access_max_inflight, 100000);
    ASSERT_EQ(c.access_limiter_max_entries, 1000000);
    ASSERT_EQ(c.http_max_body, 65536);
    ASSERT_EQ(c.lua_mem_limit_kb, 4096);
    ASSERT_EQ(c.lua_instr_limit, 1000000);
    ASSERT_EQ(c.logic_token_ttl, 1800);
    ASSERT_STREQ(c.log_level, "info");
    ASSERT(c.threads >= 1);
    ASSERT(strlen(c.node_id) > 0);
}

static void
test_file_and_overrides(void)
{
    sk_config_t c;
    char err[512];
    sk_conf_defaults(&c);
    const char *f = write_conf("# comment\n\nthreads = 3\nredis.addr = 127.0.0.1:7000\nadmin.token = \"a b\"\n");
    char *ov[] = {"threads=4", "log.level=debug"};
    ASSERT_EQ(sk_conf_load(&c, f, ov, 2, err, sizeof(err)), 0);
    ASSERT_EQ(c.threads, 4);
    ASSERT_EQ(c.redis_port, 7000);
    ASSERT_STREQ(c.admin_token, "a b");
    ASSERT_STREQ(c.log_level, "debug");
    unlink(f);
}

static void
test_queue_addr(void)
{
    sk_config_t c;
    char err[512] = "";
    sk_conf_defaults(&c);
    ASSERT_STREQ(c.redis_queue_addr, "");
    char *ov[] = {"redis.queue_addr=127.0.0.1:6380"};
    ASSERT_EQ(sk_conf_load(&c, NULL, ov, 1, err, sizeof(err)), 0);
    ASSERT_STREQ(c.redis_queue_host, "127.0.0.1");
    ASSERT_EQ(c.redis_queue_port, 6380);
    char *off[] = {"redis.queue_addr="};
    ASSERT_EQ(sk_conf_load(&c, NULL, off, 1, err, sizeof(err)), 0);
    ASSERT_STREQ(c.redis_queue_host, "");
}

static void
expect_error(const char *text, char **ov, size_t nov, const char *needle)
{
    sk_config_t c;
    char err[512] = "";
    sk_conf_defaults(&c);
    const char *f = write_conf(text);
    ASSERT_EQ(sk_conf_load(&c, f, ov, nov, err, sizeof(err)), -1);
    if (strstr(err, needle) == NULL) {
        fprintf(stderr, "error \"%s\" does not name \"%s\"\n", err, needle);
        abort();
    }
    unlink(f);
}

static void
test_errors_name_the_key(void)
{
    expect_error("bogus.key = 1\n", NULL, 0, "bogus.key");
    expect_error("threads = many\n", NULL, 0, "threads");
    expect_error("threads = 0\n", NULL, 0, "threads");
    expect_error("redis.timeout_ms = 99999999999999999999\n", NULL, 0, "redis.timeout_ms");
    expect_error("access.listen = localhost\n", NULL, 0, "access.listen");
    expect_error("access.listen = 127.0.0.1:99999\n", NULL, 0, "access.listen");
    expect_error("etcd.endpoints = 127.0.0.1:2379\n", NULL, 0, "etcd.endpoints");
    expect_error("etcd.prefix = seckill\n", NULL, 0, "etcd.prefix");
    expect_error("log.level = loud\n", NULL, 0, "log.level");
    expect_error("http.http2 = maybe\n", NULL, 0, "http.http2");
    /* the queue Redis is one plain server: no list, no name */
    expect_error("redis.queue_addr = 127.0.0.1:1,127.0.0.1:2\n", NULL, 0, "redis.queue_addr");
    expect_error("redis.queue_addr = localhost:6380\n", NULL, 0, "redis.queue_addr");
    expect_error("no equals sign\n", NULL, 0, ":1:");
    char *ov[] = {"nope=1"};
    expect_error("", ov, 1, "nope");
    char *ov2[] = {"auth.window=-5"};
    expect_error("", ov2, 1, "auth.window");
    /* the file name is in the message */
    sk_config_t c;
    char err[512];
    sk_conf_defaults(&c);
    ASSERT_EQ(sk_conf_load(&c, "/nonexistent/seckill.conf", NULL, 0, err, sizeof(err)), -1);
    ASSERT(strstr(err, "/nonexistent/seckill.conf") != NULL);
}

static void
test_exposure(void)
{
    sk_config_t c;
    char err[512];
    sk_conf_defaults(&c);
    ASSERT_EQ(sk_conf_check_exposure(&c, err, sizeof(err)), 0);
    /* public access port with the shipped secret */
    ASSERT_EQ(sk_conf_set(&c, "access.listen", "0.0.0.0:8082", err, sizeof(err)), 0);
    ASSERT_EQ(sk_conf_check_exposure(&c, err, sizeof(err)), -1);
    ASSERT(strstr(err, "auth.secret") != NULL);
    ASSERT_EQ(sk_conf_set(&c, "auth.secret", "s3cret-for-prod", err, sizeof(err)), 0);
    ASSERT_EQ(sk_conf_check_exposure(&c, err, sizeof(err)), -1);
    ASSERT(strstr(err, "logic.token_secret") != NULL);
    ASSERT_EQ(sk_conf_set(&c, "logic.token_secret", "t0ken-for-prod", err, sizeof(err)), 0);
    ASSERT_EQ(sk_conf_check_exposure(&c, err, sizeof(err)), 0);
    /* admin off loopback without a token */
    ASSERT_EQ(sk_conf_set(&c, "admin.listen", "0.0.0.0:8081", err, sizeof(err)), 0);
    ASSERT_EQ(sk_conf_check_exposure(&c, err, sizeof(err)), -1);
    ASSERT(strstr(err, "admin.token") != NULL);
    ASSERT_EQ(sk_conf_set(&c, "admin.token", "adm1n", err, sizeof(err)), 0);
    ASSERT_EQ(sk_conf_check_exposure(&c, err, sizeof(err)), 0);
    /* the admin listener does not count when the admin plugin is not loaded */
    sk_conf_defaults(&c);
    ASSERT_EQ(sk_conf_set(&c, "admin.listen", "0.0.0.0:8081", err, sizeof(err)), 0);
    ASSERT_EQ(sk_conf_set(&c, "plugins", "access,logic", err, sizeof(err)), 0);
    ASSERT_EQ(sk_conf_check_exposure(&c, err, sizeof(err)), 0);
    ASSERT(sk_addr_is_loopback("127.0.0.5:1"));
    ASSERT(sk_addr_is_loopback("[::1]:80"));
    ASSERT(!sk_addr_is_loopback("10.0.0.1:80"));
}

int
main(void)
{
    RUN(test_defaults);
    RUN(test_file_and_overrides);
    RUN(test_errors_name_the_key);
    RUN(test_exposure);
    RUN(test_queue_addr);
    DONE();
}
