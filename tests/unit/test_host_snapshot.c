/*
 * Snapshots (refcounts, sorting, the static empty one) and the etcd state that builds them: a bad value is skipped and
 * listed, the last good version stays, a deleted policy key brings the file back, a relist drops vanished keys.
 */
#include <pthread.h>
#include "sk_test.h"
#include "host.h"
#include "snapshot.h"
#include "etcd_state.h"

typedef struct st_fake_t {
    int validations;
    char last_name[64], last_sha[65], last_error[256];
    int64_t last_rev;
    int records, logs;
    char last_log[512];
} fake_t;

/* The fake engine accepts a source that defines a function and refuses anything else. */
static int
fake_validate(void *arg, const char *name, const char *src, size_t len, char *err, size_t errlen)
{
    fake_t *f = arg;
    (void)name;
    f->validations++;
    if (memmem(src, len, "function", 8) == NULL) {
        snprintf(err, errlen, "[string \"%s\"]:1: syntax error", name);
        return -1;
    }
    return 0;
}

static void
fake_record(void *arg, const char *name, const char *sha256, int64_t revision, const char *error)
{
    fake_t *f = arg;
    f->records++;
    snprintf(f->last_name, sizeof(f->last_name), "%s", name);
    snprintf(f->last_sha, sizeof(f->last_sha), "%s", sha256);
    snprintf(f->last_error, sizeof(f->last_error), "%s", error != NULL ? error : "");
    f->last_rev = revision;
}

static void
fake_log(void *arg, int level, const char *msg)
{
    fake_t *f = arg;
    (void)level;
    f->logs++;
    snprintf(f->last_log, sizeof(f->last_log), "%s", msg);
}

static sk_etcd_state_t *
new_state(fake_t *f)
{
    memset(f, 0, sizeof(*f));
    sk_etcd_state_hooks_t h = {.validate = fake_validate, .record = fake_record, .log = fake_log, .arg = f};
    return sk_etcd_state_new(&h);
}

static const char *
activity(int64_t id, int64_t pid, int64_t start, int64_t total, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "{\"activity_id\":%lld,\"activity_name\":\"sale %lld\",\"product_id\":%lld,\"start_time\":%lld,"
             "\"end_time\":%lld,\"total\":%lld,\"status\":1,\"speed\":0,\"buy_limit\":1,\"buy_rate\":1}",
             (long long)id, (long long)id, (long long)pid, (long long)start, (long long)start + 100, (long long)total);
    return buf;
}

static int
apply(sk_etcd_state_t *st, const char *key, const char *value, int64_t rev)
{
    return sk_etcd_state_apply(st, key, value, value != NULL ? strlen(value) : 0, rev, value == NULL);
}

static const sk_policy_src_t *
find_policy(const sk_snapshot_t *s, const char *name)
{
    for (size_t i = 0; i < s->npolicies; i++)
        if (strcmp(s->policies[i].name, name) == 0)
            return &s->policies[i];
    return NULL;
}

static void
test_empty_and_refcount(void)
{
    const sk_snapshot_t *e = sk_snapshot_empty();
    ASSERT(e != NULL);
    ASSERT_EQ(e->nactivities + e->nproducts + e->npolicies, 0);
    sk_snapshot_retain(e);
    sk_snapshot_release(e);
    sk_snapshot_release(e);
    ASSERT_EQ(sk_snapshot_refcount(e), -1);
    ASSERT(sk_snapshot_empty() == e);

    sk_product_t p[2] = {{.product_id = 9}, {.product_id = 2}};
    sk_policy_src_t pol = {.name = "limits.lua", .src = "function admit() return true end", .len = 32, .revision = 4};
    const sk_snapshot_t *s = sk_snapshot_new(42, p, 2, NULL, 0, &pol, 1);
    ASSERT_EQ(s->revision, 42);
    ASSERT_EQ(s->products[0].product_id, 2);
    ASSERT_EQ(s->products[1].product_id, 9);
    ASSERT(s->policies[0].src != pol.src); /* owned copy */
    ASSERT_STREQ(s->policies[0].src, pol.src);
    ASSERT_EQ(sk_snapshot_refcount(s), 1);
    sk_snapshot_retain(s);
    ASSERT_EQ(sk_snapshot_refcount(s), 2);
    sk_snapshot_release(s);
    sk_snapshot_release(s); /* freed here; ASan checks there is no leak and no double free */
}

