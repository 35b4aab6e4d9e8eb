/* flowcast-bench's TLS client side (OpenSSL) and the byte I/O every
 * connection goes through, plain or TLS, on non-blocking sockets. The
 * client does no certificate verification and never resumes a session:
 * what is measured is the server's cost of full handshakes, not the tool's. */
#ifndef FCB_TLS_H
#define FCB_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* fcb_io_recv / fcb_io_send results besides a byte count (> 0) and EOF (0). */
#define FCB_IO_AGAIN (-2)
#define FCB_IO_ERR (-1)

/* A client context: TLS 1.2 and 1.3 with OpenSSL's default groups and
 * ciphers (what a browser-like client offers), no verification, no session
 * cache, buffers released while idle. NULL after printing why. */
SSL_CTX *fcb_tls_ctx_new(void);

/* A client TLS connection on fd (connected or connecting). NULL on failure. */
SSL *fcb_tls_new(SSL_CTX *ctx, int fd);

/* One handshake step: 1 when done, 0 when it waits (*events is then EPOLLIN
 * or EPOLLOUT), -1 when it failed. */
int fcb_tls_handshake(SSL *ssl, uint32_t *events);

/* Reads or writes over ssl, or over fd when ssl is NULL: a byte count,
 * 0 at EOF (recv only), FCB_IO_AGAIN or FCB_IO_ERR. Writes may be partial. */
ssize_t fcb_io_recv(int fd, SSL *ssl, void *buf, size_t len);
ssize_t fcb_io_send(int fd, SSL *ssl, const void *buf, size_t len);

/* Frees ssl (no close_notify: the caller closes the socket) and sets it NULL. */
void fcb_tls_free(SSL **ssl);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519 EC-256": what was negotiated and
 * the server's key, so a report can show both servers did the same work. */
void fcb_tls_describe(SSL *ssl, char *out, size_t cap);

/* Session tickets the servers sent so far (counted, never used). */
uint64_t fcb_tls_tickets(void);

#endif
