/* flowcast-bench event loop: subscriber WebSocket connections, publisher
 * HTTP/1.1 keep-alive connections and the phases of one run (publishers,
 * workflow creation, connect, settle, publish or idle, drain). Raw epoll on
 * one thread; per delivery the only work is one frame-header parse, a key
 * scan for seq and send time, and a histogram increment. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "parse.h"
#include "ws/frame.h"

#define RBUF_SIZE (512 * 1024)
#define PUB_TAG (UINT64_C(1) << 63)
#define MAX_FRAME (64u << 20)

enum { SUB_IDLE, SUB_QUEUED, SUB_CONNECTING, SUB_HANDSHAKE, SUB_OPEN, SUB_DEAD };
enum { PUB_CLOSED, PUB_CONNECTING, PUB_OPEN };
enum { REQ_PUBLISH, REQ_CREATE };

typedef struct sub {
    int fd;
    uint32_t wf;
    uint8_t state;
    uint8_t ready;     /* open and counted in ctx.ready */
    uint8_t got_first; /* flowcast: the current-state message arrived */
    uint8_t ever_ready;
    uint8_t is_down; /* dropped after being ready, not back yet */
    uint32_t stash_len, stash_cap;
    uint8_t *stash; /* partial frame carried to the next read; NULL when idle */
    uint64_t t_start;
    uint64_t not_before;
    uint32_t backoff_ms;
} sub;

typedef struct req {
    uint64_t t;
    uint32_t wf;
    uint32_t seq;
    uint8_t kind;
} req;

typedef struct pub {
    int fd;
    uint8_t state;
    uint8_t want_out;
    uint64_t not_before;
    char *rbuf;
    size_t rlen, rcap;
    char *wbuf;
    size_t wlen, woff, wcap;
    req *ring;
    uint32_t head, count;
} pub;

typedef struct ctx {
    const fcb_opts *o;
    fcb_result *r;
    int ep;
    uint32_t P; /* sequence slots per subscriber: publishers for peers, 1 for flowcast */
    sub *subs;
    uint32_t *last;      /* [sub * P + p] highest seq seen */
    uint32_t *per_wf;    /* subscribers per workflow */
    uint32_t *acked_max; /* [wf * P + p] highest acknowledged seq */
    uint32_t *next_seq;  /* [wf * P + p] peers: last seq sent */
    uint32_t *snap;      /* acked_max at the first drop (storm) */
    pub pubs[FCB_MAX_PUB];
    uint8_t *rbuf;
    uint32_t *q;
    uint32_t qhead, qlen;
    uint32_t connecting, ready, down, failed;
    uint64_t first_drop, first_connect_t, last_ready_t;
    uint64_t expected_sent, progress_seen, progress_t;
    uint64_t next_wf, creates_pending, errors_printed;
    uint64_t last_delivery_t;
    int running; /* publish phase */
    int publishing_done;
    struct sockaddr_in dst;
} ctx;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

uint64_t fcb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL) {
        fprintf(stderr, "flowcast-bench: out of memory\n");
        exit(1);
    }
    return p;
}

static int wf_id(const ctx *c, uint32_t wf, char *out, size_t cap)
{
    return snprintf(out, cap, "%s-%u", c->o->prefix, wf);
}

/* ---- subscribers ---- */

static void sub_enqueue(ctx *c, uint32_t i, uint64_t not_before)
{
    sub *s = &c->subs[i];
    s->state = SUB_QUEUED;
    s->not_before = not_before;
    c->q[(c->qhead + c->qlen) % c->o->subscribers] = i;
    c->qlen++;
}

