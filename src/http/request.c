/* HTTP/1.1 request parsing on top of libhttp-parser, with header and body limits. */
#include "http/request.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const header_names[FC_H_COUNT] = {
    [FC_H_HOST] = "host",
    [FC_H_ORIGIN] = "origin",
    [FC_H_UPGRADE] = "upgrade",
    [FC_H_CONNECTION] = "connection",
    [FC_H_WS_KEY] = "sec-websocket-key",
    [FC_H_WS_VERSION] = "sec-websocket-version",
    [FC_H_CONTENT_TYPE] = "content-type",
    [FC_H_AUTHORIZATION] = "authorization",
    [FC_H_LAST_EVENT_ID] = "last-event-id",
    [FC_H_EXPECT] = "expect",
    [FC_H_IDEMPOTENCY_KEY] = "idempotency-key",
};

static fc_http_req *req_of(http_parser *p)
{
    return p->data;
}

/* Appends to s; repeated headers are joined with ", " as RFC 9110 allows. */
static int str_append(fc_str *s, const char *at, size_t len, int join)
{
    size_t extra = join && s->p ? 2 : 0;
    char *p = realloc(s->p, s->len + extra + len + 1);
    if (!p) return -1;
    if (extra) memcpy(p + s->len, ", ", 2);
    memcpy(p + s->len + extra, at, len);
    s->p = p;
    s->len += extra + len;
    p[s->len] = '\0';
    return 0;
}

static int fail(fc_http_req *r, int status)
{
    r->error = status;
    return -1;
}

static int count_header_bytes(fc_http_req *r, size_t len)
{
    r->header_bytes += len;
    return r->header_bytes > r->max_header ? fail(r, 431) : 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    fc_http_req *r = req_of(p);
    if (count_header_bytes(r, len)) return -1;
    return str_append(&r->url, at, len, 0) ? fail(r, 500) : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    fc_http_req *r = req_of(p);
    if (count_header_bytes(r, len)) return -1;
    if (r->in_value) {
        r->in_value = 0;
        r->field_len = 0;
    }
    /* Names longer than the field buffer are never ones we read. */
    size_t room = sizeof r->field - 1 - r->field_len;
    size_t n = len < room ? len : room;
    memcpy(r->field + r->field_len, at, n);
    r->field_len += n;
    r->field[r->field_len] = '\0';
    if (len > room) r->field_len = sizeof r->field - 1, r->field[0] = '\0';
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    fc_http_req *r = req_of(p);
    if (count_header_bytes(r, len)) return -1;
    if (!r->in_value) {
        r->in_value = 1;
        r->cur_header = -1;
        for (int i = 0; i < FC_H_COUNT; i++)
            if (strcasecmp(r->field, header_names[i]) == 0) r->cur_header = i;
        if (r->cur_header == FC_H_HOST) r->host_count++;
        if (r->cur_header >= 0 && r->headers[r->cur_header].p) {
            if (str_append(&r->headers[r->cur_header], "", 0, 1)) return fail(r, 500);
        }
    }
    if (r->cur_header < 0) return 0;
    return str_append(&r->headers[r->cur_header], at, len, 0) ? fail(r, 500) : 0;
}

/* RFC 9110 §10.1.1: 100-continue is the only expectation defined; any other
 * is 417. An HTTP/1.0 client cannot have meant it, so there it is ignored. */
