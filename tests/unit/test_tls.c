/* Unit tests for src/tls/tls.c: a server session driven by an OpenSSL client
 * over memory BIOs, with input cut into single bytes (records split
 * anywhere), the ciphertext buffer released when empty, bad records, TLS
 * 1.1 refused, close_notify both ways, reload (new sessions see the new
 * certificate, old ones go on) and load errors. Certificates are made here. */
#include "tls/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[64], cert_path[96], key_path[96];

/* Writes a self-signed EC certificate with this serial, and its key, to
 * cert_path and key_path (or to other paths). */
static int write_cert(long serial, const char *cpath, const char *kpath)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    if (!pkey || !x) return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    X509_sign(x, pkey, EVP_sha256());
    FILE *cf = fopen(cpath, "w"), *kf = fopen(kpath, "w");
    int ok = cf && kf && PEM_write_X509(cf, x) &&
             PEM_write_PrivateKey(kf, pkey, NULL, NULL, 0, NULL, NULL);
    if (cf) fclose(cf);
    if (kf) fclose(kf);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return ok ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/fc-tls-unit-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    return write_cert(1, cert_path, key_path);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

/* --- a client on memory BIOs ---------------------------------------------- */

typedef struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio; /* rbio: from the server; wbio: to the server */
} client;

static void client_init(client *cl, int max_version)
{
    cl->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cl->ctx);
    if (max_version) {
        SSL_CTX_set_min_proto_version(cl->ctx, max_version);
        SSL_CTX_set_max_proto_version(cl->ctx, max_version);
        SSL_CTX_set_cipher_list(cl->ctx, "DEFAULT:@SECLEVEL=0");
    }
    cl->ssl = SSL_new(cl->ctx);
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    SSL_set_alpn_protos(cl->ssl, alpn, sizeof alpn - 1);
    cl->rbio = BIO_new(BIO_s_mem());
    cl->wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(cl->ssl, cl->rbio, cl->wbio);
    SSL_set_connect_state(cl->ssl);
}

static void client_free(client *cl)
{
    SSL_free(cl->ssl);
    SSL_CTX_free(cl->ctx);
}

/* What the server delivered as plaintext. */
typedef struct sink {
    char data[65536];
    size_t len;
} sink;

static int collect(void *arg, char *plain, size_t n)
{
    sink *k = arg;
    assert_true(k->len + n <= sizeof k->data);
    memcpy(k->data + k->len, plain, n);
    k->len += n;
    return 0;
}

static char scratch[65536];

/* Moves the client's ciphertext into the server, chunk bytes per call, and
 * the server's output to the client. The last input status. */
static fc_tls_status pump(client *cl, fc_tls_conn *s, size_t chunk, sink *k)
{
    fc_tls_status st = FC_TLS_OK;
    sink none = {.len = 0};
    if (!k) k = &none; /* nothing is expected, but a sink must exist */
    static char buf[65536];
    int n;
    while ((n = BIO_read(cl->wbio, buf, sizeof buf)) > 0) {
        for (size_t off = 0; off < (size_t)n && st == FC_TLS_OK; off += chunk) {
            size_t len = (size_t)n - off < chunk ? (size_t)n - off : chunk;
            st = fc_tls_conn_input(s, buf + off, len, scratch, sizeof scratch, collect, k);
        }
    }
    size_t len;
    const char *out = fc_tls_conn_output(s, &len);
    if (out) {
        assert_int_equal(BIO_write(cl->rbio, out, (int)len), (int)len);
        fc_tls_conn_output_done(s, len);
    }
    return st;
}

static void handshake(client *cl, fc_tls_conn *s, size_t chunk)
{
    sink k = {.len = 0};
    for (int i = 0; i < 10 && !(SSL_is_init_finished(cl->ssl) && fc_tls_conn_established(s)); i++) {
        SSL_do_handshake(cl->ssl);
        assert_int_equal(pump(cl, s, chunk, &k), FC_TLS_OK);
    }
    assert_true(SSL_is_init_finished(cl->ssl));
    assert_true(fc_tls_conn_established(s));
    assert_int_equal(k.len, 0);
}

static long peer_serial(client *cl)
{
    X509 *x = SSL_get1_peer_certificate(cl->ssl);
    assert_non_null(x);
    long v = ASN1_INTEGER_get(X509_get_serialNumber(x));
    X509_free(x);
    return v;
}

/* --- tests ------------------------------------------------------------------ */

