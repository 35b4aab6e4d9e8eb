/* Connection lifecycle, HTTP input, and output flushing with writev. */
#include "server/internal.h"
#include "api/api.h"
#include "api/workflow_json.h"
#include "common/error.h"
#include "common/log.h"
#include "common/time.h"
#include "http/response.h"
#include "metrics/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_MAX_IOV 64
#define FLUSH_MAX_BYTES (256 * 1024)
#define FLUSH_ROUNDS 4 /* writev calls per connection per turn, so one reader cannot starve others */

typedef struct fc_write_req {
    uv_write_t req;
    size_t bytes;
} fc_write_req;

static uint64_t flush_now_ns; /* one clock read per flush, shared by all deliveries in it */

fc_conn *fc__conn_new(void)
{
    fc_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    fc_list_init(&c->io_link);
    fc_list_init(&c->wheel_link);
    fc_list_init(&c->sub.link);
    fc_list_init(&c->multi_subs);
    c->refs = 1;
    return c;
}

static void free_conn(fc_conn *c)
{
    fc_outq_clear(&c->out);
    if (fc_stream_is_ws((fc_stream_kind)c->kind)) {
        fc__ws_free_frag(c);
    } else {
        fc_http_req_free(c->req);
        while (c->parked) {
            fc_parked *p = c->parked;
            c->parked = p->next;
            fc_buf_unref(p->response);
            free(p);
        }
    }
    free(c->in);
    free(c);
}

static void on_close(uv_handle_t *h)
{
    fc_conn *c = (fc_conn *)h;
    fc_server *srv = FC_SRV(c);
    c->closed = 1;
    fc_outq_clear(&c->out);
    fc_conn_release(c);
    fc__server_conn_gone(srv);
}