static void *
retain_release_loop(void *arg)
{
    const sk_snapshot_t *s = arg;
    for (int i = 0; i < 200000; i++) {
        sk_snapshot_retain(s);
        sk_snapshot_release(s);
    }
    return NULL;
}

static void
test_refcount_threads(void)
{
    const sk_snapshot_t *s = sk_snapshot_new(1, NULL, 0, NULL, 0, NULL, 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, retain_release_loop, (void *)s), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ASSERT_EQ(sk_snapshot_refcount(s), 1);
    sk_snapshot_release(s);
}

static void
test_sorting(void)
{
    fake_t f;
    sk_etcd_state_t *st = new_state(&f);
    char b[512];
    ASSERT_EQ(apply(st, "activities/5", activity(5, 2, 300, 10, b, sizeof(b)), 2), 1);
    ASSERT_EQ(apply(st, "activities/3", activity(3, 2, 100, 10, b, sizeof(b)), 3), 1);
    ASSERT_EQ(apply(st, "activities/10", activity(10, 1, 900, 10, b, sizeof(b)), 4), 1);
    ASSERT_EQ(apply(st, "activities/4", activity(4, 2, 100, 10, b, sizeof(b)), 5), 1);
    sk_etcd_state_set_revision(st, 5);
    const sk_snapshot_t *s = sk_etcd_state_build(st);
    ASSERT_EQ(s->revision, 5);
    ASSERT_EQ(s->nactivities, 4);
    ASSERT_EQ(s->activities[0].activity_id, 10); /* (product_id, start_time, activity_id) */
    ASSERT_EQ(s->activities[1].activity_id, 3);
    ASSERT_EQ(s->activities[2].activity_id, 4);
    ASSERT_EQ(s->activities[3].activity_id, 5);
    sk_snapshot_release(s);
    /* the same value again changes nothing */
    ASSERT_EQ(apply(st, "activities/4", activity(4, 2, 100, 10, b, sizeof(b)), 6), 0);
    sk_etcd_state_set_revision(st, 3);
    ASSERT_EQ(sk_etcd_state_revision(st), 5); /* never goes back */
    sk_etcd_state_free(st);
}

static void
test_bad_value_keeps_last_good(void)
{
    fake_t f;
    sk_etcd_state_t *st = new_state(&f);
    char b[512];
    ASSERT_EQ(apply(st, "products/1", "{\"product_id\":1,\"product_name\":\"p\",\"product_total\":5,\"status\":1}", 2), 1);
    ASSERT_EQ(apply(st, "activities/7", activity(7, 1, 100, 5, b, sizeof(b)), 3), 1);
    /* bad JSON, then a wrong range, then an id that does not match the key: all skipped */
    ASSERT_EQ(apply(st, "activities/7", "{not json", 4), 0);
    ASSERT_EQ(apply(st, "activities/7", activity(7, 1, 100, 0, b, sizeof(b)), 5), 0);
    ASSERT_EQ(apply(st, "activities/8", activity(7, 1, 100, 5, b, sizeof(b)), 6), 0);
    ASSERT_EQ(apply(st, "activities/07", activity(7, 1, 100, 5, b, sizeof(b)), 7), 0);
    ASSERT(f.logs >= 4);
    const sk_snapshot_t *s = sk_etcd_state_build(st);
    ASSERT_EQ(s->nactivities, 1);
    ASSERT_EQ(s->activities[0].total, 5);
    ASSERT_EQ(s->nproducts, 1);
    sk_snapshot_release(s);

    cJSON *arr = cJSON_CreateArray();
    ASSERT_EQ(sk_etcd_state_errors(st, arr, 100), 3);
    ASSERT_EQ(cJSON_GetArraySize(arr), 3);
    /* sorted by key: activities/07, activities/7, activities/8 */
    cJSON *e0 = cJSON_GetArrayItem(arr, 0), *e1 = cJSON_GetArrayItem(arr, 1), *e2 = cJSON_GetArrayItem(arr, 2);
    ASSERT_STREQ(cJSON_GetObjectItem(e0, "key")->valuestring, "activities/07");
    ASSERT_STREQ(cJSON_GetObjectItem(e1, "key")->valuestring, "activities/7");
    ASSERT_EQ(cJSON_GetObjectItem(e1, "revision")->valuedouble, 5);
    ASSERT(strstr(cJSON_GetObjectItem(e1, "error")->valuestring, "total") != NULL);
    ASSERT(strstr(cJSON_GetObjectItem(e2, "error")->valuestring, "does not match") != NULL);
    cJSON_Delete(arr);
    arr = cJSON_CreateArray();
    ASSERT_EQ(sk_etcd_state_errors(st, arr, 1), 3); /* bounded output, true total */
    ASSERT_EQ(cJSON_GetArraySize(arr), 1);
    cJSON_Delete(arr);

    /* a good value clears the error; a delete removes the key and its error */
    ASSERT_EQ(apply(st, "activities/7", activity(7, 1, 100, 4, b, sizeof(b)), 8), 1);
    ASSERT_EQ(apply(st, "activities/8", NULL, 9), 0); /* never had a good version */
    arr = cJSON_CreateArray();
    ASSERT_EQ(sk_etcd_state_errors(st, arr, 100), 1);
    cJSON_Delete(arr);
    ASSERT_EQ(apply(st, "activities/7", NULL, 10), 1);
    s = sk_etcd_state_build(st);
    ASSERT_EQ(s->nactivities, 0);
    sk_snapshot_release(s);
    /* keys outside the layout are ignored */
    ASSERT_EQ(apply(st, "other/thing", "x", 11), 0);
    sk_etcd_state_free(st);
}

