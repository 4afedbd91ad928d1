/*
 * Redis Cluster arithmetic and parsing, with no I/O (SPEC §9): the hash slot of a key, the routing key of a command,
 * the MOVED / ASK redirect of an error reply, and the CLUSTER SLOTS answer. The host's cluster-aware client
 * (host/redis_client.c), the tools' blocking client and the fuzz drivers use these; they need no server to test.
 */
#ifndef SK_CLUSTER_H
#define SK_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#define SK_CLUSTER_SLOTS 16384

/** CRC16-XMODEM (polynomial 0x1021, initial 0) as Redis Cluster uses it. */
uint16_t sk_cluster_crc16(const char *buf, size_t len);

/** The hash slot (0..16383) of a key, with the hash-tag rule: when the key holds a '{' followed later by a '}' with at
 * least one byte between them, only the bytes between the first '{' and the first '}' after it are hashed. */
unsigned sk_cluster_keyslot(const char *key, size_t len);

/** The index in argv of the key a command is routed by, or -1 for a command with no key (SCRIPT, PING, INFO, TIME,
 * WAIT, CLUSTER, an EVAL with 0 keys, ...). EVAL/EVALSHA(_RO)/FCALL: argv[3] when numkeys > 0; XREAD/XREADGROUP:
 * the first key after STREAMS; XGROUP/XINFO: argv[2]; SUBSCRIBE/PUBLISH/SSUBSCRIBE/SPUBLISH: the channel, argv[1];
 * any other command with argc >= 2: argv[1]. Never reads past argc. */
int sk_cluster_command_key(int argc, const char *const *argv, const size_t *argvlen);

typedef enum en_sk_cluster_redirect_kind_t {
    SK_CLUSTER_NONE = 0, /* not a redirect */
    SK_CLUSTER_MOVED,    /* "MOVED <slot> <ip>:<port>": the slot lives there now; refresh the map */
    SK_CLUSTER_ASK,      /* "ASK <slot> <ip>:<port>": send ASKING, then this one command, there */
} sk_cluster_redirect_kind_t;

typedef struct st_sk_cluster_redirect_t {
    sk_cluster_redirect_kind_t kind;
    unsigned slot;
    char host[64]; /* an IP literal as Redis writes it (IPv6 without brackets) */
    uint16_t port;
} sk_cluster_redirect_t;

/** Parses an error reply's text (without the leading '-'). Returns 0 with *out filled for a well-formed MOVED or ASK
 * (slot < 16384, port 1..65535, a host that fits), and -1 with out->kind = SK_CLUSTER_NONE for anything else. */
int sk_cluster_parse_redirect(const char *err, size_t len, sk_cluster_redirect_t *out);

/** True when an error reply means "not run, try the same command again shortly": TRYAGAIN (a multi-key command during
 * a slot migration), CLUSTERDOWN, LOADING, MASTERDOWN. */
int sk_cluster_is_retryable(const char *err, size_t len);

#endif
