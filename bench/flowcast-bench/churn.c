/* flowcast-bench connect churn (--churn N): connections opened and closed
 * one after another, --connect-concurrency at a time, to measure what a
 * server spends per connect: a full TLS handshake (stage tls: handshake,
 * close_notify, wait for the server to close), or a whole WebSocket connect
 * (stage ws: TCP, TLS with --tls, the upgrade with --token's credential, up
 * to the 101). Every connection is bounded by a timeout, the run by the
 * count and --duration. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "parse.h"

#define CONN_TIMEOUT_NS (5 * UINT64_C(1000000000))
#define HEAD_MAX 1024

enum { CH_FREE, CH_CONNECT, CH_TLS, CH_UPGRADE, CH_SHUT };

typedef struct churn_conn {
    int fd;
    uint8_t state;
    SSL *ssl;
    uint64_t t0;
    size_t hlen;
    char head[HEAD_MAX];
} churn_conn;

typedef struct churn {
    ctx *c;
    int ep;
    churn_conn *conns;
    uint32_t inflight;
    uint64_t started;
    char path[192];
} churn;

/* Ends connection k: ok 1 went through its stage, 0 failed, -1 cut off
 * by the end of the run (neither). */
static void conn_end(churn *ch, uint32_t k, int ok)
{
    churn_conn *cn = &ch->conns[k];
    fcb_result *r = ch->c->r;
    if (ok > 0) {
        r->churn_done++;
        fcb_hist_record(&r->connect_hist, fcb_now_ns() - cn->t0);
    } else if (ok == 0) {
        r->churn_failed++;
    }
    /* Stage ws: a close_notify before the close, as a polite client does. */
    if (ok > 0 && cn->ssl != NULL && cn->state == CH_UPGRADE) SSL_shutdown(cn->ssl);
    fcb_tls_free(&cn->ssl);
    if (cn->fd >= 0) close(cn->fd);
    cn->fd = -1;
    cn->state = CH_FREE;
    ch->inflight--;
}

static void conn_events(churn *ch, uint32_t k, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = k};
    epoll_ctl(ch->ep, EPOLL_CTL_MOD, ch->conns[k].fd, &ev);
}

static void conn_start(churn *ch, uint32_t k, uint64_t now)
{
    churn_conn *cn = &ch->conns[k];
    const fcb_opts *o = ch->c->o;
    cn->t0 = now;
    cn->hlen = 0;
    cn->state = CH_CONNECT;
    ch->inflight++;
    cn->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (cn->fd < 0) {
        conn_end(ch, k, 0);
        return;
    }
    int one = 1;
    setsockopt(cn->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(ch->started % o->src_addrs));
    ch->started++;
    if (bind(cn->fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(cn->fd, (struct sockaddr *)&ch->c->dst, sizeof(ch->c->dst)) < 0 &&
         errno != EINPROGRESS)) {
        conn_end(ch, k, 0);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = k};
    epoll_ctl(ch->ep, EPOLL_CTL_ADD, cn->fd, &ev);
}

/* The transport is up (TCP, and TLS with --tls): go on with the stage. */
static void conn_ready(churn *ch, uint32_t k)
{
    churn_conn *cn = &ch->conns[k];
    if (ch->c->o->stage == FCB_STAGE_TLS) {
        /* close_notify, then the server's close proves it finished its side. */
        if (cn->ssl != NULL)
            SSL_shutdown(cn->ssl);
        else
            shutdown(cn->fd, SHUT_WR);
        cn->state = CH_SHUT;
        conn_events(ch, k, EPOLLIN);
        return;
    }
    char request[FCB_TOKEN_MAX + 512];
    int n = fcb_ws_request(ch->c->o, ch->path, request, sizeof(request));
    if (n < 0 || fcb_io_send(cn->fd, cn->ssl, request, (size_t)n) != n) {
        conn_end(ch, k, 0);
        return;
    }
    cn->state = CH_UPGRADE;
    conn_events(ch, k, EPOLLIN);
}

static void conn_tls(churn *ch, uint32_t k)
{
    churn_conn *cn = &ch->conns[k];
    uint32_t want = 0;
    int rc = fcb_tls_handshake(cn->ssl, &want);
    if (rc < 0) {
        if (ch->c->errors_printed++ < 5)
            fprintf(stderr, "flowcast-bench: churn: TLS handshake failed\n");
        conn_end(ch, k, 0);
    } else if (rc == 0) {
        conn_events(ch, k, want);
    } else {
        if (ch->c->r->tls_info[0] == '\0')
            fcb_tls_describe(cn->ssl, ch->c->r->tls_info, sizeof(ch->c->r->tls_info));
        conn_ready(ch, k);
    }
}