static void
test_policies(void)
{
    fake_t f;
    sk_etcd_state_t *st = new_state(&f);
    const char *file = "function admit(r) return true end";
    ASSERT_EQ(sk_etcd_state_set_file_policy(st, "limits.lua", file, strlen(file)), 0);
    ASSERT_EQ(sk_etcd_state_set_file_policy(st, "token.lua", "broken", 6), -1);
    ASSERT_EQ(sk_etcd_state_set_file_policy(st, "nosuch.lua", file, strlen(file)), -1);
    const sk_snapshot_t *s = sk_etcd_state_build(st);
    ASSERT_EQ(s->npolicies, 1);
    ASSERT_EQ(find_policy(s, "limits.lua")->revision, 0);
    ASSERT_STREQ(find_policy(s, "limits.lua")->src, file);
    char file_sha[65];
    snprintf(file_sha, sizeof(file_sha), "%s", find_policy(s, "limits.lua")->sha256);
    ASSERT_EQ(strlen(file_sha), 64);
    sk_snapshot_release(s);

    /* an etcd version overrides the file */
    const char *v1 = "function admit(r) return r.user_sec <= 5 end";
    ASSERT_EQ(apply(st, "policies/limits.lua", v1, 20), 1);
    ASSERT_STREQ(f.last_name, "limits.lua");
    ASSERT_EQ(f.last_rev, 20);
    ASSERT_STREQ(f.last_error, "");
    /* a broken one is skipped: v1 stays, the error is recorded and listed */
    ASSERT_EQ(apply(st, "policies/limits.lua", "admit = (", 21), 0);
    ASSERT_EQ(f.last_rev, 21);
    ASSERT(strstr(f.last_error, "syntax error") != NULL);
    s = sk_etcd_state_build(st);
    ASSERT_STREQ(find_policy(s, "limits.lua")->src, v1);
    ASSERT_EQ(find_policy(s, "limits.lua")->revision, 20);
    sk_snapshot_release(s);
    cJSON *arr = cJSON_CreateArray();
    ASSERT_EQ(sk_etcd_state_errors(st, arr, 10), 1);
    ASSERT_STREQ(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, 0), "key")->valuestring, "policies/limits.lua");
    cJSON_Delete(arr);
    /* the same bad source in a relist is not compiled again */
    int before = f.validations;
    sk_etcd_state_relist_begin(st);
    ASSERT_EQ(apply(st, "policies/limits.lua", "admit = (", 21), 0);
    ASSERT_EQ(sk_etcd_state_relist_end(st, NULL, NULL), 0);
    ASSERT_EQ(f.validations, before);
    /* deleting the key brings the file back */
    ASSERT_EQ(apply(st, "policies/limits.lua", NULL, 22), 1);
    ASSERT_STREQ(f.last_sha, file_sha);
    ASSERT_EQ(f.last_rev, 0);
    s = sk_etcd_state_build(st);
    ASSERT_EQ(find_policy(s, "limits.lua")->revision, 0);
    ASSERT_STREQ(find_policy(s, "limits.lua")->src, file);
    sk_snapshot_release(s);
    arr = cJSON_CreateArray();
    ASSERT_EQ(sk_etcd_state_errors(st, arr, 10), 0);
    cJSON_Delete(arr);
    /* a policy with no good version anywhere is left out; the engine keeps what it has */
    ASSERT_EQ(apply(st, "policies/token.lua", "nope", 23), 0);
    s = sk_etcd_state_build(st);
    ASSERT(find_policy(s, "token.lua") == NULL);
    sk_snapshot_release(s);
    ASSERT_EQ(apply(st, "policies/token.lua", "function issue() return 'x' end", 24), 1);
    s = sk_etcd_state_build(st);
    ASSERT_EQ(find_policy(s, "token.lua")->revision, 24);
    ASSERT_EQ(s->npolicies, 2);
    ASSERT_STREQ(s->policies[0].name, "limits.lua"); /* sorted by name */
    sk_snapshot_release(s);
    /* a name this version does not run changes nothing, but is logged (a typo would otherwise go unnoticed) */
    int logs = f.logs;
    ASSERT_EQ(apply(st, "policies/limit.lua", "function admit() return true end", 25), 0);
    ASSERT_EQ(f.logs, logs + 1);
    ASSERT_STREQ(f.last_log, "policies/limit.lua: not a policy this node runs (buy_rate.lua, limits.lua, token.lua); ignored");
    ASSERT_EQ(apply(st, "policies/limit.lua", NULL, 26), 0);
    ASSERT_EQ(f.logs, logs + 1);
    s = sk_etcd_state_build(st);
    ASSERT_EQ(s->npolicies, 2);
    sk_snapshot_release(s);
    sk_etcd_state_free(st);
}

