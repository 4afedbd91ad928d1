#include "sk_keys.h"

#include <inttypes.h>
#include <stdio.h>

static int64_t
bucket_of(int64_t deadline_ms)
{
    return deadline_ms < 0 ? 0 : deadline_ms / SK_RESULT_BUCKET_MS;
}

int
sk_result_key(char *buf, size_t cap, int64_t aid, int64_t deadline_ms)
{
    int n = snprintf(buf, cap, "sk:{a%" PRId64 "}:res:%" PRId64, aid, bucket_of(deadline_ms));
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int64_t
sk_result_keep_until(int64_t deadline_ms)
{
    return (bucket_of(deadline_ms) + 1) * (SK_RESULT_BUCKET_MS / 1000) + SK_RESULT_KEEP_S;
}

int
sk_key_node_stats(char *buf, size_t cap, const char *node_id)
{
    int n = node_id != NULL ? snprintf(buf, cap, "sk:stats:%s", node_id) : snprintf(buf, cap, "sk:stats");
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
