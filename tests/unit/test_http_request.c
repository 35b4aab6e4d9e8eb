/* Unit tests for src/http/request.c: pipelining, limits, headers, query strings. */
#include "http/request.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

static fc_http_req *feed(const char *s, size_t *used)
{
    fc_http_req *r = fc_http_req_new(8192, 64);
    *used = fc_http_req_feed(r, s, strlen(s));
    return r;
}

static void test_pipelined_requests_stop_at_boundary(void **state)
{
    (void)state;
    const char *s = "GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    size_t used;
    fc_http_req *r = feed(s, &used);
    assert_true(r->complete);
    assert_string_equal(s + used, "GET /b HTTP/1.1\r\n\r\n");
    char path[32];
    assert_int_equal(fc_http_path(r, path, sizeof path), 0);
    assert_string_equal(path, "/a");
    assert_string_equal(fc_http_header(r, FC_H_HOST), "h");
    assert_true(fc_http_keep_alive(r));
    fc_http_req_free(r);
}

static void test_body_content_length_and_chunked(void **state)
{
    (void)state;
    size_t used;
    fc_http_req *r = feed("PATCH /x HTTP/1.1\r\nContent-Type: application/json\r\n"
                          "Content-Length: 2\r\n\r\n{}",
                          &used);
    assert_true(r->complete);
    assert_int_equal(r->body_len, 2);
    assert_string_equal(r->body, "{}");
    fc_http_req_free(r);
    r = feed("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", &used);
    assert_true(r->complete);
    assert_string_equal(r->body, "{}");
    fc_http_req_free(r);
}

static void test_limits_and_errors(void **state)
{
    (void)state;
    size_t used;
    fc_http_req *r = feed("POST /x HTTP/1.1\r\n\r\n", &used);
    assert_int_equal(r->error, 411);
    fc_http_req_free(r);
    r = feed("POST /x HTTP/1.1\r\nContent-Length: 65\r\n\r\n", &used);
    assert_int_equal(r->error, 413);
    fc_http_req_free(r);
    r = feed("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n", &used);
    char big[80];
    memset(big, 'a', sizeof big);
    fc_http_req_feed(r, big, sizeof big);
    assert_int_equal(r->error, 413);
    fc_http_req_free(r);

    r = fc_http_req_new(64, 64);
    const char *hdrs = "GET / HTTP/1.1\r\nX-Long: "
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    fc_http_req_feed(r, hdrs, strlen(hdrs));
    assert_int_equal(r->error, 431);
    fc_http_req_free(r);

    r = feed("NOT HTTP\r\n\r\n", &used);
    assert_int_equal(r->error, 400);
    fc_http_req_free(r);
}

static void test_upgrade_leaves_frame_bytes(void **state)
{
    (void)state;
    const char *s = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
                    "Connection: Upgrade\r\n\r\n\x81\x80";
    size_t used;
    fc_http_req *r = feed(s, &used);
    assert_true(r->complete);
    assert_int_equal(strlen(s) - used, 2);
    /* Repeated headers are joined. */
    assert_string_equal(fc_http_header(r, FC_H_CONNECTION), "keep-alive, Upgrade");
    fc_http_req_free(r);
}

static void test_query_decoding(void **state)
{
    (void)state;
    size_t used;
    fc_http_req *r =
        feed("GET /x?a=1&since=42&name=a%20b+c&bad=%zz&empty= HTTP/1.1\r\n\r\n", &used);
    char v[32];
    assert_int_equal(fc_http_query(r, "since", v, sizeof v), 1);
    assert_string_equal(v, "42");
    assert_int_equal(fc_http_query(r, "name", v, sizeof v), 1);
    assert_string_equal(v, "a b c");
    assert_int_equal(fc_http_query(r, "bad", v, sizeof v), -1);
    assert_int_equal(fc_http_query(r, "empty", v, sizeof v), 1);
    assert_string_equal(v, "");
    assert_int_equal(fc_http_query(r, "missing", v, sizeof v), 0);
    assert_int_equal(fc_http_query(r, "a", v, 1), -1); /* too long for out */
    fc_http_req_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_requests_stop_at_boundary),
        cmocka_unit_test(test_body_content_length_and_chunked),
        cmocka_unit_test(test_limits_and_errors),
        cmocka_unit_test(test_upgrade_leaves_frame_bytes),
        cmocka_unit_test(test_query_decoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