static void sub_mark_ready(ctx *c, uint32_t i, uint64_t now)
{
    sub *s = &c->subs[i];
    if (s->ready) return;
    s->ready = 1;
    c->ready++;
    c->connecting--;
    c->last_ready_t = now;
    s->backoff_ms = 0;
    if (!s->ever_ready) {
        s->ever_ready = 1;
        fcb_hist_record(&c->r->connect_hist, now - s->t_start);
    }
    if (s->is_down) {
        s->is_down = 0;
        if (--c->down == 0 && c->r->storm_reconnected_s == 0)
            c->r->storm_reconnected_s = (double)(now - c->first_drop) / 1e9;
    }
}

static void sub_close_fd(sub *s)
{
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    free(s->stash);
    s->stash = NULL;
    s->stash_len = s->stash_cap = 0;
}

/* A connection attempt failed or an open connection ended. */
static void sub_drop(ctx *c, uint32_t i, uint64_t now)
{
    sub *s = &c->subs[i];
    sub_close_fd(s);
    if (s->ready) {
        s->ready = 0;
        c->ready--;
    } else if (s->state != SUB_DEAD && s->state != SUB_QUEUED && s->state != SUB_IDLE) {
        c->connecting--;
    }
    s->state = SUB_DEAD;
    if (s->ever_ready && !s->is_down) {
        c->r->disconnects++;
        s->is_down = 1;
        if (c->down++ == 0 && c->first_drop == 0) {
            c->first_drop = now;
            memcpy(c->snap, c->acked_max, sizeof(uint32_t) * c->o->workflows * c->P);
        }
    }
    if (c->o->reconnect && !g_stop) {
        uint32_t b = s->backoff_ms ? s->backoff_ms * 2 : 50;
        if (b > 1000) b = 1000;
        s->backoff_ms = b;
        uint64_t jitter = (uint64_t)(rand() % (int)b) * 1000000u;
        sub_enqueue(c, i, now + jitter + (s->ever_ready ? 0 : (uint64_t)b * 1000000u));
    } else if (!s->ever_ready) {
        c->failed++;
    }
}