void fc__conn_close(fc_conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    if (c->kind != FC_STREAM_NONE) fc_stream_on_close(c);
    if (fc_stream_is_ws((fc_stream_kind)c->kind)) fc_metrics_g.ws_connections--;
    fc_list_remove(&c->io_link);
    fc_list_remove(&c->wheel_link);
    c->in_flush = 0;
    fc_metrics_g.http_connections--;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* --- input ------------------------------------------------------------ */

static void respond_parse_error(fc_conn *c, int status)
{
    const fc_config *cfg = FC_SRV(c)->cfg;
    c->req->ticket = (uint32_t)c->next_seq++ << 1; /* answered, then closed */
    fc_conn_close_after_reply(c); /* the rest of the stream cannot be trusted */
    switch (status) {
    case 411:
        fc_conn_respond_error(c, 411, NULL, "length_required",
                              "a request body needs Content-Length or chunked encoding");
        return;
    case 413:
        fc_conn_respond_error(c, 413, NULL, "payload_too_large",
                              "request body exceeds the limit of %zu bytes", cfg->max_body);
        return;
    case 431:
        fc_conn_respond_error(c, 431, NULL, "headers_too_large",
                              "request headers exceed the limit of %zu bytes", cfg->max_header);
        return;
    case 400:
        fc_conn_respond_error(c, 400, NULL, "bad_request", "malformed HTTP request");
        return;
    default: fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
    }
}

/* Hands a complete request to the API. Changes (POST, PATCH, DELETE) may
 * overtake nothing but can be in flight together: their answers are put back
 * in request order. Anything else waits until every earlier answer is out,
 * so that e.g. an upgrade never jumps ahead of a pending answer. */
static void dispatch(fc_conn *c)
{
    int m = c->req->parser.method;
    if (c->deferred && m != HTTP_POST && m != HTTP_PATCH && m != HTTP_DELETE) return;
    fc_api_handle(c, c->req);
}

static size_t http_input(fc_conn *c, char *data, size_t len)
{
    if (!c->req) {
        c->req = fc_http_req_new(FC_SRV(c)->cfg->max_header, FC_SRV(c)->cfg->max_body);
        if (!c->req) {
            fc__conn_close(c);
            return len;
        }
    }
    size_t n = fc_http_req_feed(c->req, data, len);
    if (c->req->error) {
        respond_parse_error(c, c->req->error);
        return len;
    }
    if (c->req->complete) {
        int keep = fc_http_keep_alive(c->req);
        c->req->ticket = (uint32_t)c->next_seq++ << 1 | (uint32_t)keep;
        if (!keep) c->last_request = 1;
        dispatch(c);
    }
    return n;
}

/* A complete request not yet handed to the API (it waits for earlier answers).
 * Only in HTTP mode: in WebSocket mode the same memory holds the fragment. */
static int request_waiting(const fc_conn *c)
{
    return c->kind == FC_STREAM_NONE && c->req && c->req->complete;
}

/* Consumes what it can of data; returns the bytes used. */
static size_t process_input(fc_conn *c, char *data, size_t len)
{
    size_t off = 0;
    if (request_waiting(c) && !c->busy && !c->deferred) dispatch(c); /* it waited */
    while (off < len && !c->closing && !c->busy && c->deferred < FC_PIPELINE_MAX) {
        if (c->close_after_write) return len; /* failing or closing: discard */
        if (request_waiting(c)) break; /* waits for the answers before it */
        if (c->last_request && !c->req && c->kind == FC_STREAM_NONE) return len;
        size_t n;
        if (fc_stream_is_ws((fc_stream_kind)c->kind))
            n = fc__ws_input(c, data + off, len - off);
        else if (fc_stream_is_sse((fc_stream_kind)c->kind))
            return len; /* nothing is expected from an event-stream client */
        else
            n = http_input(c, data + off, len - off);
        if (n == 0) break;
        off += n;
    }
    return off;
}

static int stash_input(fc_conn *c, const char *data, size_t len)
{
    if (c->in_len + len > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 1024;
        while (cap < c->in_len + len) cap *= 2;
        if (cap > UINT32_MAX) return FC_ENOMEM;
        char *p = realloc(c->in, cap);
        if (!p) return FC_ENOMEM;
        c->in = p;
        c->in_cap = (uint32_t)cap;
    }
    memcpy(c->in + c->in_len, data, len);
    c->in_len += (uint32_t)len;
    return 0;
}

/* Processes the stashed input; frees the stash once it is empty. */
static void drain_stash(fc_conn *c)
{
    size_t used = process_input(c, c->in, c->in_len);
    if (used < c->in_len) {
        /* A large frame arrives over many reads: move only when something was consumed. */
        if (used) memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= (uint32_t)used;
        return;
    }
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    fc_conn *c = (fc_conn *)h;
    *buf = uv_buf_init(FC_SRV(c)->read_buf, FC_READ_BUF_SIZE);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fc_conn *c = (fc_conn *)s;
    if (nread < 0) {
        fc__conn_close(c);
        return;
    }
    if (nread == 0 || c->closing) return;
    if (c->in_len) {
        if (stash_input(c, buf->base, (size_t)nread)) {
            fc__conn_close(c);
            return;
        }
        drain_stash(c);
    } else {
        size_t used = process_input(c, buf->base, (size_t)nread);
        if (used < (size_t)nread && !c->closing && stash_input(c, buf->base + used, (size_t)nread - used))
            fc__conn_close(c);
    }
    /* Backpressure for pipelining clients: while a request waits for the store,
     * later requests are stashed; past a bound, stop reading. A client that
     * waits for each answer never gets here, which saves two epoll_ctl calls
     * per request. */
    int waiting = c->busy || c->deferred >= FC_PIPELINE_MAX || request_waiting(c);
    if (waiting && c->reading && !c->closing && c->in_len > FC_READ_BUF_SIZE) {
        uv_read_stop(s);
        c->reading = 0;
    }
}

void fc__conn_start(fc_conn *c)
{
    fc_metrics_g.http_connections++;
    c->reading = 1;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) fc__conn_close(c);
}

/* --- output ----------------------------------------------------------- */

