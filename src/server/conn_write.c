/* Connection output: queues flushed with one writev per connection per loop
 * turn, uv_write when the kernel buffer is full, delivery metrics. */
#include "server/internal.h"
#include "common/log.h"
#include "common/time.h"
#include "metrics/metrics.h"
#include "ws/frame.h"

#include <stdlib.h>

#define FLUSH_MAX_IOV 64
#define FLUSH_MAX_BYTES (256 * 1024)
#define FLUSH_ROUNDS                                                                               \
    4 /* writev calls per connection per turn, so one reader cannot starve others */

typedef struct fc_write_req {
    uv_write_t req;
    size_t bytes;
    char *owned; /* TLS: the ciphertext being written, freed here; NULL: queue entries */
} fc_write_req;

/* The clock, read once per connection flush and shared by its deliveries. */
static _Thread_local uint64_t flush_now_ns;

void fc__conn_delivered(const fc_buf *b)
{
    FC_METRIC_ADD(messages_written, 1);
    if (b->commit_ns && flush_now_ns > b->commit_ns)
        fc_metrics_observe_latency(flush_now_ns - b->commit_ns);
}

/* --- the output limit ---------------------------------------------------- */

/* Output was queued: past --max-output, c stops taking input (requests,
 * frames) and its --slow-timeout grace starts. */
static void output_grew(fc_conn *c)
{
    if (c->over_limit || fc_outq_cost(&c->out) <= FC_SRV(c)->cfg->max_output) return;
    c->over_limit = 1;
    c->over_since_ms = uv_now(FC_SRV(c)->loop);
    FC_METRIC_ADD(output_limit_reached, 1);
}

/* Output was written or dropped: once it is down to half the limit, c is no
 * longer over it and takes input again. Half, so that a trickle that only
 * just dips under the limit before the next answer refills it counts as
 * staying over it. */
void fc__conn_output_shrank(fc_conn *c)
{
    if (!c->over_limit || fc_outq_cost(&c->out) > FC_SRV(c)->cfg->max_output / 2) return;
    c->over_limit = 0;
    fc__conn_input_ready(c);
}

/* Over the limit past --slow-timeout: a WebSocket gets its backlog dropped
 * and 1008 queued behind the write in flight (the closing sweep drops it if
 * the peer does not read that within the grace period); anything else is
 * closed at once. */
static void close_over_limit(fc_conn *c, uint64_t now)
{
    size_t unsent = fc_outq_bytes(&c->out);
    FC_LOGF(FC_LOG_INFO, "server", ((fc_log_field[]){FC_LOG_INT("unsent_bytes", unsent)}), 1,
            "connection over its output limit (%zu bytes unsent) for %.1f s: closing", unsent,
            FC_SRV(c)->cfg->slow_timeout);
    FC_METRIC_ADD(output_limit_closed, 1);
    if (!fc_stream_is_ws((fc_stream_kind)c->kind)) {
        fc__conn_close(c);
        return;
    }
    fc_outq_drop_unlocked(&c->out);
    fc__conn_output_shrank(c);
    fc_conn_ws_close(c, FC_WS_CLOSE_POLICY, "output limit exceeded");
    c->close_after_write = 1;
    c->progress_ms = now;
}

static void sweep_list_over_limit(fc_list *list, uint64_t now, uint64_t grace)
{
    fc_list *it = list->next;
    while (it != list) {
        fc_list *next = it->next;
        fc_conn *c = fc_container_of(it, fc_conn, io_link);
        /* Once the close frame is queued, the closing sweep owns the deadline. */
        if (c->over_limit && !c->ws_close_sent && now - c->over_since_ms >= grace)
            close_over_limit(c, now);
        it = next;
    }
}

/* A connection over its limit has unsent output, so it is on one of these lists. */
void fc__conn_sweep_over_limit(fc_server *srv, uint64_t now)
{
    uint64_t grace = (uint64_t)(srv->cfg->slow_timeout * 1000.0);
    sweep_list_over_limit(&srv->blocked_list, now, grace);
    sweep_list_over_limit(&srv->flush_list, now, grace);
}

/* --- flushing ------------------------------------------------------------- */

/* The flush runs in the check phase, which follows the poll phase. Output
 * queued anywhere else (a timer: pings, heartbeats, expiry; a write that
 * completed at once, reported in the pending phase; a close callback) would
 * wait in the list while poll sleeps until some other event (the 250 ms
 * sweep) woke the loop: the first connection to join an empty list keeps
 * poll from sleeping. A fan-out still costs one flush pass per turn, and no
 * system call: starting and stopping the idle handle only link it. */