static void sub_start(ctx *c, uint32_t i, uint64_t now)
{
    sub *s = &c->subs[i];
    s->t_start = now;
    if (c->first_connect_t == 0) c->first_connect_t = now;
    c->connecting++;
    s->state = SUB_CONNECTING;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (c->errors_printed++ < 5)
            fprintf(stderr, "flowcast-bench: socket: %s\n", strerror(errno));
        sub_drop(c, i, now);
        return;
    }
    s->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (i % c->o->src_addrs));
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(fd, (struct sockaddr *)&c->dst, sizeof(c->dst)) < 0 && errno != EINPROGRESS)) {
        sub_drop(c, i, now);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = i};
    epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void sub_send_handshake(ctx *c, uint32_t i, uint64_t now)
{
    sub *s = &c->subs[i];
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        sub_drop(c, i, now);
        return;
    }
    char id[96], path[192], req_buf[512];
    wf_id(c, s->wf, id, sizeof(id));
    if (c->o->target == FCB_FLOWCAST) {
        if (s->got_first)
            snprintf(path, sizeof(path), "/api/workflows/%s/updates?since=%u", id,
                     c->last[(size_t)i * c->P]);
        else
            snprintf(path, sizeof(path), "/api/workflows/%s/updates", id);
    } else {
        snprintf(path, sizeof(path), "/sub/%s", id);
    }
    int n = snprintf(req_buf, sizeof(req_buf),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, c->o->host, c->o->port);
    if (send(s->fd, req_buf, (size_t)n, MSG_NOSIGNAL) != n) {
        sub_drop(c, i, now);
        return;
    }
    s->state = SUB_HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
    epoll_ctl(c->ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static void on_message(ctx *c, uint32_t i, const uint8_t *data, size_t len, uint64_t now)
{
    sub *s = &c->subs[i];
    fcb_msg m;
    if (fcb_msg_parse((const char *)data, len, &m) < 0) {
        c->r->unparsed++;
        return;
    }
    uint32_t *last = &c->last[(size_t)i * c->P];
    uint32_t *lastp = &last[c->o->target == FCB_FLOWCAST ? 0 : (m.pub < c->P ? m.pub : 0)];
    int resync = c->o->target == FCB_FLOWCAST && s->got_first && m.seq != (uint64_t)*lastp + 1 &&
                 fcb_msg_resync((const char *)data, len);
    if (c->o->target == FCB_FLOWCAST && (!s->got_first || resync)) {
        if (resync) c->r->resyncs++;
        s->got_first = 1;
        last[0] = (uint32_t)m.seq;
        sub_mark_ready(c, i, now);
        return;
    }
    uint32_t p = c->o->target == FCB_FLOWCAST ? 0 : m.pub;
    if (p >= c->P) {
        c->r->unparsed++;
        return;
    }
    uint32_t seq = (uint32_t)m.seq;
    if (seq > last[p]) {
        if (seq > last[p] + 1) c->r->lost += seq - last[p] - 1;
        last[p] = seq;
        c->r->deliveries++;
        c->last_delivery_t = now;
        if (m.has_sent && m.sent_ns > 0 && m.sent_ns <= now)
            fcb_hist_record(&c->r->lat_hist, now - m.sent_ns);
    } else if (seq == last[p]) {
        c->r->duplicates++;
    } else {
        c->r->out_of_order++;
    }
}

/* Answers a ping with a pong carrying its payload; client frames are
 * masked, and a zero mask key leaves the payload bytes as they are. */
static void send_control(sub *s, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t f[6 + 125];
    if (len > 125) len = 125;
    f[0] = (uint8_t)(0x80 | opcode);
    f[1] = (uint8_t)(0x80 | len);
    memset(f + 2, 0, 4);
    memcpy(f + 6, payload, len);
    (void)!send(s->fd, f, 6 + len, MSG_NOSIGNAL);
}

static void sub_read(ctx *c, uint32_t i)
{
    sub *s = &c->subs[i];
    uint8_t *buf = c->rbuf;
    size_t off = s->stash_len;
    if (off) memcpy(buf, s->stash, off);
    ssize_t n = recv(s->fd, buf + off, RBUF_SIZE - off, 0);
    uint64_t now = fcb_now_ns();
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        sub_drop(c, i, now);
        return;
    }
    s->stash_len = 0;
    size_t len = off + (size_t)n, p = 0;
    if (s->state == SUB_HANDSHAKE) {
        fcb_http_resp resp;
        int rc = fcb_http_resp_parse((const char *)buf, len, 1, &resp);
        if (rc == 0) goto stash;
        if (rc < 0 || resp.status != 101) {
            if (c->errors_printed++ < 5)
                fprintf(stderr, "flowcast-bench: subscriber %u: handshake answered %d\n", i,
                        resp.status);
            sub_drop(c, i, now);
            return;
        }
        s->state = SUB_OPEN;
        p = resp.head_len;
        if (c->o->target != FCB_FLOWCAST || s->got_first) sub_mark_ready(c, i, now);
    }
    while (p < len) {
        fc_ws_header h;
        int hl = fc_ws_header_parse(buf + p, len - p, 0, MAX_FRAME, &h);
        if (hl < 0) {
            if (c->errors_printed++ < 5)
                fprintf(stderr, "flowcast-bench: subscriber %u: bad frame (%d)\n", i, -hl);
            sub_drop(c, i, now);
            return;
        }
        if (hl == 0 || len - p - (size_t)hl < h.payload_len) break;
        const uint8_t *payload = buf + p + hl;
        size_t plen = (size_t)h.payload_len;
        switch (h.opcode) {
        case FC_WS_OP_TEXT:
        case FC_WS_OP_BINARY:
        case FC_WS_OP_CONT:
            on_message(c, i, payload, plen, now);
            break;
        case FC_WS_OP_PING:
            send_control(s, FC_WS_OP_PONG, payload, plen);
            break;
        case FC_WS_OP_CLOSE:
            send_control(s, FC_WS_OP_CLOSE, payload, plen < 2 ? plen : 2);
            sub_drop(c, i, now);
            return;
        default:
            break;
        }
        p += (size_t)hl + plen;
    }
stash:
    if (p < len) {
        size_t rest = len - p;
        if (rest > s->stash_cap) {
            size_t cap = rest < 512 ? 512 : rest;
            uint8_t *ns = realloc(s->stash, cap);
            if (ns == NULL) {
                sub_drop(c, i, now);
                return;
            }
            s->stash = ns;
            s->stash_cap = (uint32_t)cap;
        }
        memcpy(s->stash, buf + p, rest);
        s->stash_len = (uint32_t)rest;
    } else if (s->stash_cap > 4096) {
        free(s->stash);
        s->stash = NULL;
        s->stash_cap = 0;
    }
}