static void test_handshake_and_data_split_anywhere(void **state)
{
    (void)state;
    char err[256];
    fc_tls *t = fc_tls_new(cert_path, key_path, err, sizeof err);
    assert_non_null(t);
    fc_tls_conn *s = fc_tls_conn_new(t);
    client cl;
    client_init(&cl, 0);
    SSL_do_handshake(cl.ssl);
    /* The first byte a TLS client sends is what the server tells it apart by. */
    char first;
    assert_int_equal(BIO_get_mem_data(cl.wbio, NULL) > 0, 1);
    BIO_read(cl.wbio, &first, 1);
    assert_int_equal((unsigned char)first, FC_TLS_HANDSHAKE_RECORD);
    sink k = {.len = 0};
    assert_int_equal(fc_tls_conn_input(s, &first, 1, scratch, sizeof scratch, collect, &k),
                     FC_TLS_OK);
    handshake(&cl, s, 1); /* the rest of the ClientHello byte by byte */
    const unsigned char *proto;
    unsigned proto_len;
    SSL_get0_alpn_selected(cl.ssl, &proto, &proto_len);
    assert_int_equal(proto_len, 8);
    assert_memory_equal(proto, "http/1.1", 8);
    assert_int_equal(SSL_version(cl.ssl), TLS1_3_VERSION);

    /* 40,000 bytes in three records, fed in 7-byte pieces. */
    static char msg[40000];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (char)('a' + i % 26);
    assert_int_equal(SSL_write(cl.ssl, msg, sizeof msg), (int)sizeof msg);
    assert_int_equal(pump(&cl, s, 7, &k), FC_TLS_OK);
    assert_int_equal(k.len, sizeof msg);
    assert_memory_equal(k.data, msg, sizeof msg);

    /* And back: two writes, read by the client as one stream. */
    assert_int_equal(fc_tls_conn_write(s, "hello ", 6), 0);
    assert_int_equal(fc_tls_conn_write(s, msg, sizeof msg), 0);
    pump(&cl, s, 4096, &k);
    static char back[sizeof msg + 6];
    size_t got = 0;
    while (got < sizeof back) {
        int r = SSL_read(cl.ssl, back + got, (int)(sizeof back - got));
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_memory_equal(back, "hello ", 6);
    assert_memory_equal(back + 6, msg, sizeof msg);
    client_free(&cl);
    fc_tls_conn_free(s);
    fc_tls_free(t);
}

static void test_output_released_and_taken(void **state)
{
    (void)state;
    char err[256];
    fc_tls *t = fc_tls_new(cert_path, key_path, err, sizeof err);
    fc_tls_conn *s = fc_tls_conn_new(t);
    client cl;
    client_init(&cl, 0);
    handshake(&cl, s, 1 << 16);
    size_t len;
    assert_null(fc_tls_conn_output(s, &len)); /* idle: no buffer */
    assert_int_equal(len, 0);
    assert_int_equal(fc_tls_conn_write(s, "abc", 3), 0);
    const char *p = fc_tls_conn_output(s, &len);
    assert_non_null(p);
    fc_tls_conn_output_done(s, 5); /* a partial write */
    size_t off, rest;
    char *base = fc_tls_conn_output_take(s, &off, &rest);
    assert_int_equal(off, 5);
    assert_int_equal(rest, len - 5);
    assert_null(fc_tls_conn_output(s, &len)); /* the session starts afresh */
    assert_int_equal(fc_tls_conn_write(s, "def", 3), 0);
    fc_tls_conn_output(s, &len);
    assert_true(len > 3);
    /* Both pieces, in order, make the client's stream. */
    BIO_write(cl.rbio, base, (int)(off + rest));
    free(base);
    pump(&cl, s, 1 << 16, NULL);
    char out[8] = {0};
    assert_int_equal(SSL_read(cl.ssl, out, 3), 3);
    assert_int_equal(SSL_read(cl.ssl, out + 3, 3), 3);
    assert_string_equal(out, "abcdef");
    client_free(&cl);
    fc_tls_conn_free(s);
    fc_tls_free(t);
}

static void test_bad_record_fails_with_an_alert(void **state)
{
    (void)state;
    char err[256];
    fc_tls *t = fc_tls_new(cert_path, key_path, err, sizeof err);
    fc_tls_conn *s = fc_tls_conn_new(t);
    client cl;
    client_init(&cl, 0);
    handshake(&cl, s, 1 << 16);
    static const char junk[] = "\x17\x03\x03\x00\x10"
                               "0123456789abcdefGET / HTTP/1.1\r\n\r\n";
    sink k = {.len = 0};
    assert_int_equal(
        fc_tls_conn_input(s, junk, sizeof junk - 1, scratch, sizeof scratch, collect, &k),
        FC_TLS_EPROTO);
    assert_int_equal(k.len, 0);
    size_t len;
    assert_non_null(fc_tls_conn_output(s, &len)); /* the alert */
    assert_int_equal(fc_tls_conn_write(s, "x", 1), -1);
    fc_tls_conn_shutdown(s); /* no close_notify after a fatal error */
    size_t after;
    fc_tls_conn_output(s, &after);
    assert_int_equal(after, len);
    assert_int_equal(fc_tls_conn_input(s, "x", 1, scratch, sizeof scratch, collect, &k),
                     FC_TLS_EPROTO);
    client_free(&cl);
    fc_tls_conn_free(s);
    fc_tls_free(t);
}

static void test_tls11_refused(void **state)
{
    (void)state;
    char err[256];
    fc_tls *t = fc_tls_new(cert_path, key_path, err, sizeof err);
    fc_tls_conn *s = fc_tls_conn_new(t);
    client cl;
    client_init(&cl, TLS1_1_VERSION);
    SSL_do_handshake(cl.ssl);
    assert_int_equal(pump(&cl, s, 1 << 16, NULL), FC_TLS_EVERSION);
    assert_false(fc_tls_conn_established(s));
    assert_true(SSL_do_handshake(cl.ssl) <= 0); /* the client got protocol_version */
    ERR_clear_error();
    client_free(&cl);
    fc_tls_conn_free(s);
    fc_tls_free(t);
}

static void test_close_notify_both_ways(void **state)
{
    (void)state;
    char err[256];
    fc_tls *t = fc_tls_new(cert_path, key_path, err, sizeof err);
    fc_tls_conn *s = fc_tls_conn_new(t);
    client cl;
    client_init(&cl, 0);
    handshake(&cl, s, 1 << 16);
    SSL_shutdown(cl.ssl);
    assert_int_equal(pump(&cl, s, 1 << 16, NULL), FC_TLS_CLOSED);
    fc_tls_conn_shutdown(s);
    fc_tls_conn_shutdown(s); /* once */
    pump(&cl, s, 1 << 16, NULL);
    char c;
    assert_int_equal(SSL_read(cl.ssl, &c, 1), 0);
    assert_int_equal(SSL_get_error(cl.ssl, 0), SSL_ERROR_ZERO_RETURN);
    client_free(&cl);
    fc_tls_conn_free(s);
    fc_tls_free(t);
}

static void test_reload_new_sessions_only(void **state)
{
    (void)state;
    char err[256];
    fc_tls *t = fc_tls_new(cert_path, key_path, err, sizeof err);
    assert_non_null(t);
    fc_tls_conn *old = fc_tls_conn_new(t);
    client c1;
    client_init(&c1, 0);
    handshake(&c1, old, 1 << 16);
    assert_int_equal(peer_serial(&c1), 1);

    /* A session made before the reload but not yet in its handshake: the
     * certificate is chosen at the ClientHello, so it shows the new one. */
    fc_tls_conn *early = fc_tls_conn_new(t);
    assert_int_equal(write_cert(2, cert_path, key_path), 0);
    assert_int_equal(fc_tls_reload(t, err, sizeof err), 0);
    fc_tls_conn *fresh = fc_tls_conn_new(t);
    client c2, c3;
    client_init(&c2, 0);
    client_init(&c3, 0);
    handshake(&c2, fresh, 1 << 16);
    handshake(&c3, early, 1 << 16);
    assert_int_equal(peer_serial(&c2), 2);
    assert_int_equal(peer_serial(&c3), 2);

    /* The old session goes on, on the context it was made with. */
    sink k = {.len = 0};
    assert_int_equal(SSL_write(c1.ssl, "still", 5), 5);
    assert_int_equal(pump(&c1, old, 1 << 16, &k), FC_TLS_OK);
    assert_int_equal(k.len, 5);

    /* A bad file: refused, the current certificate stays. */
    FILE *f = fopen(cert_path, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    assert_int_equal(fc_tls_reload(t, err, sizeof err), -1);
    assert_non_null(strstr(err, "--tls-cert"));
    fc_tls_conn *after = fc_tls_conn_new(t);
    client c4;
    client_init(&c4, 0);
    handshake(&c4, after, 1 << 16);
    assert_int_equal(peer_serial(&c4), 2);

    client_free(&c1);
    client_free(&c2);
    client_free(&c3);
    client_free(&c4);
    fc_tls_conn_free(old);
    fc_tls_conn_free(early);
    fc_tls_conn_free(fresh);
    fc_tls_conn_free(after);
    fc_tls_free(t);
    assert_int_equal(write_cert(1, cert_path, key_path), 0); /* for the other tests */
}

static void test_load_errors(void **state)
{
    (void)state;
    char err[256], other_cert[128], other_key[128];
    assert_null(fc_tls_new("/nonexistent/cert.pem", key_path, err, sizeof err));
    assert_non_null(strstr(err, "--tls-cert /nonexistent/cert.pem: No such file"));
    assert_null(fc_tls_new(cert_path, "/nonexistent/key.pem", err, sizeof err));
    assert_non_null(strstr(err, "--tls-key /nonexistent/key.pem"));
    snprintf(other_cert, sizeof other_cert, "%s/other.pem", dir);
    snprintf(other_key, sizeof other_key, "%s/other.key", dir);
    assert_int_equal(write_cert(3, other_cert, other_key), 0);
    assert_null(fc_tls_new(cert_path, other_key, err, sizeof err));
    assert_non_null(strstr(err, "does not match the certificate"));
    assert_null(fc_tls_new(key_path, key_path, err, sizeof err)); /* a key is no certificate */
    assert_non_null(strstr(err, "--tls-cert"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data_split_anywhere),
        cmocka_unit_test(test_output_released_and_taken),
        cmocka_unit_test(test_bad_record_fails_with_an_alert),
        cmocka_unit_test(test_tls11_refused),
        cmocka_unit_test(test_close_notify_both_ways),
        cmocka_unit_test(test_reload_new_sessions_only),
        cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
