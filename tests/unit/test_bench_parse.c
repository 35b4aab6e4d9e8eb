/* Unit tests for bench/flowcast-bench/parse.c: delivered-message fields and
 * HTTP/1.1 response framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "parse.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_flowcast_update(void **state)
{
    (void)state;
    fcb_msg m;
    const char msg[] = "{\"workflow_id\":\"b1-0\",\"status\":\"running\",\"current_step\":0,"
                       "\"total_steps\":1000000,\"message\":\"1234567890123\","
                       "\"timestamp\":\"2026-11-27T05:00:00.000Z\",\"seq\":42}";
    assert_int_equal(fcb_msg_parse(S(msg), &m), 0);
    assert_int_equal(m.seq, 42);
    assert_true(m.has_seq);
    assert_true(m.has_sent);
    assert_int_equal(m.sent_ns, 1234567890123ULL);
    assert_int_equal(m.pub, 0);
    assert_false(fcb_msg_resync(S(msg)));
}

static void test_peer_payload(void **state)
{
    (void)state;
    fcb_msg m;
    const char msg[] = "{\"workflow_id\":\"b1-0\",\"status\":\"running\",\"current_step\":1,"
                       "\"total_steps\":1000000,\"message\":\"77\","
                       "\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"seq\":7,\"p\":3}";
    assert_int_equal(fcb_msg_parse(S(msg), &m), 0);
    assert_int_equal(m.seq, 7);
    assert_int_equal(m.pub, 3);
    assert_int_equal(m.sent_ns, 77);
}

/* The first message of a flowcast stream has no send time in "message". */
static void test_no_send_time(void **state)
{
    (void)state;
    fcb_msg m;
    assert_int_equal(fcb_msg_parse(S("{\"message\":\"\",\"seq\":1,\"resync\":true}"), &m), 0);
    assert_false(m.has_sent);
    assert_int_equal(m.seq, 1);
    assert_true(fcb_msg_resync(S("{\"message\":\"\",\"seq\":1,\"resync\":true}")));
}

static void test_no_seq(void **state)
{
    (void)state;
    fcb_msg m;
    assert_int_equal(fcb_msg_parse(S("{\"op\":\"subscribed\"}"), &m), -1);
    assert_int_equal(fcb_msg_parse(S("{\"seq\":\"x\"}"), &m), -1);
    assert_int_equal(fcb_msg_parse(S(""), &m), -1);
    /* "subseq" is not "seq". */
    assert_int_equal(fcb_msg_parse(S("{\"subseq\":5}"), &m), -1);
}

static void test_json_u64(void **state)
{
    (void)state;
    uint64_t v = 0;
    const char body[] = "{\"id\":\"w\",\"seq\":18446744073709551615,\"total_steps\":3}";
    assert_int_equal(fcb_json_u64(S(body), "seq", &v), 0);
    assert_true(v == UINT64_MAX);
    assert_int_equal(fcb_json_u64(S(body), "total_steps", &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(fcb_json_u64(S(body), "steps", &v), -1);
}

static void test_http_content_length(void **state)
{
    (void)state;
    fcb_http_resp r;
    const char two[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       "content-length: 9\r\n\r\n{\"seq\":5}HTTP/1.1 409 Conflict\r\n"
                       "Content-Length: 2\r\n\r\n{}";
    assert_int_equal(fcb_http_resp_parse(S(two), 0, &r), 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 9);
    assert_memory_equal(two + r.body_off, "{\"seq\":5}", 9);
    size_t first = r.total;
    assert_int_equal(fcb_http_resp_parse(two + first, sizeof(two) - 1 - first, 0, &r), 1);
    assert_int_equal(r.status, 409);
    assert_int_equal(first + r.total, sizeof(two) - 1);
    /* Every strict prefix is incomplete. */
    for (size_t n = 0; n < first; n++)
        assert_int_equal(fcb_http_resp_parse(two, n, 0, &r), 0);
}

static void test_http_chunked(void **state)
{
    (void)state;
    fcb_http_resp r;
    const char msg[] = "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_int_equal(fcb_http_resp_parse(S(msg), 0, &r), 1);
    assert_int_equal(r.status, 202);
    assert_int_equal(r.total, sizeof(msg) - 1);
    assert_int_equal(r.body_len, 5);
    assert_memory_equal(msg + r.body_off, "hello", 5);
    for (size_t n = 0; n < sizeof(msg) - 1; n++)
        assert_int_equal(fcb_http_resp_parse(msg, n, 0, &r), 0);
}

static void test_http_no_body_and_upgrade(void **state)
{
    (void)state;
    fcb_http_resp r;
    const char up[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\n\r\n\x81\x02hi";
    assert_int_equal(fcb_http_resp_parse(S(up), 1, &r), 1);
    assert_int_equal(r.status, 101);
    assert_int_equal(r.head_len, sizeof(up) - 1 - 4);
    assert_int_equal(fcb_http_resp_parse(S("HTTP/1.1 204 No Content\r\n\r\n"), 0, &r), 1);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
}

static void test_http_malformed(void **state)
{
    (void)state;
    fcb_http_resp r;
    assert_int_equal(fcb_http_resp_parse(S("HTTX/1.1 200 OK\r\n\r\n"), 0, &r), -1);
    assert_int_equal(fcb_http_resp_parse(S("HTTP/1.1 2x0 OK\r\n\r\n"), 0, &r), -1);
    /* A keep-alive 200 without framing cannot be delimited. */
    assert_int_equal(fcb_http_resp_parse(S("HTTP/1.1 200 OK\r\n\r\nbody"), 0, &r), -1);
    assert_int_equal(fcb_http_resp_parse(S("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), 0, &r),
                     -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flowcast_update), cmocka_unit_test(test_peer_payload),
        cmocka_unit_test(test_no_send_time),    cmocka_unit_test(test_no_seq),
        cmocka_unit_test(test_json_u64),        cmocka_unit_test(test_http_content_length),
        cmocka_unit_test(test_http_chunked),    cmocka_unit_test(test_http_no_body_and_upgrade),
        cmocka_unit_test(test_http_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