static void on_sub_event(ctx *c, uint32_t i, uint32_t events)
{
    sub *s = &c->subs[i];
    if (s->state == SUB_CONNECTING) {
        sub_send_handshake(c, i, fcb_now_ns());
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) sub_read(c, i);
}

/* ---- publishers ---- */

static void pub_close(ctx *c, uint32_t k, uint64_t now)
{
    pub *p = &c->pubs[k];
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

static void pub_start(ctx *c, uint32_t k, uint64_t now)
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
    if (connect(fd, (struct sockaddr *)&c->dst, sizeof(c->dst)) < 0 && errno != EINPROGRESS) {
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

static void pub_flush(ctx *c, uint32_t k)
{
    pub *p = &c->pubs[k];
    while (p->woff < p->wlen) {
        ssize_t n = send(p->fd, p->wbuf + p->woff, p->wlen - p->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
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

static void pub_request(ctx *c, uint32_t k, uint8_t kind, uint32_t wf)
{
    pub *p = &c->pubs[k];
    char id[96], body[512], head[512];
    wf_id(c, wf, id, sizeof(id));
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
                        "Content-Length: %d\r\n\r\n",
                        method, path_fmt, id, c->o->host, c->o->port, blen);
    pub_append(p, head, (size_t)hlen);
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
            g_stop = 1;
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
    ssize_t n = recv(p->fd, p->rbuf + p->rlen, p->rcap - p->rlen, 0);
    uint64_t now = fcb_now_ns();
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
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

static void on_pub_event(ctx *c, uint32_t k, uint32_t events)
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
        p->state = PUB_OPEN;
        pub_set_events(c, k, p->wlen > 0);
        return;
    }
    if (events & EPOLLOUT) pub_flush(c, k);
    if (p->fd >= 0 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP))) pub_read(c, k);
}

/* ---- the loop ---- */

static void poll_once(ctx *c, uint64_t timeout_ns)
{
    struct epoll_event evs[1024];
    struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000u),
                          .tv_nsec = (long)(timeout_ns % 1000000000u)};
    int n = epoll_pwait2(c->ep, evs, 1024, &ts, NULL);
    for (int j = 0; j < n; j++) {
        uint64_t d = evs[j].data.u64;
        if (d & PUB_TAG)
            on_pub_event(c, (uint32_t)(d & ~PUB_TAG), evs[j].events);
        else
            on_sub_event(c, (uint32_t)d, evs[j].events);
    }
}

/* Starts queued subscriber connections whose time has come, keeping at
 * most connect_conc handshakes in flight; reopens closed publishers. */
static void start_connections(ctx *c, uint64_t now)
{
    while (c->qlen > 0 && c->connecting < c->o->connect_conc) {
        uint32_t i = c->q[c->qhead];
        if (c->subs[i].not_before > now) break;
        c->qhead = (c->qhead + 1) % c->o->subscribers;
        c->qlen--;
        sub_start(c, i, now);
    }
    for (uint32_t k = 0; k < c->o->publishers; k++)
        if (c->pubs[k].state == PUB_CLOSED && c->pubs[k].not_before <= now) pub_start(c, k, now);
}

