/*
 * The host-wide policy table behind /status: per policy name, the version in effect (sha256, etcd revision, when it
 * changed), the last rejected version and its error, and the failed calls. Every thread records into it, so a mutex
 * guards it; it is allocated on first use and hangs off the host (host->policy_table).
 *
 * Recording is idempotent: every thread applies the same snapshot and records the same outcome, and only a different
 * (sha256, revision) counts as a change. A good version that differs from the one in effect clears the last error;
 * re-recording the version in effect does not, so a rejected put stays visible until a good one replaces it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "host.h"
#include "lua_vm.h"

#define ENTRIES_MAX 16

typedef struct st_sk_policy_entry_t {
    char name[64];
    char sha256[65];
    int64_t revision, changed_at; /* unix ms; changed_at 0 = no good version recorded */
    char error[512];
    char error_sha256[65];
    int64_t error_revision, error_at;
    uint64_t call_failures;
    char call_error[512];
    int64_t call_error_at;
} sk_policy_entry_t;

struct st_sk_policy_table_t {
    pthread_mutex_t mu;
    size_t n;
    sk_policy_entry_t e[ENTRIES_MAX];
};

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static sk_policy_table_t *
table_of(sk_host_t *host)
{
    sk_policy_table_t *t = atomic_load(&host->policy_table);
    if (t != NULL)
        return t;
    if ((t = calloc(1, sizeof(*t))) == NULL)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    sk_policy_table_t *expected = NULL;
    if (!atomic_compare_exchange_strong(&host->policy_table, &expected, t)) {
        pthread_mutex_destroy(&t->mu);
        free(t);
        t = expected;
    }
    return t;
}

/* Called with the mutex held. NULL when the table is full. */
static sk_policy_entry_t *
entry_of(sk_policy_table_t *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->e[i].name, name) == 0)
            return &t->e[i];
    if (t->n == ENTRIES_MAX)
        return NULL;
    sk_policy_entry_t *e = &t->e[t->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    return e;
}

void
sk_policy_record(sk_host_t *host, const char *name, const char *sha256, int64_t revision, const char *error)
{
    sk_policy_table_t *t;
    if (host == NULL || (t = table_of(host)) == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    sk_policy_entry_t *e = entry_of(t, name);
    if (e != NULL && error == NULL) {
        if (e->changed_at == 0 || strcmp(e->sha256, sha256) != 0 || e->revision != revision) {
            snprintf(e->sha256, sizeof(e->sha256), "%s", sha256);
            e->revision = revision;
            e->changed_at = now_ms();
            e->error[0] = '\0';
            e->error_sha256[0] = '\0';
            e->error_revision = 0;
            e->error_at = 0;
        }
    } else if (e != NULL) {
        if (strcmp(e->error, error) != 0 || strcmp(e->error_sha256, sha256) != 0 || e->error_revision != revision) {
            snprintf(e->error, sizeof(e->error), "%s", error);
            snprintf(e->error_sha256, sizeof(e->error_sha256), "%s", sha256);
            e->error_revision = revision;
            e->error_at = now_ms();
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void
sk_lua_status_call_failed(sk_host_t *host, const char *name, const char *err, uint64_t n)
{
    sk_policy_table_t *t;
    if (host == NULL || (t = table_of(host)) == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    sk_policy_entry_t *e = entry_of(t, name);
    if (e != NULL) {
        e->call_failures += n;
        snprintf(e->call_error, sizeof(e->call_error), "%s", err);
        e->call_error_at = now_ms();
    }
    pthread_mutex_unlock(&t->mu);
}

static void
add_opt_string(cJSON *o, const char *key, const char *s)
{
    if (s[0] != '\0')
        cJSON_AddStringToObject(o, key, s);
    else
        cJSON_AddNullToObject(o, key);
}

void
sk_policy_status(sk_host_t *host, cJSON *arr)
{
    sk_policy_table_t *t;
    if (host == NULL || (t = table_of(host)) == NULL)
        return;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->n; i++) {
        const sk_policy_entry_t *e = &t->e[i];
        cJSON *o = cJSON_CreateObject();
        if (o == NULL)
            break;
        cJSON_AddStringToObject(o, "name", e->name);
        add_opt_string(o, "sha256", e->sha256);
        cJSON_AddNumberToObject(o, "revision", (double)e->revision);
        cJSON_AddStringToObject(o, "source", e->changed_at == 0 ? "none" : e->revision == 0 ? "file" : "etcd");
        cJSON_AddNumberToObject(o, "changed_at", (double)e->changed_at);
        add_opt_string(o, "error", e->error);
        if (e->error[0] != '\0') {
            add_opt_string(o, "error_sha256", e->error_sha256);
            cJSON_AddNumberToObject(o, "error_revision", (double)e->error_revision);
            cJSON_AddNumberToObject(o, "error_at", (double)e->error_at);
        }
        cJSON_AddNumberToObject(o, "call_failures", (double)e->call_failures);
        add_opt_string(o, "last_call_error", e->call_error);
        if (e->call_error[0] != '\0')
            cJSON_AddNumberToObject(o, "last_call_error_at", (double)e->call_error_at);
        cJSON_AddItemToArray(arr, o);
    }
    pthread_mutex_unlock(&t->mu);
}

void
sk_policy_status_free(sk_host_t *host)
{
    sk_policy_table_t *t = atomic_exchange(&host->policy_table, NULL);
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t);
}
