/*
 * The etcd watch stream (host/etcd_parse.c, host/etcd_state.c): the bytes the gateway sends, cut into chunks at
 * arbitrary points, through the JSON object splitter, each object through sk_etcd_parse_watch (and, as a range answer,
 * sk_etcd_parse_range), and every event into a node's etcd state, whose snapshot is built at the end.
 *
 * Input: byte 0 seeds the chunk sizes (bit 7 also selects a small object limit, to reach the too-large path); the rest
 * is the stream.
 *
 * Invariants: the objects the splitter emits, and where it fails, do not depend on how the stream was cut; an object is
 * at most max_object bytes, starts with '{' and is NUL-terminated; a parsed message has a known kind, and EVENTS only
 * with at least one event; decoded keys hold no NUL and values are NUL-terminated at their length; base64 of a decoded
 * value encodes back to an equivalent text; the snapshot holds only activities and products inside the SPEC bounds.
 */
#include "fuzz_common.h"
#include "etcd_parse.h"
#include "etcd_state.h"
#include "host.h"

#define MAX_OBJECTS 256

typedef struct st_run_t {
    size_t n;
    uint64_t hash[MAX_OBJECTS];
    size_t max_object;
    sk_etcd_state_t *st; /* NULL on the reference run */
} run_t;

static uint64_t
fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ n;
}

static void
check_kvs(const sk_etcd_kvs_t *k)
{
    for (size_t i = 0; i < k->n; i++) {
        const sk_etcd_kv_t *kv = &k->kvs[i];
        FUZZ_CHECK(kv->key != NULL && strlen(kv->key) == kv->keylen);
        FUZZ_CHECK(kv->value != NULL && kv->value[kv->vlen] == '\0');
        /* what we decoded encodes back to base64 that decodes to the same bytes */
        char *enc = malloc(4 * ((kv->vlen + 2) / 3) + 1), *dec = malloc(kv->vlen + 3);
        size_t n = sk_b64_encode(kv->value, kv->vlen, enc), dlen;
        FUZZ_CHECK(sk_b64_decode(enc, n, dec, &dlen) == 0 && dlen == kv->vlen && memcmp(dec, kv->value, dlen) == 0);
        free(enc);
        free(dec);
    }
}

static void
apply(sk_etcd_state_t *st, const sk_etcd_kv_t *kv)
{
    static const char prefix[] = "/seckill/";
    if (strncmp(kv->key, prefix, sizeof(prefix) - 1) != 0)
        return;
    sk_etcd_state_apply(st, kv->key + sizeof(prefix) - 1, kv->value, kv->vlen, kv->mod_revision, kv->is_delete);
}

static int
on_object(void *arg, const char *obj, size_t len)
{
    run_t *r = arg;
    FUZZ_CHECK(len >= 2 && len <= r->max_object && obj[0] == '{' && obj[len] == '\0');
    if (r->n < MAX_OBJECTS)
        r->hash[r->n] = fnv(obj, len);
    r->n++;
    if (r->st == NULL)
        return 0;
    sk_watch_msg_t msg;
    char err[256];
    if (sk_etcd_parse_watch(obj, len, &msg, err, sizeof(err)) == 0) {
        FUZZ_CHECK(msg.kind >= SK_WATCH_CREATED && msg.kind <= SK_WATCH_ERROR);
        FUZZ_CHECK(fuzz_terminated(msg.reason, sizeof(msg.reason)));
        FUZZ_CHECK(msg.kind == SK_WATCH_EVENTS ? msg.events.n > 0 : msg.events.n == 0);
        check_kvs(&msg.events);
        for (size_t i = 0; i < msg.events.n; i++)
            apply(r->st, &msg.events.kvs[i]);
        if (msg.revision > 0)
            sk_etcd_state_set_revision(r->st, msg.revision);
        sk_watch_msg_dispose(&msg);
    } else {
        FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
    }
    sk_etcd_kvs_t kvs;
    if (sk_etcd_parse_range(obj, len, &kvs, err, sizeof(err)) == 0) {
        check_kvs(&kvs);
        sk_etcd_state_relist_begin(r->st);
        for (size_t i = 0; i < kvs.n; i++)
            apply(r->st, &kvs.kvs[i]);
        sk_etcd_state_relist_end(r->st, NULL, NULL);
        sk_etcd_kvs_dispose(&kvs);
    }
    return 0;
}