static void on_delivered(const fc_buf *b)
{
    fc_metrics_g.messages_written++;
    if (b->commit_ns && flush_now_ns > b->commit_ns) fc_metrics_observe_latency(flush_now_ns - b->commit_ns);
}

void fc__conn_schedule_flush(fc_conn *c)
{
    if (c->in_flush || c->writing || c->closing) return;
    fc_list_remove(&c->io_link);
    fc_list_insert_tail(&FC_SRV(c)->flush_list, &c->io_link);
    c->in_flush = 1;
}

static void on_write(uv_write_t *req, int status)
{
    fc_write_req *wr = (fc_write_req *)req;
    fc_conn *c = req->data;
    size_t bytes = wr->bytes;
    free(wr);
    c->writing = 0;
    if (status < 0 || c->closing) {
        fc__conn_close(c);
        return;
    }
    fc_list_remove(&c->io_link);
    flush_now_ns = fc_time_mono_ns();
    fc_outq_consume(&c->out, bytes, on_delivered);
    c->out.locked = 0;
    c->progress_ms = uv_now(FC_SRV(c)->loop);
    fc__conn_schedule_flush(c);
}

/* The kernel buffer is full: hand the head of the queue to uv_write, which
 * waits for writability; those entries are locked until it completes. */
static void write_async(fc_conn *c)
{
    uv_buf_t iov[FLUSH_MAX_IOV];
    size_t bytes;
    int n = fc_outq_iov(&c->out, iov, FLUSH_MAX_IOV, FLUSH_MAX_BYTES, &bytes);
    fc_write_req *wr = malloc(sizeof *wr);
    if (!wr) {
        fc__conn_close(c);
        return;
    }
    wr->bytes = bytes;
    wr->req.data = c;
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, iov, (unsigned)n, on_write) != 0) {
        free(wr);
        fc__conn_close(c);
        return;
    }
    c->out.locked = (uint32_t)n;
    c->writing = 1;
    c->progress_ms = uv_now(FC_SRV(c)->loop);
    fc_list_remove(&c->io_link);
    fc_list_insert_tail(&FC_SRV(c)->blocked_list, &c->io_link);
}

void fc__conn_flush(fc_conn *c)
{
    c->in_flush = 0;
    fc_list_remove(&c->io_link);
    for (int round = 0; c->out.count && !c->writing && !c->closing; round++) {
        if (round == FLUSH_ROUNDS) {
            fc__conn_schedule_flush(c); /* more next turn, after the others */
            return;
        }
        uv_buf_t iov[FLUSH_MAX_IOV];
        size_t bytes;
        int n = fc_outq_iov(&c->out, iov, FLUSH_MAX_IOV, FLUSH_MAX_BYTES, &bytes);
        int r = uv_try_write((uv_stream_t *)&c->tcp, iov, (unsigned)n);
        if (r == UV_EAGAIN) r = 0;
        if (r < 0) {
            fc__conn_close(c);
            return;
        }
        if (r > 0) {
            fc_outq_consume(&c->out, (size_t)r, on_delivered);
            c->progress_ms = uv_now(FC_SRV(c)->loop);
        }
        if ((size_t)r < bytes) write_async(c);
    }
    if (!c->out.count && c->close_after_write && !c->closing && !c->deferred) fc__conn_close(c);
}

void fc__conn_flush_all(fc_server *srv)
{
    flush_now_ns = fc_time_mono_ns();
    /* Connections re-added during this pass (fairness) wait for the next turn. */
    fc_list pass;
    fc_list_init(&pass);
    if (!fc_list_empty(&srv->flush_list)) {
        pass.next = srv->flush_list.next;
        pass.prev = srv->flush_list.prev;
        pass.next->prev = &pass;
        pass.prev->next = &pass;
        fc_list_init(&srv->flush_list);
    }
    while (!fc_list_empty(&pass)) {
        fc_conn *c = fc_container_of(pass.next, fc_conn, io_link);
        fc__conn_flush(c); /* unlinks c from pass */
    }
}

