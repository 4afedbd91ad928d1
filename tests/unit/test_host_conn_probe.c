/*
 * The peer -> fd cache and the closed-client probe (host/conn_probe.c): lookups, overwrites and eviction with no
 * server, and the probe on real loopback TCP connections (open, pipelined data, FIN, RST, a reused fd).
 */
#include "sk_test.h"
#include "host.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in
peer4(uint32_t ip, uint16_t port)
{
    struct sockaddr_in in;
    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(ip);
    in.sin_port = htons(port);
    return in;
}

#define SA(x) ((struct sockaddr *)&(x))

static void
test_map(void)
{
    sk_conn_map_t *m = sk_conn_map_new();
    ASSERT(m != NULL);
    struct sockaddr_in a = peer4(0x7f000001, 40000), b = peer4(0x7f000001, 40001), c = peer4(0x0a000001, 40000);
    ASSERT_EQ(sk_conn_map_find(m, SA(a), sizeof(a)), -1);
    sk_conn_map_note(m, SA(a), sizeof(a), 7);
    sk_conn_map_note(m, SA(b), sizeof(b), 8);
    ASSERT_EQ(sk_conn_map_find(m, SA(a), sizeof(a)), 7);
    ASSERT_EQ(sk_conn_map_find(m, SA(b), sizeof(b)), 8);
    ASSERT_EQ(sk_conn_map_find(m, SA(c), sizeof(c)), -1); /* same port, other address */
    /* a peer accepted again (its old connection closed): the newest fd wins, no second slot */
    sk_conn_map_note(m, SA(a), sizeof(a), 9);
    ASSERT_EQ(sk_conn_map_find(m, SA(a), sizeof(a)), 9);
    /* IPv6 keys, and short or foreign addresses are ignored */
    struct sockaddr_in6 v6;
    memset(&v6, 0, sizeof(v6));
    v6.sin6_family = AF_INET6;
    v6.sin6_addr.s6_addr[15] = 1;
    v6.sin6_port = htons(40000);
    ASSERT_EQ(sk_conn_map_find(m, SA(v6), sizeof(v6)), -1);
    sk_conn_map_note(m, SA(v6), sizeof(v6), 10);
    ASSERT_EQ(sk_conn_map_find(m, SA(v6), sizeof(v6)), 10);
    ASSERT_EQ(sk_conn_map_find(m, SA(a), sizeof(a)), 9);
    sk_conn_map_note(m, SA(a), 4, 11);
    ASSERT_EQ(sk_conn_map_find(m, SA(a), 4), -1);
    struct sockaddr un = {.sa_family = AF_UNIX};
    sk_conn_map_note(m, &un, sizeof(un), 12);
    ASSERT_EQ(sk_conn_map_find(m, &un, sizeof(un)), -1);
    sk_conn_map_note(m, SA(b), sizeof(b), -1); /* no fd: ignored */
    ASSERT_EQ(sk_conn_map_find(m, SA(b), sizeof(b)), 8);
    sk_conn_map_free(m);

    /* a full table stays bounded: 100,000 peers through 16,384 slots; the newest are all found, a miss is -1 and
     * never another peer's fd */
    m = sk_conn_map_new();
    for (uint32_t i = 0; i < 100000; ++i) {
        struct sockaddr_in p = peer4(0x7f000000 + (i >> 16), (uint16_t)i);
        sk_conn_map_note(m, SA(p), sizeof(p), (int)i);
    }
    size_t found = 0;
    for (uint32_t i = 0; i < 100000; ++i) {
        struct sockaddr_in p = peer4(0x7f000000 + (i >> 16), (uint16_t)i);
        int fd = sk_conn_map_find(m, SA(p), sizeof(p));
        ASSERT(fd == -1 || fd == (int)i);
        found += fd == (int)i;
    }
    ASSERT(found <= 16384);
    ASSERT(found > 8000);
    size_t newest = 0;
    for (uint32_t i = 99000; i < 100000; ++i) {
        struct sockaddr_in p = peer4(0x7f000000 + (i >> 16), (uint16_t)i);
        newest += sk_conn_map_find(m, SA(p), sizeof(p)) == (int)i;
    }
    ASSERT(newest > 990); /* eviction takes the oldest of a run */
    sk_conn_map_free(m);
    ASSERT_EQ(sk_conn_map_find(NULL, SA(a), sizeof(a)), -1);
}

/* One accepted loopback connection: *srv is the server's fd, *cli the client's, peer the client's address. */
static void
connect_pair(int lfd, int *srv, int *cli, struct sockaddr_in *peer)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    ASSERT(getsockname(lfd, SA(addr), &len) == 0);
    *cli = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(*cli >= 0);
    ASSERT(connect(*cli, SA(addr), sizeof(addr)) == 0);
    len = sizeof(*peer);
    *srv = accept(lfd, SA(*peer), &len);
    ASSERT(*srv >= 0);
}

static void
test_probe(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in any = peer4(0x7f000001, 0);
    ASSERT(bind(lfd, SA(any), sizeof(any)) == 0);
    ASSERT(listen(lfd, 16) == 0);

    int srv, cli;
    struct sockaddr_in peer;
    connect_pair(lfd, &srv, &cli, &peer);
    ASSERT_EQ(sk_conn_peer_closed(srv, SA(peer), sizeof(peer)), 0);
    /* data waiting to be read (a pipelined request) is not a close, and the probe consumes none of it */
    ASSERT(write(cli, "GET / HTTP/1.1\r\n\r\n", 18) == 18);
    usleep(20000);
    ASSERT_EQ(sk_conn_peer_closed(srv, SA(peer), sizeof(peer)), 0);
    ASSERT_EQ(sk_conn_peer_closed(srv, SA(peer), sizeof(peer)), 0);
    char buf[64];
    ASSERT_EQ(recv(srv, buf, sizeof(buf), MSG_DONTWAIT), 18);
    /* the wrong peer for this fd: unknown, never "closed" */
    struct sockaddr_in other = peer4(0x7f000001, (uint16_t)(ntohs(peer.sin_port) + 1));
    ASSERT_EQ(sk_conn_peer_closed(srv, SA(other), sizeof(other)), -1);
    ASSERT_EQ(sk_conn_peer_closed(-1, SA(peer), sizeof(peer)), -1);
    /* FIN */
    close(cli);
    usleep(20000);
    ASSERT_EQ(sk_conn_peer_closed(srv, SA(peer), sizeof(peer)), 1);
    close(srv);

    /* RST: the socket then has no peer (ENOTCONN), which is still an answer */
    connect_pair(lfd, &srv, &cli, &peer);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    ASSERT(setsockopt(cli, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    close(cli);
    usleep(20000);
    ASSERT_EQ(sk_conn_peer_closed(srv, SA(peer), sizeof(peer)), 1);
    close(srv);

    /* a stale slot: the fd number now belongs to a connection from another peer, which stays open */
    int stale_fd = srv;
    struct sockaddr_in stale_peer = peer;
    connect_pair(lfd, &srv, &cli, &peer);
    ASSERT_EQ(srv, stale_fd); /* the lowest free fd came back */
    ASSERT_EQ(sk_conn_peer_closed(srv, SA(stale_peer), sizeof(stale_peer)), -1);
    ASSERT_EQ(sk_conn_peer_closed(srv, SA(peer), sizeof(peer)), 0);
    close(cli);
    close(srv);
    close(lfd);
}

int
main(void)
{
    RUN(test_map);
    RUN(test_probe);
    DONE();
}
