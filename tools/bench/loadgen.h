/*
 * The load generator: one or two threads, each with its own epoll set of non-blocking keep-alive HTTP/1.1 connections
 * and one request outstanding per connection.
 *
 * Closed loop (-c): a connection sends its next request as soon as the answer arrives; latency runs from the send.
 * Open loop (-R): request k of a thread is *scheduled* at t0 + k/rate and sent on the first idle connection at or after
 * that moment. Latency runs from the scheduled time, so a server that stalls is charged for the requests that queued
 * behind the stall (no coordinated omission).
 *
 * Users are split between threads (user u belongs to thread u % threads), so the per-user tables need no locks.
 */
#ifndef SK_BENCH_LOADGEN_H
#define SK_BENCH_LOADGEN_H

#include <inttypes.h>
#include <math.h>
#include <sys/epoll.h>
#include <cjson/cJSON.h>
#include "bench.h"
#include "http.h"
#include "sk_sign.h"

#define LG_IN_CAP 16384
#define LG_OUT_CAP 1024
#define LG_RETRY_NS 100000000u /* a failed connection is retried after 100 ms */

enum { LG_DEAD, LG_CONNECTING, LG_IDLE, LG_BUSY };

typedef struct st_lg_conn_t {
    int fd;
    int state;
    int want_out; /* EPOLLOUT registered */
    uint64_t retry_at;
    uint64_t t_sched, t_sent;
    uint32_t user;
    uint16_t prod;
    size_t outlen, outoff, inlen;
    struct st_lg_conn_t *next_idle;
    char out[LG_OUT_CAP];
    char in[LG_IN_CAP];
} lg_conn_t;

typedef struct st_lg_thread_t {
    bench_t *b;
    bench_run_t run; /* this thread's share, merged by the caller */
    int idx;
    pthread_t tid;
    int epfd;
    lg_conn_t *conns;
    int nconns;
    lg_conn_t *idle;
    int busy;
    sk_hmac_t *hmac;
    uint64_t generated; /* requests built so far (the schedule index in open loop) */
    uint64_t limit;     /* requests this thread may send (UINT64_MAX: until the duration ends) */
    double rate;        /* this thread's share of -R */
    uint32_t nusers;    /* users owned by this thread */
    bench_token_t *tokens;
    size_t ntokens, captokens, maxtokens;
    int failed_setup;
    uint64_t last_answer; /* monotonic ns of the last answer: the end of the measured interval */
    char scratch[LG_IN_CAP];
} lg_thread_t;

static void
lg_set_events(lg_thread_t *t, lg_conn_t *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->want_out = out;
}

