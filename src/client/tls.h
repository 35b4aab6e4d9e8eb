/* libflowcast TLS for https:// URLs (OpenSSL): the context, one client
 * session per connection, and errors that name why a handshake failed. */
#ifndef FC_CLIENT_TLS_H
#define FC_CLIENT_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* A context for https:// servers: TLS 1.2 or later, the peer's certificate
 * verified against ca_file (PEM, one or more CA certificates; only those are
 * trusted) or, when ca_file is NULL, the system store. NULL with a one-line
 * reason in msg when ca_file cannot be read or holds no certificate. */
SSL_CTX *fcc__tls_ctx_new(const char *ca_file, char *msg, size_t cap);

/* A client session for host (a name or an IP literal): SNI for a name, and
 * the certificate must match host (DNS name or IP address). resume (may be
 * NULL) is a session of an earlier connection to offer for resumption.
 * NULL when out of memory. */
SSL *fcc__tls_new(SSL_CTX *ctx, const char *host, SSL_SESSION *resume);

/* Classifies a failed handshake or read (ret and ssl_err from the call and
 * SSL_get_error, sys_errno the errno right after it) and writes the reason:
 * FCC_ETLS with "TLS: certificate of <url> not trusted: <verify reason>"
 * or "TLS handshake with <url> failed: <reason>", or FCC_ECONNECT when the
 * connection itself broke. Clears OpenSSL's error queue. */
int fcc__tls_error(SSL *ssl, int ssl_err, int sys_errno, const char *url, char *msg, size_t cap);

/* A session worth offering on the next connection (a new reference), or NULL. */
SSL_SESSION *fcc__tls_session(SSL *ssl);

#endif
