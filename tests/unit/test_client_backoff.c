/* Unit tests for libflowcast's reconnect rule (src/client/common.c): ceilings, jitter range,
 * seeding, URL parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

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

static void url_parse_accepts_http_host_port(void **state)
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
    const char *bad[] = {"https://x:1",     "x:1",        "http://", "http://h:0", "http://h:70000",
                         "http://h:1/path", "http://h:x", NULL};
    for (const char **b = bad; *b; b++)
        assert_int_equal(fcc__url_parse(*b, &u), FCC_EINVAL);
    assert_int_equal(fcc__url_parse(NULL, &u), FCC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ceiling_doubles_from_100ms_up_to_the_cap),
        cmocka_unit_test(delay_is_full_jitter_within_the_ceiling),
        cmocka_unit_test(same_seed_same_delays),
        cmocka_unit_test(url_parse_accepts_http_host_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