static int pub_has_room(const ctx *c, uint32_t k)
{
    const pub *p = &c->pubs[k];
    return p->state == PUB_OPEN && p->count < c->o->pipeline;
}

static int window_open(ctx *c, uint64_t now)
{
    if (c->o->window == 0 || c->o->subscribers == 0) return 1;
    uint64_t done = c->r->deliveries + c->r->lost;
    if (done != c->progress_seen) {
        c->progress_seen = done;
        c->progress_t = now;
    }
    uint64_t per = c->o->subscribers / c->o->workflows;
    if (per == 0) per = 1;
    if (c->expected_sent < done + (uint64_t)c->o->window * per) return 1;
    return now - c->progress_t > 1000000000u; /* stalled: do not wait forever */
}

/* Sends what the schedule allows now; returns the ns until the next
 * fixed-rate send is due (or a default poll interval). */
static uint64_t publish_some(ctx *c, uint64_t now, uint64_t start)
{
    const fcb_opts *o = c->o;
    uint64_t wait = 5000000u;
    uint64_t budget;
    if (o->rate > 0) {
        uint64_t due = (uint64_t)((double)(now - start) / 1e9 * o->rate) + 1;
        budget = due > c->r->pub_sent ? due - c->r->pub_sent : 0;
        double next_t = (double)(c->r->pub_sent + 1) / o->rate * 1e9;
        uint64_t next = start + (uint64_t)next_t;
        wait = next > now ? next - now : 0;
    } else {
        budget = UINT64_MAX;
    }
    int sent_any = 1;
    uint32_t touched[FCB_MAX_PUB] = {0};
    while (budget > 0 && sent_any) {
        sent_any = 0;
        for (uint32_t k = 0; k < o->publishers && budget > 0; k++) {
            if (!pub_has_room(c, k) || !window_open(c, now)) continue;
            uint32_t wf = (uint32_t)(c->next_wf++ % o->workflows);
            pub_request(c, k, REQ_PUBLISH, wf);
            touched[k] = 1;
            budget--;
            sent_any = 1;
        }
    }
    for (uint32_t k = 0; k < o->publishers; k++)
        if (touched[k]) pub_flush(c, k);
    if (o->rate > 0 && budget > 0)
        wait = 200000u; /* behind schedule: publishers full, retry soon */
    return wait > 20000000u ? 20000000u : wait;
}

static long raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return 1024;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

static int resumed_all(ctx *c)
{
    for (uint32_t i = 0; i < c->o->subscribers; i++) {
        const sub *s = &c->subs[i];
        if (!s->ready) return 0;
        if (c->last[(size_t)i * c->P] < c->snap[(size_t)s->wf * c->P]) return 0;
    }
    return 1;
}

