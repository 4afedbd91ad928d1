/*
 * The node's model of the etcd prefix: the last good version of every activity, product and policy key, the keys whose
 * current value is bad (for /status), and the snapshot built from them. Single-threaded (the control thread); no I/O, so
 * it is unit-tested alone with a fake policy validator.
 */
#ifndef SK_ETCD_STATE_H
#define SK_ETCD_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "seckill/plugin.h"

/** The policy names the Lua engine knows (SPEC §7). */
#define SK_ETCD_NPOLICIES 3
extern const char *const sk_etcd_policy_names[SK_ETCD_NPOLICIES];

/** The most keys (activities plus products) a node holds; past it a new key is an error. */
#define SK_ETCD_MAX_KEYS 100000

typedef struct st_sk_etcd_state_t sk_etcd_state_t;

typedef struct st_sk_etcd_state_hooks_t {
    /** Compiles and checks a policy source. 0, or -1 with err. */
    int (*validate)(void *arg, const char *name, const char *src, size_t len, char *err, size_t errlen);
    /** Reports a policy outcome: the source that was tried (sha256, revision; 0 = file) and NULL or its error. */
    void (*record)(void *arg, const char *name, const char *sha256, int64_t revision, const char *error);
    /** Logs a skipped bad value (may be NULL). */
    void (*log)(void *arg, int level, const char *msg);
    void *arg;
} sk_etcd_state_hooks_t;

sk_etcd_state_t *sk_etcd_state_new(const sk_etcd_state_hooks_t *hooks);
void sk_etcd_state_free(sk_etcd_state_t *st);

/** Sets the file version (revision 0) of a known policy; it serves while no good etcd version exists. src NULL = none.
 * Validated here, once. Returns 0, or -1 when the name is unknown or the source does not validate. */
int sk_etcd_state_set_file_policy(sk_etcd_state_t *st, const char *name, const char *src, size_t len);

/** A (re)list starts: keys not applied before sk_etcd_state_relist_end are then deleted. */
void sk_etcd_state_relist_begin(sk_etcd_state_t *st);
/** Deletes the keys the list did not contain, calling gone(arg, key) for each before it goes. Returns how many. */
size_t sk_etcd_state_relist_end(sk_etcd_state_t *st, void (*gone)(void *arg, const char *key), void *arg);

/** Applies a put or a delete of `key` (relative to the prefix). A bad value is skipped and listed in the errors while the
 * last good version stays. Returns 1 when the snapshot content changed, 0 otherwise. */
int sk_etcd_state_apply(sk_etcd_state_t *st, const char *key, const char *value, size_t len, int64_t mod_revision, int is_delete);

/** Moves the revision the next snapshot reflects forward (never back). */
void sk_etcd_state_set_revision(sk_etcd_state_t *st, int64_t revision);
/** Sets the revision after a full list, also backwards (an etcd restored from an older backup). */
void sk_etcd_state_reset_revision(sk_etcd_state_t *st, int64_t revision);
int64_t sk_etcd_state_revision(const sk_etcd_state_t *st);

/** A new snapshot of the good versions and the policies in effect; the caller owns the reference. */
const sk_snapshot_t *sk_etcd_state_build(const sk_etcd_state_t *st);

/** Appends up to `max` error objects {"key","revision","error"} to arr. Returns the total number of bad keys. */
size_t sk_etcd_state_errors(const sk_etcd_state_t *st, cJSON *arr, size_t max);

#endif
