/*
 * Redis Cluster parsing and routing (common/sk_cluster.c): the MOVED / ASK redirect of an error reply, the command
 * key, the hash slot with its hash-tag rule, and the retryable-error test.
 *
 * Input: byte 0 picks the mode. 0: the rest is an error reply's text. 1: the rest is a command, one argument per line.
 * 2: the rest is a key.
 *
 * Invariants: a redirect that parses has kind MOVED or ASK, slot < 16384, port 1..65535 and a non-empty host that fits,
 * and written back as "<kind> <slot> <host>:<port>" parses to the same; a refused one has kind NONE. The command key is
 * -1 or an index below argc (never past it). A slot is below 16384 and a key with a hash tag hashes as its tag.
 */
#include "fuzz_common.h"
#include "sk_cluster.h"

static void
check_redirect(const char *s, size_t len)
{
    sk_cluster_redirect_t r, back;
    memset(&r, 0x5a, sizeof(r));
    if (sk_cluster_parse_redirect(s, len, &r) != 0) {
        FUZZ_CHECK(r.kind == SK_CLUSTER_NONE);
        return;
    }
    FUZZ_CHECK(r.kind == SK_CLUSTER_MOVED || r.kind == SK_CLUSTER_ASK);
    FUZZ_CHECK(r.slot < SK_CLUSTER_SLOTS && r.port >= 1);
    FUZZ_CHECK(fuzz_terminated(r.host, sizeof(r.host)) && r.host[0] != '\0');
    char text[128];
    int n = snprintf(text, sizeof(text), "%s %u %s:%u", r.kind == SK_CLUSTER_MOVED ? "MOVED" : "ASK", r.slot, r.host, r.port);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(text));
    FUZZ_CHECK(sk_cluster_parse_redirect(text, (size_t)n, &back) == 0);
    FUZZ_CHECK(back.kind == r.kind && back.slot == r.slot && back.port == r.port && strcmp(back.host, r.host) == 0);
    (void)sk_cluster_is_retryable(s, len);
}

static void
check_slot(const char *key, size_t len)
{
    unsigned slot = sk_cluster_keyslot(key, len);
    FUZZ_CHECK(slot < SK_CLUSTER_SLOTS);
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
        if (close != NULL && close > open + 1)
            FUZZ_CHECK(slot == sk_cluster_keyslot(open + 1, (size_t)(close - open - 1)));
        else
            FUZZ_CHECK(slot == (sk_cluster_crc16(key, len) & (SK_CLUSTER_SLOTS - 1)));
    } else {
        FUZZ_CHECK(slot == (sk_cluster_crc16(key, len) & (SK_CLUSTER_SLOTS - 1)));
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once) {
        FUZZ_CHECK(sk_cluster_crc16("123456789", 9) == 0x31c3); /* the check value of CRC16-XMODEM */
        once = 1;
    }
    if (size == 0)
        return 0;
    int mode = data[0] % 3;
    size_t len = size - 1;
    char *in = malloc(len + 1); /* exact size: ASan sees a read past the end */
    memcpy(in, data + 1, len);
    if (mode == 0) {
        check_redirect(in, len);
        (void)sk_cluster_is_retryable(in, len);
    } else if (mode == 1) {
        const char *argv[32];
        size_t argvlen[32];
        int argc = 0;
        size_t i = 0;
        while (argc < 32 && len > 0) {
            const char *nl = memchr(in + i, '\n', len - i);
            size_t end = nl != NULL ? (size_t)(nl - in) : len;
            argv[argc] = in + i;
            argvlen[argc++] = end - i;
            if (nl == NULL)
                break;
            i = end + 1;
        }
        /* the argv strings are not NUL-terminated (they never are in hiredis' argv form): lengths only */
        int k = sk_cluster_command_key(argc, argv, argvlen);
        FUZZ_CHECK(k == -1 || (k >= 1 && k < argc));
        if (k >= 0)
            check_slot(argv[k], argvlen[k]);
    } else {
        check_slot(in, len);
    }
    free(in);
    return 0;
}
