/* libflowcast live-update watch: TLS on a connection through memory BIOs.
 * libuv reads and writes the socket's ciphertext; OpenSSL only sees buffers,
 * so the watch stays one non-blocking loop, and its connect timeout also
 * bounds the handshake. */
#include "client/watch.h"

#include <stdlib.h>

#include <openssl/err.h>

#include "client/tls.h"

/* Writes what OpenSSL produced (handshake records, alerts, data) to the socket. */
static void flush(fcc__conn *c)
{
    size_t n = BIO_ctrl_pending(c->tls_out);
    if (n == 0) return;
    char *buf = malloc(n);
    if (!buf) {
        fcc__watch_conn_fail(c->w, FCC_ENOMEM, "out of memory");
        return;
    }
    int got = BIO_read(c->tls_out, buf, (int)n);
    if (got > 0) fcc__watch_write_raw(c, buf, (size_t)got);
    free(buf);
}

/* A failed TLS call: an untrusted certificate or a TLS error ends the watch
 * (retrying cannot fix it), a broken connection is retried. */
static void fail(fcc_watch *w, fcc__conn *c, int ssl_err)
{
    char msg[400];
    int code = fcc__tls_error(c->ssl, ssl_err, 0, w->url_text, msg, sizeof msg);
    if (code == FCC_ETLS)
        fcc__watch_finish(w, code, msg);
    else
        fcc__watch_conn_fail(w, code, msg);
}

/* Advances the handshake; once done, sends the upgrade request. 0 while the
 * connection lives (done or waiting for the server), -1 when it failed. */
static int handshake_step(fcc_watch *w, fcc__conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    flush(c);
    if (w->conn != c || c->dead) return -1;
    if (r == 1) {
        c->tls_ready = 1;
        fcc__watch_send_upgrade(w, c);
        return 0;
    }
    if (e == SSL_ERROR_WANT_READ) return 0;
    fail(w, c, e);
    return -1;
}

int fcc__watch_tls_start(fcc_watch *w, fcc__conn *c)
{
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
    SSL *ssl = in && out ? fcc__tls_new(w->tls, w->url.host, w->tls_session) : NULL;
    if (!ssl) {
        BIO_free(in);
        BIO_free(out);
        fcc__watch_conn_fail(w, FCC_ENOMEM, "out of memory");
        return -1;
    }
    /* An empty input BIO means "wait for more", not end of file. */
    BIO_set_mem_eof_return(in, -1);
    SSL_set_bio(ssl, in, out); /* ssl owns both now */
    c->ssl = ssl;
    c->tls_in = in;
    c->tls_out = out;
    return handshake_step(w, c);
}

/* Makes room for at least 16 KiB (one TLS record) of plaintext in rbuf. */
static int rbuf_room(fcc__conn *c)
{
    if (c->rcap - c->rlen >= 16384) return 0;
    size_t cap = c->rcap ? c->rcap * 2 : 65536;
    char *nb = realloc(c->rbuf, cap);
    if (!nb) return -1;
    c->rbuf = nb;
    c->rcap = cap;
    return 0;
}

void fcc__watch_tls_read(fcc_watch *w, fcc__conn *c, size_t n)
{
    if (BIO_write(c->tls_in, c->cbuf, (int)n) != (int)n) {
        fcc__watch_conn_fail(w, FCC_ENOMEM, "out of memory");
        return;
    }
    if (!c->tls_ready && (handshake_step(w, c) != 0 || !c->tls_ready)) return;
    size_t before = c->rlen;
    for (;;) {
        if (rbuf_room(c) != 0) {
            fcc__watch_conn_fail(w, FCC_ENOMEM, "out of memory");
            return;
        }
        ERR_clear_error();
        size_t room = c->rcap - c->rlen;
        int r = SSL_read(c->ssl, c->rbuf + c->rlen, room > 1u << 30 ? 1 << 30 : (int)room);
        if (r > 0) {
            c->rlen += (size_t)r;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        flush(c); /* e.g. the answer to a key update */
        if (w->conn != c || c->dead) return;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_ZERO_RETURN) break; /* EOF follows */
        fail(w, c, e);
        return;
    }
    if (c->rlen > before) fcc__watch_input(w, c);
}

void fcc__watch_tls_write(fcc__conn *c, const void *data, size_t len)
{
    if (!c->ssl || c->dead || len == 0) return;
    ERR_clear_error();
    /* A memory BIO takes everything: SSL_write completes or the session is
     * broken, which the read side reports. */
    if (SSL_write(c->ssl, data, (int)len) <= 0) {
        ERR_clear_error();
        return;
    }
    flush(c);
}

void fcc__watch_tls_free(fcc_watch *w, fcc__conn *c)
{
    if (!c->ssl) return;
    if (c->tls_ready) {
        /* Marks the session cleanly closed, so that it stays resumable. */
        SSL_shutdown(c->ssl);
        SSL_SESSION *s = fcc__tls_session(c->ssl);
        if (s) {
            SSL_SESSION_free(w->tls_session);
            w->tls_session = s;
        }
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->tls_in = c->tls_out = NULL;
}