static int
validate(void *arg, const char *name, const char *src, size_t len, char *err, size_t errlen)
{
    (void)arg;
    (void)name;
    if (len >= 8 && memcmp(src, "function", 8) == 0)
        return 0;
    snprintf(err, errlen, "not a policy");
    return -1;
}

static void
record(void *arg, const char *name, const char *sha256, int64_t revision, const char *error)
{
    (void)arg;
    /* sha256 is "" when a delete leaves no file version to fall back to */
    FUZZ_CHECK(name != NULL && sha256 != NULL && (strlen(sha256) == 64 || sha256[0] == '\0') && revision >= 0);
    FUZZ_CHECK(error == NULL || strlen(error) < 4096);
}

static void
check_snapshot(const sk_snapshot_t *s)
{
    for (size_t i = 0; i < s->nactivities; i++) {
        const sk_activity_t *a = &s->activities[i];
        FUZZ_CHECK(a->activity_id >= 1 && a->product_id >= 1 && a->start_time >= 0 && a->start_time < a->end_time);
        FUZZ_CHECK(a->total >= 1 && a->total <= 1000000000 && (a->status == 0 || a->status == 1));
        FUZZ_CHECK(a->speed >= 0 && a->buy_limit >= 1 && a->buy_rate > 0 && a->buy_rate <= 1);
        FUZZ_CHECK(fuzz_terminated(a->name, sizeof(a->name)) && a->name[0] != '\0');
    }
    for (size_t i = 0; i < s->nproducts; i++) {
        const sk_product_t *p = &s->products[i];
        FUZZ_CHECK(p->product_id >= 1 && p->total >= 1 && (p->status == 0 || p->status == 1));
        FUZZ_CHECK(i == 0 || s->products[i - 1].product_id < p->product_id);
    }
    for (size_t i = 0; i < s->npolicies; i++)
        FUZZ_CHECK(s->policies[i].len >= 8 && memcmp(s->policies[i].src, "function", 8) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned seed = data[0];
    size_t max_object = (seed & 0x80) ? 64 : SK_ETCD_MAX_VALUE * 2;
    const char *stream = (const char *)data + 1;
    size_t len = size - 1;

    /* reference: the whole stream in one feed */
    sk_json_splitter_t s;
    static run_t ref, cut;
    memset(&ref, 0, sizeof(ref));
    ref.max_object = max_object;
    sk_json_splitter_init(&s, max_object);
    int ref_rc = sk_json_splitter_feed(&s, stream, len, on_object, &ref);
    sk_json_splitter_dispose(&s);

    /* the same bytes in chunks of 1..16 bytes, each chunk in its own buffer of that exact size */
    sk_etcd_state_hooks_t hooks = {.validate = validate, .record = record};
    memset(&cut, 0, sizeof(cut));
    cut.max_object = max_object;
    cut.st = sk_etcd_state_new(&hooks);
    sk_json_splitter_init(&s, max_object);
    int cut_rc = 0;
    uint32_t rng = seed * 2654435761u + 1;
    for (size_t i = 0; i < len && cut_rc == 0;) {
        rng = rng * 1103515245u + 12345u;
        size_t n = 1 + (rng >> 16) % 16;
        if (n > len - i)
            n = len - i;
        char *chunk = malloc(n);
        memcpy(chunk, stream + i, n);
        cut_rc = sk_json_splitter_feed(&s, chunk, n, on_object, &cut);
        free(chunk);
        i += n;
    }
    sk_json_splitter_dispose(&s);

    FUZZ_CHECK(ref_rc == cut_rc && ref.n == cut.n);
    for (size_t i = 0; i < ref.n && i < MAX_OBJECTS; i++)
        FUZZ_CHECK(ref.hash[i] == cut.hash[i]);

    const sk_snapshot_t *snap = sk_etcd_state_build(cut.st);
    check_snapshot(snap);
    sk_snapshot_release(snap);
    cJSON *errs = cJSON_CreateArray();
    sk_etcd_state_errors(cut.st, errs, 16);
    cJSON_Delete(errs);
    sk_etcd_state_free(cut.st);
    return 0;
}
