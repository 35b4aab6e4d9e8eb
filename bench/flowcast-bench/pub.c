/* flowcast-bench publishers: HTTP/1.1 keep-alive connections (plain or TLS)
 * that create the workflows (flowcast) and publish changes, pipelined up to
 * --pipeline requests, each acknowledged in order. */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"
#include "parse.h"

static void pub_close(ctx *c, uint32_t k, uint64_t now)
{
    pub *p = &c->pubs[k];
    fcb_tls_free(&p->ssl);
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
    for (uint32_t j = 0; j < p->count; j++) {
        const req *q = &p->ring[(p->head + j) % c->o->pipeline];
        if (q->kind == REQ_PUBLISH) {
            c->r->pub_unknown++;
            c->expected_sent -= c->per_wf[q->wf];
        } else {
            c->creates_pending--;
        }
    }
    p->count = 0;
    p->rlen = p->wlen = p->woff = 0;
    p->state = PUB_CLOSED;
    p->not_before = now + 100000000u;
}

void fcb_pub_start(ctx *c, uint32_t k, uint64_t now)
{
    pub *p = &c->pubs[k];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        p->not_before = now + 100000000u;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    p->fd = fd;
    p->state = PUB_CONNECTING;
    struct sockaddr_in dst = fcb_pub_dst(c, k);
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS) {
        pub_close(c, k, now);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = PUB_TAG | k};
    epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void pub_set_events(ctx *c, uint32_t k, int want_out)
{
    pub *p = &c->pubs[k];
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u),
                             .data.u64 = PUB_TAG | k};
    epoll_ctl(c->ep, EPOLL_CTL_MOD, p->fd, &ev);
    p->want_out = (uint8_t)want_out;
}

void fcb_pub_flush(ctx *c, uint32_t k)
{
    pub *p = &c->pubs[k];
    if (p->state != PUB_OPEN) return; /* sent once connected (and TLS is up) */
    while (p->woff < p->wlen) {
        ssize_t n = fcb_io_send(p->fd, p->ssl, p->wbuf + p->woff, p->wlen - p->woff);
        if (n < 0) {
            if (n == FCB_IO_AGAIN) {
                if (!p->want_out) pub_set_events(c, k, 1);
                return;
            }
            pub_close(c, k, fcb_now_ns());
            return;
        }
        p->woff += (size_t)n;
    }
    p->woff = p->wlen = 0;
    if (p->want_out) pub_set_events(c, k, 0);
}

static void pub_append(pub *p, const char *data, size_t len)
{
    if (p->wlen + len > p->wcap) {
        size_t cap = p->wcap ? p->wcap * 2 : 4096;
        while (cap < p->wlen + len)
            cap *= 2;
        p->wbuf = realloc(p->wbuf, cap);
        if (p->wbuf == NULL) {
            fprintf(stderr, "flowcast-bench: out of memory\n");
            exit(1);
        }
        p->wcap = cap;
    }
    memcpy(p->wbuf + p->wlen, data, len);
    p->wlen += len;
}

void fcb_pub_request(ctx *c, uint32_t k, uint8_t kind, uint32_t wf)
{
    pub *p = &c->pubs[k];
    char id[96], body[512], head[512];
    fcb_wf_id(c->o, wf, id, sizeof(id));
    uint32_t seq = 0;
    const char *method, *path_fmt;
    int blen;
    uint64_t t = fcb_now_ns();
    if (kind == REQ_CREATE) {
        method = "POST";
        path_fmt = "/api/workflows";
        blen = snprintf(body, sizeof(body),
                        "{\"id\":\"%s\",\"name\":\"bench\",\"total_steps\":1000000,"
                        "\"status\":\"running\"}",
                        id);
        id[0] = '\0';
    } else if (c->o->target == FCB_FLOWCAST) {
        method = "PATCH";
        path_fmt = "/api/workflows/";
        blen = snprintf(body, sizeof(body), "{\"message\":\"%llu\"}", (unsigned long long)t);
    } else {
        /* The peers broadcast the body as it is: give it the shape and size
         * of flowcast's update object, plus the tool's own sequence. */
        method = "POST";
        path_fmt = "/pub/";
        seq = ++c->next_seq[(size_t)wf * c->P + k];
        blen = snprintf(body, sizeof(body),
                        "{\"workflow_id\":\"%s\",\"status\":\"running\",\"current_step\":1,"
                        "\"total_steps\":1000000,\"message\":\"%llu\","
                        "\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"seq\":%u,\"p\":%u}",
                        id, (unsigned long long)t, seq, k);
    }
    int hlen = snprintf(head, sizeof(head),
                        "%s %s%s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n",
                        method, path_fmt, id, c->o->host, c->o->port, blen);
    pub_append(p, head, (size_t)hlen);
    const char *auth = fcb_auth_header(c->o);
    pub_append(p, auth, strlen(auth));
    pub_append(p, "\r\n", 2);
    pub_append(p, body, (size_t)blen);
    req *q = &p->ring[(p->head + p->count) % c->o->pipeline];
    q->t = t;
    q->wf = wf;
    q->seq = seq;
    q->kind = kind;
    p->count++;
    if (kind == REQ_PUBLISH) {
        c->r->pub_sent++;
        c->expected_sent += c->per_wf[wf];
    }
}

