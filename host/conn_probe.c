/*
 * Noticing that a client went away while its request waits (SPEC §8.7, issue 17).
 *
 * libh2o 2.2.5 stops reading an HTTP/1 socket while a request is in progress, so a client that closes while
 * /sec/kill waits for the logic layer is seen only when the answer is written. The request does not lead back to its
 * socket through any public API (h2o_http1_conn_t is private), but the accept does: each HTTP thread remembers, for
 * the connections it accepted on the access listener, which fd carries which peer address. A waiting request finds
 * its fd by its peer address (conn->callbacks->get_peername), checks that the fd still has that peer, and asks the
 * kernel whether the peer has closed or reset (poll with POLLRDHUP, no data consumed).
 *
 * The table is a bounded cache, not a registry: a slot is overwritten when its fd is accepted again or evicted when
 * its probe run is full, and nothing is removed when a connection closes. A missing or stale slot only means the
 * request is not probed and waits for its deadline as before; a wrong answer is impossible because the fd's peer is
 * compared before it is probed, and a live request's fd cannot be closed under it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* POLLRDHUP */
#endif
#include "host.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SLOTS 16384 /* per HTTP thread, 32 bytes each: 10,000 idle connections fit with room to spare */
#define PROBE_RUN 8

typedef struct st_peer_key_t {
    uint8_t family; /* 4 or 6, 0 = empty slot */
    uint8_t pad;
    uint16_t port;
    uint8_t addr[16];
} peer_key_t;

typedef struct st_slot_t {
    peer_key_t key;
    int fd;
    uint32_t seq;
} slot_t;

struct st_sk_conn_map_t {
    uint32_t seq;
    slot_t slots[SLOTS];
};

sk_conn_map_t *
sk_conn_map_new(void)
{
    /* touched in full now: a fixed 512 KB per thread belongs to the daemon's resting size, not to the first storm
     * of connections that happens to fault its pages in (calloc would leave them untouched) */
    sk_conn_map_t *m = calloc(1, sizeof(*m));
    /* a write per page (volatile, or the compiler folds it back into calloc's untouched pages) */
    for (size_t i = 0; m != NULL && i < sizeof(*m); i += 4096)
        ((volatile char *)m)[i] = 0;
    return m;
}

void
sk_conn_map_free(sk_conn_map_t *m)
{
    free(m);
}

static int
key_of(const struct sockaddr *sa, socklen_t len, peer_key_t *k)
{
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        k->family = 4;
        k->port = in->sin_port;
        memcpy(k->addr, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        k->family = 6;
        k->port = in6->sin6_port;
        memcpy(k->addr, &in6->sin6_addr, 16);
        return 0;
    }
    return -1;
}

static size_t
hash_of(const peer_key_t *k)
{
    /* FNV-1a: peers on loopback differ only in the port, so every byte must move the slot */
    uint32_t h = 2166136261u;
    const uint8_t *p = (const uint8_t *)k;
    for (size_t i = 0; i < sizeof(*k); ++i)
        h = (h ^ p[i]) * 16777619u;
    return h & (SLOTS - 1);
}

void
sk_conn_map_note(sk_conn_map_t *m, const struct sockaddr *peer, socklen_t len, int fd)
{
    peer_key_t k;
    if (m == NULL || fd < 0 || key_of(peer, len, &k) != 0)
        return;
    size_t h = hash_of(&k);
    slot_t *victim = NULL;
    for (size_t i = 0; i < PROBE_RUN; ++i) {
        slot_t *s = &m->slots[(h + i) & (SLOTS - 1)];
        if (s->key.family == 0 || memcmp(&s->key, &k, sizeof(k)) == 0) {
            victim = s;
            break;
        }
        /* the oldest of a full run goes: it is the likeliest to be closed already */
        if (victim == NULL || (int32_t)(s->seq - victim->seq) < 0)
            victim = s;
    }
    victim->key = k;
    victim->fd = fd;
    victim->seq = ++m->seq;
}

int
sk_conn_map_find(const sk_conn_map_t *m, const struct sockaddr *peer, socklen_t len)
{
    peer_key_t k;
    if (m == NULL || key_of(peer, len, &k) != 0)
        return -1;
    size_t h = hash_of(&k);
    for (size_t i = 0; i < PROBE_RUN; ++i) {
        const slot_t *s = &m->slots[(h + i) & (SLOTS - 1)];
        if (s->key.family == 0)
            return -1;
        if (memcmp(&s->key, &k, sizeof(k)) == 0)
            return s->fd;
    }
    return -1;
}

int
sk_conn_peer_closed(int fd, const struct sockaddr *peer, socklen_t len)
{
    peer_key_t want, have;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    if (fd < 0 || key_of(peer, len, &want) != 0)
        return -1;
    /* a reset socket has no peer any more (ENOTCONN): that is the answer, not a reason to doubt the slot, which is the
     * last accept from this peer and so the live request's own */
    int reset = getpeername(fd, (struct sockaddr *)&ss, &sslen) != 0;
    if (reset && errno != ENOTCONN)
        return -1;
    if (!reset && (key_of((struct sockaddr *)&ss, sslen, &have) != 0 || memcmp(&want, &have, sizeof(want)) != 0))
        return -1; /* the fd now carries another connection: this slot was stale */
    struct pollfd pfd = {.fd = fd, .events = POLLRDHUP};
    if (poll(&pfd, 1, 0) < 0)
        return -1;
    if (reset)
        return (pfd.revents & (POLLHUP | POLLERR)) != 0 ? 1 : -1;
    /* a FIN (RDHUP) counts as gone: an HTTP/1.1 client that half-closes and still waits is not one we serve */
    return (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

int
sk_http_req_peer_closed(h2o_req_t *req)
{
    sk_thread_t *thr = sk_thread_self();
    if (thr == NULL || thr->conns == NULL || req == NULL || req->conn == NULL || req->conn->callbacks->get_peername == NULL)
        return -1;
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (len == 0)
        return -1;
    return sk_conn_peer_closed(sk_conn_map_find(thr->conns, (struct sockaddr *)&ss, len), (struct sockaddr *)&ss, len);
}