static void
on_gone(void *arg, const char *key)
{
    char *out = arg;
    strcat(out, key);
    strcat(out, ";");
}

static void
test_relist(void)
{
    fake_t f;
    sk_etcd_state_t *st = new_state(&f);
    char b[512];
    ASSERT_EQ(apply(st, "activities/1", activity(1, 1, 100, 5, b, sizeof(b)), 2), 1);
    ASSERT_EQ(apply(st, "activities/2", activity(2, 1, 300, 5, b, sizeof(b)), 3), 1);
    ASSERT_EQ(apply(st, "policies/buy_rate.lua", "function allow() return true end", 4), 1);
    /* the relist sees activity 2 changed, activity 1 and the policy gone, activity 3 new */
    sk_etcd_state_relist_begin(st);
    ASSERT_EQ(apply(st, "activities/2", activity(2, 1, 300, 9, b, sizeof(b)), 8), 1);
    ASSERT_EQ(apply(st, "activities/3", activity(3, 1, 500, 5, b, sizeof(b)), 9), 1);
    char gone[256] = "";
    ASSERT_EQ(sk_etcd_state_relist_end(st, on_gone, gone), 2);
    ASSERT_STREQ(gone, "activities/1;policies/buy_rate.lua;");
    sk_etcd_state_set_revision(st, 12);
    const sk_snapshot_t *s = sk_etcd_state_build(st);
    ASSERT_EQ(s->revision, 12);
    ASSERT_EQ(s->nactivities, 2);
    ASSERT_EQ(s->activities[0].activity_id, 2);
    ASSERT_EQ(s->activities[0].total, 9);
    ASSERT_EQ(s->activities[1].activity_id, 3);
    ASSERT_EQ(s->npolicies, 0);
    sk_snapshot_release(s);
    sk_etcd_state_free(st);
}

int
main(void)
{
    RUN(test_empty_and_refcount);
    RUN(test_refcount_threads);
    RUN(test_sorting);
    RUN(test_bad_value_keeps_last_good);
    RUN(test_policies);
    RUN(test_relist);
    DONE();
}
