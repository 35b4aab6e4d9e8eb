/* Connections: lifecycle (one close path), HTTP input with pipelining, the
 * input stash, and the small accessors of the API face. Output is in
 * conn_write.c, answers in request order in conn_answer.c. */
#include "server/internal.h"
#include "auth/auth.h"
#include "common/error.h"
#include "common/log.h"
#include "metrics/metrics.h"
#include "tls/tls.h"

#include <stdlib.h>
#include <string.h>

fc_conn *fc__conn_new(int tls)
{
    fc_conn *c = calloc(1, tls ? sizeof(fc_conn_tls) : sizeof(fc_conn));
    if (!c) return NULL;
    c->tls = tls != 0;
    fc_list_init(&c->io_link);
    fc_list_init(&c->wheel_link);
    fc_list_init(&c->input_link);
    fc_list_init(&c->exp_link);
    fc_list_init(&c->sub.link);
    fc_list_init(&c->multi_subs);
    c->refs = 1;
    return c;
}

static void free_conn(fc_conn *c)
{
    fc_outq_clear(&c->out);
    if (c->multi_index) { /* its nodes went with the subscriptions */
        fc_map_destroy(c->multi_index);
        free(c->multi_index);
    }
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
    free(c->cors_origin);
    if (c->tls) fc_tls_conn_free(FC_TLS_SESSION(c));
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
    if (c->kind != FC_STREAM_NONE) FC_SRV(c)->handlers->on_close(c);
    if (fc_stream_is_ws((fc_stream_kind)c->kind) || fc_stream_is_sse((fc_stream_kind)c->kind))
        atomic_fetch_sub_explicit(&FC_SRV(c)->cl->n_streams, 1, memory_order_relaxed);
    fc_conn_release_client_slot(c);
    if (fc_stream_is_ws((fc_stream_kind)c->kind)) FC_METRIC_ADD(ws_connections, -1);
    fc_list_remove(&c->io_link);
    fc_list_remove(&c->wheel_link);
    fc_list_remove(&c->input_link);
    fc_list_remove(&c->exp_link);
    c->in_flush = 0;
    c->http_timer = FC__TIMER_NONE;
    FC_METRIC_ADD(http_connections, -1);
    if (c->tls) fc__tls_goodbye(c);
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* --- input ------------------------------------------------------------ */

static void respond_parse_error(fc_conn *c, int status)
{
    const fc_config *cfg = FC_SRV(c)->cfg;
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
    case 417:
        fc_conn_respond_error(c, 417, NULL, "expectation_failed",
                              "the only expectation supported is Expect: 100-continue");
        return;
    case 431:
        fc_conn_respond_error(c, 431, NULL, "headers_too_large",
                              "request headers exceed the limit of %zu bytes", cfg->max_header);
        return;
    case 400:
        fc_conn_respond_error(c, 400, NULL, "bad_request", "malformed HTTP request");
        return;
    default:
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
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
    FC_SRV(c)->handlers->request(c, c->req);
}

/* The head of a request with "Expect: 100-continue" is in and its body is
 * not: the client waits for "100 Continue" (curl: one second) before it
 * sends the body. It must not overtake the answers to earlier pipelined
 * requests, so it goes out once they are all out: now, or from emit() when
 * the last of them is written. */
void fc__conn_maybe_continue(fc_conn *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
    fc_http_req *r = c->kind == FC_STREAM_NONE ? c->req : NULL; /* else the union is a frag */
    if (!r || !r->expect_continue || r->continue_sent || !r->head_done || r->complete || r->error ||
        c->closing || c->close_after_write)
        return;
    if (c->emit_seq != c->next_seq || c->deferred) return; /* earlier answers first */
    r->continue_sent = 1;
    fc_buf *b = fc_buf_copy(line, sizeof line - 1);
    if (!b) return; /* the client sends the body after its wait anyway */
    fc_metrics_http_status(100);
    fc_conn_send(c, b);
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
    if (!c->req->error && !c->req->complete) {
        fc__conn_maybe_continue(c);
        return n;
    }
    /* Every request gets its place in the answer order, even a malformed one. */
    int keep = !c->req->error && fc_http_keep_alive(c->req);
    c->req->ticket = (uint32_t)c->next_seq++ << 1 | (uint32_t)keep;
    if (!keep) c->last_request = 1;
    if (c->req->error) {
        respond_parse_error(c, c->req->error);
        return len;
    }
    dispatch(c);
    return n;
}

/* A complete request not yet handed to the API (it waits for earlier answers).
 * Only in HTTP mode: in WebSocket mode the same memory holds the fragment. */
static int request_waiting(const fc_conn *c)
{
    return c->kind == FC_STREAM_NONE && c->req && c->req->complete;
}

/* Between a SIGTERM and this loop's start of shutdown, the loop takes no new
 * work, so that however much input is queued it gets back to its poll, where
 * the shutdown starts. From then on input is read again: the closing
 * handshakes need the clients' close frames, and answers close their
 * connections, so what is left to do is bounded. */
static int stopping(const fc_server *srv)
{
    return !srv->shutting_down && atomic_load_explicit(&srv->cl->stop_now, memory_order_relaxed);
}

/* Whether c must stop taking requests or frames for now: it waits for
 * earlier answers, or its unsent output is over --max-output. */
static int input_blocked(const fc_conn *c)
{
    return c->busy || c->deferred >= FC_PIPELINE_MAX || request_waiting(c) || c->over_limit;
}

/* Consumes what it can of data, within this turn's budget (FC_INPUT_BUDGET_*):
 * past it, c goes on input_list and the rest waits in the stash for a later
 * turn, so one client's pipelined requests cannot hold the loop. Returns the
 * bytes used. */
static size_t process_input(fc_conn *c, char *data, size_t len)
{
    size_t off = 0;
    int items = 0;
    uint64_t t0 = uv_hrtime();
    if (request_waiting(c) && !c->busy && !c->deferred && !c->over_limit) { /* it waited */
        dispatch(c);
        items++;
    }
    while (off < len && !c->closing && !input_blocked(c) && !stopping(FC_SRV(c))) {
        if (c->close_after_write) return len; /* failing or closing: discard */
        if (c->last_request && !c->req && c->kind == FC_STREAM_NONE) return len;
        if (fc_stream_is_sse((fc_stream_kind)c->kind))
            return len; /* nothing is expected from an event-stream client */
        if (items == FC_INPUT_BUDGET_ITEMS || uv_hrtime() - t0 > FC_INPUT_BUDGET_NS) {
            fc_list_remove(&c->input_link);
            fc__conn_input_ready(c);
            break;
        }
        size_t n;
        if (fc_stream_is_ws((fc_stream_kind)c->kind))
            n = fc__ws_input(c, data + off, len - off);
        else
            n = http_input(c, data + off, len - off);
        if (n == 0) break;
        off += n;
        items++;
    }
    return off;
}

static int stash_input(fc_conn *c, const char *data, size_t len)
{
    if (c->in_len + len > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 1024;
        while (cap < c->in_len + len)
            cap *= 2;
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

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Backpressure: while c cannot take more input (it waits for the store, for
 * its output to drain, or for its next turn), later requests and frames are
 * stashed; past a bound, it stops reading. A client that waits for each
 * answer never gets here, which saves two epoll_ctl calls per request. */
static void update_reading(fc_conn *c)
{
    if (c->closing) return;
    int stop = (input_blocked(c) || fc_list_linked(&c->input_link)) && c->in_len > FC_READ_BUF_SIZE;
    if (stop && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    } else if (!stop && !c->reading && !c->close_after_write) {
        c->reading = 1;
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    }
}

/* --- HTTP deadlines ------------------------------------------------------- */

/* Puts c on the deadline list its state calls for: a request begun (or a
 * connection that has sent nothing yet) must complete within
 * --request-timeout of its start, dribbling bytes does not extend it; a
 * keep-alive connection between requests may wait --idle-timeout. While the
 * server owes an answer, or c is a stream, no HTTP deadline runs. */
static void update_http_timer(fc_conn *c)
{
    if (c->closing || c->kind != FC_STREAM_NONE) return;
    unsigned want;
    if (input_blocked(c) || c->deferred || c->close_after_write || c->last_request ||
        fc_list_linked(&c->input_link))
        want = FC__TIMER_NONE;
    else if (c->req || c->next_seq == 0)
        want = FC__TIMER_REQUEST;
    else
        want = FC__TIMER_IDLE;
    /* A running deadline belongs to the request (or the wait after the
     * answer) it started with: every request that completes starts afresh. */
    if (want == c->http_timer && (want == FC__TIMER_NONE || c->timer_seq == c->next_seq)) return;
    fc_server *srv = FC_SRV(c);
    fc_list_remove(&c->wheel_link);
    c->http_timer = (uint8_t)want;
    if (want == FC__TIMER_NONE) return;
    c->timer_ms = uv_now(srv->loop);
    c->timer_seq = c->next_seq;
    fc_list_insert_tail(want == FC__TIMER_REQUEST ? &srv->request_list : &srv->idle_list,
                        &c->wheel_link);
}

/* A request that did not complete in time gets 408 and the connection
 * closes after it; a connection that never sent a byte is just closed. */
static void request_timed_out(fc_conn *c)
{
    FC_METRIC_ADD(http_request_timeouts, 1);
    if (c->tls) fc__tls_timed_out(c);
    if (!c->req) {
        FC_DEBUG("http", "no request within --request-timeout: closing");
        fc__conn_close(c);
        return;
    }
    FC_DEBUG("http", "request incomplete after --request-timeout: 408 and close");
    /* Its place in the answer order, without keep-alive. */
    c->req->ticket = (uint32_t)c->next_seq++ << 1;
    c->last_request = 1;
    fc_conn_respond_error(c, 408, NULL, "request_timeout",
                          "the request was not complete within %.1f s",
                          FC_SRV(c)->cfg->request_timeout);
}

static void sweep_list(fc_list *list, uint64_t now, double timeout_s, int request)
{
    uint64_t timeout = (uint64_t)(timeout_s * 1000.0);
    while (!fc_list_empty(list)) {
        fc_conn *c = fc_container_of(list->next, fc_conn, wheel_link);
        if (now - c->timer_ms < timeout) return; /* sorted: the rest are later */
        fc_list_remove(&c->wheel_link);
        if (!request && c->out.count) {
            /* Still writing the last answer (a slow download is the
             * write-progress check's business): idle counts from later. */
            c->timer_ms = now;
            fc_list_insert_tail(list, &c->wheel_link);
            continue;
        }
        c->http_timer = FC__TIMER_NONE;
        if (request) {
            request_timed_out(c);
        } else {
            FC_METRIC_ADD(http_idle_closed, 1);
            fc__conn_close(c);
        }
    }
}

void fc__conn_sweep_http(fc_server *srv, uint64_t now)
{
    sweep_list(&srv->request_list, now, srv->cfg->request_timeout, 1);
    sweep_list(&srv->idle_list, now, srv->cfg->idle_timeout, 0);
}

void fc__conn_take_input(fc_conn *c, char *data, size_t len)
{
    if (c->in_len) {
        if (stash_input(c, data, len)) {
            fc__conn_close(c);
            return;
        }
        drain_stash(c);
    } else {
        size_t used = process_input(c, data, len);
        if (used < len && !c->closing && stash_input(c, data + used, len - used)) fc__conn_close(c);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fc_conn *c = (fc_conn *)s;
    if (nread < 0) {
        fc__conn_close(c);
        return;
    }
    if (nread == 0 || c->closing) return;
    c->awaiting_pong = 0; /* any bytes prove the peer is alive, even a frame's middle */
    if (c->tls)
        fc__tls_input(c, buf->base, (size_t)nread);
    else
        fc__conn_take_input(c, buf->base, (size_t)nread);
    update_reading(c);
    update_http_timer(c);
}

void fc__conn_start(fc_conn *c)
{
    FC_METRIC_ADD(http_connections, 1);
    c->reading = 1;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
        fc__conn_close(c);
        return;
    }
    update_http_timer(c); /* a connection that never sends a byte is closed too */
}

/* Goes on with stashed input (within a budget), then reading and deadlines. */
static void resume_input(fc_conn *c)
{
    if (c->closing) return;
    if (c->in_len || request_waiting(c)) drain_stash(c);
    update_reading(c);
    update_http_timer(c);
}

void fc__conn_run_input(fc_server *srv)
{
    /* Connections re-added during this pass (budget spent again) wait for the next turn. */
    fc_list pass;
    fc_list_init(&pass);
    if (fc_list_empty(&srv->input_list)) return;
    pass.next = srv->input_list.next;
    pass.prev = srv->input_list.prev;
    pass.next->prev = &pass;
    pass.prev->next = &pass;
    fc_list_init(&srv->input_list);
    while (!fc_list_empty(&pass)) {
        fc_conn *c = fc_container_of(pass.next, fc_conn, input_link);
        fc_list_remove(&c->input_link);
        if (!c->busy) resume_input(c);
    }
}

void fc__conn_input_ready(fc_conn *c)
{
    if (c->closing || fc_list_linked(&c->input_link)) return;
    fc_server *srv = FC_SRV(c);
    /* As for output (fc__conn_schedule_flush): from a timer or a write
     * completion, poll must not sleep before the check phase takes it up. */
    if (fc_list_empty(&srv->input_list)) fc__server_flush_soon(srv);
    fc_list_insert_tail(&srv->input_list, &c->input_link);
}

void fc_conn_hold(fc_conn *c)
{
    c->refs++;
    c->busy = 1;
}

void fc_conn_release(fc_conn *c)
{
    if (--c->refs > 0) {
        /* The answer is queued: go on with pipelined input, then read again. */
        if (!c->busy) resume_input(c);
        return;
    }
    free_conn(c);
}

int fc_conn_is_closed(const fc_conn *c)
{
    return c->closing;
}

void fc_conn_set_kind(fc_conn *c, fc_stream_kind kind)
{
    c->kind = (uint8_t)kind;
    if (kind != FC_STREAM_NONE && c->http_timer != FC__TIMER_NONE) {
        fc_list_remove(&c->wheel_link); /* a long-poll waits for the store, not the client */
        c->http_timer = FC__TIMER_NONE;
    }
}

int fc_conn_unauthenticated(const fc_conn *c)
{
    return c->unauthed;
}

void fc_conn_set_unauthenticated(fc_conn *c, int on)
{
    c->unauthed = on != 0;
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

fc_map *fc_conn_multi_index(fc_conn *c)
{
    if (c->multi_index) return c->multi_index;
    fc_map *m = malloc(sizeof *m);
    if (!m || fc_map_init(m) != 0) {
        free(m);
        return NULL;
    }
    return c->multi_index = m;
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
    if (h->type != UV_TCP || uv_is_closing(h)) return;
    w->fn((fc_conn *)h, w->arg);
}

void fc__conn_foreach(fc_server *srv, void (*fn)(fc_conn *c, void *arg), void *arg)
{
    walk_ctx w = {srv, fn, arg};
    uv_walk(srv->loop, walk_cb, &w);
}

/* Adds the backlogs on one list (io_link) of connections to acc = [max
 * messages, total messages, max bytes, total bytes]; messages count only
 * streams, bytes every connection. */
static void add_backlogs(const fc_list *list, uint64_t *acc)
{
    for (const fc_list *it = list->next; it != list; it = it->next) {
        const fc_conn *c = fc_container_of(it, fc_conn, io_link);
        uint64_t bytes = fc_outq_bytes(&c->out);
        acc[3] += bytes;
        if (bytes > acc[2]) acc[2] = bytes;
        if (c->kind == FC_STREAM_NONE || c->kind == FC_LONGPOLL) continue;
        acc[1] += c->out.count;
        if (c->out.count > acc[0]) acc[0] = c->out.count;
    }
}

/* A connection with unsent output is always on the flush list (written this
 * turn) or the blocked list (the kernel buffer is full): the two lists hold
 * every backlog, without a walk over every connection. */
void fc_server_update_gauges(fc_server *s)
{
    uint64_t acc[4] = {0, 0, 0, 0};
    add_backlogs(&s->flush_list, acc);
    add_backlogs(&s->blocked_list, acc);
    FC_METRIC_SET(backlog_max, acc[0]);
    FC_METRIC_SET(backlog_total, acc[1]);
    FC_METRIC_SET(output_bytes_max, acc[2]);
    FC_METRIC_SET(output_bytes, acc[3]);
    if (s->cl->clients) {
        FC_METRIC_SET(clients_tracked, (uint64_t)fc_clients_count(s->cl->clients));
        FC_METRIC_SET(clients_evicted, fc_clients_evicted(s->cl->clients));
    }
    if (s->cl->auth) {
        uint64_t hits, misses;
        int held;
        fc_auth_cache_stats(s->cl->auth, &hits, &misses, &held);
        FC_METRIC_SET(jwt_cache_hits, hits);
        FC_METRIC_SET(jwt_cache_misses, misses);
        FC_METRIC_SET(jwt_cache_entries, (uint64_t)held);
    }
}
