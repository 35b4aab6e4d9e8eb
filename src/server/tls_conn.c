/* The TLS layer of a connection (--tls-cert): ciphertext read from the
 * socket is decrypted into the loop's tls_buf and handed on like plain
 * input; queued output (shared frames, answers) stays plaintext in the
 * queue, where coalescing and the limits see it, and is encrypted only at
 * flush time, a bounded amount per round, straight from the shared buffers.
 * A plain-TCP connection never comes here. */
#include "server/internal.h"
#include "common/log.h"
#include "metrics/metrics.h"
#include "tls/tls.h"

#include <stdio.h>
#include <string.h>

#define ENCRYPT_MAX_IOV 64
#define ENCRYPT_MAX_BYTES (64 * 1024) /* plaintext per round: bounds the ciphertext buffer */
#define ENCRYPT_ROUNDS 4              /* per connection per turn, as for plain output */
#define RECORD_MAX 16384              /* TLS plaintext per record */
#define GATHER_MAX 4096               /* entries up to this size share records */

/* Counts the handshake once it is complete: before the first request is
 * handed on (it may come in the same read, and may be a /metrics scrape). */
static void note_established(fc_conn *c)
{
    if (c->tls_up || !fc_tls_conn_established(FC_TLS_SESSION(c))) return;
    c->tls_up = 1;
    FC_METRIC_ADD(tls_handshakes, 1);
}

static int deliver_plain(void *arg, char *plain, size_t n)
{
    fc_conn *c = arg;
    note_established(c);
    fc__conn_take_input(c, plain, n);
    return c->closing;
}

static void count_failure(fc_conn *c, fc_tls_status st)
{
    c->tls_counted = 1;
    if (st == FC_TLS_EVERSION)
        FC_METRIC_ADD(tls_fail_version, 1);
    else if (st == FC_TLS_CLOSED)
        FC_METRIC_ADD(tls_fail_closed, 1);
    else
        FC_METRIC_ADD(tls_fail_protocol, 1);
}

/* Plain HTTP (or anything but a ClientHello) to the TLS port: a TLS alert
 * would leave a curl or a browser user with a cryptic error or a hang, so
 * the answer is a plain 400 saying what to do, and the connection ends. */
static void refuse_plain(fc_conn *c)
{
    static const char body[] = "{\"error\":{\"code\":\"tls_required\",\"message\":\"this port "
                               "speaks TLS only: use https:// or wss://\"}}\n";
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof body - 1, body);
    FC_METRIC_ADD(tls_fail_not_tls, 1);
    fc_metrics_http_status(400);
    FC_DEBUG("tls", "plain bytes to the TLS port: 400 and close");
    fc_tls_conn_free(FC_TLS_SESSION(c));
    FC_TLS_SESSION(c) = NULL;
    c->tls = 0; /* from here on the connection is plain: the answer goes out as it is */
    c->close_after_write = 1;
    c->last_request = 1;
    fc_buf *b = fc_buf_copy(msg, (size_t)n);
    if (!b) {
        fc__conn_close(c);
        return;
    }
    fc_conn_send(c, b);
}

void fc__tls_input(fc_conn *c, const char *data, size_t len)
{
    fc_tls_conn *s = FC_TLS_SESSION(c);
    if (!c->tls_started) {
        if ((unsigned char)data[0] != FC_TLS_HANDSHAKE_RECORD) {
            refuse_plain(c);
            return;
        }
        c->tls_started = 1;
    }
    fc_tls_status st =
        fc_tls_conn_input(s, data, len, FC_SRV(c)->tls_buf, FC_READ_BUF_SIZE, deliver_plain, c);
    note_established(c);
    if (c->closing) return;
    if (st != FC_TLS_OK) {
        if (!c->tls_up) {
            count_failure(c, st);
            FC_DEBUG("tls", "handshake failed (%d): closing", (int)st);
        }
        fc__conn_close(c); /* the alert or close_notify goes out in fc__tls_goodbye */
        return;
    }
    size_t pending;
    if (fc_tls_conn_output(s, &pending)) fc__conn_schedule_flush(c); /* handshake, tickets */
}

