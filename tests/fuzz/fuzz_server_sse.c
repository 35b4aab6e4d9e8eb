/* libFuzzer driver for SSE cursors and query strings (src/api/sse.c,
 * src/api/rest.c, src/http/request.c) from the real entry points of the
 * in-process server: the multi-workflow event stream with a query and a
 * Last-Event-ID cursor, and the list, history and single-workflow event
 * stream with the same query.
 *
 * Input: "<query>\n<Last-Event-ID>"; without the newline there is no
 * Last-Event-ID header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "server_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void send_request(char *req, int n)
{
    CHECK(n > 0);
    fzh_session((const uint8_t *)req, (size_t)n, NULL, 0);
    free(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    CHECK(text);
    memcpy(text, data, size);
    text[size] = '\0';
    char *nl = memchr(text, '\n', size);
    if (nl) *nl = '\0';
    const char *q = text;
    char *extra = NULL;
    CHECK(asprintf(&extra, "%s%s%s", nl ? "Last-Event-ID: " : "", nl ? nl + 1 : "",
                   nl ? "\r\n" : "") >= 0);
    char *req = NULL;
    int n = asprintf(&req, "GET /api/events?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", q, extra);
    send_request(req, n);
    n = asprintf(&req,
                 "GET /api/workflows?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                 "GET /api/workflows/w1/history?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                 "GET /api/workflows/w1/events?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n",
                 q, q, q, extra);
    send_request(req, n);
    free(extra);
    free(text);
    return 0;
}
