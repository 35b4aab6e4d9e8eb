/* HTTP answers in request order (pipelined changes are answered when the
 * store commits them; an answer that overtakes an earlier one is parked), and
 * the switches out of HTTP mode (WebSocket upgrade, SSE). */
#include "server/internal.h"
#include "common/bucket.h"
#include "common/error.h"
#include "http/cors.h"
#include "http/response.h"
#include "metrics/metrics.h"
#include "wire/wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    fc__conn_maybe_continue(c); /* a request may wait for its 100 behind these */
}

/* The Origin of the request being answered when it is allowed, else NULL:
 * every answer to it (error answers and stream starts too: a page reads them
 * all) carries the CORS headers. */
static const char *allowed_origin(const fc_conn *c)
{
    const char *origin = c->req ? fc_http_header(c->req, FC_H_ORIGIN) : NULL;
    const fc_config *cfg = FC_SRV(c)->cfg;
    if (!origin || !fc_http_origin_allowed(origin, fc_http_header(c->req, FC_H_HOST),
                                           cfg->allow_origins, cfg->n_allow_origins))
        return NULL;
    return origin;
}

#define CORS_MAX 768

void fc_conn_respond(fc_conn *c, int status, const char *extra_headers, const char *content_type,
                     const char *body, size_t len)
{
    uint32_t ticket;
    int head = 0; /* HEAD is never deferred: the request is still here */
    char hdr[CORS_MAX + 512];
    size_t cors;
    if (c->has_answering) {
        ticket = c->answering;
        c->has_answering = 0;
        /* The request is gone: its Origin was kept by fc_conn_defer. */
        cors = c->cors_origin ? fc_http_cors_headers(hdr, CORS_MAX, c->cors_origin) : 0;
    } else {
        const char *origin = allowed_origin(c);
        cors = origin ? fc_http_cors_headers(hdr, CORS_MAX, origin) : 0;
        ticket = c->req ? c->req->ticket : (uint32_t)c->emit_seq << 1;
        head = c->req && c->req->parser.method == HTTP_HEAD;
        end_request(c);
    }
    if (c->closing) return;
    int keep = (ticket & 1) && !FC_SRV(c)->shutting_down;
    if (cors && extra_headers) { /* the answer's own headers always go */
        size_t n = strlen(extra_headers);
        if (cors + n < sizeof hdr)
            memcpy(hdr + cors, extra_headers, n + 1);
        else
            cors = 0;
    }
    fc_buf *b = fc_http_response(status, cors ? hdr : extra_headers, content_type, body, len, keep);
    fc_metrics_http_status(status);
    if (!b) {
        fc__conn_close(c);
        return;
    }
    /* RFC 9110 §9.3.2: the GET's status and headers (Content-Length too), no body. */
    if (head && content_type) b->len -= (uint32_t)len;
    emit(c, (uint16_t)(ticket >> 1), keep, b);
}

uint32_t fc_conn_defer(fc_conn *c)
{
    uint32_t ticket = c->req->ticket;
    /* Kept for the deferred answer's CORS headers, already checked (the
     * Host it may have matched goes with the request). One per connection:
     * browsers never pipeline, so the latest deferred request is the one
     * answered. Out of memory, the answer goes without them. */
    const char *origin = allowed_origin(c);
    free(c->cors_origin);
    c->cors_origin = origin ? strdup(origin) : NULL;
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
    char *json = fc_wire_error(code, msg, &len);
    fc_conn_respond(c, status, extra_headers, "application/json", json ? json : "", json ? len : 0);
    free(json);
}

void fc_conn_refuse_stream(fc_conn *c)
{
    fc_conn_close_after_reply(c);
    fc_conn_respond_error(c, 503, NULL, "unavailable",
                          "too many streams open: the --max-connections limit is reached");
}

/* Counts one stream for key in t, or answers 503 (and counts why) with the
 * words naming the client in the message. */
static int take_key_slot(fc_conn *c, fc_clients *t, const fc_client_key *key, fc_client **out)
{
    fc_clients_result r = fc_clients_stream_take(t, key, out);
    if (r == FC_CLIENTS_OK) return 0;
    fc_conn_close_after_reply(c);
    if (r == FC_CLIENTS_LIMIT) {
        int sub = key->kind == FC_CLIENT_SUBJECT;
        if (sub)
            FC_METRIC_ADD(refused_streams_per_subject, 1);
        else
            FC_METRIC_ADD(refused_streams_per_client, 1);
        fc_conn_respond_error(c, 503, NULL, "too_many_streams",
                              "too many streams open %s: the --max-streams-per-client limit "
                              "(%d) is reached",
                              sub ? "with this token's subject" : "from this client address",
                              fc_clients_max_streams(t));
    } else {
        FC_METRIC_ADD(refused_client_table, 1);
        fc_conn_respond_error(c, 503, NULL, "unavailable",
                              "too many clients tracked: try again later");
    }
    return -1;
}

