/* WebSocket sessions: frame input, fragment reassembly, control frames,
 * the closing handshake, and the ping wheel. */
#include "server/internal.h"
#include "common/log.h"
#include "metrics/metrics.h"
#include "ws/frame.h"
#include "ws/utf8.h"

#include <stdlib.h>
#include <string.h>

void fc__ws_free_frag(fc_conn *c)
{
    free(c->frag);
    c->frag = NULL;
}

static fc_buf *control_frame(uint8_t opcode, const void *payload, size_t len)
{
    size_t hlen = fc_ws_header_size(len);
    fc_buf *b = fc_buf_new(hlen + len);
    if (!b) return NULL;
    fc_ws_header_encode(b->data, opcode, len);
    if (len) memcpy(b->data + hlen, payload, len);
    return b;
}

/* Moves c from its ping slot to the closing list: the peer has
 * FC_CLOSE_GRACE_MS to answer the close frame before the socket is dropped. */
static void await_close_reply(fc_conn *c)
{
    fc_list_remove(&c->wheel_link);
    fc_list_insert_tail(&FC_SRV(c)->closing_list, &c->wheel_link);
    c->progress_ms = uv_now(FC_SRV(c)->loop);
}

void fc_conn_ws_close(fc_conn *c, uint16_t code, const char *reason)
{
    if (c->ws_close_sent || c->closing) return;
    uint8_t payload[125];
    size_t rlen = reason ? strnlen(reason, sizeof payload - 2) : 0;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, reason, rlen);
    fc_buf *b = control_frame(FC_WS_OP_CLOSE, payload, 2 + rlen);
    if (b) fc_conn_send(c, b);
    c->ws_close_sent = 1; /* from here fc_conn_send drops everything */
    if (!b) {
        fc__conn_close(c);
        return;
    }
    await_close_reply(c);
}

/* Fails the connection (RFC 6455 §7.1.7): close frame, then drop the socket
 * once it is written; further input is discarded. */
static void fail(fc_conn *c, uint16_t code, const char *reason)
{
    FC_DEBUG("ws", "closing connection with %u: %s", code, reason);
    fc_conn_ws_close(c, code, reason);
    c->close_after_write = 1;
}

static void on_close_frame(fc_conn *c, const uint8_t *payload, size_t len)
{
    uint16_t code;
    int r = fc_ws_close_parse(payload, len, &code);
    if (r < 0) {
        fail(c, (uint16_t)-r,
             r == -FC_WS_CLOSE_INVALID_DATA ? "invalid UTF-8 in close reason"
                                            : "invalid close frame");
        return;
    }
    if (c->ws_close_sent) { /* the peer answered our close: the handshake is done */
        fc__conn_close(c);
        return;
    }
    /* Echo the peer's code, as RFC 6455 §5.5.1 asks; an empty close gets an empty one. */
    fc_buf *b = control_frame(FC_WS_OP_CLOSE, payload, len ? 2 : 0);
    c->close_after_write = 1;
    if (b) fc_conn_send(c, b);
    c->ws_close_sent = 1; /* from here fc_conn_send drops everything */
    if (!b) fc__conn_close(c);
}

static void on_message(fc_conn *c, uint8_t opcode, char *data, size_t len)
{
    switch ((fc_stream_kind)c->kind) {
    case FC_WS_ECHO: {
        fc_buf *b = control_frame(opcode, data, len);
        if (b) fc_conn_send(c, b);
        return;
    }
    case FC_WS_UPDATES:
    case FC_WS_MULTI:
        if (opcode == FC_WS_OP_BINARY) {
            fail(c, FC_WS_CLOSE_UNSUPPORTED, "binary messages are not accepted");
            return;
        }
        if (c->kind == FC_WS_MULTI) FC_SRV(c)->handlers->on_text(c, data, len);
        return;
    default:
        return;
    }
}

