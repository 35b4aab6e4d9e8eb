/* libFuzzer driver for HTTP request parsing (src/http/request.c): a byte
 * stream split into two reads, parsed request after request as the server
 * does with pipelining, with the header, path and query accessors. */
#include "http/host.h"
#include "http/request.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inspect(const fc_http_req *r)
{
    char path[256], value[64];
    (void)fc_http_path(r, path, sizeof path);
    static const char *const names[] = {"since", "limit", "status", "cursor", "wait_since"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        int q = fc_http_query(r, names[i], value, sizeof value);
        CHECK(q >= -1 && q <= 1);
        if (q == 1) CHECK(strlen(value) < sizeof value);
    }
    for (int h = 0; h < FC_H_COUNT; h++) {
        const char *v = fc_http_header(r, (fc_header_id)h);
        if (v) CHECK(strlen(v) <= r->header_bytes);
    }
    if (r->complete) CHECK(r->body_len <= r->max_body);
    /* A Host that passes the syntax check goes to the allowed-hosts check. */
    static const char *const allow[] = {"flowcast.internal", "a.example:80"};
    if (r->complete && !fc_http_host_problem(r))
        (void)fc_http_host_allowed(fc_http_header(r, FC_H_HOST), "0.0.0.0", allow, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t split = data[0] % (size);
    const char *in = (const char *)data + 1;
    size_t len = size - 1, off = 0;
    fc_http_req *r = NULL;
    for (int requests = 0; off < len && requests < 64;) {
        if (!r) r = fc_http_req_new(2048, 4096);
        CHECK(r);
        /* The first read ends at `split`, as if the request came in two packets. */
        size_t end = off < split && split < len ? split : len;
        size_t n = fc_http_req_feed(r, in + off, end - off);
        CHECK(n <= end - off);
        off += n;
        if (r->error) {
            CHECK(r->error == 400 || r->error == 411 || r->error == 413 || r->error == 417 ||
                  r->error == 431 || r->error == 500);
            break;
        }
        if (r->complete) {
            inspect(r);
            fc_http_req_free(r);
            r = NULL;
            requests++;
            continue;
        }
        if (n == 0 && end == len) break; /* needs more bytes than there are */
    }
    if (r) inspect(r);
    fc_http_req_free(r);
    return 0;
}
