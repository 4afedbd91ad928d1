/*
 * What the logic layer reads from Redis (plugins/logic/entry.c, and the reply walks of consumer.c): queue entries of
 * XREADGROUP / XAUTOCLAIM replies and the stock script's results.
 *
 * Input: byte 0 picks the mode. 0: RESP bytes, turned into redisReply trees by hiredis' own reader (what the
 * connection hands to the callbacks), then walked exactly as consumer.c's on_read / on_claim / load_entries and
 * on_call walk them. 1: lines, the first the stream id and the others field, value, field, value, ... handed to
 * sk_logic_entry_parse directly. 2: the whole input is one stored result for sk_logic_result_parse.
 *
 * Invariants: a parsed entry has ids > 0, times >= 0, and id, reply and ip printable without spaces (they travel in a
 * space-separated message); packing it the way access does ("r" = "<id> <reply> <aid> <pid> <uid> <ip> <now>
 * <deadline>") parses back to the same entry; after a failure id and reply are both set or both empty; a parsed result
 * has a code in 0..9999 and a 1..128-byte token, and its reply message reads back as the same result.
 */
#include <inttypes.h>
#include <hiredis/hiredis.h>
#include "fuzz_common.h"
#include "logic/logic.h"

static int
printable(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static void
check_entry(const char *sid, size_t sidlen, const char *const *fv, const size_t *fvlen, size_t nfv)
{
    sk_logic_entry_t e, back;
    char err[64];
    memset(err, 0, sizeof(err));
    int rc = sk_logic_entry_parse(&e, sid, sidlen, fv, fvlen, nfv, err, sizeof(err));
    FUZZ_CHECK(fuzz_terminated(err, sizeof(err)));
    FUZZ_CHECK((e.id[0] == '\0') == (e.reply[0] == '\0'));
    if (e.sid[0] != '\0')
        FUZZ_CHECK(strlen(e.sid) == sidlen && memcmp(e.sid, sid, sidlen) == 0 && e.sid_ms >= 0);
    if (e.id[0] != '\0')
        FUZZ_CHECK(printable(e.id) && printable(e.reply));
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0');
        return;
    }
    FUZZ_CHECK(e.aid > 0 && e.pid > 0 && e.uid > 0 && e.now >= 0 && e.deadline >= 0);
    FUZZ_CHECK(printable(e.id) && printable(e.reply) && printable(e.ip));
    char packed[1024];
    int n = snprintf(packed, sizeof(packed), "%s %s %" PRId64 " %" PRId64 " %" PRId64 " %s %" PRId64 " %" PRId64, e.id, e.reply,
                     e.aid, e.pid, e.uid, e.ip, e.now, e.deadline);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(packed));
    const char *pfv[2] = {"r", packed};
    size_t pfvlen[2] = {1, (size_t)n};
    FUZZ_CHECK(sk_logic_entry_parse(&back, e.sid, strlen(e.sid), pfv, pfvlen, 2, err, sizeof(err)) == 0);
    FUZZ_CHECK(memcmp(&back, &e, sizeof(e)) == 0);
}

static void
check_result(const char *s, size_t len)
{
    sk_logic_result_t r, back;
    if (sk_logic_result_parse(&r, s, len) != 0)
        return;
    size_t toklen = strnlen(r.token, sizeof(r.token));
    FUZZ_CHECK(toklen < sizeof(r.token));
    FUZZ_CHECK(r.code >= 0 && r.code <= 9999 && r.expires_at >= 0);
    char buf[512];
    int n = sk_logic_reply_format(buf, sizeof(buf), "req-1", &r);
    FUZZ_CHECK(n > 0 && (size_t)n == strlen(buf));
    if (memchr(s, '\0', len) != NULL)
        return; /* a token with a NUL inside is cut by the %s of the reply; sk_logic_token_ok keeps them out upstream */
    FUZZ_CHECK(strncmp(buf, "req-1 ", 6) == 0 && sk_logic_result_parse(&back, buf + 6, (size_t)n - 6) == 0);
    FUZZ_CHECK(back.code == r.code && back.expires_at == r.expires_at && strcmp(back.token, r.token) == 0);
    FUZZ_CHECK(sk_logic_reply_format(buf, (size_t)n, "req-1", &r) == -1); /* no room for the NUL: refused, not cut */
}

/* consumer.c load_entries: an array of [id, [field, value, ...]] */
static void
walk_entries(const redisReply *entries)
{
    for (size_t i = 0; i < entries->elements && i < 64; ++i) {
        const redisReply *en = entries->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements < 2 || en->element[0]->type != REDIS_REPLY_STRING)
            continue;
        const redisReply *fields = en->element[1];
        const char *fv[64];
        size_t fvlen[64], nfv = 0;
        if (fields->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j < fields->elements && nfv < 64; ++j) {
                if (fields->element[j]->type != REDIS_REPLY_STRING)
                    break;
                fv[nfv] = fields->element[j]->str;
                fvlen[nfv++] = fields->element[j]->len;
            }
        check_entry(en->element[0]->str, en->element[0]->len, fv, fvlen, nfv);
    }
}

static void
walk_reply(const redisReply *reply)
{
    /* on_read: [[stream, [entries]]] */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 && reply->element[0]->type == REDIS_REPLY_ARRAY &&
        reply->element[0]->elements >= 2 && reply->element[0]->element[1]->type == REDIS_REPLY_ARRAY &&
        reply->element[0]->element[1]->elements > 0)
        walk_entries(reply->element[0]->element[1]);
    /* on_claim: [cursor, [entries], [deleted]] */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 && reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_ARRAY)
        walk_entries(reply->element[1]);
    /* on_call: {result_1, ..., result_n, sold} */
    if (reply->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < reply->elements; ++i)
            if (reply->element[i]->type == REDIS_REPLY_STRING)
                check_result(reply->element[i]->str, reply->element[i]->len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int mode = data[0] % 3;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    if (mode == 0) {
        /* hiredis 0.14's reader callocs an array's element table from its "*<count>" header before any element has
         * arrived (a count of 700000600 is 5.6 GB), with no limit until hiredis 1.0's maxelements. That is the
         * library trusting Redis, not our parsing, so counts above 9999 are left out here. */
        for (size_t i = 0; i < len; i++)
            if (in[i] == '*' && i + 5 < len && in[i + 1] >= '0' && in[i + 1] <= '9' && memchr(in + i + 1, '\r', 5) == NULL)
                return 0;
        redisReader *rd = redisReaderCreate();
        redisReaderFeed(rd, in, len);
        void *reply;
        for (int k = 0; k < 16 && redisReaderGetReply(rd, &reply) == REDIS_OK && reply != NULL; k++) {
            walk_reply(reply);
            freeReplyObject(reply);
        }
        redisReaderFree(rd);
    } else if (mode == 1) {
        const char *part[65];
        size_t plen[65], n = 0, i = 0;
        char *copy = malloc(len + 1); /* exact size: ASan sees a read past the last value */
        memcpy(copy, in, len);
        while (n < 65) {
            const char *nl = memchr(copy + i, '\n', len - i);
            size_t end = nl != NULL ? (size_t)(nl - copy) : len;
            part[n] = copy + i;
            plen[n++] = end - i;
            if (nl == NULL)
                break;
            i = end + 1;
        }
        check_entry(part[0], plen[0], part + 1, plen + 1, n - 1);
        free(copy);
    } else {
        char *copy = malloc(len + 1);
        memcpy(copy, in, len);
        check_result(copy, len);
        free(copy);
    }
    return 0;
}
