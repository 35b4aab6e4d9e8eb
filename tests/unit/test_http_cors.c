/* Unit tests for src/http/cors.c: the shared "is this Origin allowed"
 * decision and the CORS headers of an answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/cors.h"

static void test_allow_list(void **state)
{
    (void)state;
    const char *allow[] = {"https://app.example", "http://other.example:8080"};
    assert_true(fc_http_origin_allowed("https://app.example", NULL, allow, 2));
    assert_true(fc_http_origin_allowed("HTTPS://APP.example", NULL, allow, 2));
    assert_true(fc_http_origin_allowed("http://other.example:8080", "x", allow, 2));
    assert_false(fc_http_origin_allowed("http://app.example", NULL, allow, 2));
    assert_false(fc_http_origin_allowed("https://app.example.evil", NULL, allow, 2));
    assert_false(fc_http_origin_allowed("https://app.exampl", NULL, allow, 2));
    assert_false(fc_http_origin_allowed("null", NULL, allow, 2));
    assert_false(fc_http_origin_allowed("", NULL, allow, 2));
}

static void test_wildcard_and_same_host(void **state)
{
    (void)state;
    const char *star[] = {"*"};
    assert_true(fc_http_origin_allowed("null", NULL, star, 1));
    assert_true(fc_http_origin_allowed("https://any.example", NULL, star, 1));
    assert_true(fc_http_origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080", NULL, 0));
    assert_true(fc_http_origin_allowed("http://LOCALHOST:8080", "localhost:8080", NULL, 0));
    assert_false(fc_http_origin_allowed("http://127.0.0.1:8081", "127.0.0.1:8080", NULL, 0));
    assert_false(fc_http_origin_allowed("http://127.0.0.1:8080", NULL, NULL, 0));
    assert_false(fc_http_origin_allowed("127.0.0.1:8080", "127.0.0.1:8080", NULL, 0));
}

static void test_headers_echo_the_origin(void **state)
{
    (void)state;
    char out[512];
    size_t n = fc_http_cors_headers(out, sizeof out, "https://app.example");
    assert_int_equal(n, strlen(out));
    assert_non_null(strstr(out, "Access-Control-Allow-Origin: https://app.example\r\n"));
    assert_non_null(strstr(out, "Vary: Origin\r\n"));
    assert_non_null(strstr(out, "Access-Control-Expose-Headers: "));
    assert_non_null(strstr(out, "Idempotent-Replayed"));
    assert_null(strstr(out, "Allow-Origin: *"));
    assert_int_equal(out[n - 1], '\n');
}

static void test_headers_that_do_not_fit_are_left_out(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(fc_http_cors_headers(out, sizeof out, "https://app.example"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_wildcard_and_same_host),
        cmocka_unit_test(test_headers_echo_the_origin),
        cmocka_unit_test(test_headers_that_do_not_fit_are_left_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