int fcb_run(const fcb_opts *o, fcb_result *r)
{
    ctx cc = {0}, *c = &cc;
    c->o = o;
    c->r = r;
    c->P = o->target == FCB_FLOWCAST ? 1 : o->publishers;
    fcb_hist_init(&r->connect_hist);
    fcb_hist_init(&r->lat_hist);
    fcb_hist_init(&r->ack_hist);
    r->fd_limit = raise_nofile();
    r->max_conns = r->fd_limit - 16 - (long)o->publishers;
    if (!o->quiet)
        fprintf(stderr,
                "flowcast-bench: open-file limit %ld: room for %ld subscriber connections\n",
                r->fd_limit, r->max_conns);
    if ((long)o->subscribers > r->max_conns) {
        fprintf(stderr, "flowcast-bench: %u subscribers exceed the %ld this process can open\n",
                o->subscribers, r->max_conns);
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    c->dst.sin_family = AF_INET;
    c->dst.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &c->dst.sin_addr) != 1) {
        fprintf(stderr, "flowcast-bench: --host must be an IPv4 address\n");
        return -1;
    }
    c->ep = epoll_create1(EPOLL_CLOEXEC);
    c->rbuf = xcalloc(1, RBUF_SIZE);
    c->subs = xcalloc(o->subscribers, sizeof(sub));
    c->q = xcalloc(o->subscribers, sizeof(uint32_t));
    c->last = xcalloc((size_t)o->subscribers * c->P, sizeof(uint32_t));
    c->per_wf = xcalloc(o->workflows, sizeof(uint32_t));
    c->acked_max = xcalloc((size_t)o->workflows * c->P, sizeof(uint32_t));
    c->next_seq = xcalloc((size_t)o->workflows * c->P, sizeof(uint32_t));
    c->snap = xcalloc((size_t)o->workflows * c->P, sizeof(uint32_t));
    for (uint32_t i = 0; i < o->subscribers; i++) {
        c->subs[i].fd = -1;
        c->subs[i].wf = i % o->workflows;
        c->per_wf[i % o->workflows]++;
    }
    for (uint32_t k = 0; k < o->publishers; k++) {
        c->pubs[k].fd = -1;
        c->pubs[k].ring = xcalloc(o->pipeline, sizeof(req));
    }
    /* Publishers, then the workflows (flowcast). */
    uint64_t now = fcb_now_ns(), deadline = now + 10000000000u;
    int rc = 0;
    for (;;) {
        start_connections(c, now);
        uint32_t open = 0;
        for (uint32_t k = 0; k < o->publishers; k++)
            open += c->pubs[k].state == PUB_OPEN;
        if (open == o->publishers) break;
        if (now > deadline || g_stop) {
            fprintf(stderr, "flowcast-bench: cannot connect to %s:%d\n", o->host, o->port);
            rc = -1;
            goto out;
        }
        poll_once(c, 10000000u);
        now = fcb_now_ns();
    }
    if (o->target == FCB_FLOWCAST && o->create) {
        uint32_t next = 0;
        deadline = now + 60000000000u;
        while ((next < o->workflows || c->creates_pending > 0) && !g_stop && now < deadline) {
            for (uint32_t k = 0; k < o->publishers && next < o->workflows; k++) {
                if (!pub_has_room(c, k)) continue;
                pub_request(c, k, REQ_CREATE, next++);
                c->creates_pending++;
                pub_flush(c, k);
            }
            poll_once(c, 10000000u);
            now = fcb_now_ns();
            start_connections(c, now);
        }
        if (g_stop || c->creates_pending > 0) {
            fprintf(stderr, "flowcast-bench: creating the workflows failed\n");
            rc = -1;
            goto out;
        }
    }

    /* Subscribers: a warm-up batch (1%, at most 100), then the memory the rest
     * cost is measured from there. */
    r->warm =
        o->subscribers >= 1000 ? (o->subscribers / 100 < 100 ? o->subscribers / 100 : 100) : 0;
    if (r->warm == 0) fcb_proc_sample_pids(o->pids, o->npids, &r->srv_before);
    deadline = now + (uint64_t)(60 + o->subscribers / 200) * 1000000000u;
    for (uint32_t i = 0, queued = 0; queued < o->subscribers;) {
        uint32_t batch_end = queued < r->warm ? r->warm : o->subscribers;
        for (; i < batch_end; i++)
            sub_enqueue(c, i, 0);
        queued = batch_end;
        while (c->ready + c->failed < queued && !g_stop && now < deadline) {
            start_connections(c, now);
            poll_once(c, c->qlen > 0 && c->connecting < o->connect_conc ? 1000000u : 10000000u);
            now = fcb_now_ns();
        }
        if (queued == r->warm) fcb_proc_sample_pids(o->pids, o->npids, &r->srv_before);
        if (g_stop || now >= deadline) break;
    }
    r->connected = c->ready;
    r->connect_failed = o->subscribers - c->ready;
    r->connect_s = c->first_connect_t ? (double)(c->last_ready_t - c->first_connect_t) / 1e9 : 0;
    if (!o->quiet)
        fprintf(stderr, "flowcast-bench: %u/%u subscribers ready in %.3f s\n", c->ready,
                o->subscribers, r->connect_s);

    /* Settle: let the servers finish registering; answer pings meanwhile. */
    uint64_t until = now + (uint64_t)(o->settle * 1e9);
    while (now < until && !g_stop) {
        start_connections(c, now);
        poll_once(c, until - now < 10000000u ? until - now : 10000000u);
        now = fcb_now_ns();
    }
    fcb_proc_sample_pids(o->pids, o->npids, &r->srv_connected);

    /* Publish (or idle) for the duration. */
    fcb_proc_sample_pids(o->pids, o->npids, &r->srv_start);
    double self0 = fcb_proc_self_cpu();
    uint64_t start = fcb_now_ns();
    until = start + (uint64_t)(o->duration * 1e9);
    now = start;
    c->progress_t = now;
    uint64_t resume_check = 0;
    while (now < until && !g_stop) {
        start_connections(c, now);
        uint64_t wait = o->publish ? publish_some(c, now, start) : 10000000u;
        if (c->first_drop && c->down == 0 && r->storm_resumed_s == 0 && now >= resume_check) {
            resume_check = now + 5000000u;
            if (resumed_all(c)) r->storm_resumed_s = (double)(now - c->first_drop) / 1e9;
        }
        if (wait > until - now) wait = until - now;
        poll_once(c, wait);
        now = fcb_now_ns();
    }
    r->run_s = (double)(now - start) / 1e9;

    /* Drain: wait for acks and deliveries of what was sent. */
    until = now + (uint64_t)(o->drain * 1e9);
    uint64_t quiet_since = now, seen = r->deliveries;
    while (o->publish && now < until && !g_stop) {
        uint32_t inflight = 0;
        for (uint32_t k = 0; k < o->publishers; k++)
            inflight += c->pubs[k].count;
        if (inflight == 0 && r->deliveries + r->lost >= r->expected) break;
        if (r->deliveries != seen) {
            seen = r->deliveries;
            quiet_since = now;
        } else if (inflight == 0 && now - quiet_since > 1000000000u) {
            break;
        }
        start_connections(c, now);
        if (c->first_drop && c->down == 0 && r->storm_resumed_s == 0 && resumed_all(c))
            r->storm_resumed_s = (double)(now - c->first_drop) / 1e9;
        poll_once(c, 5000000u);
        now = fcb_now_ns();
    }
    fcb_proc_sample_pids(o->pids, o->npids, &r->srv_end);
    r->self_cpu_s = fcb_proc_self_cpu() - self0;
    r->cpu_window_s = (double)(fcb_now_ns() - start) / 1e9;
    r->span_s = (double)((c->last_delivery_t > start ? c->last_delivery_t : now) - start) / 1e9;

    /* What never arrived: each subscriber against the acknowledged maximum. */
    for (uint32_t i = 0; i < o->subscribers; i++) {
        if (!c->subs[i].ever_ready) continue;
        for (uint32_t p = 0; p < c->P; p++) {
            uint32_t want = c->acked_max[(size_t)c->subs[i].wf * c->P + p];
            uint32_t have = c->last[(size_t)i * c->P + p];
            if (want > have) r->lost += want - have;
        }
    }
out:
    for (uint32_t i = 0; i < o->subscribers; i++)
        sub_close_fd(&c->subs[i]);
    for (uint32_t k = 0; k < o->publishers; k++) {
        if (c->pubs[k].fd >= 0) close(c->pubs[k].fd);
        free(c->pubs[k].ring);
        free(c->pubs[k].rbuf);
        free(c->pubs[k].wbuf);
    }
    close(c->ep);
    free(c->rbuf);
    free(c->subs);
    free(c->q);
    free(c->last);
    free(c->per_wf);
    free(c->acked_max);
    free(c->next_seq);
    free(c->snap);
    return rc;
}
