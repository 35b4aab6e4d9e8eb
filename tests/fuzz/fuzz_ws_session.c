/* libFuzzer driver for the WebSocket session (src/server/ws_session.c) as a
 * unit: bytes in, events out. The frame parser, unmasking, the incremental
 * UTF-8 check, fragment reassembly, control frames and the closing
 * handshake run on a connection without a socket; what the session queues
 * (frames) and hands up (text messages of a multi stream) is recorded.
 *
 * The oracle is differential: the same bytes fed in one read, one byte per
 * read, and in reads cut where the input says must give exactly the same
 * events. That is the promise of incremental processing: a frame's payload is
 * checked as it arrives, but arriving in pieces changes nothing else.
 *
 * Input: byte 0 selects the stream kind and --max-message, byte 1 seeds the
 * cuts, the rest is what the client sends after the upgrade. */
#include "server/ws_session.c"

#include <stdint.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* --- what the session calls outside ws_session.c ---------------------------- */

/* Everything the session queued or handed up, in order, each record tagged. */
static struct {
    uint8_t *p;
    size_t len, cap;
} events;

static void record(uint8_t tag, const void *p, size_t n)
{
    if (events.len + n + 5 > events.cap) {
        size_t cap = events.cap ? events.cap : 4096;
        while (cap < events.len + n + 5)
            cap *= 2;
        events.p = realloc(events.p, cap);
        CHECK(events.p);
        events.cap = cap;
    }
    uint8_t *o = events.p + events.len;
    o[0] = tag;
    memcpy(o + 1, &n, 4);
    if (n) memcpy(o + 5, p, n);
    events.len += n + 5;
}

void fc_conn_send(fc_conn *c, fc_buf *frame)
{
    CHECK(!c->closing);
    /* A queued frame is one well-formed server frame. */
    fc_ws_header h;
    int r = fc_ws_header_parse(frame->data, frame->len, 0, UINT64_MAX, &h);
    CHECK(r > 0 && h.fin && !h.masked && (size_t)r + h.payload_len == frame->len);
    if (h.opcode == FC_WS_OP_CLOSE) {
        uint16_t code;
        CHECK(fc_ws_close_parse(frame->data + r, (size_t)h.payload_len, &code) == 0);
    }
    if (h.opcode == FC_WS_OP_TEXT)
        CHECK(fc_utf8_validate(FC_UTF8_ACCEPT, frame->data + r, (size_t)h.payload_len) ==
              FC_UTF8_ACCEPT);
    record('F', frame->data, frame->len);
    fc_buf_unref(frame);
}

void fc__conn_close(fc_conn *c)
{
    record('X', NULL, 0);
    c->closing = 1;
}

static void on_text(fc_conn *c, const char *text, size_t len)
{
    CHECK(len <= FC_SRV(c)->cfg->max_message);
    CHECK(fc_utf8_validate(FC_UTF8_ACCEPT, (const uint8_t *)text, len) == FC_UTF8_ACCEPT);
    record('T', text, len);
}

static const fc_server_handlers handlers = {.on_text = on_text};

/* --- a connection without a socket -------------------------------------------- */

static fc_config cfg;
static fc_server srv;
static uv_loop_t loop;

static void setup_once(void)
{
    static int done;
    if (done) return;
    done = 1;
    CHECK(uv_loop_init(&loop) == 0);
    loop.data = &srv;
    srv.loop = &loop;
    srv.cfg = &cfg;
    srv.handlers = &handlers;
    fc_list_init(&srv.closing_list);
}

/* Feeds the client's bytes as conn.c does: each read is appended to what is
 * left of the earlier ones, frames are consumed from the front, a partial
 * frame stays at the front until more arrives, and after a close the rest is
 * discarded. cuts[] are the read boundaries. */
static void run(fc_stream_kind kind, const uint8_t *in, size_t len, const size_t *cuts,
                size_t ncuts)
{
    fc_conn c;
    memset(&c, 0, sizeof c);
    c.tcp.loop = &loop;
    c.kind = (uint8_t)kind;
    fc_list_init(&c.wheel_link);
    fc_list_init(&c.io_link);
    events.len = 0;

    uint8_t *stash = malloc(len ? len : 1);
    CHECK(stash);
    size_t have = 0, prev = 0;
    for (size_t k = 0; k <= ncuts && !c.closing; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        memcpy(stash + have, in + prev, end - prev);
        have += end - prev;
        prev = end;
        size_t off = 0;
        while (off < have && !c.closing && !c.close_after_write) {
            size_t n = fc__ws_input(&c, (char *)stash + off, have - off);
            CHECK(n <= have - off);
            if (n == 0) break;
            off += n;
        }
        if (c.close_after_write) off = have; /* failing: the rest is discarded */
        memmove(stash, stash + off, have - off);
        have -= off;
    }
    free(stash);
    fc_list_remove(&c.wheel_link);
    fc__ws_free_frag(&c);
}

static uint8_t *snapshot(size_t *n)
{
    *n = events.len;
    uint8_t *p = malloc(events.len ? events.len : 1);
    CHECK(p);
    if (events.len) memcpy(p, events.p, events.len);
    return p;
}

static int same_events(const uint8_t *p, size_t n)
{
    return events.len == n && (n == 0 || memcmp(events.p, p, n) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    setup_once();
    static const uint64_t limits[] = {0, 1, 125, 126, 1024, 65536};
    fc_stream_kind kind = data[0] & 1 ? FC_WS_MULTI : FC_WS_ECHO;
    cfg.max_message = limits[(data[0] >> 1) % (sizeof limits / sizeof *limits)];
    uint32_t rnd = data[1] | 0x100u;
    const uint8_t *in = data + 2;
    size_t len = size - 2;

    run(kind, in, len, NULL, 0);
    size_t whole_len;
    uint8_t *whole = snapshot(&whole_len);

    size_t *cuts = malloc((len ? len : 1) * sizeof *cuts);
    CHECK(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    run(kind, in, len, cuts, len ? len - 1 : 0);
    CHECK(same_events(whole, whole_len));

    size_t ncuts = 0;
    for (size_t at = 0;;) {
        rnd ^= rnd << 13, rnd ^= rnd >> 17, rnd ^= rnd << 5;
        at += 1 + rnd % 97;
        if (at >= len) break;
        cuts[ncuts++] = at;
    }
    run(kind, in, len, cuts, ncuts);
    CHECK(same_events(whole, whole_len));

    free(cuts);
    free(whole);
    return 0;
}