static int check_expect(fc_http_req *r)
{
    const char *e = r->headers[FC_H_EXPECT].p;
    if (!e) return 0;
    if (strcasecmp(e, "100-continue") != 0) return fail(r, 417);
    /* Nothing to wait for without a body (Content-Length: 0 included). */
    int body = (r->parser.flags & F_CHUNKED) || r->parser.content_length > 0;
    r->expect_continue = body && r->has_body && fc_http_is_11(r);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    fc_http_req *r = req_of(p);
    int chunked = p->flags & F_CHUNKED;
    int has_length = p->flags & F_CONTENTLENGTH;
    r->has_body = chunked || has_length;
    r->head_done = 1;
    if (has_length && p->content_length > r->max_body) return fail(r, 413);
    if ((p->method == HTTP_POST || p->method == HTTP_PATCH || p->method == HTTP_PUT) &&
        !r->has_body)
        return fail(r, 411);
    return check_expect(r);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    fc_http_req *r = req_of(p);
    if (r->body_len + len > r->max_body) return fail(r, 413);
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b) return fail(r, 500);
        r->body = b;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    fc_http_req *r = req_of(p);
    r->complete = 1;
    /* Stop here: what follows belongs to the next request or to the WebSocket. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

fc_http_req *fc_http_req_new(size_t max_header, size_t max_body)
{
    fc_http_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    r->max_header = max_header;
    r->max_body = max_body;
    r->cur_header = -1;
    return r;
}

void fc_http_req_free(fc_http_req *r)
{
    if (!r) return;
    free(r->url.p);
    for (int i = 0; i < FC_H_COUNT; i++)
        free(r->headers[i].p);
    free(r->body);
    free(r);
}

size_t fc_http_req_feed(fc_http_req *r, const char *data, size_t len)
{
    if (r->complete || r->error) return 0;
    size_t n = http_parser_execute(&r->parser, &settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);
    if (err == HPE_PAUSED) {
        http_parser_pause(&r->parser, 0);
    } else if (r->parser.upgrade && !r->error) {
        r->complete = 1;
    } else if (err == HPE_HEADER_OVERFLOW && !r->error) {
        r->error = 431;
    } else if (err != HPE_OK && !r->error) {
        r->error = 400;
    }
    return n;
}

const char *fc_http_header(const fc_http_req *r, fc_header_id h)
{
    return r->headers[h].p;
}

int fc_http_path(const fc_http_req *r, char *out, size_t outlen)
{
    const char *url = r->url.p ? r->url.p : "";
    size_t n = strcspn(url, "?#");
    if (n >= outlen) return -1;
    memcpy(out, url, n);
    out[n] = '\0';
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int decode_component(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (o + 1 >= outlen) return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 1;
}

int fc_http_query(const fc_http_req *r, const char *name, char *out, size_t outlen)
{
    const char *q = r->url.p ? strchr(r->url.p, '?') : NULL;
    if (!q) return 0;
    size_t nlen = strlen(name);
    for (const char *p = q + 1; *p;) {
        size_t plen = strcspn(p, "&#");
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        if (klen == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : p + plen;
            return decode_component(v, (size_t)(p + plen - v), out, outlen);
        }
        if (p[plen] != '&') break;
        p += plen + 1;
    }
    return 0;
}

int fc_http_keep_alive(const fc_http_req *r)
{
    return http_should_keep_alive(&r->parser);
}

int fc_http_is_11(const fc_http_req *r)
{
    return r->parser.http_major > 1 || (r->parser.http_major == 1 && r->parser.http_minor >= 1);
}

/* uri-host [":" port] (RFC 3986 §3.2.2): a bracketed IPv6 literal, or a
 * reg-name / IPv4 of unreserved, sub-delims and %-escapes; port digits. */
static int host_syntax_ok(const char *h)
{
    const char *p = h;
    if (*p == '[') {
        p += strspn(p + 1, "0123456789abcdefABCDEF:.") + 1;
        if (*p != ']' || p == h + 1) return 0;
        p++;
    } else {
        p += strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                       "-._~%!$&'()*+,;=");
        if (p == h) return 0;
    }
    if (*p == ':') {
        size_t n = strspn(p + 1, "0123456789");
        if (n > 5) return 0;
        p += 1 + n;
    }
    return *p == '\0';
}

const char *fc_http_host_problem(const fc_http_req *r)
{
    const char *host = r->headers[FC_H_HOST].p;
    if (r->host_count > 1) return "more than one Host header";
    if (!host || r->host_count == 0) return fc_http_is_11(r) ? "missing Host header" : NULL;
    if (!*host) return "empty Host header";
    if (!host_syntax_ok(host)) return "malformed Host header";
    return NULL;
}
