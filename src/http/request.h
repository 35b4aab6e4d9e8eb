/* fc_http_req: one HTTP/1.1 request being parsed (libhttp-parser state,
 * the headers flowcast cares about, and the body). Allocated when a
 * request starts and freed when it has been answered, so an idle
 * keep-alive connection holds no parser state. */
#ifndef FC_HTTP_REQUEST_H
#define FC_HTTP_REQUEST_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

/* The headers flowcast reads; others are skipped while parsing. */
typedef enum {
    FC_H_HOST,
    FC_H_ORIGIN,
    FC_H_UPGRADE,
    FC_H_CONNECTION,
    FC_H_WS_KEY,
    FC_H_WS_VERSION,
    FC_H_CONTENT_TYPE,
    FC_H_AUTHORIZATION,
    FC_H_LAST_EVENT_ID,
    FC_H_EXPECT,
    FC_H_IDEMPOTENCY_KEY,
    FC_H_COUNT
} fc_header_id;

typedef struct fc_str {
    char *p; /* NUL-terminated heap copy, NULL when absent */
    size_t len;
} fc_str;

typedef struct fc_http_req {
    http_parser parser;
    fc_str url;
    fc_str headers[FC_H_COUNT];
    char *body;
    size_t body_len, body_cap;
    size_t header_bytes;
    size_t max_header, max_body;
    int cur_header; /* header whose value is being read; -1 to skip */
    char field[24];
    size_t field_len;
    int in_value;
    int error;      /* HTTP status to answer with; parsing stopped (400, 411, 413, 417, 431) */
    int complete;   /* the whole request (headers and body) has been read */
    int has_body;   /* Content-Length or chunked was given */
    int head_done;  /* the request line and headers have been read */
    int host_count; /* Host header lines seen: RFC 9112 §3.2 wants exactly one */
    /* "Expect: 100-continue" on an HTTP/1.1 request with a body: the client
     * waits for "100 Continue" before it sends the body. continue_sent is the
     * connection's note that it was sent (or is not wanted any more). */
    int expect_continue, continue_sent;
    uint32_t ticket; /* set by the connection: answer order and keep-alive */
} fc_http_req;

fc_http_req *fc_http_req_new(size_t max_header, size_t max_body);
void fc_http_req_free(fc_http_req *r);

/* Feeds bytes; returns how many were consumed. Parsing stops after one
 * complete request (r->complete) or an error (r->error set): the bytes
 * after that are the caller's (the next pipelined request, or WebSocket
 * data after an upgrade request). */
size_t fc_http_req_feed(fc_http_req *r, const char *data, size_t len);

/* Value of a header, or NULL. */
const char *fc_http_header(const fc_http_req *r, fc_header_id h);
/* The path part of the URL (without the query), as a new NUL-terminated
 * string in out; 0 or -1 when too long. */
int fc_http_path(const fc_http_req *r, char *out, size_t outlen);
/* Finds query parameter name and percent-decodes its value into out.
 * Returns 1 found, 0 absent, -1 malformed or too long. */
int fc_http_query(const fc_http_req *r, const char *name, char *out, size_t outlen);
/* True when the request keeps the connection open after the reply. */
int fc_http_keep_alive(const fc_http_req *r);
/* Checks the Host header as RFC 9112 §3.2 asks: exactly one, non-empty and
 * well-formed (uri-host [":" port]); only an HTTP/1.0 request may omit it.
 * Returns NULL when acceptable, else the reason for a 400. */
const char *fc_http_host_problem(const fc_http_req *r);
/* True when the request is HTTP/1.1 or later. */
int fc_http_is_11(const fc_http_req *r);

#endif
