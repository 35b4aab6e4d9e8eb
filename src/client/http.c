/* libflowcast blocking HTTP/1.1 transport: one request per connection, with timeouts. */
#include "client/http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "client/tls.h"

/* Waits for events on fd; 1 ready, 0 timeout, -1 error (errno set). */
static int wait_fd(int fd, short events, unsigned timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, (int)timeout_ms);
        if (r >= 0 || errno != EINTR) return r;
    }
}

/* "Connection refused" -> "connection refused", for messages that continue a sentence. */
static void lower_error(int e, char *out, size_t cap)
{
    snprintf(out, cap, "%s", strerror(e));
    if (out[0]) out[0] = (char)tolower((unsigned char)out[0]);
}

static int set_error(fcc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_error(fcc_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->http_status = 0;
        err->code[0] = '\0';
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Connects to the first address that answers; returns the fd or -errno. */
static int open_socket(const fcc__url *u, unsigned timeout_ms)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gr = getaddrinfo(u->host, u->port, &hints, &res);
    if (gr != 0) return gr == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    int last = -ECONNREFUSED;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            last = -errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        if (errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, timeout_ms);
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (w == 0)
                soerr = ETIMEDOUT;
            else if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
                soerr = errno;
            if (soerr == 0) {
                freeaddrinfo(res);
                return fd;
            }
            last = -soerr;
        } else {
            last = -errno;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return last;
}

/* One request's connection: the socket, and its TLS session for https. The
 * session reads and writes ciphertext through memory BIOs, so that every
 * byte goes through send(MSG_NOSIGNAL)/recv here: a server that resets the
 * connection is an error, never a SIGPIPE in the application. */
typedef struct io {
    int fd;
    SSL *ssl;
    BIO *in, *out;          /* owned by ssl */
    int ssl_err, sys_errno; /* why the last TLS call failed (TLS_FAILED) */
} io;

/* A TLS call failed for good; io.ssl_err says why (fcc__tls_error). */
#define TLS_FAILED (-EPROTO)

static int plain_send(int fd, const char *p, size_t n, unsigned timeout_ms)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            int r = wait_fd(fd, POLLOUT, timeout_ms);
            if (r <= 0) return r == 0 ? -ETIMEDOUT : -errno;
        } else if (w < 0 && errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

/* One read: > 0 bytes, 0 at EOF, or -errno; waits up to timeout_ms for data. */
static ssize_t plain_recv(int fd, char *buf, size_t cap, unsigned timeout_ms)
{
    for (;;) {
        ssize_t r = recv(fd, buf, cap, 0);
        if (r >= 0) return r;
        if (errno == EAGAIN) {
            int w = wait_fd(fd, POLLIN, timeout_ms);
            if (w <= 0) return w == 0 ? -ETIMEDOUT : -errno;
        } else if (errno != EINTR) {
            return -errno;
        }
    }
}

/* Sends what OpenSSL wrote into its output BIO. */
static int tls_flush(io *c, unsigned timeout_ms)
{
    char buf[16384];
    int n;
    while ((n = BIO_read(c->out, buf, sizeof buf)) > 0) {
        int r = plain_send(c->fd, buf, (size_t)n, timeout_ms);
        if (r != 0) return r;
    }
    return 0;
}

/* After a TLS call returned ret <= 0: sends what it produced and receives
 * what it waits for (0: call it again), or returns -errno / TLS_FAILED. */
static int tls_pump(io *c, int ret, unsigned timeout_ms)
{
    int e = SSL_get_error(c->ssl, ret);
    int r = tls_flush(c, timeout_ms);
    if (r != 0) return r;
    if (e != SSL_ERROR_WANT_READ) {
        c->ssl_err = e;
        c->sys_errno = 0;
        return TLS_FAILED;
    }
    char buf[16384];
    ssize_t n = plain_recv(c->fd, buf, sizeof buf, timeout_ms);
    if (n < 0) return (int)n;
    if (n == 0)
        BIO_set_mem_eof_return(c->in, 0); /* the next call sees the end */
    else if (BIO_write(c->in, buf, (int)n) != (int)n)
        return -ENOMEM;
    return 0;
}

static int tls_handshake(io *c, unsigned timeout_ms)
{
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) return tls_flush(c, timeout_ms);
        if ((r = tls_pump(c, r, timeout_ms)) != 0) return r;
    }
}

static int send_all(io *c, const char *p, size_t n, unsigned timeout_ms)
{
    if (!c->ssl) return plain_send(c->fd, p, n, timeout_ms);
    while (n > 0) {
        ERR_clear_error();
        int w = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if ((w = tls_pump(c, w, timeout_ms)) != 0) {
            return w;
        }
    }
    return tls_flush(c, timeout_ms);
}

/* One read of the response: > 0 bytes, 0 at its end, or -errno / TLS_FAILED. */
static ssize_t recv_some(io *c, char *buf, size_t cap, unsigned timeout_ms)
{
    if (!c->ssl) return plain_recv(c->fd, buf, cap, timeout_ms);
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
        if (r > 0) return r;
        if (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN) return 0;
        if ((r = tls_pump(c, r, timeout_ms)) != 0) return r;
    }
}