static void
lg_close(lg_thread_t *t, lg_conn_t *c, uint64_t now)
{
    if (c->fd >= 0) {
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    if (c->state == LG_BUSY)
        t->busy--;
    if (c->state == LG_IDLE) { /* unlink from the idle list */
        for (lg_conn_t **p = &t->idle; *p != NULL; p = &(*p)->next_idle) {
            if (*p == c) {
                *p = c->next_idle;
                break;
            }
        }
    }
    c->fd = -1;
    c->state = LG_DEAD;
    c->retry_at = now;
    c->inlen = c->outlen = c->outoff = 0;
}

static void
lg_open(lg_thread_t *t, lg_conn_t *c, uint64_t now)
{
    c->fd = bench_tcp_open(t->b->target_ip, t->b->target_port);
    if (c->fd < 0) {
        c->state = LG_DEAD;
        c->retry_at = now + LG_RETRY_NS;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        close(c->fd);
        c->fd = -1;
        c->state = LG_DEAD;
        c->retry_at = now + LG_RETRY_NS;
        return;
    }
    c->want_out = 1;
    c->state = LG_CONNECTING;
    c->t_sent = now;
}

static void
lg_make_idle(lg_thread_t *t, lg_conn_t *c)
{
    if (c->state == LG_BUSY)
        t->busy--;
    c->state = LG_IDLE;
    c->next_idle = t->idle;
    t->idle = c;
}

/* The user and product of this thread's k-th request: products rotate fastest, then the thread's users in order, so
 * that every user is asked for before any repeats. */
static void
lg_pick(lg_thread_t *t, uint64_t k, uint32_t *user, uint16_t *prod)
{
    bench_t *b = t->b;
    *prod = (uint16_t)(k % (uint64_t)b->nprods);
    uint64_t i = (k / (uint64_t)b->nprods) % t->nusers;
    *user = (uint32_t)(i * (uint64_t)b->o.threads + (uint64_t)t->idx);
}

/* The signed /sec/kill parameters of (user, prod) with a fresh nance (tag and seq keep it unique in this run). Returns
 * their length, or 0. */
static size_t
lg_params(bench_t *b, sk_hmac_t *h, char tag, uint64_t seq, uint32_t user, uint16_t prod, int64_t now_s, char *out, size_t cap)
{
    int64_t uid = b->o.user_base + (int64_t)user, pid = b->prods[prod].product_id;
    char nance[40], code[65];
    snprintf(nance, sizeof(nance), "%s%c%" PRIx64, b->run_id, tag, seq);
    if (sk_sign_request(h, b->user_keys[user], "kill", uid, pid, now_s, nance, code) != 0)
        return 0;
    int n = snprintf(out, cap, "product_id=%" PRId64 "&user_id=%" PRId64 "&time=%" PRId64 "&nance=%s&auth_code=%s", pid, uid, now_s,
                     nance, code);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The whole request (GET with a query string, or POST with a form body) into out. Returns its length, or 0. */
static size_t
lg_build(bench_t *b, sk_hmac_t *h, int thread, uint64_t seq, uint32_t user, uint16_t prod, int64_t now_s, int post, char *out,
         size_t cap)
{
    char params[320];
    size_t pl =
        lg_params(b, h, (char)(b->baseline_mode ? 'x' + thread : 'a' + thread), seq, user, prod, now_s, params, sizeof(params));
    if (pl == 0)
        return 0;
    int n;
    if (post)
        n = snprintf(out, cap,
                     "POST /sec/kill HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     b->target_ip, b->target_port, pl, params);
    else
        n = snprintf(out, cap, "GET /sec/kill?%s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", params, b->target_ip, b->target_port);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void
lg_flush(lg_thread_t *t, lg_conn_t *c, uint64_t now)
{
    while (c->outoff < c->outlen) {
        ssize_t w = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (w > 0) {
            c->outoff += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && errno == EAGAIN) {
            if (!c->want_out)
                lg_set_events(t, c, 1);
            return;
        } else {
            t->run.c.errors++;
            lg_close(t, c, now);
            return;
        }
    }
    if (c->want_out)
        lg_set_events(t, c, 0);
}

static void
lg_send(lg_thread_t *t, uint64_t sched, uint64_t now)
{
    lg_conn_t *c = t->idle;
    t->idle = c->next_idle;
    lg_pick(t, t->generated, &c->user, &c->prod);
    c->outlen =
        lg_build(t->b, t->hmac, t->idx, t->generated, c->user, c->prod, (int64_t)time(NULL), t->b->o.post, c->out, sizeof(c->out));
    t->generated++;
    c->state = LG_BUSY;
    t->busy++;
    c->t_sched = sched;
    c->t_sent = now;
    c->outoff = 0;
    c->inlen = 0;
    t->run.c.sent++;
    if (c->outlen == 0) { /* cannot happen with sane ids; count it rather than send garbage */
        t->run.c.errors++;
        lg_make_idle(t, c);
        return;
    }
    lg_flush(t, c, now);
}

static long
lg_json_code(const char *body, size_t len, int *ok)
{
    static const char key[] = "\"code\"";
    const char *p = memmem(body, len, key, sizeof(key) - 1), *e = body + len;
    *ok = 0;
    if (p == NULL)
        return 0;
    p += sizeof(key) - 1;
    while (p < e && (*p == ' ' || *p == ':'))
        p++;
    long v = 0;
    int neg = p < e && *p == '-', digits = 0;
    if (neg)
        p++;
    while (p < e && *p >= '0' && *p <= '9' && digits < 9)
        v = v * 10 + (*p++ - '0'), digits++;
    *ok = digits > 0;
    return neg ? -v : v;
}

static void
lg_keep_token(lg_thread_t *t, lg_conn_t *c, const char *body, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(body, len);
    cJSON *data = j ? cJSON_GetObjectItemCaseSensitive(j, "data") : NULL;
    cJSON *tok = data ? cJSON_GetObjectItemCaseSensitive(data, "token") : NULL;
    const char *s = cJSON_IsString(tok) ? tok->valuestring : NULL;
    if (s == NULL || strlen(s) > BENCH_TOKEN_MAX) {
        t->run.c.nocode++; /* a win without a usable token is malformed */
    } else if (t->ntokens >= t->maxtokens) {
        t->run.tokens_dropped++;
    } else {
        if (t->ntokens == t->captokens) {
            t->captokens = t->captokens ? t->captokens * 2 : 1024;
            t->tokens = bench_xrealloc(t->tokens, t->captokens * sizeof(*t->tokens));
        }
        bench_token_t *bt = &t->tokens[t->ntokens++];
        bt->user = c->user;
        bt->prod = c->prod;
        bt->len = (uint8_t)strlen(s);
        memcpy(bt->tok, s, (size_t)bt->len + 1);
    }
    cJSON_Delete(j);
}

static void
lg_on_response(lg_thread_t *t, lg_conn_t *c, const bench_resp_t *r, uint64_t now)
{
    bench_t *b = t->b;
    bench_counts_t *k = &t->run.c;
    k->answered++;
    t->last_answer = now;
    bh_record(&t->run.hist, now - c->t_sched);
    if (r->status >= 100 && r->status < 600)
        k->status[r->status]++;
    int ok;
    long code = lg_json_code(r->body, r->body_len, &ok);
    if (!ok) {
        k->nocode++;
        return;
    }
    k->codes[bench_code_slot(code)]++;
    if (b->baseline_mode || b->o.raw) /* not seckilld: no envelope rules, no tokens */
        return;
    if (bench_code_status(code) != r->status)
        k->mismatches++;
    size_t slot = (size_t)c->prod * (size_t)b->o.users + c->user;
    if (bench_code_is_demand(code) && b->elig[slot] < UINT16_MAX)
        b->elig[slot]++;
    if (code == 0) {
        if (b->wins[slot] < UINT16_MAX)
            b->wins[slot]++;
        lg_keep_token(t, c, r->body, r->body_len);
    }
}

static void
lg_on_readable(lg_thread_t *t, lg_conn_t *c, uint64_t now)
{
    for (;;) {
        if (c->inlen == sizeof(c->in)) {
            t->run.c.errors++; /* an answer bigger than 16 KB is not a /sec/kill answer */
            lg_close(t, c, now);
            return;
        }
        ssize_t n = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
        if (n > 0) {
            c->inlen += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        /* EOF or reset: a request in flight on it is lost (an error); an idle keep-alive close is not */
        if (c->state == LG_BUSY)
            t->run.c.errors++;
        lg_close(t, c, now);
        return;
    }
    if (c->state != LG_BUSY) {
        if (c->inlen > 0) { /* bytes nobody asked for */
            t->run.c.errors++;
            lg_close(t, c, now);
        }
        return;
    }
    bench_resp_t r;
    int rc = bench_parse_response(c->in, c->inlen, t->scratch, sizeof(t->scratch), &r);
    if (rc == 0)
        return;
    if (rc < 0 || r.consumed != c->inlen) {
        t->run.c.errors++;
        lg_close(t, c, now);
        return;
    }
    lg_on_response(t, c, &r, now);
    c->inlen = 0;
    if (r.close)
        lg_close(t, c, now);
    else
        lg_make_idle(t, c);
}

static void
lg_on_event(lg_thread_t *t, lg_conn_t *c, uint32_t events, uint64_t now)
{
    if (c->state == LG_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            lg_close(t, c, now);
            c->retry_at = now + LG_RETRY_NS;
            return;
        }
        lg_set_events(t, c, 0);
        lg_make_idle(t, c);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        lg_on_readable(t, c, now);
    if (c->state == LG_BUSY && (events & EPOLLOUT))
        lg_flush(t, c, now);
}

/* Per-request deadline, reconnects, and connects that hang. */
static void
lg_sweep(lg_thread_t *t, uint64_t now, int reconnect)
{
    uint64_t tmo = (uint64_t)t->b->o.timeout_ms * 1000000u;
    for (int i = 0; i < t->nconns; i++) {
        lg_conn_t *c = &t->conns[i];
        if (c->state == LG_BUSY && now - c->t_sent > tmo) {
            t->run.c.timeouts++;
            lg_close(t, c, now);
        } else if (c->state == LG_CONNECTING && now - c->t_sent > tmo) {
            lg_close(t, c, now);
            c->retry_at = now + LG_RETRY_NS;
        }
        if (reconnect && c->state == LG_DEAD && now >= c->retry_at)
            lg_open(t, c, now);
    }
}

/* Waits up to wait_ns for events: epoll_pwait2 takes nanoseconds, so an open-loop thread sleeps exactly until its
 * next scheduled send instead of spinning through the last millisecond (a spinning client steals the server's core
 * on a 2-core machine). */
static void
lg_poll(lg_thread_t *t, uint64_t wait_ns)
{
    struct epoll_event evs[256];
    struct timespec ts = {.tv_sec = (time_t)(wait_ns / 1000000000u), .tv_nsec = (long)(wait_ns % 1000000000u)};
    int n = epoll_pwait2(t->epfd, evs, 256, &ts, NULL);
    if (n < 0 && errno == ENOSYS)
        n = epoll_wait(t->epfd, evs, 256, (int)((wait_ns + 999999u) / 1000000u));
    uint64_t now = bench_now_ns();
    for (int i = 0; i < n; i++)
        lg_on_event(t, evs[i].data.ptr, evs[i].events, now);
}

static void *
lg_thread_main(void *arg)
{
    lg_thread_t *t = arg;
    bench_t *b = t->b;
    uint64_t now = bench_now_ns(), connect_deadline = now + 5000000000u;
    for (int i = 0; i < t->nconns; i++) {
        t->conns[i].fd = -1;
        lg_open(t, &t->conns[i], now);
    }
    int idle_n = 0;
    while ((now = bench_now_ns()) < connect_deadline) {
        idle_n = 0;
        for (int i = 0; i < t->nconns; i++)
            idle_n += t->conns[i].state == LG_IDLE;
        if (idle_n == t->nconns)
            break;
        lg_sweep(t, now, 1);
        lg_poll(t, 10000000u);
    }
    t->failed_setup = idle_n != t->nconns;
    pthread_barrier_wait(&b->ready);
    pthread_barrier_wait(&b->go); /* the main thread set t0 and t_end in between */
    if (t->failed_setup)
        return NULL;

    int open_loop = t->rate > 0;
    double interval = open_loop ? 1e9 / t->rate : 0;
    uint64_t scheduled_total = t->limit; /* open loop: requests due by t_end */
    if (open_loop) {
        double n = floor((double)(b->t_end - b->t0) / interval) + 1;
        if (n < (double)scheduled_total)
            scheduled_total = (uint64_t)n;
    }
    uint64_t drain_deadline = b->t_end + (uint64_t)b->o.timeout_ms * 1000000u + 1000000000u, last_sweep = 0;
    for (;;) {
        now = bench_now_ns();
        if (atomic_load(&b->interrupted) && scheduled_total > t->generated)
            scheduled_total = t->generated; /* Ctrl-C: send nothing more, collect the answers in flight */
        int stopping = now >= b->t_end || t->generated >= t->limit || atomic_load(&b->interrupted);
        if (open_loop) {
            uint64_t due = now < b->t0 ? 0 : (uint64_t)((double)(now - b->t0) / interval) + 1;
            if (due > scheduled_total)
                due = scheduled_total;
            while (t->generated < due && t->idle != NULL)
                lg_send(t, b->t0 + (uint64_t)((double)t->generated * interval), now);
        } else if (!stopping) {
            while (t->idle != NULL && t->generated < t->limit)
                lg_send(t, now, now);
        }
        int pending = open_loop && t->generated < scheduled_total;
        if (stopping && t->busy == 0 && !pending)
            break;
        if (now > drain_deadline) {
            t->run.c.unsent += open_loop ? scheduled_total - t->generated : 0;
            break;
        }
        if (now - last_sweep > 10000000u) {
            lg_sweep(t, now, !stopping || pending);
            last_sweep = now;
        }
        uint64_t wait_ns = 10000000u; /* the sweep period */
        if (open_loop && t->idle != NULL && pending) {
            uint64_t next = b->t0 + (uint64_t)((double)t->generated * interval);
            wait_ns = next <= now ? 0 : next - now < wait_ns ? next - now : wait_ns;
        }
        lg_poll(t, wait_ns);
    }
    /* Anything still in flight past the drain deadline was never answered. */
    for (int i = 0; i < t->nconns; i++) {
        if (t->conns[i].state == LG_BUSY)
            t->run.c.timeouts++;
        lg_close(t, &t->conns[i], now);
    }
    return NULL;
}

#endif