void fc__conn_schedule_flush(fc_conn *c)
{
    if (c->in_flush || c->writing || c->closing) return;
    fc_server *srv = FC_SRV(c);
    if (fc_list_empty(&srv->flush_list)) fc__server_flush_soon(srv);
    fc_list_remove(&c->io_link);
    fc_list_insert_tail(&srv->flush_list, &c->io_link);
    c->in_flush = 1;
}

static void on_write(uv_write_t *req, int status)
{
    fc_write_req *wr = (fc_write_req *)req;
    fc_conn *c = req->data;
    size_t bytes = wr->bytes;
    char *owned = wr->owned;
    free(wr);
    free(owned);
    c->writing = 0;
    if (status < 0 || c->closing) {
        fc__conn_close(c);
        return;
    }
    fc_list_remove(&c->io_link);
    if (!owned) { /* TLS ciphertext left the queue when it was encrypted */
        flush_now_ns = fc_time_mono_ns();
        fc_outq_consume(&c->out, bytes, fc__conn_delivered);
        c->out.locked = 0;
    }
    c->progress_ms = uv_now(FC_SRV(c)->loop);
    fc__conn_output_shrank(c);
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
    wr->owned = NULL;
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

int fc__conn_write_owned(fc_conn *c, char *base, size_t off, size_t len)
{
    fc_write_req *wr = malloc(sizeof *wr);
    if (!wr) {
        free(base);
        fc__conn_close(c);
        return -1;
    }
    wr->bytes = len;
    wr->owned = base;
    wr->req.data = c;
    uv_buf_t b = uv_buf_init(base + off, (unsigned)len);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        free(wr);
        free(base);
        fc__conn_close(c);
        return -1;
    }
    c->writing = 1;
    c->progress_ms = uv_now(FC_SRV(c)->loop);
    fc_list_remove(&c->io_link);
    fc_list_insert_tail(&FC_SRV(c)->blocked_list, &c->io_link);
    return 0;
}

static void flush(fc_conn *c)
{
    c->in_flush = 0;
    flush_now_ns = fc_time_mono_ns();
    fc_list_remove(&c->io_link);
    if (c->broken) {
        fc__conn_close(c);
        return;
    }
    if (c->tls) {
        fc__tls_flush(c);
        return;
    }
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
            fc_outq_consume(&c->out, (size_t)r, fc__conn_delivered);
            c->progress_ms = uv_now(FC_SRV(c)->loop);
            fc__conn_output_shrank(c);
        }
        if ((size_t)r < bytes) write_async(c);
    }
    if (!c->out.count && c->close_after_write && !c->closing && !c->deferred) fc__conn_close(c);
}

void fc__conn_flush_all(fc_server *srv)
{
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
        flush(c); /* unlinks c from pass */
    }
}

fc_server *fc_conn_server(const fc_conn *c)
{
    return FC_SRV(c);
}

/* Nothing may follow a WebSocket close frame (RFC 6455 §5.5.1): not a
 * change published while the peer's answer is awaited or the echo is being
 * written, not an op reply, not the token_expired notice of an expiry. */
static int sending_ended(const fc_conn *c)
{
    return c->closing || c->ws_close_sent;
}

void fc_conn_send(fc_conn *c, fc_buf *frame)
{
    if (sending_ended(c)) {
        fc_buf_unref(frame);
        return;
    }
    /* A frame that cannot be queued (out of memory) would be a change the
     * client misses without knowing: the connection is closed instead (it
     * reconnects and resumes), by the next flush, since this may run inside a
     * hub fan-out. */
    if (fc_outq_push(&c->out, frame) != 0) c->broken = 1;
    output_grew(c);
    fc__conn_schedule_flush(c);
}

int fc_conn_send_coalesce(fc_conn *c, fc_buf *frame, uint32_t limit)
{
    if (sending_ended(c)) {
        fc_buf_unref(frame);
        return 0;
    }
    /* Only a subscriber whose socket takes no more (a write is pending) is
     * slow: a reader that keeps up can still be handed more than limit
     * changes in one loop turn (a large group commit), and must see each. */
    int dropped = fc_outq_push_coalesce(&c->out, frame, c->writing ? limit : UINT32_MAX);
    if (dropped < 0) c->broken = 1; /* as in fc_conn_send */
    output_grew(c);
    fc__conn_schedule_flush(c);
    return dropped > 0 ? dropped : 0;
}
