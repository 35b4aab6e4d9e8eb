/* libFuzzer driver for src/tls/tls.c, the glue between OpenSSL and the loop
 * (our BIO, the decrypt-and-deliver loop, the ciphertext buffer). Mode 0
 * feeds the input as a client's first bytes, cut into pieces (a hostile
 * ClientHello). Mode 1 completes a real handshake with an in-process client,
 * then runs the input as a script of both sides writing, ciphertext moving in
 * pieces of any size, output written partly or handed over, a plaintext
 * buffer of any size, and checks that each side receives exactly what the
 * other sent, in order; bytes left at the end go in as garbage records. */
#include "tls/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STREAM_MAX 8192 /* bytes each side may write per input */

static fc_tls *server_tls;
static SSL_CTX *client_ctx;

static void init(void)
{
    if (server_tls) return;
    char cert[64], key[64], err[256] = "";
    snprintf(cert, sizeof cert, "/tmp/fc-fuzz-tls-%d.pem", (int)getpid());
    snprintf(key, sizeof key, "/tmp/fc-fuzz-tls-%d.key", (int)getpid());
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    CHECK(pkey && x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pkey);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_sign(x, pkey, EVP_sha256());
    FILE *cf = fopen(cert, "w"), *kf = fopen(key, "w");
    CHECK(cf && kf && PEM_write_X509(cf, x) &&
          PEM_write_PrivateKey(kf, pkey, NULL, NULL, 0, NULL, NULL));
    fclose(cf);
    fclose(kf);
    X509_free(x);
    EVP_PKEY_free(pkey);
    server_tls = fc_tls_new(cert, key, err, sizeof err);
    CHECK(server_tls);
    unlink(cert);
    unlink(key);
    client_ctx = SSL_CTX_new(TLS_client_method());
    CHECK(client_ctx);
}

/* The plaintext each side has received, to compare with what was sent. */
typedef struct stream {
    uint8_t sent[STREAM_MAX], got[STREAM_MAX];
    size_t n_sent, n_got;
} stream;

static int on_plain(void *arg, char *plain, size_t n)
{
    stream *st = arg;
    CHECK(st->n_got + n <= st->n_sent);
    CHECK(memcmp(st->sent + st->n_got, plain, n) == 0);
    st->n_got += n;
    return 0;
}

static char scratch[65536];
static uint8_t wire[1 << 17]; /* client-to-server ciphertext not yet fed */
static size_t wire_len;

static void client_pull(SSL *c, stream *down)
{
    uint8_t buf[4096];
    int r;
    while ((r = SSL_read(c, buf, sizeof buf)) > 0) {
        CHECK(down->n_got + (size_t)r <= down->n_sent);
        CHECK(memcmp(down->sent + down->n_got, buf, (size_t)r) == 0);
        down->n_got += (size_t)r;
    }
    ERR_clear_error();
}

static void take_wire(BIO *to_server)
{
    int r = BIO_read(to_server, wire + wire_len, (int)(sizeof wire - wire_len));
    if (r > 0) wire_len += (size_t)r;
}

/* Feeds up to n bytes of the wire in pieces of cut bytes. */
static fc_tls_status feed(fc_tls_conn *s, size_t n, size_t cut, size_t cap, stream *up)
{
    fc_tls_status st = FC_TLS_OK;
    if (n > wire_len) n = wire_len;
    size_t off = 0;
    while (off < n && st == FC_TLS_OK) {
        size_t len = n - off < cut ? n - off : cut;
        st = fc_tls_conn_input(s, (const char *)wire + off, len, scratch, cap, on_plain, up);
        off += len;
    }
    memmove(wire, wire + off, wire_len - off);
    wire_len -= off;
    return st;
}

/* Moves up to n bytes of the server's output to the client, writing it
 * partly (output_done) or handing it over (output_take). */
static void deliver_out(fc_tls_conn *s, BIO *from_server, size_t n, int take)
{
    size_t len;
    const char *p = fc_tls_conn_output(s, &len);
    if (!p) return;
    if (n > len) n = len;
    if (take) {
        size_t off;
        char *base = fc_tls_conn_output_take(s, &off, &len);
        BIO_write(from_server, base + off, (int)len);
        free(base);
        return;
    }
    BIO_write(from_server, p, (int)n);
    fc_tls_conn_output_done(s, n);
}

