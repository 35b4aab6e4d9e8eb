/* TLS client side and connection I/O for flowcast-bench (see tls.h). */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/x509.h>

static uint64_t g_tickets;

/* Called for each session ticket: counted, then dropped (returning 0 leaves
 * the session to OpenSSL, which frees it), so every connection is a full
 * handshake. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    (void)sess;
    g_tickets++;
    return 0;
}

uint64_t fcb_tls_tickets(void)
{
    return g_tickets;
}

SSL_CTX *fcb_tls_ctx_new(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        fprintf(stderr, "flowcast-bench: SSL_CTX_new failed\n");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* The client cache is on only so the ticket callback fires; nothing is
     * stored and nothing is offered for resumption. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    /* Partial writes and a moving buffer suit the tool's append-and-flush
     * write buffers; released buffers keep 20,000 idle clients small; an EOF
     * without close_notify is an ordinary EOF (servers close both ways). */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ctx;
}

SSL *fcb_tls_new(SSL_CTX *ctx, int fd)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

int fcb_tls_handshake(SSL *ssl, uint32_t *events)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl);
    if (rc == 1) return 1;
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        *events = EPOLLIN;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *events = EPOLLOUT;
        return 0;
    default:
        return -1;
    }
}

/* Maps an SSL_read/SSL_write result that is not a byte count. */
static ssize_t tls_result(SSL *ssl, int rc)
{
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return FCB_IO_AGAIN;
    case SSL_ERROR_SYSCALL:
        return errno == EAGAIN || errno == EINTR ? FCB_IO_AGAIN : FCB_IO_ERR;
    default:
        return FCB_IO_ERR;
    }
}

ssize_t fcb_io_recv(int fd, SSL *ssl, void *buf, size_t len)
{
    if (ssl != NULL) {
        ERR_clear_error();
        int n = SSL_read(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        return n > 0 ? n : tls_result(ssl, n);
    }
    ssize_t n = recv(fd, buf, len, 0);
    if (n >= 0) return n;
    return errno == EAGAIN || errno == EINTR ? FCB_IO_AGAIN : FCB_IO_ERR;
}

ssize_t fcb_io_send(int fd, SSL *ssl, const void *buf, size_t len)
{
    if (ssl != NULL) {
        ERR_clear_error();
        int n = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n > 0) return n;
        ssize_t r = tls_result(ssl, n);
        return r == 0 ? FCB_IO_ERR : r;
    }
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    return errno == EAGAIN || errno == EINTR ? FCB_IO_AGAIN : FCB_IO_ERR;
}

void fcb_tls_free(SSL **ssl)
{
    if (*ssl != NULL) SSL_free(*ssl);
    *ssl = NULL;
}

void fcb_tls_describe(SSL *ssl, char *out, size_t cap)
{
    const char *group = SSL_group_to_name(ssl, SSL_get_negotiated_group(ssl));
    X509 *cert = SSL_get1_peer_certificate(ssl);
    EVP_PKEY *key = cert ? X509_get0_pubkey(cert) : NULL;
    snprintf(out, cap, "%s %s %s %s-%d", SSL_get_version(ssl), SSL_get_cipher_name(ssl),
             group ? group : "?", key ? EVP_PKEY_get0_type_name(key) : "?",
             key ? EVP_PKEY_get_bits(key) : 0);
    X509_free(cert);
}