/* Starts the TLS session of a connected socket; 0 or -ENOMEM. */
static int tls_open(io *c, const fcc__http_target *t)
{
    c->in = BIO_new(BIO_s_mem());
    c->out = BIO_new(BIO_s_mem());
    c->ssl = c->in && c->out ? fcc__tls_new(t->tls, t->url->host, t->session ? *t->session : NULL)
                             : NULL;
    if (!c->ssl) {
        BIO_free(c->in);
        BIO_free(c->out);
        return -ENOMEM;
    }
    BIO_set_mem_eof_return(c->in, -1); /* empty means "wait for more", until EOF */
    SSL_set_bio(c->ssl, c->in, c->out);
    return 0;
}

/* Reads the whole response (the server closes after it: Connection: close). */
static int recv_all(io *c, char **out, size_t *out_len, unsigned timeout_ms)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return -ENOMEM;
    for (;;) {
        if (len + 1 >= cap) {
            char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = recv_some(c, buf + len, cap - len - 1, timeout_ms);
        if (r < 0) {
            free(buf);
            return (int)r;
        }
        if (r == 0) break;
        len += (size_t)r;
        fcc__http_head h;
        /* Stop at Content-Length instead of waiting for the close. */
        if (fcc__http_head_parse(buf, len, &h) == 1 && h.content_length >= 0 &&
            len >= h.head_len + (size_t)h.content_length)
            break;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

/* Closes the connection; keeps a resumable TLS session for the next one. */
static void io_close(io *c, const fcc__http_target *t)
{
    if (c->ssl) {
        /* A session is resumable only after a clean close; the close_notify
         * goes out if the socket takes it at once. */
        SSL_shutdown(c->ssl);
        tls_flush(c, 0);
        SSL_SESSION *s = t->session && c->ssl_err == 0 ? fcc__tls_session(c->ssl) : NULL;
        if (s) {
            SSL_SESSION_free(*t->session);
            *t->session = s;
        }
        SSL_free(c->ssl);
    }
    close(c->fd);
}

/* The message for a failed exchange r (a negative errno or TLS_FAILED). */
static int io_error(io *c, int r, const fcc__http_target *t, const char *what, fcc_error *err)
{
    char text[400];
    if (r == TLS_FAILED) {
        int code = fcc__tls_error(c->ssl, c->ssl_err, c->sys_errno, t->url_text, text, sizeof text);
        return set_error(err, code, "%s", text);
    }
    lower_error(-r, text, sizeof text);
    return set_error(err,
                     r == -ETIMEDOUT ? FCC_ETIMEOUT
                     : r == -ENOMEM  ? FCC_ENOMEM
                                     : FCC_ECONNECT,
                     "%s %s failed: %s", what, t->url_text, text);
}

int fcc__http_request(const fcc__http_target *t, const char *method, const char *path,
                      const char *body, const char *idem_key, fcc__http_response *resp,
                      fcc_error *err)
{
    memset(resp, 0, sizeof *resp);
    char what[128];
    io c = {.fd = open_socket(t->url, t->timeout_ms)};
    if (c.fd < 0) {
        lower_error(-c.fd, what, sizeof what);
        return set_error(err, -c.fd == ETIMEDOUT ? FCC_ETIMEOUT : FCC_ECONNECT,
                         "cannot connect to %s: %s", t->url_text, what);
    }
    if (t->tls) {
        if (tls_open(&c, t) != 0) {
            close(c.fd);
            return set_error(err, FCC_ENOMEM, "out of memory");
        }
        int r = tls_handshake(&c, t->timeout_ms);
        if (r != 0) {
            r = io_error(&c, r, t, "TLS handshake with", err);
            io_close(&c, t);
            return r;
        }
    }
    size_t blen = body ? strlen(body) : 0;
    char auth[FCC__TOKEN_MAX + 32] = "";
    if (t->token && *t->token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", t->token);
    char key[160] = "";
    if (idem_key) snprintf(key, sizeof key, "Idempotency-Key: %s\r\n", idem_key);
    char *req = NULL;
    int n = body ? asprintf(&req,
                            "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: libflowcast\r\n"
                            "Accept: application/json\r\nConnection: close\r\n%s%s"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                            method, path, t->url->hostport, auth, key, blen, body)
                 : asprintf(&req,
                            "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: libflowcast\r\n"
                            "Accept: application/json\r\nConnection: close\r\n%s%s\r\n",
                            method, path, t->url->hostport, auth, key);
    if (n < 0) {
        io_close(&c, t);
        return set_error(err, FCC_ENOMEM, "out of memory");
    }
    int r = send_all(&c, req, (size_t)n, t->timeout_ms);
    free(req);
    char *raw = NULL;
    size_t raw_len = 0;
    if (r == 0) r = recv_all(&c, &raw, &raw_len, t->timeout_ms);
    if (r < 0) r = io_error(&c, r, t, "request to", err);
    io_close(&c, t);
    if (r < 0) return r;
    fcc__http_head h;
    if (raw_len == 0) {
        /* The request may have been applied: only a resend with its
         * Idempotency-Key can tell (see call() in rest.c). */
        free(raw);
        return set_error(err, FCC_ECONNECT, "%s closed the connection without an answer",
                         t->url_text);
    }
    if (fcc__http_head_parse(raw, raw_len, &h) != 1) {
        free(raw);
        return set_error(err, FCC_EPROTO, "%s: not an HTTP response", t->url_text);
    }
    size_t body_len = raw_len - h.head_len;
    if (h.content_length >= 0 && (size_t)h.content_length < body_len)
        body_len = (size_t)h.content_length;
    memmove(raw, raw + h.head_len, body_len);
    raw[body_len] = '\0';
    resp->status = h.status;
    resp->body = raw;
    resp->body_len = body_len;
    return 0;
}