static void session_script(const uint8_t *data, size_t size, size_t cap)
{
    static stream up, down; /* client to server, server to client */
    up.n_sent = up.n_got = down.n_sent = down.n_got = 0;
    wire_len = 0;
    fc_tls_conn *s = fc_tls_conn_new(server_tls);
    SSL *c = SSL_new(client_ctx);
    CHECK(s && c);
    BIO *to_server = BIO_new(BIO_s_mem()), *from_server = BIO_new(BIO_s_mem());
    SSL_set_bio(c, from_server, to_server);
    SSL_set_connect_state(c);
    for (int i = 0; i < 8 && !(SSL_is_init_finished(c) && fc_tls_conn_established(s)); i++) {
        SSL_do_handshake(c);
        take_wire(to_server);
        CHECK(feed(s, wire_len, wire_len ? wire_len : 1, cap, &up) == FC_TLS_OK);
        deliver_out(s, from_server, SIZE_MAX, 0);
    }
    CHECK(SSL_is_init_finished(c) && fc_tls_conn_established(s));
    ERR_clear_error();

    size_t i = 0;
    while (i + 2 <= size) {
        uint8_t op = data[i], arg = data[i + 1];
        i += 2;
        size_t n = (size_t)arg * 37 + 1;
        switch (op % 4) {
        case 0:   /* the client writes arg bytes of the input */
        case 2: { /* the server writes them */
            stream *st = op % 4 == 0 ? &up : &down;
            size_t len = arg;
            if (len > size - i) len = size - i;
            if (len > STREAM_MAX - st->n_sent) len = STREAM_MAX - st->n_sent;
            if (!len) break;
            memcpy(st->sent + st->n_sent, data + i, len);
            st->n_sent += len;
            if (op % 4 == 0)
                CHECK(SSL_write(c, data + i, (int)len) == (int)len);
            else
                CHECK(fc_tls_conn_write(s, data + i, len) == 0);
            i += len;
            take_wire(to_server);
            break;
        }
        case 1: /* ciphertext to the server, cut into pieces */
            CHECK(feed(s, n, (size_t)(op >> 2) + 1, cap, &up) == FC_TLS_OK);
            break;
        case 3: /* ciphertext to the client */
            deliver_out(s, from_server, n, op & 4);
            client_pull(c, &down);
            break;
        }
    }
    /* Everything still on the way arrives, exactly. */
    for (take_wire(to_server); wire_len; take_wire(to_server))
        CHECK(feed(s, wire_len, 1 + size % 97, cap, &up) == FC_TLS_OK);
    deliver_out(s, from_server, SIZE_MAX, 0);
    client_pull(c, &down);
    CHECK(up.n_got == up.n_sent);
    CHECK(down.n_got == down.n_sent);
    /* Then the input's bytes as a record the session cannot accept. */
    if (size) {
        fc_tls_status st =
            fc_tls_conn_input(s, (const char *)data, size, scratch, cap, on_plain, &up);
        CHECK(st == FC_TLS_OK || st == FC_TLS_EPROTO || st == FC_TLS_CLOSED ||
              st == FC_TLS_EVERSION);
        CHECK(up.n_got == up.n_sent); /* nothing made up was delivered */
    }
    fc_tls_conn_shutdown(s);
    SSL_free(c);
    fc_tls_conn_free(s);
    ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 2) return 0;
    static const size_t caps[] = {1, 7, 100, 16384, 65536};
    size_t cap = caps[(data[0] >> 1) % 5];
    if (data[0] & 1) {
        session_script(data + 1, size - 1, cap);
        return 0;
    }
    /* A hostile first flight, cut into pieces of data[1] bytes. */
    fc_tls_conn *s = fc_tls_conn_new(server_tls);
    CHECK(s);
    static stream none;
    none.n_sent = none.n_got = 0;
    size_t cut = (size_t)data[1] + 1;
    fc_tls_status st = FC_TLS_OK;
    for (size_t off = 2; off < size && st == FC_TLS_OK; off += cut) {
        size_t len = size - off < cut ? size - off : cut;
        st = fc_tls_conn_input(s, (const char *)data + off, len, scratch, cap, on_plain, &none);
    }
    CHECK(none.n_got == 0); /* no plaintext without a handshake */
    size_t len;
    if (fc_tls_conn_output(s, &len)) fc_tls_conn_output_done(s, len);
    CHECK(fc_tls_conn_output(s, &len) == NULL);
    fc_tls_conn_free(s);
    ERR_clear_error();
    return 0;
}
