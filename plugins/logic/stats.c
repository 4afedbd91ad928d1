/*
 * /status fields and Prometheus lines of the logic layer. Counters are atomics written by the worker and control
 * threads; readers may see them a moment apart, which is fine for monitoring.
 */
#include <inttypes.h>
#include <stdio.h>
#include "logic.h"

static const int codes[SK_LOGIC_C_N] = {
    SK_OK, SK_E_NOT_FOUND, SK_E_SOLD_OUT, SK_E_TIMEOUT, SK_E_DISABLED, SK_E_NOT_SELECTED, SK_E_ALREADY_BOUGHT, SK_E_UNAVAILABLE,
    -1};

int
sk_logic_code_index(int code)
{
    for (int i = 0; i < SK_LOGIC_C_OTHER; ++i)
        if (codes[i] == code)
            return i;
    return SK_LOGIC_C_OTHER;
}

static const char *
code_label(int i, char *buf, size_t cap)
{
    if (i == SK_LOGIC_C_OTHER)
        return "other";
    snprintf(buf, cap, "%d", codes[i]);
    return buf;
}

void
sk_logic_status(sk_logic_t *L, cJSON *obj)
{
    sk_logic_stats_t *st = &L->stats;
    cJSON_AddNumberToObject(obj, "workers", L->nworkers);
    cJSON_AddNumberToObject(obj, "ready_workers", atomic_load(&L->ready_workers));
    cJSON_AddBoolToObject(obj, "stopping", atomic_load(&L->stopping));
    cJSON *d = cJSON_AddObjectToObject(obj, "decisions");
    if (d != NULL)
        for (int i = 0; i < SK_LOGIC_C_N; ++i) {
            char b[16];
            cJSON_AddNumberToObject(d, code_label(i, b, sizeof(b)), (double)atomic_load(&st->decisions[i]));
        }
    cJSON *q = cJSON_AddObjectToObject(obj, "queue");
    if (q != NULL) {
        cJSON_AddNumberToObject(q, "pending", (double)atomic_load(&st->pending));
        cJSON_AddNumberToObject(q, "lag", (double)atomic_load(&st->lag));
        cJSON_AddNumberToObject(q, "length", (double)atomic_load(&st->xlen));
        cJSON_AddNumberToObject(q, "trimmed", (double)atomic_load(&st->trimmed));
        cJSON_AddNumberToObject(q, "streams", (double)atomic_load(&st->streams));
    }
    cJSON_AddNumberToObject(obj, "wait_replicas", L->conf->redis_wait_replicas);
    cJSON_AddNumberToObject(obj, "wait_short", (double)atomic_load(&st->wait_short));
    cJSON_AddNumberToObject(obj, "entries_read", (double)atomic_load(&st->read));
    cJSON_AddNumberToObject(obj, "entries_claimed", (double)atomic_load(&st->claimed));
    cJSON_AddNumberToObject(obj, "entries_left_pending", (double)atomic_load(&st->left_pending));
    cJSON_AddNumberToObject(obj, "entries_malformed", (double)atomic_load(&st->malformed));
    cJSON_AddNumberToObject(obj, "batches", (double)atomic_load(&st->batches));
    cJSON_AddNumberToObject(obj, "redis_errors", (double)atomic_load(&st->redis_errors));
    cJSON_AddNumberToObject(obj, "script_errors", (double)atomic_load(&st->script_errors));
    cJSON_AddNumberToObject(obj, "script_reloads", (double)atomic_load(&st->reloads));
    cJSON_AddNumberToObject(obj, "policy_errors", (double)atomic_load(&st->policy_errors));
    cJSON_AddNumberToObject(obj, "heartbeats", (double)atomic_load(&st->heartbeats));
    cJSON_AddNumberToObject(obj, "returned", (double)atomic_load(&st->returned));
    cJSON_AddNumberToObject(obj, "reap_errors", (double)atomic_load(&st->reap_errors));
    cJSON_AddNumberToObject(obj, "moves_started", (double)atomic_load(&st->moves_started));
    cJSON_AddNumberToObject(obj, "moves_done", (double)atomic_load(&st->moves_done));
    cJSON_AddNumberToObject(obj, "moves_redriven", (double)atomic_load(&st->moves_redriven));
    cJSON_AddNumberToObject(obj, "units_moved", (double)atomic_load(&st->units_moved));
    cJSON_AddNumberToObject(obj, "move_errors", (double)atomic_load(&st->move_errors));
    cJSON_AddNumberToObject(obj, "heartbeat_errors", (double)atomic_load(&st->heartbeat_errors));
    cJSON_AddNumberToObject(obj, "last_heartbeat_redis_ms", (double)atomic_load(&st->heartbeat_redis_ms));
}

void
sk_logic_metrics(sk_logic_t *L, FILE *out)
{
    sk_logic_stats_t *st = &L->stats;
    fprintf(out, "# TYPE seckill_logic_decisions_total counter\n");
    for (int i = 0; i < SK_LOGIC_C_N; ++i) {
        char b[16];
        fprintf(out, "seckill_logic_decisions_total{code=\"%s\"} %llu\n", code_label(i, b, sizeof(b)),
                (unsigned long long)atomic_load(&st->decisions[i]));
    }
    struct {
        const char *name, *type;
        long long v;
    } m[] = {
        {"seckill_logic_entries_read_total", "counter", (long long)atomic_load(&st->read)},
        {"seckill_logic_entries_claimed_total", "counter", (long long)atomic_load(&st->claimed)},
        {"seckill_logic_entries_left_pending_total", "counter", (long long)atomic_load(&st->left_pending)},
        {"seckill_logic_entries_malformed_total", "counter", (long long)atomic_load(&st->malformed)},
        {"seckill_logic_batches_total", "counter", (long long)atomic_load(&st->batches)},
        {"seckill_logic_redis_errors_total", "counter", (long long)atomic_load(&st->redis_errors)},
        {"seckill_logic_script_errors_total", "counter", (long long)atomic_load(&st->script_errors)},
        {"seckill_logic_policy_errors_total", "counter", (long long)atomic_load(&st->policy_errors)},
        {"seckill_logic_heartbeat_errors_total", "counter", (long long)atomic_load(&st->heartbeat_errors)},
        {"seckill_logic_wait_short_total", "counter", (long long)atomic_load(&st->wait_short)},
        {"seckill_logic_returned_total", "counter", (long long)atomic_load(&st->returned)},
        {"seckill_logic_reap_errors_total", "counter", (long long)atomic_load(&st->reap_errors)},
        {"seckill_logic_moves_started_total", "counter", (long long)atomic_load(&st->moves_started)},
        {"seckill_logic_moves_done_total", "counter", (long long)atomic_load(&st->moves_done)},
        {"seckill_logic_moves_redriven_total", "counter", (long long)atomic_load(&st->moves_redriven)},
        {"seckill_logic_units_moved_total", "counter", (long long)atomic_load(&st->units_moved)},
        {"seckill_logic_move_errors_total", "counter", (long long)atomic_load(&st->move_errors)},
        {"seckill_logic_streams", "gauge", atomic_load(&st->streams)},
        {"seckill_logic_queue_pending", "gauge", atomic_load(&st->pending)},
        {"seckill_logic_queue_lag", "gauge", atomic_load(&st->lag)},
        {"seckill_logic_queue_length", "gauge", atomic_load(&st->xlen)},
        {"seckill_logic_ready_workers", "gauge", atomic_load(&L->ready_workers)},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); ++i)
        fprintf(out, "# TYPE %s %s\n%s %lld\n", m[i].name, m[i].type, m[i].name, m[i].v);
}
