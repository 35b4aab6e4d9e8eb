/* Unit tests for src/common/bucket.c (the --write-rate token bucket) and the
 * client table of src/server/clients.c that keeps one per client. */
#include "common/bucket.h"
#include "server/clients.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#define S 1000000000ull
#define T0 (1000 * S) /* an arbitrary monotonic start */

static void test_rate_and_default_burst(void **state)
{
    (void)state;
    fc_bucket_rate r = fc_bucket_rate_make(10, 0);
    assert_int_equal(r.interval_ns, S / 10);
    assert_int_equal(r.burst_ns, 10 * (S / 10)); /* burst 0 = the rate */
    r = fc_bucket_rate_make(0.5, 0);
    assert_int_equal(r.interval_ns, 2 * S);
    assert_int_equal(r.burst_ns, 2 * S); /* at least one token */
    r = fc_bucket_rate_make(2.5, 0);
    assert_int_equal(r.burst_ns, 3 * (S * 2 / 5)); /* ceil(2.5) */
    r = fc_bucket_rate_make(1, 7);
    assert_int_equal(r.burst_ns, 7 * S);
}

static void test_burst_then_refuse_then_refill(void **state)
{
    (void)state;
    fc_bucket_rate r = fc_bucket_rate_make(1, 3);
    uint64_t tat = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(fc_bucket_take(&r, &tat, T0), 0);
    uint64_t before = tat;
    uint64_t wait = fc_bucket_take(&r, &tat, T0);
    assert_int_equal(wait, S);     /* the first token comes back after one interval */
    assert_int_equal(tat, before); /* a refusal costs nothing */
    assert_int_equal(fc_bucket_retry_after_s(wait), 1);
    /* half an interval later: half a second still to wait, rounded up to 1 s */
    wait = fc_bucket_take(&r, &tat, T0 + S / 2);
    assert_int_equal(wait, S / 2);
    assert_int_equal(fc_bucket_retry_after_s(wait), 1);
    /* after one interval exactly one more take fits */
    assert_int_equal(fc_bucket_take(&r, &tat, T0 + S), 0);
    assert_true(fc_bucket_take(&r, &tat, T0 + S) > 0);
    assert_false(fc_bucket_full(tat, T0 + S));
    /* idle for the whole burst: full again, and the burst is available */
    assert_true(fc_bucket_full(tat, T0 + 4 * S));
    for (int i = 0; i < 3; i++)
        assert_int_equal(fc_bucket_take(&r, &tat, T0 + 4 * S), 0);
    assert_true(fc_bucket_take(&r, &tat, T0 + 4 * S) > 0);
}

static void test_steady_rate_never_refused(void **state)
{
    (void)state;
    fc_bucket_rate r = fc_bucket_rate_make(5, 1);
    uint64_t tat = 0;
    for (uint64_t i = 0; i < 1000; i++)
        assert_int_equal(fc_bucket_take(&r, &tat, T0 + i * (S / 5)), 0);
}

static void test_retry_after_rounds_up(void **state)
{
    (void)state;
    assert_int_equal(fc_bucket_retry_after_s(1), 1);
    assert_int_equal(fc_bucket_retry_after_s(S), 1);
    assert_int_equal(fc_bucket_retry_after_s(S + 1), 2);
    assert_int_equal(fc_bucket_retry_after_s(10 * S - 5), 10);
    /* a slow rate: 0.1/s, burst 1, just used -> 10 s */
    fc_bucket_rate r = fc_bucket_rate_make(0.1, 1);
    uint64_t tat = 0;
    assert_int_equal(fc_bucket_take(&r, &tat, T0), 0);
    assert_int_equal(fc_bucket_retry_after_s(fc_bucket_take(&r, &tat, T0)), 10);
}

static fc_client_key key_of(uint32_t n)
{
    fc_client_key k;
    memset(&k, 0, sizeof k);
    k.kind = FC_CLIENT_ADDR;
    memcpy(k.id + 12, &n, sizeof n);
    return k;
}

static void test_client_streams_limit_and_release(void **state)
{
    (void)state;
    fc_clients *t = fc_clients_new(2, 0, 0);
    assert_non_null(t);
    fc_client_key a = key_of(1), b = key_of(2);
    fc_client *e1, *e2, *e3, *f;
    assert_int_equal(fc_clients_stream_take(t, &a, &e1), FC_CLIENTS_OK);
    assert_int_equal(fc_clients_stream_take(t, &a, &e2), FC_CLIENTS_OK);
    assert_int_equal(fc_clients_stream_take(t, &a, &e3), FC_CLIENTS_LIMIT);
    assert_null(e3);
    assert_int_equal(fc_clients_stream_take(t, &b, &f), FC_CLIENTS_OK);
    fc_clients_stream_release(t, e1);
    assert_int_equal(fc_clients_stream_take(t, &a, &e3), FC_CLIENTS_OK);
    fc_clients_stream_release(t, e2);
    fc_clients_stream_release(t, e3);
    fc_clients_stream_release(t, f);
    fc_clients_free(t);
}