static int frag_append(fc_conn *c, const char *data, size_t len)
{
    fc_ws_frag *f = c->frag;
    if (f->len + len > f->cap) {
        size_t cap = f->cap ? f->cap : 4096;
        while (cap < f->len + len)
            cap *= 2;
        fc_ws_frag *nf = realloc(f, sizeof *nf + cap);
        if (!nf) return -1;
        c->frag = f = nf;
        f->cap = cap;
    }
    memcpy(f->data + f->len, data, len);
    f->len += len;
    return 0;
}

/* A data frame may start a message only when none is in progress, and
 * continue one only when one is; the reassembled message has a size limit.
 * Both are known from the header, so they fail the connection before any
 * payload is awaited. Returns 0 after failing it. */
static int data_frame_allowed(fc_conn *c, const fc_ws_header *h)
{
    if (h->opcode == FC_WS_OP_CONT ? !c->frag : c->frag != NULL) {
        fail(c, FC_WS_CLOSE_PROTOCOL, "unexpected continuation or data frame");
        return 0;
    }
    if (c->frag && c->frag->len + h->payload_len > FC_SRV(c)->cfg->max_message) {
        fail(c, FC_WS_CLOSE_TOO_BIG, "message too big");
        return 0;
    }
    return 1;
}

/* A complete data frame; utf8 is the message's UTF-8 state after its payload
 * (fc__ws_input validated the payload as it arrived). */
