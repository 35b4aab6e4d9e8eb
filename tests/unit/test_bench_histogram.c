/* Unit tests for bench/flowcast-bench/hist.c: bucket arithmetic, quantiles, merge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hist.h"

static fcb_hist *new_hist(void)
{
    fcb_hist *h = malloc(sizeof(*h));
    assert_non_null(h);
    fcb_hist_init(h);
    return h;
}

/* Every value falls in the bucket its index names, buckets are contiguous
 * and the relative width stays under 1/128. */
static void test_buckets(void **state)
{
    (void)state;
    assert_int_equal(fcb_hist_index(0), 0);
    assert_int_equal(fcb_hist_index(255), 255);
    assert_int_equal(fcb_hist_index(256), 256);
    assert_int_equal(fcb_hist_index(UINT64_MAX), FCB_HIST_BUCKETS - 1);
    assert_true(fcb_hist_bucket_high(FCB_HIST_BUCKETS - 1) == UINT64_MAX);
    for (size_t i = 1; i < FCB_HIST_BUCKETS; i++)
        assert_true(fcb_hist_bucket_low(i) == fcb_hist_bucket_high(i - 1) + 1);
    uint64_t vals[] = {
        1, 127, 300, 1000, 4095, 4096, 123456789, UINT64_C(1) << 40, (UINT64_C(1) << 62) + 12345};
    for (size_t k = 0; k < sizeof(vals) / sizeof(vals[0]); k++) {
        size_t i = fcb_hist_index(vals[k]);
        assert_true(fcb_hist_bucket_low(i) <= vals[k]);
        assert_true(fcb_hist_bucket_high(i) >= vals[k]);
        double width = (double)(fcb_hist_bucket_high(i) - fcb_hist_bucket_low(i) + 1);
        assert_true(width / (double)vals[k] <= 1.0 / 128 + 1e-12 || vals[k] < 256);
    }
}

static void test_empty(void **state)
{
    (void)state;
    fcb_hist *h = new_hist();
    assert_int_equal(fcb_hist_quantile(h, 0.5), 0);
    assert_int_equal(fcb_hist_quantile(h, 1.0), 0);
    assert_true(fcb_hist_mean(h) == 0.0);
    free(h);
}

/* 1..100000 ns uniformly: quantiles within one bucket (0.8%) of exact. */
static void test_quantiles(void **state)
{
    (void)state;
    fcb_hist *h = new_hist();
    for (uint64_t v = 1; v <= 100000; v++)
        fcb_hist_record(h, v);
    assert_int_equal(h->count, 100000);
    assert_int_equal(h->min, 1);
    assert_int_equal(h->max, 100000);
    double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t k = 0; k < 4; k++) {
        double exact = qs[k] * 100000;
        double got = (double)fcb_hist_quantile(h, qs[k]);
        assert_true(got >= exact);
        assert_true(got <= exact * 1.008 + 1);
    }
    assert_int_equal(fcb_hist_quantile(h, 1.0), 100000);
    assert_int_equal(fcb_hist_quantile(h, 0.0), 1);
    assert_true(fcb_hist_mean(h) > 50000.4 && fcb_hist_mean(h) < 50000.6);
    free(h);
}

/* A quantile is never reported above the largest value seen. */
static void test_clamped_to_max(void **state)
{
    (void)state;
    fcb_hist *h = new_hist();
    fcb_hist_record_n(h, 1000001, 3);
    assert_int_equal(fcb_hist_quantile(h, 0.5), 1000001);
    assert_int_equal(fcb_hist_quantile(h, 0.999), 1000001);
    free(h);
}

/* p99 of 99 fast and 1 slow value is fast; p99.9 is the slow one. */
static void test_tail(void **state)
{
    (void)state;
    fcb_hist *h = new_hist();
    fcb_hist_record_n(h, 500, 99);
    fcb_hist_record(h, 9000000);
    assert_true(fcb_hist_quantile(h, 0.99) <= 504);
    assert_int_equal(fcb_hist_quantile(h, 0.999), 9000000);
    free(h);
}

static void test_merge(void **state)
{
    (void)state;
    fcb_hist *a = new_hist(), *b = new_hist();
    fcb_hist_record_n(a, 10, 5);
    fcb_hist_record_n(b, 20000, 5);
    fcb_hist_merge(a, b);
    assert_int_equal(a->count, 10);
    assert_int_equal(a->min, 10);
    assert_int_equal(a->max, 20000);
    assert_int_equal(fcb_hist_quantile(a, 0.5), 10);
    assert_true(fcb_hist_quantile(a, 0.6) >= 20000);
    fcb_hist *empty = new_hist();
    fcb_hist_merge(a, empty); /* merging an empty one changes nothing */
    assert_int_equal(a->count, 10);
    free(empty);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),   cmocka_unit_test(test_empty),
        cmocka_unit_test(test_quantiles), cmocka_unit_test(test_clamped_to_max),
        cmocka_unit_test(test_tail),      cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