/* The address and subject entries of a stream counting against both
 * (c->client with c->client_pair): allocated only then. */
typedef struct client_pair {
    fc_client *addr, *sub;
} client_pair;

static fc_client *entry_addr(const fc_conn *c)
{
    return c->client_pair ? ((client_pair *)c->client)->addr : c->client;
}

static fc_client *entry_sub(const fc_conn *c)
{
    return c->client_pair ? ((client_pair *)c->client)->sub : NULL;
}

/* Records the entries c counts against: 0, or -1 when out of memory (then
 * nothing changed). */
static int set_entries(fc_conn *c, fc_client *addr, fc_client *sub)
{
    client_pair *p = c->client_pair ? c->client : NULL;
    if (!sub) {
        free(p);
        c->client = addr;
        c->client_pair = 0;
        return 0;
    }
    if (!p && !(p = malloc(sizeof *p))) return -1;
    p->addr = addr;
    p->sub = sub;
    c->client = p;
    c->client_pair = 1;
    return 0;
}

int fc_conn_take_client_slot(fc_conn *c)
{
    fc_clients *t = FC_SRV(c)->cl->clients;
    fc_client_key key;
    fc_client *addr = NULL, *sub = NULL;
    if (!t || fc_clients_max_streams(t) == 0 || c->client) return 0;
    if (fc_clients_key_of(&c->tcp, &key) == 0 && take_key_slot(c, t, &key, &addr) != 0) return -1;
    const uint8_t *subject = FC_SRV(c)->subject;
    if (subject) {
        fc_clients_key_subject(subject, &key);
        if (take_key_slot(c, t, &key, &sub) != 0) goto fail;
    }
    if (set_entries(c, addr, sub) == 0) return 0;
    fc_conn_close_after_reply(c);
    fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
fail:
    if (addr) fc_clients_stream_release(t, addr);
    if (sub) fc_clients_stream_release(t, sub);
    return -1;
}

void fc_conn_release_client_slot(fc_conn *c)
{
    fc_clients *t = FC_SRV(c)->cl->clients;
    fc_client *addr = entry_addr(c), *sub = entry_sub(c);
    if (addr) fc_clients_stream_release(t, addr);
    if (sub) fc_clients_stream_release(t, sub);
    set_entries(c, NULL, NULL);
}

int fc_conn_move_subject_slot(fc_conn *c, const uint8_t *sub)
{
    fc_clients *t = FC_SRV(c)->cl->clients;
    if (!t || fc_clients_max_streams(t) == 0) return 0;
    fc_client_key key;
    fc_client *next = NULL, *prev = entry_sub(c);
    if (sub) {
        fc_clients_key_subject(sub, &key);
        /* A refresh with the same subject keeps its slot. */
        if (prev && memcmp(fc_clients_entry_key(prev), &key, sizeof key) == 0) return 0;
        fc_clients_result r = fc_clients_stream_take(t, &key, &next);
        if (r != FC_CLIENTS_OK) {
            if (r == FC_CLIENTS_LIMIT)
                FC_METRIC_ADD(refused_streams_per_subject, 1);
            else
                FC_METRIC_ADD(refused_client_table, 1);
            return -1;
        }
    }
    if (set_entries(c, entry_addr(c), next) != 0) {
        fc_clients_stream_release(t, next);
        return -1;
    }
    if (prev) fc_clients_stream_release(t, prev);
    return 0;
}

void fc_conn_set_subject(fc_conn *c, const uint8_t *sub)
{
    FC_SRV(c)->subject = sub;
}

