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

#include "loop.h"
#include "parse.h"
#include "ws/frame.h"

#define RBUF_SIZE (512 * 1024)
#define MAX_FRAME (64u << 20)

volatile sig_atomic_t fcb_stop;

static void on_signal(int sig)
{
    (void)sig;
    fcb_stop = 1;
}

uint64_t fcb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void *fcb_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL) {
        fprintf(stderr, "flowcast-bench: out of memory\n");
        exit(1);
    }
    return p;
}

int fcb_wf_id(const fcb_opts *o, uint32_t wf, char *out, size_t cap)
{
    return snprintf(out, cap, "%s-%u", o->prefix, wf);
}

const char *fcb_auth_header(const fcb_opts *o)
{
    static char line[FCB_TOKEN_MAX + 32];
    if (o->token == NULL) return "";
    if (line[0] == '\0') snprintf(line, sizeof(line), "Authorization: Bearer %s\r\n", o->token);
    return line;
}

int fcb_ws_request(const fcb_opts *o, const char *path, char *buf, size_t cap)
{
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, o->host, o->port, fcb_auth_header(o));
    return n > 0 && (size_t)n < cap ? n : -1;
}

/* ---- subscribers ---- */

struct sockaddr_in fcb_sub_dst(const ctx *c, uint32_t i)
{
    struct sockaddr_in a = c->dst;
    if (c->o->nsub_ports > 0) a.sin_port = htons((uint16_t)c->o->sub_ports[c->subs[i].port_ix]);
    return a;
}

struct sockaddr_in fcb_pub_dst(const ctx *c, uint32_t k)
{
    struct sockaddr_in a = c->dst;
    if (c->o->npub_ports > 0)
        a.sin_port = htons((uint16_t)c->o->pub_ports[k % (uint32_t)c->o->npub_ports]);
    return a;
}

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
    fcb_tls_free(&s->ssl);
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
    if (c->o->reconnect && !fcb_stop) {
        /* In a cluster the next attempt goes to the next node. */
        if (c->o->nsub_ports > 1) s->port_ix = (uint8_t)((s->port_ix + 1) % c->o->nsub_ports);
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
    struct sockaddr_in dst = fcb_sub_dst(c, i);
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)) {
        sub_drop(c, i, now);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = i};
    epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void sub_set_events(ctx *c, uint32_t i, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = i};
    epoll_ctl(c->ep, EPOLL_CTL_MOD, c->subs[i].fd, &ev);
}

static void sub_send_handshake(ctx *c, uint32_t i, uint64_t now)
{
    sub *s = &c->subs[i];
    char id[96], path[192], req_buf[FCB_TOKEN_MAX + 512];
    fcb_wf_id(c->o, s->wf, id, sizeof(id));
    if (c->o->target == FCB_FLOWCAST) {
        if (s->got_first)
            snprintf(path, sizeof(path), "/api/workflows/%s/updates?since=%u", id,
                     c->last[(size_t)i * c->P]);
        else
            snprintf(path, sizeof(path), "/api/workflows/%s/updates", id);
    } else {
        snprintf(path, sizeof(path), "/sub/%s", id);
    }
    int n = fcb_ws_request(c->o, path, req_buf, sizeof(req_buf));
    /* A fresh connection's socket buffer takes the whole request at once. */
    if (n < 0 || fcb_io_send(s->fd, s->ssl, req_buf, (size_t)n) != n) {
        sub_drop(c, i, now);
        return;
    }
    s->state = SUB_HANDSHAKE;
    sub_set_events(c, i, EPOLLIN);
}

/* The TCP connection is up (or failed): start TLS or send the upgrade. */
static void sub_connected(ctx *c, uint32_t i, uint64_t now)
{
    sub *s = &c->subs[i];
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        sub_drop(c, i, now);
        return;
    }
    if (c->tls == NULL) {
        sub_send_handshake(c, i, now);
        return;
    }
    s->ssl = fcb_tls_new(c->tls, s->fd);
    if (s->ssl == NULL) {
        sub_drop(c, i, now);
        return;
    }
    s->state = SUB_TLS;
}

static void sub_tls_step(ctx *c, uint32_t i, uint64_t now)
{
    sub *s = &c->subs[i];
    uint32_t want = 0;
    int rc = fcb_tls_handshake(s->ssl, &want);
    if (rc < 0) {
        if (c->errors_printed++ < 5)
            fprintf(stderr, "flowcast-bench: subscriber %u: TLS handshake failed\n", i);
        sub_drop(c, i, now);
    } else if (rc == 0) {
        sub_set_events(c, i, want);
    } else {
        if (c->r->tls_info[0] == '\0')
            fcb_tls_describe(s->ssl, c->r->tls_info, sizeof(c->r->tls_info));
        sub_send_handshake(c, i, now);
    }
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
        if (m.has_sent && m.sent_ns > 0 && m.sent_ns <= now) {
            fcb_hist_record(&c->r->lat_hist, now - m.sent_ns);
            if (c->o->nsub_ports > 1)
                fcb_hist_record(&c->r->lat_port_hist[s->port_ix], now - m.sent_ns);
        }
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
    (void)!fcb_io_send(s->fd, s->ssl, f, 6 + len);
}

