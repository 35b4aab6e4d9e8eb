/* libflowcast blocking HTTP/1.1 transport used by the REST calls (src/client/rest.c). */
#ifndef FC_CLIENT_HTTP_H
#define FC_CLIENT_HTTP_H

#include <openssl/ssl.h>

#include "client/internal.h"

typedef struct fcc__http_target {
    const fcc__url *url;
    const char *url_text;  /* as the user wrote it, for messages */
    const char *token;     /* NULL: no Authorization header */
    unsigned timeout_ms;   /* connect, TLS handshake, and each read or write */
    SSL_CTX *tls;          /* https: the context (client/tls.h); NULL for http */
    SSL_SESSION **session; /* https: in, a session to resume (or NULL); out, the
                              newest one (the caller owns the reference) */
} fcc__http_target;

typedef struct fcc__http_response {
    int status;
    char *body; /* NUL-terminated; the caller frees it */
    size_t body_len;
} fcc__http_response;

/* Sends one request (body: JSON text or NULL; idem_key: an Idempotency-Key
 * or NULL) and reads the response. 0 when the server answered (any status),
 * else FCC_ECONNECT / FCC_ETIMEOUT / FCC_EPROTO / FCC_ENOMEM, or FCC_ETLS
 * when the server's certificate is not trusted or TLS fails, with a
 * one-line err->message. */
int fcc__http_request(const fcc__http_target *t, const char *method, const char *path,
                      const char *body, const char *idem_key, fcc__http_response *resp,
                      fcc_error *err);

#endif
