/* Unit tests for src/http/request.c and src/http/host.c: pipelining, limits, headers, query
 * strings, Host (RFC 9112 §3.2), Expect, the allowed-hosts check. */
#include "http/host.h"
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

static void assert_host(const char *head, const char *problem)
{
    size_t used;
    fc_http_req *r = feed(head, &used);
    assert_true(r->complete);
    const char *got = fc_http_host_problem(r);
    if (problem == NULL && got != NULL) fail_msg("%s: unexpected \"%s\"", head, got);
    if (problem != NULL && (got == NULL || strcmp(got, problem) != 0))
        fail_msg("%s: want \"%s\", got \"%s\"", head, problem, got ? got : "(none)");
    fc_http_req_free(r);
}

static void test_host_header_rules(void **state)
{
    (void)state;
    assert_host("GET / HTTP/1.1\r\nHost: h\r\n\r\n", NULL);
    assert_host("GET / HTTP/1.1\r\nHost: 127.0.0.1:8001\r\n\r\n", NULL);
    assert_host("GET / HTTP/1.1\r\nHost: [::1]:8001\r\n\r\n", NULL);
    assert_host("GET / HTTP/1.1\r\nhOsT: a-b.example.\r\n\r\n", NULL);
    assert_host("GET / HTTP/1.0\r\n\r\n", NULL); /* HTTP/1.0 may omit it */
    assert_host("GET / HTTP/1.1\r\n\r\n", "missing Host header");
    assert_host("GET / HTTP/1.1\r\nHost:\r\n\r\n", "empty Host header");
    assert_host("GET / HTTP/1.1\r\nHost:   \r\n\r\n", "empty Host header");
    assert_host("GET / HTTP/1.0\r\nHost:\r\n\r\n", "empty Host header");
    assert_host("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "more than one Host header");
    assert_host("GET / HTTP/1.0\r\nHost: a\r\nX: y\r\nHOST: b\r\n\r\n",
                "more than one Host header");
    assert_host("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "malformed Host header");
    assert_host("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", "malformed Host header");
    assert_host("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", "malformed Host header");
    assert_host("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "malformed Host header");
    assert_host("GET / HTTP/1.1\r\nHost: []\r\n\r\n", "malformed Host header");
    assert_host("GET / HTTP/1.1\r\nHost: user@h\r\n\r\n", "malformed Host header");
    assert_host("GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", "malformed Host header");
}

static void test_expect(void **state)
{
    (void)state;
    size_t used;
    /* The head is in, the body is not: the connection sends 100 Continue. */
    fc_http_req *r = feed("POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n"
                          "Content-Length: 2\r\n\r\n",
                          &used);
    assert_false(r->complete);
    assert_true(r->head_done);
    assert_true(r->expect_continue);
    assert_int_equal(fc_http_req_feed(r, "{}", 2), 2);
    assert_true(r->complete);
    fc_http_req_free(r);
    /* Nothing to wait for: no body, an empty body, or HTTP/1.0. */
    r = feed("GET /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n", &used);
    assert_true(r->complete && !r->expect_continue && !r->error);
    fc_http_req_free(r);
    r = feed("POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", &used);
    assert_true(r->complete && !r->expect_continue && !r->error);
    fc_http_req_free(r);
    r = feed("POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", &used);
    assert_true(!r->expect_continue && !r->error);
    fc_http_req_free(r);
    r = feed("POST /x HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
             &used);
    assert_true(r->expect_continue);
    fc_http_req_free(r);
    /* Any other expectation is 417, before the body. */
    r = feed("POST /x HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}", &used);
    assert_int_equal(r->error, 417);
    fc_http_req_free(r);
}

static void test_allowed_hosts(void **state)
{
    (void)state;
    const char *none[1] = {NULL};
    const char *const some[] = {"flowcast.internal", "Other.Example:9000"};
    const char *const any[] = {"x", "*"};
    static const char *const loop_ok[] = {
        "localhost",    "LocalHost:80", "localhost.",    "a.b.localhost:1", "ip6-localhost",
        "ip6-loopback", "127.0.0.1",    "127.9.8.7:123", "[::1]",           "[::1]:8001",
    };
    for (size_t i = 0; i < sizeof loop_ok / sizeof *loop_ok; i++)
        if (!fc_http_host_allowed(loop_ok[i], "127.0.0.1", none, 0))
            fail_msg("%s refused", loop_ok[i]);
    static const char *const evil[] = {
        "evil.example",
        "evil.example:8001",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "10.0.0.1",
        "[2001:db8::1]",
        "localhostx",
        "flowcast.internal.x",
        "[::ffff:7f00:1",
        "",
    };
    for (size_t i = 0; i < sizeof evil / sizeof *evil; i++)
        if (fc_http_host_allowed(evil[i], "127.0.0.1", some, 2)) fail_msg("%s allowed", evil[i]);
    assert_true(fc_http_host_allowed("FLOWCAST.internal:1234", "127.0.0.1", some, 2));
    assert_true(fc_http_host_allowed("other.example:9000", "127.0.0.1", some, 2));
    assert_true(fc_http_host_allowed("evil.example", "127.0.0.1", any, 2));
    /* The listen address itself, and any IP literal behind a wildcard. */
    assert_true(fc_http_host_allowed("192.0.2.1:80", "192.0.2.1", none, 0));
    assert_false(fc_http_host_allowed("192.0.2.2", "192.0.2.1", none, 0));
    assert_true(fc_http_host_allowed("[2001:db8::1]:80", "2001:db8::1", none, 0));
    assert_true(fc_http_host_allowed("192.0.2.2", "0.0.0.0", none, 0));
    assert_true(fc_http_host_allowed("[2001:db8::2]", "::", none, 0));
    assert_false(fc_http_host_allowed("evil.example", "0.0.0.0", none, 0));
    assert_false(fc_http_host_allowed(NULL, "127.0.0.1", none, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipelined_requests_stop_at_boundary),
        cmocka_unit_test(test_body_content_length_and_chunked),
        cmocka_unit_test(test_limits_and_errors),
        cmocka_unit_test(test_upgrade_leaves_frame_bytes),
        cmocka_unit_test(test_query_decoding),
        cmocka_unit_test(test_host_header_rules),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_allowed_hosts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
