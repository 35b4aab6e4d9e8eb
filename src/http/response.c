/* HTTP/1.1 response encoding. */
#include "http/response.h"

#include <stdint.h>
#include <string.h>

const char *fc_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 507:
        return "Insufficient Storage";
    default:
        return "Unknown";
    }
}

/* Appends n bytes at *at, within end; the pointer runs past end when they do not fit. */
static void put(char **at, const char *end, const char *s, size_t n)
{
    if (*at <= end && n <= (size_t)(end - *at)) memcpy(*at, s, n);
    *at += n;
}

static void put_str(char **at, const char *end, const char *s)
{
    put(at, end, s, strlen(s));
}

/* Decimal digits of v (no snprintf: one answer per change, and vfprintf was
 * most of this function's cost). */
static void put_uint(char **at, const char *end, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(at, end, tmp + i, sizeof tmp - i);
}

fc_buf *fc_http_response(int status, const char *extra_headers, const char *content_type,
                         const char *body, size_t body_len, int keep_alive)
{
    char head[1024], *at = head;
    const char *end = head + sizeof head;
    if (status < 0) return NULL; /* statuses are the constants above */
    put(&at, end, "HTTP/1.1 ", 9);
    put_uint(&at, end, (uint64_t)status);
    put(&at, end, " ", 1);
    put_str(&at, end, fc_http_reason(status));
    put(&at, end, "\r\n", 2);
    if (content_type) {
        put(&at, end, "Content-Type: ", 14);
        put_str(&at, end, content_type);
        put(&at, end, "\r\nContent-Length: ", 18);
        put_uint(&at, end, body_len);
        put(&at, end, "\r\n", 2);
    } else if (status != 101 && status != 204) {
        put(&at, end, "Content-Length: 0\r\n", 19);
    }
    if (!keep_alive) put(&at, end, "Connection: close\r\n", 19);
    if (extra_headers) put_str(&at, end, extra_headers);
    put(&at, end, "\r\n", 2);
    /* The same bound as before: a head that fills the buffer is refused. */
    if (at >= end) return NULL;
    size_t n = (size_t)(at - head);
    fc_buf *b = fc_buf_new(n + (content_type ? body_len : 0));
    if (!b) return NULL;
    memcpy(b->data, head, n);
    if (content_type && body_len) memcpy(b->data + n, body, body_len);
    return b;
}
