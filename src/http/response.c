/* HTTP/1.1 response encoding. */
#include "http/response.h"

#include <stdio.h>
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

fc_buf *fc_http_response(int status, const char *extra_headers, const char *content_type,
                         const char *body, size_t body_len, int keep_alive)
{
    char head[1024];
    int n;
    const char *conn = keep_alive ? "" : "Connection: close\r\n";
    const char *extra = extra_headers ? extra_headers : "";
    if (content_type)
        n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, fc_http_reason(status), content_type, body_len, conn, extra);
    else if (status == 101 || status == 204)
        n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n%s%s\r\n", status,
                     fc_http_reason(status), conn, extra);
    else
        n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n%s%s\r\n", status,
                     fc_http_reason(status), conn, extra);
    if (n < 0 || (size_t)n >= sizeof head) return NULL;
    fc_buf *b = fc_buf_new((size_t)n + (content_type ? body_len : 0));
    if (!b) return NULL;
    memcpy(b->data, head, (size_t)n);
    if (content_type && body_len) memcpy(b->data + n, body, body_len);
    return b;
}