/* Idle entries go, so any number of addresses over time costs bounded memory. */
static void test_client_table_stays_bounded(void **state)
{
    (void)state;
    fc_clients *t = fc_clients_new(0, 1000, 1); /* a token refills in 1 ms */
    uint64_t wait;
    uint64_t now = T0;
    for (uint32_t i = 0; i < 3 * FC_CLIENTS_MAX; i++) {
        fc_client_key k = key_of(i);
        assert_int_equal(fc_clients_write_take(t, &k, now, &wait), FC_CLIENTS_OK);
        now += S / 1000; /* earlier entries are full again by now */
        assert_true(fc_clients_count(t) <= FC_CLIENTS_MAX);
    }
    /* at one instant, new addresses fill the table, then evict the entry
     * that owes least: the table stays at its cap and keeps serving */
    uint64_t evicted0 = fc_clients_evicted(t);
    for (uint32_t i = 0; i < 2 * FC_CLIENTS_MAX; i++) {
        fc_client_key k = key_of(0x80000000u + i);
        assert_int_equal(fc_clients_write_take(t, &k, now, &wait), FC_CLIENTS_OK);
        assert_true(fc_clients_count(t) <= FC_CLIENTS_MAX);
    }
    assert_true(fc_clients_evicted(t) - evicted0 >= FC_CLIENTS_MAX / 2);
    /* the sweep frees what is idle once the buckets have refilled */
    fc_clients_sweep(t, FC_CLIENTS_CHAINS, now + S);
    assert_int_equal(fc_clients_count(t), 0);
    fc_clients_free(t);
}

/* Entries holding streams are never evicted: a table full of them refuses
 * new keys, and one freed stream makes room again. */
static void test_client_table_keeps_stream_holders(void **state)
{
    (void)state;
    fc_clients *t = fc_clients_new(1, 0, 0);
    static fc_client *held[2 * FC_CLIENTS_MAX];
    uint32_t n = 0;
    fc_clients_result r = FC_CLIENTS_OK;
    while (r == FC_CLIENTS_OK && n < 2 * FC_CLIENTS_MAX) {
        fc_client_key k = key_of(n);
        r = fc_clients_stream_take(t, &k, &held[n]);
        if (r == FC_CLIENTS_OK) n++;
    }
    assert_int_equal(r, FC_CLIENTS_FULL);
    assert_true(n <= FC_CLIENTS_MAX && fc_clients_count(t) == (int)n);
    assert_int_equal(fc_clients_evicted(t), 0);
    /* the refused key's shard gets room when one of its holders lets go */
    fc_client_key refused = key_of(n);
    fc_client *e = NULL;
    for (uint32_t i = 0; i < n && !e; i++) {
        fc_clients_stream_release(t, held[i]);
        held[i] = NULL;
        if (fc_clients_stream_take(t, &refused, &e) != FC_CLIENTS_OK) e = NULL;
    }
    assert_non_null(e);
    fc_clients_stream_release(t, e);
    for (uint32_t i = 0; i < n; i++)
        if (held[i]) fc_clients_stream_release(t, held[i]);
    fc_clients_free(t);
}

/* A subject and an address with the same 16 bytes are different clients. */
static void test_client_subject_is_its_own_key(void **state)
{
    (void)state;
    fc_clients *t = fc_clients_new(1, 0, 0);
    fc_client_key addr = key_of(7), sub, sub2;
    fc_clients_key_subject(addr.id, &sub);
    uint8_t other[16] = {1};
    fc_clients_key_subject(other, &sub2);
    fc_client *a, *b, *c, *d;
    assert_int_equal(fc_clients_stream_take(t, &addr, &a), FC_CLIENTS_OK);
    assert_int_equal(fc_clients_stream_take(t, &sub, &b), FC_CLIENTS_OK);
    assert_int_equal(fc_clients_stream_take(t, &sub, &c), FC_CLIENTS_LIMIT);
    assert_int_equal(fc_clients_stream_take(t, &sub2, &d), FC_CLIENTS_OK);
    fc_clients_stream_release(t, a);
    fc_clients_stream_release(t, b);
    fc_clients_stream_release(t, d);
    fc_clients_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_and_default_burst),
        cmocka_unit_test(test_burst_then_refuse_then_refill),
        cmocka_unit_test(test_steady_rate_never_refused),
        cmocka_unit_test(test_retry_after_rounds_up),
        cmocka_unit_test(test_client_streams_limit_and_release),
        cmocka_unit_test(test_client_table_stays_bounded),
        cmocka_unit_test(test_client_table_keeps_stream_holders),
        cmocka_unit_test(test_client_subject_is_its_own_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
