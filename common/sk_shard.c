#include "sk_shard.h"

#include <stdio.h>
#include <string.h>
#include "sk_cluster.h"

static unsigned
stripe(unsigned slot, unsigned k)
{
    return (unsigned)((uint64_t)slot * k / SK_SHARD_SLOTS);
}

static unsigned
tag_slot(const char *tag, int len)
{
    /* the slot of any key "...{tag}..." is the slot of the tag itself */
    return sk_cluster_crc16(tag, (size_t)len) % SK_SHARD_SLOTS;
}

int
sk_shard_tag(char *buf, size_t cap, int64_t aid, unsigned b, unsigned k)
{
    if (k <= 1 || b == 0) {
        if (b != 0)
            return -1;
        int n = snprintf(buf, cap, "a%lld", (long long)aid);
        return n < 0 || (size_t)n >= cap ? -1 : n;
    }
    if (b >= k)
        return -1;
    char base[SK_SHARD_TAG_MAX];
    int bl = snprintf(base, sizeof(base), "a%lld", (long long)aid);
    if (bl < 0 || (size_t)bl >= sizeof(base))
        return -1;
    unsigned want = (stripe(tag_slot(base, bl), k) + b) % k;
    for (unsigned n = 0; n < SK_SHARD_SEARCH_MAX; ++n) {
        int len = snprintf(buf, cap, "a%lld.%u.%u", (long long)aid, b, n);
        if (len < 0 || (size_t)len >= cap)
            return -1;
        if (stripe(tag_slot(buf, len), k) == want)
            return len;
    }
    int len = snprintf(buf, cap, "a%lld.%u.0", (long long)aid, b);
    return len < 0 || (size_t)len >= cap ? -1 : len;
}

unsigned
sk_shard_of_user(int64_t uid, unsigned k)
{
    if (k <= 1)
        return 0;
    char d[24];
    int n = snprintf(d, sizeof(d), "%lld", (long long)uid);
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; ++i) {
        h ^= (unsigned char)d[i];
        h *= 16777619u;
    }
    return h % k;
}

int64_t
sk_shard_split(int64_t total, unsigned b, unsigned k)
{
    if (k <= 1)
        return total;
    if (total <= 0 || b >= k)
        return 0;
    return total / k + ((int64_t)b < total % k ? 1 : 0);
}

int64_t
sk_shard_speed(int64_t speed, unsigned b, unsigned k, int64_t sec)
{
    if (k <= 1)
        return speed;
    if (speed <= 0 || b >= k)
        return 0;
    int64_t r = sec % k;
    if (r < 0)
        r += k;
    return speed / k + (((int64_t)b + r) % k < speed % k ? 1 : 0);
}

int64_t
sk_shard_move_amount(int64_t donor_left, unsigned k)
{
    if (donor_left <= 0)
        return 0;
    int64_t d = 2 * (int64_t)(k > 0 ? k : 1);
    int64_t m = (donor_left + d - 1) / d;
    return m < 1 ? 1 : m > donor_left ? donor_left : m;
}

int64_t
sk_shard_low_water(int64_t total, unsigned k)
{
    int64_t w = sk_shard_split(total, 0, k) / 4;
    return w < 1 ? 1 : w;
}

size_t
sk_shard_plan(const int64_t *left, const unsigned char *flags, unsigned k, int64_t total, sk_shard_move_t *out)
{
    int64_t l[SK_SHARD_MAX];
    unsigned char received[SK_SHARD_MAX];
    size_t n = 0;
    if (k < 2 || k > SK_SHARD_MAX)
        return 0;
    for (unsigned i = 0; i < k; ++i) {
        l[i] = left[i] > 0 ? left[i] : 0;
        received[i] = (flags[i] & SK_SHARD_RECEIVED) != 0;
    }
    int64_t low = sk_shard_low_water(total, k);
    for (unsigned to = 0; to < k; ++to) {
        if (l[to] >= low)
            continue;
        unsigned from = to;
        for (unsigned i = 0; i < k; ++i)
            if (i != to && !received[i] && (from == to || l[i] > l[from]))
                from = i;
        if (from == to || l[from] <= 0)
            continue;
        int64_t m = sk_shard_move_amount(l[from], k);
        /* an empty bucket with buyers takes at once; a merely low one only when the donor stays no poorer than it,
         * so that quiet buckets do not hand units back and forth */
        if (!(l[to] == 0 && (flags[to] & SK_SHARD_WANTED)) && l[from] - l[to] < 2 * m)
            continue;
        l[from] -= m;
        l[to] += m;
        received[to] = 1;
        out[n++] = (sk_shard_move_t){from, to, m};
    }
    return n;
}
