/* fc_tls: server-side TLS for the connections of the event loops. OpenSSL
 * never touches a socket: each session reads ciphertext from the bytes its
 * caller hands it and writes ciphertext into a buffer of its own, which the
 * caller writes to the socket (memory BIOs, as h2o does). So the loop keeps
 * all socket I/O, and a session costs nothing while its peer is quiet. Knows
 * nothing of connections or loops. */
#ifndef FC_TLS_TLS_H
#define FC_TLS_TLS_H

#include <stddef.h>

/* The server's certificate and settings: the current SSL_CTX, replaced as a
 * whole by fc_tls_reload. Sessions may be created on any thread. */
typedef struct fc_tls fc_tls;
/* One connection's session. Single-threaded: its loop's. */
typedef struct fc_tls_conn fc_tls_conn;

/* What fc_tls_conn_input ended with. */
typedef enum {
    FC_TLS_OK = 0,        /* all input consumed; more may come */
    FC_TLS_CLOSED = -1,   /* the peer sent close_notify */
    FC_TLS_EPROTO = -2,   /* a protocol error (bad record, failed handshake); an alert is pending */
    FC_TLS_EVERSION = -3, /* the peer offered no protocol version we accept (TLS 1.2, 1.3) */
    FC_TLS_ENOMEM = -4,
} fc_tls_status;

/* A TLS record starts with its content type; a ClientHello is a handshake
 * record (22). No HTTP request line starts with that byte, so the first
 * byte of a connection tells a TLS client from a plain one. */
#define FC_TLS_HANDSHAKE_RECORD 0x16

/* Loads the certificate chain (PEM) and its private key (PEM, not
 * encrypted) and sets the defaults: TLS 1.2 and 1.3 only, Mozilla's
 * "intermediate" ciphers, ALPN http/1.1, stateless session tickets,
 * buffers released while idle. The paths are kept for fc_tls_reload and
 * must stay valid. NULL with a message in err when a file cannot be read,
 * is not PEM, or the key does not match the certificate. */
fc_tls *fc_tls_new(const char *cert_path, const char *key_path, char *err, size_t errlen);
/* Loads the files again into a new SSL_CTX and makes it current: the next
 * handshake uses it, open sessions keep theirs (SSL_CTX is reference
 * counted). Any thread. 0, or -1 with err set and the old one kept. */
int fc_tls_reload(fc_tls *t, char *err, size_t errlen);
/* Frees t; every session must be gone. NULL is fine. */
void fc_tls_free(fc_tls *t);

/* A server session on the current SSL_CTX; NULL when out of memory. */
fc_tls_conn *fc_tls_conn_new(fc_tls *t);
void fc_tls_conn_free(fc_tls_conn *s);

/* Feeds ciphertext read from the socket (data is only read during the
 * call) and decrypts it: the plaintext goes to deliver in pieces of at most
 * cap bytes, written into out (the caller's scratch, never data). deliver
 * returns nonzero to stop (the connection closed). Handshake messages,
 * tickets and alerts it causes wait in the output (fc_tls_conn_output). */
fc_tls_status fc_tls_conn_input(fc_tls_conn *s, const char *data, size_t len, char *out, size_t cap,
                                int (*deliver)(void *arg, char *plain, size_t n), void *arg);
/* Whether the handshake has completed. */
int fc_tls_conn_established(const fc_tls_conn *s);

/* Encrypts len bytes (one record per 16 KiB) onto the output. 0, or -1
 * (out of memory, or the session failed). */
int fc_tls_conn_write(fc_tls_conn *s, const void *data, size_t len);
/* Queues close_notify once (when the session is sound). */
void fc_tls_conn_shutdown(fc_tls_conn *s);

/* The ciphertext waiting to be written: *len bytes at the returned
 * pointer, valid until the next call on s. NULL and 0 when none. */
const char *fc_tls_conn_output(const fc_tls_conn *s, size_t *len);
/* Marks n bytes of the output as written; the buffer is freed once empty,
 * so an idle session holds none. */
void fc_tls_conn_output_done(fc_tls_conn *s, size_t n);
/* Hands the waiting output over to the caller (for an asynchronous write):
 * returns the malloc'ed buffer, which the caller frees once written; the
 * bytes to write are *len at base + *off. The session starts a new buffer. */
char *fc_tls_conn_output_take(fc_tls_conn *s, size_t *off, size_t *len);

#endif