/* --- API face --------------------------------------------------------- */

fc_server *fc_conn_server(const fc_conn *c)
{
    return FC_SRV(c);
}

void fc_conn_send(fc_conn *c, fc_buf *frame)
{
    if (c->closing || fc_outq_push(&c->out, frame) != 0) return;
    fc__conn_schedule_flush(c);
}

static void end_request(fc_conn *c)
{
    fc_http_req_free(c->req);
    c->req = NULL;
    c->busy = 0;
}

/* Writes one answer; the last answer of a connection closes it once written. */
static void write_answer(fc_conn *c, fc_buf *b, int keep)
{
    c->emit_seq++;
    if (c->close_after_write) { /* an earlier answer ended the connection */
        fc_buf_unref(b);
        return;
    }
    fc_conn_send(c, b);
    if (!keep) c->close_after_write = 1;
}

/* Answers leave in request order: an answer that overtook an earlier one
 * waits (parked) until that one is written. */
static void emit(fc_conn *c, uint16_t seq, int keep, fc_buf *b)
{
    if (seq != c->emit_seq) {
        fc_parked *p = malloc(sizeof *p);
        if (!p) {
            fc_buf_unref(b);
            fc__conn_close(c);
            return;
        }
        *p = (fc_parked){.next = c->parked, .seq = seq, .keep_alive = (uint8_t)keep, .response = b};
        c->parked = p;
        return;
    }
    write_answer(c, b, keep);
    for (int found = 1; found && c->parked;) {
        found = 0;
        for (fc_parked **pp = &c->parked; *pp; pp = &(*pp)->next) {
            fc_parked *p = *pp;
            if (p->seq != c->emit_seq) continue;
            *pp = p->next;
            write_answer(c, p->response, p->keep_alive);
            free(p);
            found = 1;
            break;
        }
    }
}

void fc_conn_respond(fc_conn *c, int status, const char *extra_headers, const char *content_type,
                     const char *body, size_t len)
{
    uint32_t ticket;
    if (c->has_answering) {
        ticket = c->answering;
        c->has_answering = 0;
    } else {
        ticket = c->req ? c->req->ticket : (uint32_t)c->emit_seq << 1;
        end_request(c);
    }
    if (c->closing) return;
    int keep = (ticket & 1) && !FC_SRV(c)->shutting_down;
    fc_buf *b = fc_http_response(status, extra_headers, content_type, body, len, keep);
    fc_metrics_http_status(status);
    if (!b) {
        fc__conn_close(c);
        return;
    }
    emit(c, (uint16_t)(ticket >> 1), keep, b);
}

uint32_t fc_conn_defer(fc_conn *c)
{
    uint32_t ticket = c->req->ticket;
    c->refs++;
    c->deferred++;
    end_request(c); /* the next pipelined request may be parsed now */
    return ticket;
}

void fc_conn_answer(fc_conn *c, uint32_t ticket)
{
    c->deferred--;
    c->answering = ticket;
    c->has_answering = 1;
}

void fc_conn_close_when_written(fc_conn *c)
{
    c->close_after_write = 1;
    fc__conn_schedule_flush(c);
}

void fc_conn_close_after_reply(fc_conn *c)
{
    if (c->req) c->req->ticket &= ~1u; /* answer with Connection: close */
    c->last_request = 1;
}

void fc_conn_respond_error(fc_conn *c, int status, const char *extra_headers, const char *code,
                           const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len;
    char *json = fc_json_error(code, msg, &len);
    fc_conn_respond(c, status, extra_headers, "application/json", json ? json : "", json ? len : 0);
    free(json);
}

void fc_conn_hold(fc_conn *c)
{
    c->refs++;
    c->busy = 1;
}

void fc_conn_release(fc_conn *c)
{
    if (--c->refs > 0) {
        if (!c->busy && !c->closing) {
            /* The answer is queued: go on with pipelined input, then read again. */
            if (c->in_len || request_waiting(c)) drain_stash(c);
            if (!c->busy && !c->reading && !c->closing && !c->close_after_write) {
                c->reading = 1;
                uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
            }
        }
        return;
    }
    free_conn(c);
}