static void sub_read(ctx *c, uint32_t i)
{
    sub *s = &c->subs[i];
    uint8_t *buf = c->rbuf;
    size_t off = s->stash_len;
    if (off) memcpy(buf, s->stash, off);
    ssize_t n = fcb_io_recv(s->fd, s->ssl, buf + off, RBUF_SIZE - off);
    uint64_t now = fcb_now_ns();
    if (n <= 0) {
        if (n != FCB_IO_AGAIN) sub_drop(c, i, now);
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
    if (s->state == SUB_CONNECTING) sub_connected(c, i, fcb_now_ns());
    if (s->state == SUB_TLS) {
        sub_tls_step(c, i, fcb_now_ns());
        return;
    }
    if (s->state != SUB_HANDSHAKE && s->state != SUB_OPEN) return; /* dropped or requeued */
    /* TLS may hold part of a record the socket no longer signals: read until
     * the library has nothing left (bounded: a record is at most 16 KiB). */
    for (int n = 0; n < 64 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)); n++) {
        sub_read(c, i);
        if (s->fd < 0 || s->ssl == NULL || SSL_pending(s->ssl) == 0) break;
    }
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
            fcb_pub_event(c, (uint32_t)(d & ~PUB_TAG), evs[j].events);
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
        if (c->pubs[k].state == PUB_CLOSED && c->pubs[k].not_before <= now)
            fcb_pub_start(c, k, now);
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
            if (!fcb_pub_has_room(c, k) || !window_open(c, now)) continue;
            uint32_t wf = (uint32_t)(c->next_wf++ % o->workflows);
            fcb_pub_request(c, k, REQ_PUBLISH, wf);
            touched[k] = 1;
            budget--;
            sent_any = 1;
        }
    }
    for (uint32_t k = 0; k < o->publishers; k++)
        if (touched[k]) fcb_pub_flush(c, k);
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
    for (int k = 0; k < FCB_MAX_PORTS; k++)
        fcb_hist_init(&r->lat_port_hist[k]);
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
    if (o->tls && (c->tls = fcb_tls_ctx_new()) == NULL) return -1;
    c->ep = epoll_create1(EPOLL_CLOEXEC);
    c->rbuf = fcb_xcalloc(1, RBUF_SIZE);
    c->subs = fcb_xcalloc(o->subscribers, sizeof(sub));
    c->q = fcb_xcalloc(o->subscribers, sizeof(uint32_t));
    c->last = fcb_xcalloc((size_t)o->subscribers * c->P, sizeof(uint32_t));
    c->per_wf = fcb_xcalloc(o->workflows, sizeof(uint32_t));
    c->acked_max = fcb_xcalloc((size_t)o->workflows * c->P, sizeof(uint32_t));
    c->next_seq = fcb_xcalloc((size_t)o->workflows * c->P, sizeof(uint32_t));
    c->snap = fcb_xcalloc((size_t)o->workflows * c->P, sizeof(uint32_t));
    for (uint32_t i = 0; i < o->subscribers; i++) {
        c->subs[i].fd = -1;
        c->subs[i].wf = i % o->workflows;
        if (o->nsub_spread > 0) c->subs[i].port_ix = (uint8_t)(i % (uint32_t)o->nsub_spread);
        c->per_wf[i % o->workflows]++;
    }
    for (uint32_t k = 0; k < o->publishers; k++) {
        c->pubs[k].fd = -1;
        c->pubs[k].ring = fcb_xcalloc(o->pipeline, sizeof(req));
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
        if (now > deadline || fcb_stop) {
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
        while ((next < o->workflows || c->creates_pending > 0) && !fcb_stop && now < deadline) {
            for (uint32_t k = 0; k < o->publishers && next < o->workflows; k++) {
                if (!fcb_pub_has_room(c, k)) continue;
                fcb_pub_request(c, k, REQ_CREATE, next++);
                c->creates_pending++;
                fcb_pub_flush(c, k);
            }
            poll_once(c, 10000000u);
            now = fcb_now_ns();
            start_connections(c, now);
        }
        if (fcb_stop || c->creates_pending > 0) {
            fprintf(stderr, "flowcast-bench: creating the workflows failed\n");
            rc = -1;
            goto out;
        }
    }

    if (o->churn > 0) {
        rc = fcb_churn_run(c);
        goto out;
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
        while (c->ready + c->failed < queued && !fcb_stop && now < deadline) {
            start_connections(c, now);
            poll_once(c, c->qlen > 0 && c->connecting < o->connect_conc ? 1000000u : 10000000u);
            now = fcb_now_ns();
        }
        if (queued == r->warm) fcb_proc_sample_pids(o->pids, o->npids, &r->srv_before);
        if (fcb_stop || now >= deadline) break;
    }
    r->connected = c->ready;
    r->connect_failed = o->subscribers - c->ready;
    r->connect_s = c->first_connect_t ? (double)(c->last_ready_t - c->first_connect_t) / 1e9 : 0;
    if (!o->quiet)
        fprintf(stderr, "flowcast-bench: %u/%u subscribers ready in %.3f s\n", c->ready,
                o->subscribers, r->connect_s);

    /* Settle: let the servers finish registering; answer pings meanwhile. */
    uint64_t until = now + (uint64_t)(o->settle * 1e9);
    while (now < until && !fcb_stop) {
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
    while (now < until && !fcb_stop) {
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
    while (o->publish && now < until && !fcb_stop) {
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
    r->tickets = fcb_tls_tickets();
    for (uint32_t i = 0; i < o->subscribers; i++)
        sub_close_fd(&c->subs[i]);
    for (uint32_t k = 0; k < o->publishers; k++) {
        fcb_tls_free(&c->pubs[k].ssl);
        if (c->pubs[k].fd >= 0) close(c->pubs[k].fd);
        free(c->pubs[k].ring);
        free(c->pubs[k].rbuf);
        free(c->pubs[k].wbuf);
    }
    close(c->ep);
    SSL_CTX_free(c->tls);
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