static void conn_read(churn *ch, uint32_t k)
{
    churn_conn *cn = &ch->conns[k];
    if (cn->state == CH_SHUT) {
        char scratch[4096];
        for (int i = 0; i < 16; i++) { /* tickets, then the server's close */
            ssize_t n = fcb_io_recv(cn->fd, cn->ssl, scratch, sizeof(scratch));
            if (n == FCB_IO_AGAIN) return;
            if (n <= 0) {
                conn_end(ch, k, 1); /* EOF or reset: the server is done */
                return;
            }
        }
        return;
    }
    ssize_t n = fcb_io_recv(cn->fd, cn->ssl, cn->head + cn->hlen, HEAD_MAX - cn->hlen);
    if (n == FCB_IO_AGAIN) return;
    if (n <= 0) {
        conn_end(ch, k, 0);
        return;
    }
    cn->hlen += (size_t)n;
    fcb_http_resp resp;
    int rc = fcb_http_resp_parse(cn->head, cn->hlen, 1, &resp);
    if (rc == 0 && cn->hlen < HEAD_MAX) return;
    if (rc <= 0 || resp.status != 101) {
        if (ch->c->errors_printed++ < 5)
            fprintf(stderr, "flowcast-bench: churn: upgrade answered %d\n",
                    rc > 0 ? resp.status : 0);
        conn_end(ch, k, 0);
        return;
    }
    conn_end(ch, k, 1);
}

static void conn_event(churn *ch, uint32_t k, uint32_t events)
{
    churn_conn *cn = &ch->conns[k];
    if (cn->state == CH_CONNECT) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            conn_end(ch, k, 0);
            return;
        }
        if (ch->c->tls == NULL) {
            conn_ready(ch, k);
            return;
        }
        if ((cn->ssl = fcb_tls_new(ch->c->tls, cn->fd)) == NULL) {
            conn_end(ch, k, 0);
            return;
        }
        cn->state = CH_TLS;
    }
    if (cn->state == CH_TLS) {
        conn_tls(ch, k);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(ch, k);
}

int fcb_churn_run(ctx *c)
{
    const fcb_opts *o = c->o;
    fcb_result *r = c->r;
    churn chs = {.c = c}, *ch = &chs;
    char id[96];
    fcb_wf_id(o, 0, id, sizeof(id));
    if (o->target == FCB_FLOWCAST)
        snprintf(ch->path, sizeof(ch->path), "/api/workflows/%s/updates", id);
    else
        snprintf(ch->path, sizeof(ch->path), "/sub/%s", id);
    ch->ep = epoll_create1(EPOLL_CLOEXEC);
    if (ch->ep < 0) return -1;
    uint32_t conc = o->connect_conc < o->churn ? o->connect_conc : o->churn;
    ch->conns = fcb_xcalloc(conc, sizeof(churn_conn));
    for (uint32_t k = 0; k < conc; k++)
        ch->conns[k].fd = -1;

    fcb_proc_sample_pids(o->pids, o->npids, &r->srv_start);
    r->srv_before = r->srv_connected = r->srv_start;
    double self0 = fcb_proc_self_cpu();
    uint64_t start = fcb_now_ns(), now = start, next_sweep = start;
    uint64_t until = start + (uint64_t)(o->duration * 1e9);
    while ((ch->started < o->churn || ch->inflight > 0) && now < until && !fcb_stop) {
        for (uint32_t k = 0; k < conc && ch->started < o->churn; k++)
            if (ch->conns[k].state == CH_FREE) conn_start(ch, k, now);
        struct epoll_event evs[256];
        int n = epoll_wait(ch->ep, evs, 256, 10);
        for (int j = 0; j < n; j++)
            conn_event(ch, (uint32_t)evs[j].data.u64, evs[j].events);
        now = fcb_now_ns();
        if (now >= next_sweep) { /* connections the server never finished */
            next_sweep = now + 100000000u;
            for (uint32_t k = 0; k < conc; k++)
                if (ch->conns[k].state != CH_FREE && now - ch->conns[k].t0 > CONN_TIMEOUT_NS)
                    conn_end(ch, k, 0);
        }
    }
    fcb_proc_sample_pids(o->pids, o->npids, &r->srv_end);
    r->self_cpu_s = fcb_proc_self_cpu() - self0;
    r->churn_s = (double)(fcb_now_ns() - start) / 1e9;
    r->cpu_window_s = r->churn_s;
    r->run_s = r->churn_s;
    for (uint32_t k = 0; k < conc; k++)
        if (ch->conns[k].state != CH_FREE) conn_end(ch, k, -1);
    free(ch->conns);
    close(ch->ep);
    if (!o->quiet)
        fprintf(stderr, "flowcast-bench: churn: %llu done, %llu failed in %.3f s\n",
                (unsigned long long)r->churn_done, (unsigned long long)r->churn_failed, r->churn_s);
    return 0;
}