int fc_conn_take_write(fc_conn *c)
{
    fc_clients *t = FC_SRV(c)->cl->clients;
    fc_client_key key;
    if (!t || !fc_clients_rate_on(t)) return 0;
    /* A token's subject is the client wherever it connects from; without
     * one (no token, the static --api-token, no "sub") its address is. */
    const uint8_t *subject = FC_SRV(c)->subject;
    if (subject)
        fc_clients_key_subject(subject, &key);
    else if (fc_clients_key_of(&c->tcp, &key) != 0)
        return 0;
    uint64_t wait_ns = 0;
    fc_clients_result r = fc_clients_write_take(t, &key, uv_hrtime(), &wait_ns);
    if (r == FC_CLIENTS_OK) return 0;
    if (r == FC_CLIENTS_LIMIT) {
        char headers[48];
        snprintf(headers, sizeof headers, "Retry-After: %llu\r\n",
                 (unsigned long long)fc_bucket_retry_after_s(wait_ns));
        if (subject)
            FC_METRIC_ADD(refused_write_rate_subject, 1);
        else
            FC_METRIC_ADD(refused_write_rate, 1);
        fc_conn_respond_error(c, 429, headers, "rate_limited",
                              "too many changes %s: the --write-rate limit is reached",
                              subject ? "with this token's subject" : "from this client address");
    } else {
        FC_METRIC_ADD(refused_client_table, 1);
        fc_conn_respond_error(c, 503, "Retry-After: 1\r\n", "unavailable",
                              "too many clients tracked: try again later");
    }
    return -1;
}

/* Takes one of the --max-connections stream slots and one of the client's,
 * or answers 503. The compare-and-swap makes the limit exact when loops open
 * streams at once. */
static int take_stream_slot(fc_conn *c)
{
    fc_cluster *cl = FC_SRV(c)->cl;
    int n = atomic_load_explicit(&cl->n_streams, memory_order_relaxed);
    do {
        if (n >= cl->max_conns) {
            fc_conn_refuse_stream(c);
            return -1;
        }
    } while (!atomic_compare_exchange_weak_explicit(&cl->n_streams, &n, n + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    if (fc_conn_take_client_slot(c) != 0) {
        atomic_fetch_sub_explicit(&cl->n_streams, 1, memory_order_relaxed);
        return -1;
    }
    return 0;
}

static void release_stream_slot(fc_conn *c)
{
    atomic_fetch_sub_explicit(&FC_SRV(c)->cl->n_streams, 1, memory_order_relaxed);
    fc_conn_release_client_slot(c);
}

int fc_conn_upgrade(fc_conn *c, const char *accept_key, fc_stream_kind kind)
{
    char headers[160];
    snprintf(headers, sizeof headers,
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
             accept_key);
    if (take_stream_slot(c) != 0) return FC_ELIMIT;
    fc_buf *b = fc_http_response(101, headers, NULL, NULL, 0, 1);
    if (!b) {
        release_stream_slot(c);
        return FC_ENOMEM;
    }
    fc_metrics_http_status(101);
    end_request(c);
    c->kind = (uint8_t)kind;
    c->frag = NULL; /* the WebSocket side of the request/frame union */
    c->rx = (fc_ws_rx){0};
    FC_METRIC_ADD(ws_connections, 1);
    FC_METRIC_ADD(ws_connections_opened, 1);
    fc__ping_add(c);
    fc_conn_send(c, b);
    return 0;
}

int fc_conn_start_sse(fc_conn *c, fc_stream_kind kind)
{
    static const char headers[] = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n";
    static const char head_fmt[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                   "Connection: close\r\n%s%s\r\n";
    char head[256 + CORS_MAX], cors[CORS_MAX] = "";
    const char *origin = allowed_origin(c);
    if (origin) fc_http_cors_headers(cors, sizeof cors, origin);
    int n = snprintf(head, sizeof head, head_fmt, headers, cors);
    if (c->req && c->req->parser.method == HTTP_HEAD) {
        /* HEAD: the stream's status and headers, then the end of the body
         * that "Connection: close" announces; no stream, no slot taken. */
        fc_buf *b = fc_buf_copy(head, (size_t)n);
        if (!b) return FC_ENOMEM;
        fc_metrics_http_status(200);
        end_request(c);
        fc_conn_send(c, b);
        fc_conn_close_when_written(c);
        return 1;
    }
    if (take_stream_slot(c) != 0) return FC_ELIMIT;
    fc_buf *b = fc_buf_copy(head, (size_t)n);
    if (!b) {
        release_stream_slot(c);
        return FC_ENOMEM;
    }
    fc_metrics_http_status(200);
    end_request(c);
    c->kind = (uint8_t)kind;
    fc__heartbeat_add(c);
    fc_conn_send(c, b);
    return 0;
}