/* Encrypts the head of the queue (up to ENCRYPT_MAX_BYTES) and drops it from
 * the queue. Small entries, such as change frames, are gathered into shared
 * records: one AEAD pass and 22 bytes of overhead for many frames instead of
 * one each. A lone entry or a large one is encrypted where it lies, so a
 * shared frame is never copied per subscriber but into a record. 0 or -1. */
static int encrypt_queue(fc_conn *c)
{
    uv_buf_t iov[ENCRYPT_MAX_IOV];
    size_t bytes;
    int n = fc_outq_iov(&c->out, iov, ENCRYPT_MAX_IOV, ENCRYPT_MAX_BYTES, &bytes);
    char rec[RECORD_MAX];
    size_t fill = 0;
    for (int i = 0; i < n; i++) {
        size_t len = iov[i].len;
        int direct = n == 1 || len > GATHER_MAX;
        if (fill && (direct || fill + len > sizeof rec)) { /* what was gathered goes first */
            if (fc_tls_conn_write(FC_TLS_SESSION(c), rec, fill) != 0) return -1;
            fill = 0;
        }
        if (direct) {
            if (fc_tls_conn_write(FC_TLS_SESSION(c), iov[i].base, len) != 0) return -1;
            continue;
        }
        memcpy(rec + fill, iov[i].base, len);
        fill += len;
    }
    if (fill && fc_tls_conn_write(FC_TLS_SESSION(c), rec, fill) != 0) return -1;
    fc_outq_consume(&c->out, bytes, fc__conn_delivered);
    fc__conn_output_shrank(c);
    return 0;
}

/* Writes the ciphertext waiting in the session: 1 when all of it went,
 * 0 when the rest went to uv_write (or c closed). */
static int write_pending(fc_conn *c)
{
    size_t len;
    const char *p = fc_tls_conn_output(FC_TLS_SESSION(c), &len);
    if (!p) return 1;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == UV_EAGAIN) r = 0;
    if (r < 0) {
        fc__conn_close(c);
        return 0;
    }
    if (r > 0) {
        fc_tls_conn_output_done(FC_TLS_SESSION(c), (size_t)r);
        c->progress_ms = uv_now(FC_SRV(c)->loop);
    }
    if ((size_t)r == len) return 1;
    /* The kernel buffer is full: the rest waits for writability, in a buffer
     * the write owns, and the session starts a new one for what follows. */
    size_t off;
    char *base = fc_tls_conn_output_take(FC_TLS_SESSION(c), &off, &len);
    fc__conn_write_owned(c, base, off, len);
    return 0;
}

void fc__tls_flush(fc_conn *c)
{
    for (int round = 0;; round++) {
        if (!write_pending(c)) return;
        if (!c->out.count) break;
        if (round == ENCRYPT_ROUNDS) {
            fc__conn_schedule_flush(c); /* more next turn, after the others */
            return;
        }
        if (encrypt_queue(c) != 0) {
            fc__conn_close(c);
            return;
        }
    }
    if (c->close_after_write && !c->closing && !c->deferred) fc__conn_close(c);
}

void fc__tls_goodbye(fc_conn *c)
{
    if (c->tls_started && !c->tls_counted && !c->tls_up)
        count_failure(c, FC_TLS_CLOSED); /* left (or was dropped) mid-handshake */
    if (c->writing) return; /* anything written now would overtake the write in flight */
    fc_tls_conn_shutdown(FC_TLS_SESSION(c));
    size_t len;
    const char *p = fc_tls_conn_output(FC_TLS_SESSION(c), &len);
    if (!p) return;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1); /* best effort: the socket closes next */
}

void fc__tls_timed_out(fc_conn *c)
{
    if (c->tls_up) return;
    c->tls_counted = 1;
    FC_METRIC_ADD(tls_fail_timeout, 1);
    FC_DEBUG("tls", "handshake not done within --request-timeout: closing");
}
