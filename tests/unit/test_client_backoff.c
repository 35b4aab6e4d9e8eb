/* Unit tests for libflowcast's reconnect rule (src/client/common.c): ceilings, jitter range,
 * seeding, URL parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/internal.h"

static void ceiling_doubles_from_100ms_up_to_the_cap(void **state)
{
    (void)state;
    const uint64_t want[] = {100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000};
    for (unsigned a = 0; a < sizeof want / sizeof want[0]; a++)
        assert_int_equal(fcc_backoff_ceiling(100, 30000, a), want[a]);
    /* Huge attempt numbers neither overflow nor pass the cap. */
    assert_int_equal(fcc_backoff_ceiling(100, 30000, 1000), 30000);
    assert_int_equal(fcc_backoff_ceiling(100, UINT64_MAX, 200), UINT64_MAX);
    assert_int_equal(fcc_backoff_ceiling(100, 50, 0), 50);
}

static void delay_is_full_jitter_within_the_ceiling(void **state)
{
    (void)state;
    uint64_t rng = 42;
    for (unsigned a = 0; a < 14; a++) {
        uint64_t ceil = fcc_backoff_ceiling(100, 30000, a), min = UINT64_MAX, max = 0, sum = 0;
        const int n = 4000;
        for (int i = 0; i < n; i++) {
            uint64_t d = fcc_backoff_delay(100, 30000, a, &rng);
            assert_true(d <= ceil);
            min = d < min ? d : min;
            max = d > max ? d : max;
            sum += d;
        }
        /* Uniform on [0, ceil]: spans the range, mean near ceil / 2. */
        assert_true(min <= ceil / 20);
        assert_true(max >= ceil - ceil / 20);
        double mean = (double)sum / n;
        assert_true(mean > 0.45 * (double)ceil && mean < 0.55 * (double)ceil);
    }
}

static void same_seed_same_delays(void **state)
{
    (void)state;
    uint64_t a = 7, b = 7, c = 8;
    int differ = 0;
    for (unsigned i = 0; i < 20; i++) {
        uint64_t da = fcc_backoff_delay(100, 30000, i, &a);
        assert_int_equal(da, fcc_backoff_delay(100, 30000, i, &b));
        differ |= da != fcc_backoff_delay(100, 30000, i, &c);
    }
    assert_true(differ);
    uint64_t zero = 0; /* a zero state is repaired, not stuck at 0 */
    fcc_backoff_delay(100, 30000, 3, &zero);
    assert_true(zero != 0);
}

static void url_parse_accepts_http_and_https_host_port(void **state)
{
    (void)state;
    fcc__url u;
    assert_int_equal(fcc__url_parse("http://127.0.0.1:8001", &u), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_string_equal(u.port, "8001");
    assert_string_equal(u.hostport, "127.0.0.1:8001");
    assert_int_equal(fcc__url_parse("http://example.com/", &u), 0);
    assert_string_equal(u.port, "80");
    assert_int_equal(fcc__url_parse("http://[::1]:9000", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.hostport, "[::1]:9000");
    assert_int_equal(u.tls, 0);
    /* https (a bad URL before TLS support): TLS, port 443 by default. */
    assert_int_equal(fcc__url_parse("https://x:1", &u), 0);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.hostport, "x:1");
    assert_int_equal(fcc__url_parse("https://flowcast.example/", &u), 0);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.port, "443");
    assert_int_equal(fcc__url_parse("https://[::1]", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.hostport, "[::1]:443");
    const char *bad[] = {"ftp://x:1",       "x:1",        "http://",       "http://h:0",
                         "http://h:70000",  "https://",   "HTTPS://h:1",   "httpss://h",
                         "http://h:1/path", "http://h:x", "https://h:1/p", NULL};
    for (const char **b = bad; *b; b++)
        assert_int_equal(fcc__url_parse(*b, &u), FCC_EINVAL);
    assert_int_equal(fcc__url_parse(NULL, &u), FCC_EINVAL);
}

/* base64url of s without padding, into out. */
static void b64url(const char *s, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n) v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)s[i + 2];
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        if (i + 1 < n) out[o++] = t[v >> 6 & 63];
        if (i + 2 < n) out[o++] = t[v & 63];
    }
    out[o] = '\0';
}

static void jwt_exp_is_read_without_verifying(void **state)
{
    (void)state;
    char payload[256], token[512];
    int64_t exp = 0;
    /* Payload lengths 0, 1 and 2 mod 3: every padding case of base64url. */
    const char *claims[] = {"{\"exp\":1764547200}", "{\"exp\":1764547200,\"a\":1}",
                            "{\"scope\":\"read\",\"exp\":1764547200}"};
    for (size_t i = 0; i < 3; i++) {
        b64url(claims[i], payload);
        snprintf(token, sizeof token, "eyJhbGciOiJIUzI1NiJ9.%s.c2ln", payload);
        exp = 0;
        assert_int_equal(fcc__jwt_exp(token, &exp), 0);
        assert_int_equal(exp, 1764547200);
    }
    b64url("{\"exp\":1764547200.5}", payload); /* NumericDate may have a fraction */
    snprintf(token, sizeof token, "h.%s.s", payload);
    assert_int_equal(fcc__jwt_exp(token, &exp), 0);
    assert_int_equal(exp, 1764547200);
    const char *no_exp[] = {"{\"scope\":\"read\"}", "{\"exp\":\"soon\"}", "{\"exp\":-5}", "[1]",
                            "not json"};
    for (size_t i = 0; i < sizeof no_exp / sizeof no_exp[0]; i++) {
        b64url(no_exp[i], payload);
        snprintf(token, sizeof token, "h.%s.s", payload);
        assert_int_equal(fcc__jwt_exp(token, &exp), -1);
    }
    const char *bad[] = {"static-api-token", "a.b", "h.@@@.s", "", ".."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(fcc__jwt_exp(bad[i], &exp), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ceiling_doubles_from_100ms_up_to_the_cap),
        cmocka_unit_test(delay_is_full_jitter_within_the_ceiling),
        cmocka_unit_test(same_seed_same_delays),
        cmocka_unit_test(url_parse_accepts_http_and_https_host_port),
        cmocka_unit_test(jwt_exp_is_read_without_verifying),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