static void on_data_frame(fc_conn *c, const fc_ws_header *h, char *payload, uint32_t utf8)
{
    size_t len = (size_t)h->payload_len;
    uint8_t opcode = c->frag ? c->frag->opcode : h->opcode;
    if (opcode == FC_WS_OP_TEXT && h->fin && utf8 != FC_UTF8_ACCEPT) {
        fail(c, FC_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
        return;
    }
    if (h->fin && !c->frag) { /* the common case: one frame, no copy */
        on_message(c, opcode, payload, len);
        return;
    }
    if (!c->frag) {
        c->frag = calloc(1, sizeof *c->frag);
        if (!c->frag) {
            fc__conn_close(c);
            return;
        }
        c->frag->opcode = opcode;
    }
    if (frag_append(c, payload, len)) {
        fc__conn_close(c);
        return;
    }
    c->frag->utf8_state = utf8;
    if (h->fin) {
        on_message(c, opcode, c->frag->data, c->frag->len);
        fc__ws_free_frag(c);
    }
}

static void on_frame(fc_conn *c, const fc_ws_header *h, char *payload, uint32_t utf8)
{
    switch (h->opcode) {
    case FC_WS_OP_PING: {
        if (c->ws_close_sent) return;
        fc_buf *b = control_frame(FC_WS_OP_PONG, payload, (size_t)h->payload_len);
        if (b) fc_conn_send(c, b);
        return;
    }
    case FC_WS_OP_PONG:
        return;
    case FC_WS_OP_CLOSE:
        on_close_frame(c, (const uint8_t *)payload, (size_t)h->payload_len);
        return;
    default:
        if (!c->ws_close_sent) on_data_frame(c, h, payload, utf8);
        return;
    }
}

/* Unmasks the payload bytes [rx.done, avail) of the frame at the head of the
 * input and, in a text message, validates them, carrying the UTF-8 state in
 * c->rx. So a frame that arrives over many reads is checked as it comes, each
 * byte once, and invalid UTF-8 fails the connection at the read that brings
 * it rather than when the frame is complete (Autobahn 6.4.3/6.4.4). The input
 * is processed from the frame start until the frame is whole (conn.c keeps it
 * in the stash), so the unmasked prefix stays in place. Returns 0 after
 * failing the connection. */
static int take_payload(fc_conn *c, const fc_ws_header *h, char *payload, size_t avail)
{
    int data = h->opcode < FC_WS_OP_CLOSE && !c->ws_close_sent; /* a data frame we act on */
    if (c->rx.done == 0 && data) {
        if (!data_frame_allowed(c, h)) return 0;
        c->rx.utf8 = c->frag ? c->frag->utf8_state : FC_UTF8_ACCEPT;
    }
    size_t done = c->rx.done;
    if (avail == done) return 1;
    fc_ws_unmask((uint8_t *)payload + done, avail - done, h->mask, done);
    uint8_t opcode = c->frag ? c->frag->opcode : h->opcode;
    if (data && opcode == FC_WS_OP_TEXT) {
        c->rx.utf8 = fc_utf8_validate(c->rx.utf8, (const uint8_t *)payload + done, avail - done);
        if (c->rx.utf8 == FC_UTF8_REJECT) {
            fail(c, FC_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
            return 0;
        }
    }
    c->rx.done = (uint32_t)avail;
    return 1;
}

size_t fc__ws_input(fc_conn *c, char *data, size_t len)
{
    fc_ws_header h;
    int r = fc_ws_header_parse((const uint8_t *)data, len, 1, FC_SRV(c)->cfg->max_message, &h);
    if (r < 0) {
        fail(c, (uint16_t)-r, r == -FC_WS_CLOSE_TOO_BIG ? "message too big" : "protocol error");
        return len;
    }
    if (r == 0) return 0; /* wait for the whole header */
    char *payload = data + r;
    size_t avail = len - (size_t)r < h.payload_len ? len - (size_t)r : (size_t)h.payload_len;
    if (!take_payload(c, &h, payload, avail)) return len;
    if (avail < h.payload_len) return 0; /* the rest of the frame is on its way */
    uint32_t utf8 = c->rx.utf8;
    c->rx = (fc_ws_rx){0};
    on_frame(c, &h, payload, utf8);
    return (size_t)r + (size_t)h.payload_len;
}

/* --- keep-alive ----------------------------------------------------------- */

/* Ping wheel visit: a connection that sent nothing since the last ping is
 * dead (any byte counts, see read_cb). One that is not being read (its
 * output is over --max-output) cannot show it is alive: the output limit's
 * grace period decides for it, and it gets no ping meanwhile. */
static void ping_visit(fc_conn *c)
{
    if (c->over_limit || !c->reading) {
        c->awaiting_pong = 0; /* judged afresh once it is read again */
        return;
    }
    if (c->awaiting_pong) {
        FC_DEBUG("ws", "no answer to ping within the interval: dropping connection");
        fc__conn_close(c);
        return;
    }
    c->awaiting_pong = 1;
    fc_buf *ping = FC_SRV(c)->ping_frame;
    if (!c->out.count && !c->writing && !c->tls) {
        /* Nothing queued (the idle case): write it now, which spares the
         * queue and the flush pass for the many connections of a wheel slot. */
        uv_buf_t b = uv_buf_init((char *)ping->data, ping->len);
        int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (r == (int)ping->len) return;
        if (r < 0 && r != UV_EAGAIN) {
            fc__conn_close(c);
            return;
        }
        fc_conn_send(c, fc_buf_ref(ping));
        if (r > 0) fc_outq_consume(&c->out, (size_t)r, NULL);
        return;
    }
    fc_conn_send(c, fc_buf_ref(ping));
}

void fc__ping_init(fc_server *srv)
{
    fc__wheel_init(srv, &srv->ping_wheel, srv->cfg->ping_interval, ping_visit);
}

void fc__ping_add(fc_conn *c)
{
    fc__wheel_add(&FC_SRV(c)->ping_wheel, c);
}

void fc__ws_sweep_closing(fc_server *srv, uint64_t now)
{
    fc_list *it = srv->closing_list.next;
    while (it != &srv->closing_list) {
        fc_list *next = it->next;
        fc_conn *c = fc_container_of(it, fc_conn, wheel_link);
        if (now - c->progress_ms >= FC_CLOSE_GRACE_MS) fc__conn_close(c);
        it = next;
    }
}

fc_buf *fc__ws_ping_frame(void)
{
    return control_frame(FC_WS_OP_PING, NULL, 0);
}
