/* libFuzzer driver for libflowcast's side of a live watch against a hostile
 * server (src/client/watch_msg.c, wire.c): the 101 answer's head, then frames
 * (fragments, control frames, close), the update and op messages in them
 * (token errors included), and the per-workflow seq that makes delivery
 * exactly-once. The connection code of watch.c and the token timers of
 * watch_auth.c are replaced by stubs that record what the client would do.
 *
 * Input: byte 0 picks the watch (single workflow, several, or all) and where
 * the bytes are cut into reads; then the server's handshake answer, which
 * ends at its blank line; then frames. */
#include "client/watch.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "ws/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* --- watch.c, as stubs ------------------------------------------------------- */

void fcc__watch_emit(fcc_watch *w, fcc_state st, unsigned attempt, uint64_t delay, int err,
                     const char *reason)
{
    (void)w, (void)st, (void)attempt, (void)delay, (void)err, (void)reason;
}

void fcc__watch_conn_fail(fcc_watch *w, int err, const char *reason)
{
    (void)err;
    CHECK(reason);
    if (w->conn) w->conn->dead = 1;
}

void fcc__watch_finish(fcc_watch *w, int err, const char *reason)
{
    (void)err;
    CHECK(reason);
    w->closing = 1;
    if (w->conn) w->conn->dead = 1;
}

void fcc__watch_send(fcc_watch *w, uint8_t opcode, const void *payload, size_t len)
{
    CHECK(w->conn && !w->conn->dead);
    CHECK(opcode == FC_WS_OP_TEXT || opcode == FC_WS_OP_PONG || opcode == FC_WS_OP_CLOSE);
    CHECK(opcode == FC_WS_OP_TEXT || len <= 125);
    (void)payload;
}

/* watch_auth.c (timers and the token callback) is stubbed the same way:
 * only what watch_msg.c asks of it. */
int fcc__watch_auth_answer(fcc_watch *w, const char *op, const char *code, const char *id,
                           int64_t exp, int has_exp)
{
    (void)w, (void)code, (void)id, (void)exp, (void)has_exp;
    CHECK(op);
    return strcmp(op, "authenticated") == 0;
}

void fcc__watch_auth_expired(fcc_watch *w, const char *reason)
{
    CHECK(reason);
    if (w->conn) w->conn->dead = 1;
}

/* watch_set.c: only a watch whose set changed while running switches streams. */
void fcc__watch_switch_stream(fcc_watch *w)
{
    CHECK(w->dynamic);
}

size_t fcc__watch_sub_count(const fcc_watch *w)
{
    size_t n = 0;
    for (const fc_list *l = w->sub_list.next; l != &w->sub_list; l = l->next)
        n++;
    return n;
}

/* --- the application ---------------------------------------------------------- */

/* The last (epoch, seq) delivered per workflow id (reset by a deletion). */
#define TRACKED 8
static struct {
    char id[FCC__ID_MAX + 1];
    int64_t epoch, seq;
} seen[TRACKED];

static void on_update(fcc_watch *w, const fcc_update *u, void *data)
{
    (void)w, (void)data;
    CHECK(u->workflow_id && u->message && u->json);
    CHECK(strlen(u->workflow_id) <= FCC__ID_MAX);
    int slot = -1;
    for (int i = 0; i < TRACKED && slot < 0; i++)
        if (strcmp(seen[i].id, u->workflow_id) == 0 || !seen[i].id[0]) slot = i;
    if (slot < 0) return;
    if (!seen[slot].id[0]) {
        strcpy(seen[slot].id, u->workflow_id);
        seen[slot].epoch = u->epoch;
        seen[slot].seq = -1;
    }
    /* Exactly once, in order within an incarnation: a seq the application
     * already has comes back only as a resync; another epoch is a new
     * incarnation, whose seq starts again; nothing follows a deletion until
     * it is re-added. */
    if (!u->resync && !u->deleted && u->epoch == seen[slot].epoch) CHECK(u->seq > seen[slot].seq);
    seen[slot].epoch = u->epoch;
    seen[slot].seq = u->deleted ? -1 : u->seq;
    if (u->deleted) seen[slot].id[0] = '\0';
}

/* --- one session ------------------------------------------------------------- */

static void feed(fcc_watch *w, fcc__conn *c, const uint8_t *p, size_t n)
{
    if (c->rlen + n > c->rcap) {
        c->rcap = c->rlen + n;
        c->rbuf = realloc(c->rbuf, c->rcap ? c->rcap : 1);
        CHECK(c->rbuf);
    }
    if (n) memcpy(c->rbuf + c->rlen, p, n);
    c->rlen += n;
    fcc__watch_frames(w, c);
    CHECK(c->dead || c->rlen <= c->rcap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    memset(seen, 0, sizeof seen);
    fcc_watch w;
    memset(&w, 0, sizeof w);
    CHECK(fc_map_init(&w.subs) == 0);
    fc_list_init(&w.sub_list);
    w.o.on_update = on_update;
    static const char *const ids[] = {"w1", "w2", "w-3"};
    int nsubs = 1 + (data[0] & 3) % 3;
    for (int i = 0; i < nsubs; i++)
        CHECK(fcc__sub_add(&w, ids[i], 0, (data[0] & 4) ? 2 : -1));
    w.all = (data[0] & 8) != 0;
    fcc__conn c;
    memset(&c, 0, sizeof c);
    c.w = &w;
    w.conn = &c;
    char path[256]; /* which stream the connection would have opened */
    c.single = fcc__watch_path(&w, path, sizeof path);
    const uint8_t *in = data + 1;
    size_t len = size - 1;

    /* The handshake answer: what the client reads of it decides nothing
     * here but must parse safely, body included. */
    const uint8_t *blank = memmem(in, len, "\r\n\r\n", 4);
    size_t head = blank ? (size_t)(blank - in) + 4 : 0;
    fcc__http_head h;
    int r = fcc__http_head_parse((const char *)in, head ? head : len, &h);
    CHECK(r == 1 || r == 0 || r == FCC_EPROTO);
    if (r == 1) {
        CHECK(h.head_len == head && h.status >= 0 && h.status <= 999);
        CHECK(strlen(h.accept) < sizeof h.accept);
        fcc_error e;
        fcc__error_from_body(h.status, (const char *)in + head, len - head, &e);
        CHECK(strlen(e.message) < sizeof e.message && strlen(e.code) < sizeof e.code);
    }
    in += head, len -= head;

    fcc__watch_subscribe(&w);
    size_t step = data[0] & 0x80 ? 1 + (data[0] >> 4 & 7) * 13 : len;
    for (size_t off = 0; off < len && !c.dead && !w.closing;) {
        size_t n = len - off < step ? len - off : step;
        feed(&w, &c, in + off, n);
        off += n;
    }
    free(c.rbuf);
    free(c.msg);
    while (!fc_list_empty(&w.sub_list))
        fcc__sub_remove(&w, fc_container_of(w.sub_list.next, fcc__sub, link));
    fc_map_destroy(&w.subs);
    free(w.pending);
    return 0;
}