static void on_response(ctx *c, uint32_t k, const fcb_http_resp *resp, const char *base,
                        uint64_t now)
{
    pub *p = &c->pubs[k];
    req q = p->ring[p->head];
    p->head = (p->head + 1) % c->o->pipeline;
    p->count--;
    int ok = resp->status >= 200 && resp->status < 300;
    if (q.kind == REQ_CREATE) {
        c->creates_pending--;
        if (!ok && resp->status != 409) {
            fprintf(stderr, "flowcast-bench: creating workflow %u: HTTP %d: %.*s\n", q.wf,
                    resp->status, (int)resp->body_len, base + resp->body_off);
            fcb_stop = 1;
        }
        return;
    }
    if (!ok) {
        c->r->pub_errors++;
        c->expected_sent -= c->per_wf[q.wf];
        if (c->errors_printed++ < 5)
            fprintf(stderr, "flowcast-bench: publish: HTTP %d: %.*s\n", resp->status,
                    (int)(resp->body_len > 200 ? 200 : resp->body_len), base + resp->body_off);
        return;
    }
    c->r->pub_acked++;
    c->r->expected += c->per_wf[q.wf];
    fcb_hist_record(&c->r->ack_hist, now - q.t);
    uint32_t slot = c->o->target == FCB_FLOWCAST ? 0 : k;
    uint32_t seq = q.seq;
    if (c->o->target == FCB_FLOWCAST) {
        uint64_t v;
        seq = fcb_json_u64(base + resp->body_off, resp->body_len, "seq", &v) == 0 ? (uint32_t)v : 0;
    }
    uint32_t *am = &c->acked_max[(size_t)q.wf * c->P + slot];
    if (seq > *am) *am = seq;
}

static void pub_read(ctx *c, uint32_t k)
{
    pub *p = &c->pubs[k];
    if (p->rcap - p->rlen < 16384) {
        p->rcap = p->rcap ? p->rcap * 2 : 65536;
        p->rbuf = realloc(p->rbuf, p->rcap);
        if (p->rbuf == NULL) {
            fprintf(stderr, "flowcast-bench: out of memory\n");
            exit(1);
        }
    }
    ssize_t n = fcb_io_recv(p->fd, p->ssl, p->rbuf + p->rlen, p->rcap - p->rlen);
    uint64_t now = fcb_now_ns();
    if (n <= 0) {
        if (n == FCB_IO_AGAIN) return;
        pub_close(c, k, now);
        return;
    }
    p->rlen += (size_t)n;
    size_t off = 0;
    while (off < p->rlen) {
        fcb_http_resp resp;
        int rc = fcb_http_resp_parse(p->rbuf + off, p->rlen - off, 0, &resp);
        if (rc == 0) break;
        if (rc < 0 || p->count == 0) {
            fprintf(stderr, "flowcast-bench: publisher %u: unexpected response bytes\n", k);
            pub_close(c, k, now);
            return;
        }
        on_response(c, k, &resp, p->rbuf + off, now);
        off += resp.total;
    }
    if (off > 0) {
        memmove(p->rbuf, p->rbuf + off, p->rlen - off);
        p->rlen -= off;
    }
}

void fcb_pub_event(ctx *c, uint32_t k, uint32_t events)
{
    pub *p = &c->pubs[k];
    if (p->state == PUB_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) {
            pub_close(c, k, fcb_now_ns());
            return;
        }
        if (c->tls) {
            p->ssl = fcb_tls_new(c->tls, p->fd);
            if (p->ssl == NULL) {
                pub_close(c, k, fcb_now_ns());
                return;
            }
            p->state = PUB_TLS;
        } else {
            p->state = PUB_OPEN;
            pub_set_events(c, k, p->wlen > 0);
            return;
        }
    }
    if (p->state == PUB_TLS) {
        uint32_t want = 0;
        int rc = fcb_tls_handshake(p->ssl, &want);
        if (rc < 0) {
            if (c->errors_printed++ < 5)
                fprintf(stderr, "flowcast-bench: publisher %u: TLS handshake failed\n", k);
            pub_close(c, k, fcb_now_ns());
            return;
        }
        if (rc == 0) {
            struct epoll_event ev = {.events = want, .data.u64 = PUB_TAG | k};
            epoll_ctl(c->ep, EPOLL_CTL_MOD, p->fd, &ev);
            p->want_out = want == EPOLLOUT;
            return;
        }
        if (c->r->tls_info[0] == '\0')
            fcb_tls_describe(p->ssl, c->r->tls_info, sizeof(c->r->tls_info));
        p->state = PUB_OPEN;
        pub_set_events(c, k, p->wlen > 0);
        if (p->wlen > 0) fcb_pub_flush(c, k);
        return;
    }
    if (events & EPOLLOUT) fcb_pub_flush(c, k);
    /* TLS may hold a decrypted response the socket no longer signals: read
     * until the library has nothing left (bounded: a few records at most). */
    for (int n = 0; n < 64 && p->fd >= 0 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)); n++) {
        pub_read(c, k);
        if (p->fd < 0 || p->ssl == NULL || SSL_pending(p->ssl) == 0) break;
    }
}

int fcb_pub_has_room(const ctx *c, uint32_t k)
{
    const pub *p = &c->pubs[k];
    return p->state == PUB_OPEN && p->count < c->o->pipeline;
}
