/* Server-side TLS on OpenSSL through a BIO of our own: reads come from the
 * bytes the loop just read (no copy into a BIO buffer), writes go into a
 * per-session buffer that exists only while it holds ciphertext. */
#include "tls/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Mozilla's "intermediate" configuration (v5.7) for TLS 1.2; TLS 1.3 keeps
 * OpenSSL's suites, which are the same three it names. */
#define INTERMEDIATE_CIPHERS                                                                       \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define GROUPS "X25519:P-256:P-384"
#define OUT_MIN_CAP 4096

struct fc_tls {
    pthread_mutex_t lock; /* guards ctx: a reload swaps it under the loops */
    SSL_CTX *ctx;
    BIO_METHOD *meth;
    const char *cert_path, *key_path;
};

struct fc_tls_conn {
    SSL *ssl;
    const char *in; /* ciphertext being fed (fc_tls_conn_input only) */
    size_t in_len;
    char *out; /* ciphertext to write; NULL when none */
    size_t out_off, out_len, out_cap;
    unsigned oom : 1;    /* the output could not grow: the session is lost */
    unsigned failed : 1; /* a fatal error: no close_notify, no more records */
    unsigned bye : 1;    /* close_notify queued */
};

/* --- the BIO ---------------------------------------------------------------- */

static int bio_write(BIO *b, const char *data, int len)
{
    fc_tls_conn *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t need = s->out_len + (size_t)len;
    if (need > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap : OUT_MIN_CAP;
        while (cap < need)
            cap *= 2;
        char *p = realloc(s->out, cap);
        if (!p) {
            s->oom = 1;
            return -1;
        }
        s->out = p;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, data, (size_t)len);
    s->out_len = need;
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    fc_tls_conn *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (s->in_len == 0) {
        BIO_set_retry_read(b); /* "no more for now", not end of stream */
        return -1;
    }
    size_t n = s->in_len < (size_t)len ? s->in_len : (size_t)len;
    memcpy(buf, s->in, n);
    s->in += n;
    s->in_len -= n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* the loop flushes; nothing else applies */
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* --- the context ------------------------------------------------------------ */

/* ALPN: HTTP/1.1 is all we speak; a client that offers ALPN without it (h2
 * only) gets no_application_protocol rather than bytes it cannot parse. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* Runs at every ClientHello (with or without SNI) and chooses the context,
 * hence the certificate, for the handshake: one for every name today (a
 * table by name would go here). Taking the current one here rather than at
 * accept means a connection accepted just before a reload already shows the
 * new certificate. */
static int on_server_name(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    fc_tls *t = arg;
    pthread_mutex_lock(&t->lock);
    if (SSL_get_SSL_CTX(ssl) != t->ctx) SSL_set_SSL_CTX(ssl, t->ctx);
    pthread_mutex_unlock(&t->lock);
    return SSL_TLSEXT_ERR_OK;
}

/* An encrypted key would make OpenSSL prompt on the terminal: refuse it. */
static int no_password(char *buf, int size, int rwflag, void *arg)
{
    (void)buf, (void)size, (void)rwflag, (void)arg;
    return 0;
}

static void set_err(char *err, size_t errlen, const char *what, const char *path, const char *why)
{
    snprintf(err, errlen, "%s %s: %s", what, path, why);
}

/* OpenSSL's reason for the last failure, for an error message. */
static const char *ssl_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_last_error());
    return r ? r : "not usable";
}

static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        set_err(err, errlen, what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static SSL_CTX *ctx_load(fc_tls *t, char *err, size_t errlen)
{
    if (check_readable("--tls-cert", t->cert_path, err, errlen) != 0 ||
        check_readable("--tls-key", t->key_path, err, errlen) != 0)
        return NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context: %s", ssl_reason());
        return NULL;
    }
    static const unsigned char sid_ctx[] = "flowcast";
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, INTERMEDIATE_CIPHERS) ||
        !SSL_CTX_set1_groups_list(ctx, GROUPS) ||
        !SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1)) {
        snprintf(err, errlen, "cannot set the TLS defaults: %s", ssl_reason());
        goto fail;
    }
    /* Renegotiation is a way to make the server do handshakes for free. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Idle sessions give their record buffers back (about 34 KiB each). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption by stateless tickets only: a server-side cache would hold a
     * session per client for its lifetime; one ticket per handshake is what
     * a reconnecting client needs. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_default_passwd_cb(ctx, no_password);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_path) != 1) {
        set_err(err, errlen, "--tls-cert", t->cert_path, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key_path, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(err, errlen, "--tls-key %s does not match the certificate in --tls-cert %s",
                     t->key_path, t->cert_path);
        else
            set_err(err, errlen, "--tls-key", t->key_path, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "--tls-key %s does not match the certificate in --tls-cert %s",
                 t->key_path, t->cert_path);
        goto fail;
    }
    ERR_clear_error();
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

fc_tls *fc_tls_new(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
    fc_tls *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->cert_path = cert_path;
    t->key_path = key_path;
    pthread_mutex_init(&t->lock, NULL);
    t->meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "flowcast");
    if (!t->meth || !BIO_meth_set_write(t->meth, bio_write) ||
        !BIO_meth_set_read(t->meth, bio_read) || !BIO_meth_set_ctrl(t->meth, bio_ctrl) ||
        !BIO_meth_set_create(t->meth, bio_create)) {
        snprintf(err, errlen, "out of memory");
        fc_tls_free(t);
        return NULL;
    }
    t->ctx = ctx_load(t, err, errlen);
    if (!t->ctx) {
        fc_tls_free(t);
        return NULL;
    }
    return t;
}

int fc_tls_reload(fc_tls *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = ctx_load(t, err, errlen); /* outside the lock: it reads files */
    if (!ctx) return -1;
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* sessions made from it hold their own references */
    return 0;
}

