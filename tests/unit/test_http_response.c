/* Unit tests for src/http/response.c: the bytes of a response head, byte
 * for byte, for each shape the server sends (body, 204/101, no body,
 * Connection: close, extra headers) and the refusal of a head too long. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/response.h"

static void check(fc_buf *b, const char *want)
{
    assert_non_null(b);
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, b->len);
    fc_buf_unref(b);
}

static void test_with_body(void **state)
{
    (void)state;
    check(fc_http_response(200, NULL, "application/json", "{\"a\":1}", 7, 1),
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
          "{\"a\":1}");
    check(fc_http_response(201, "Location: /api/workflows/x\r\n", "application/json", "{}", 2, 0),
          "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
          "Connection: close\r\nLocation: /api/workflows/x\r\n\r\n{}");
    check(fc_http_response(200, NULL, "text/plain", "", 0, 1),
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n");
}

static void test_without_body(void **state)
{
    (void)state;
    check(fc_http_response(204, "Idempotent-Replayed: true\r\n", NULL, NULL, 0, 1),
          "HTTP/1.1 204 No Content\r\nIdempotent-Replayed: true\r\n\r\n");
    check(fc_http_response(101, "Upgrade: websocket\r\n", NULL, NULL, 0, 1),
          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    check(fc_http_response(503, NULL, NULL, NULL, 0, 0),
          "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    check(fc_http_response(299, NULL, NULL, NULL, 0, 1),
          "HTTP/1.1 299 Unknown\r\nContent-Length: 0\r\n\r\n");
}

static void test_large_length_and_long_head(void **state)
{
    (void)state;
    /* Content-Length is the body's length, every digit. */
    char big[2000];
    memset(big, 'x', sizeof big);
    fc_buf *b = fc_http_response(200, NULL, "a/b", big, sizeof big, 1);
    assert_non_null(b);
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 2000\r\n\r\n";
    assert_int_equal(b->len, strlen(head) + sizeof big);
    assert_memory_equal(b->data, head, strlen(head));
    assert_memory_equal(b->data + strlen(head), big, sizeof big);
    fc_buf_unref(b);
    /* Extra headers that overflow the head's 1 KiB: refused, not cut. */
    char hdr[1100];
    memset(hdr, 'h', sizeof hdr - 3);
    memcpy(hdr + sizeof hdr - 3, "\r\n", 3);
    assert_null(fc_http_response(200, hdr, NULL, NULL, 0, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_with_body),
        cmocka_unit_test(test_without_body),
        cmocka_unit_test(test_large_length_and_long_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
