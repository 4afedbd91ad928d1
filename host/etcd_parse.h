/*
 * Pure parsing for etcd 3.4's JSON gateway (no I/O, unit-tested alone).
 *
 * The gateway's traps (STACK.md): keys and values are base64, 64-bit numbers are JSON strings, zero-value fields are
 * omitted (a PUT event has no "type", a watch id of 0 is omitted), and the watch stream may join several JSON objects
 * on one line or split one object across reads. So the stream is cut into objects by a splitter that tracks braces and
 * strings, never by lines.
 */
#ifndef SK_ETCD_PARSE_H
#define SK_ETCD_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "seckill/plugin.h"

/** The largest value (activity, product or policy source) a node accepts. */
#define SK_ETCD_MAX_VALUE (64 * 1024)

/* ---- incremental JSON object splitter ---- */

typedef struct st_sk_json_splitter_t {
    char *buf;
    size_t len, cap;
    size_t max_object; /* an object longer than this is an error */
    size_t scan;       /* bytes of buf already scanned */
    int depth, in_str, esc;
} sk_json_splitter_t;

/** Prepares an empty splitter that accepts objects up to max_object bytes. */
void sk_json_splitter_init(sk_json_splitter_t *s, size_t max_object);
/** Drops any partial object (after a reconnect). */
void sk_json_splitter_reset(sk_json_splitter_t *s);
void sk_json_splitter_dispose(sk_json_splitter_t *s);
/** Feeds bytes; calls cb for each complete top-level object, in order. Bytes between objects that are not whitespace
 * are skipped. Returns 0, or -1 when an object passes max_object or cb returned -1 (the splitter must then be reset). */
int sk_json_splitter_feed(sk_json_splitter_t *s, const char *data, size_t len, int (*cb)(void *arg, const char *obj, size_t len),
                          void *arg);

/* ---- base64 and numbers ---- */

/** Standard base64 with padding. out needs 4 * ((n + 2) / 3) + 1 bytes; it is NUL-terminated. Returns the length. */
size_t sk_b64_encode(const void *in, size_t n, char *out);
/** Strict standard base64 (padding optional, no whitespace). out needs n / 4 * 3 + 3 bytes and is NUL-terminated.
 * Returns 0 with *outlen set, or -1 on a bad character or length. */
int sk_b64_decode(const char *in, size_t n, char *out, size_t *outlen);
/** A gateway number: absent = 0 (zero values are omitted), a decimal string, or an integral JSON number below 2^53.
 * Returns 0, or -1 when present but not an int64. */
int sk_etcd_json_i64(const cJSON *parent, const char *name, int64_t *out);

/* ---- range and watch messages ---- */

typedef struct st_sk_etcd_kv_t {
    char *key; /* NUL-terminated (etcd keys are bytes; a key with a NUL inside is rejected) */
    size_t keylen;
    char *value; /* NUL-terminated; "" for a delete */
    size_t vlen;
    int64_t mod_revision;
    int is_delete;
} sk_etcd_kv_t;

typedef struct st_sk_etcd_kvs_t {
    int64_t revision; /* header.revision */
    size_t n;
    sk_etcd_kv_t *kvs;
} sk_etcd_kvs_t;

/** Parses a /v3/kv/range answer. Returns 0, or -1 with err (the gateway's error message when it sent one). */
int sk_etcd_parse_range(const char *json, size_t len, sk_etcd_kvs_t *out, char *err, size_t errlen);
void sk_etcd_kvs_dispose(sk_etcd_kvs_t *k);

typedef enum en_sk_watch_kind_t {
    SK_WATCH_CREATED = 0,
    SK_WATCH_CANCELED,
    SK_WATCH_EVENTS,
    SK_WATCH_PROGRESS,
    SK_WATCH_ERROR, /* {"error":...}: the gateway gave up on the stream */
} sk_watch_kind_t;

typedef struct st_sk_watch_msg_t {
    sk_watch_kind_t kind;
    int64_t revision; /* header.revision (0 when omitted, e.g. on a cancel) */
    int64_t watch_id; /* -1 on the answer to a progress_request */
    int64_t compact_revision;
    char reason[256];     /* cancel_reason or the error message */
    sk_etcd_kvs_t events; /* SK_WATCH_EVENTS: in the order sent (revision order) */
} sk_watch_msg_t;

/** Parses and classifies one watch object in the order created, canceled, events, progress. Returns 0, or -1 with err
 * when the object is not a watch message (bad JSON, bad base64, a bad number). */
int sk_etcd_parse_watch(const char *json, size_t len, sk_watch_msg_t *msg, char *err, size_t errlen);
void sk_watch_msg_dispose(sk_watch_msg_t *msg);

/* ---- values under the prefix (SPEC §5, §6) ---- */

/** Validates an activity JSON value: every field of /activity/create plus activity_id. Returns 0, or -1 with err. */
int sk_etcd_parse_activity(const char *value, size_t len, sk_activity_t *a, char *err, size_t errlen);
/** Validates a product JSON value (product_id, product_name, product_total, status). Returns 0, or -1 with err. */
int sk_etcd_parse_product(const char *value, size_t len, sk_product_t *p, char *err, size_t errlen);

#endif