void fc_tls_free(fc_tls *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->meth);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* --- sessions ----------------------------------------------------------------- */

fc_tls_conn *fc_tls_conn_new(fc_tls *t)
{
    fc_tls_conn *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    BIO *bio = BIO_new(t->meth);
    pthread_mutex_lock(&t->lock);
    s->ssl = bio ? SSL_new(t->ctx) : NULL;
    pthread_mutex_unlock(&t->lock);
    if (!s->ssl) {
        BIO_free(bio);
        free(s);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(bio, s);
    SSL_set_bio(s->ssl, bio, bio); /* one BIO both ways; the SSL owns it */
    SSL_set_accept_state(s->ssl);
    return s;
}

void fc_tls_conn_free(fc_tls_conn *s)
{
    if (!s) return;
    SSL_free(s->ssl);
    free(s->out);
    free(s);
}

int fc_tls_conn_established(const fc_tls_conn *s)
{
    return SSL_is_init_finished(s->ssl);
}

/* Why a read failed, from the session and OpenSSL's error queue. */
static fc_tls_status read_failure(fc_tls_conn *s, int r)
{
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN) return FC_TLS_CLOSED;
    s->failed = 1;
    if (s->oom) return FC_TLS_ENOMEM;
    int reason = ERR_GET_REASON(ERR_peek_error());
    ERR_clear_error();
    switch (reason) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return FC_TLS_EVERSION;
    default:
        return FC_TLS_EPROTO;
    }
}

fc_tls_status fc_tls_conn_input(fc_tls_conn *s, const char *data, size_t len, char *out, size_t cap,
                                int (*deliver)(void *arg, char *plain, size_t n), void *arg)
{
    if (s->failed) return FC_TLS_EPROTO;
    /* SSL_get_error reads the thread's error queue, which other code on the
     * loop (libjwt, libcrypto) may have left entries in. */
    ERR_clear_error();
    s->in = data;
    s->in_len = len;
    fc_tls_status st = FC_TLS_OK;
    for (;;) {
        /* Fill out with as many records as there are, so the reader sees
         * whole batches of requests or frames, not one record at a time. */
        size_t fill = 0;
        while (fill < cap) {
            size_t got = 0;
            int r = SSL_read_ex(s->ssl, out + fill, cap - fill, &got);
            if (r == 1) {
                fill += got;
                continue;
            }
            if (SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ) st = read_failure(s, r);
            break; /* wants more input: everything given was taken */
        }
        if (fill && deliver(arg, out, fill)) break;
        if (fill < cap || st != FC_TLS_OK) break;
    }
    s->in = NULL;
    s->in_len = 0;
    return st;
}

int fc_tls_conn_write(fc_tls_conn *s, const void *data, size_t len)
{
    if (s->failed || !SSL_is_init_finished(s->ssl)) return -1;
    size_t done = 0;
    /* The BIO never pushes back, so one call encrypts all of it. */
    if (SSL_write_ex(s->ssl, data, len, &done) != 1 || done != len) {
        s->failed = 1;
        ERR_clear_error();
        return -1;
    }
    return 0;
}

void fc_tls_conn_shutdown(fc_tls_conn *s)
{
    if (s->failed || s->bye || !SSL_is_init_finished(s->ssl)) return;
    s->bye = 1;
    SSL_shutdown(s->ssl); /* returns 0: the peer's close_notify is not awaited */
    ERR_clear_error();
}

const char *fc_tls_conn_output(const fc_tls_conn *s, size_t *len)
{
    *len = s->out_len - s->out_off;
    return *len ? s->out + s->out_off : NULL;
}

void fc_tls_conn_output_done(fc_tls_conn *s, size_t n)
{
    s->out_off += n;
    if (s->out_off < s->out_len) return;
    free(s->out);
    s->out = NULL;
    s->out_off = s->out_len = s->out_cap = 0;
}

char *fc_tls_conn_output_take(fc_tls_conn *s, size_t *off, size_t *len)
{
    char *p = s->out;
    *off = s->out_off;
    *len = s->out_len - s->out_off;
    s->out = NULL;
    s->out_off = s->out_len = s->out_cap = 0;
    return p;
}