int fc_conn_is_closed(const fc_conn *c)
{
    return c->closing;
}

int fc_conn_upgrade(fc_conn *c, const char *accept_key, fc_stream_kind kind)
{
    char headers[160];
    snprintf(headers, sizeof headers,
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
             accept_key);
    fc_buf *b = fc_http_response(101, headers, NULL, NULL, 0, 1);
    if (!b) return FC_ENOMEM;
    fc_metrics_http_status(101);
    end_request(c);
    c->kind = (uint8_t)kind;
    fc_metrics_g.ws_connections++;
    fc_metrics_g.ws_connections_opened++;
    fc__ping_add(c);
    fc_conn_send(c, b);
    return 0;
}

int fc_conn_start_sse(fc_conn *c, fc_stream_kind kind)
{
    static const char headers[] = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n";
    static const char head_fmt[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                   "Connection: close\r\n%s\r\n";
    char head[256];
    int n = snprintf(head, sizeof head, head_fmt, headers);
    fc_buf *b = fc_buf_copy(head, (size_t)n);
    if (!b) return FC_ENOMEM;
    fc_metrics_http_status(200);
    end_request(c);
    c->kind = (uint8_t)kind;
    fc__heartbeat_add(c);
    fc_conn_send(c, b);
    return 0;
}

void fc_conn_set_kind(fc_conn *c, fc_stream_kind kind)
{
    c->kind = (uint8_t)kind;
}

void *fc_conn_ext(const fc_conn *c)
{
    return c->ext;
}

void fc_conn_set_ext(fc_conn *c, void *ext)
{
    c->ext = ext;
}

fc_stream_kind fc_conn_kind(const fc_conn *c)
{
    return (fc_stream_kind)c->kind;
}

fc_sub *fc_conn_sub(fc_conn *c)
{
    return &c->sub;
}

fc_list *fc_conn_multi_subs(fc_conn *c)
{
    return &c->multi_subs;
}

int fc_conn_send_coalesce(fc_conn *c, fc_buf *frame, uint32_t limit)
{
    if (c->closing) {
        fc_buf_unref(frame);
        return 0;
    }
    int dropped = fc_outq_push_coalesce(&c->out, frame, limit);
    fc__conn_schedule_flush(c);
    return dropped > 0 ? dropped : 0;
}

int fc_conn_has_all(const fc_conn *c)
{
    return c->subscribed_all;
}

void fc_conn_set_all(fc_conn *c, int on)
{
    c->subscribed_all = on != 0;
}

typedef struct walk_ctx {
    fc_server *srv;
    void (*fn)(fc_conn *c, void *arg);
    void *arg;
} walk_ctx;

static void walk_cb(uv_handle_t *h, void *arg)
{
    walk_ctx *w = arg;
    if (h->type != UV_TCP || h == (uv_handle_t *)&w->srv->listener || uv_is_closing(h)) return;
    w->fn((fc_conn *)h, w->arg);
}

void fc__conn_foreach(fc_server *srv, void (*fn)(fc_conn *c, void *arg), void *arg)
{
    walk_ctx w = {srv, fn, arg};
    uv_walk(srv->loop, walk_cb, &w);
}

static void add_backlog(fc_conn *c, void *arg)
{
    uint64_t *acc = arg; /* [max, total] */
    if (c->kind == FC_STREAM_NONE || c->kind == FC_LONGPOLL) return;
    acc[1] += c->out.count;
    if (c->out.count > acc[0]) acc[0] = c->out.count;
}

void fc_server_backlog(const fc_server *s, uint64_t *max, uint64_t *total)
{
    uint64_t acc[2] = {0, 0};
    fc__conn_foreach((fc_server *)s, add_backlog, acc);
    *max = acc[0];
    *total = acc[1];
}
