/* Unit tests for src/server/outq.c: queueing, partial writes, coalescing. */
#include "server/outq.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

static fc_buf *change(const char *key, int64_t seq)
{
    char payload[16];
    int n = snprintf(payload, sizeof payload, "%s:%lld", key, (long long)seq);
    fc_buf *b = fc_buf_new_keyed((size_t)n, key);
    memcpy(b->data, payload, (size_t)n);
    b->seq = seq;
    return b;
}

static int64_t seqs[64];
static int n_seqs;
static void record(const fc_buf *b)
{
    seqs[n_seqs++] = b->seq;
}

static void test_push_and_consume_partial(void **state)
{
    (void)state;
    fc_outq q = {0};
    fc_buf *a = change("a", 1), *b = change("a", 2);
    fc_buf_ref(a); /* keep one to check the queue releases exactly its own */
    fc_outq_push(&q, a);
    fc_outq_push(&q, b);
    assert_int_equal(q.count, 2);
    size_t total = fc_outq_bytes(&q);
    assert_int_equal(total, a->len + b->len);

    n_seqs = 0;
    fc_outq_consume(&q, 2, record); /* part of the first */
    assert_int_equal(q.head_off, 2);
    assert_int_equal(n_seqs, 0);
    uv_buf_t iov[4];
    size_t bytes;
    int n = fc_outq_iov(&q, iov, 4, 1 << 20, &bytes);
    assert_int_equal(n, 2);
    assert_int_equal(bytes, total - 2);
    assert_memory_equal(iov[0].base, a->data + 2, a->len - 2);

    fc_outq_consume(&q, bytes, record);
    assert_int_equal(n_seqs, 2);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 2);
    assert_null(fc_outq_first(&q));
    assert_int_equal(q.count, 0);
    assert_int_equal(a->refs, 1);
    fc_buf_unref(a);
    fc_outq_pool_trim();
}

static void test_coalesce_keeps_latest_and_other_keys(void **state)
{
    (void)state;
    fc_outq q = {0};
    for (int i = 1; i <= 4; i++) {
        fc_outq_push(&q, change("a", i));
        fc_outq_push(&q, change("b", i));
    }
    /* Below the limit nothing is dropped. */
    assert_int_equal(fc_outq_push_coalesce(&q, change("b", 5), 100), 0);
    /* Over the limit, older "a" entries go; the new one is appended. */
    int dropped = fc_outq_push_coalesce(&q, change("a", 5), 3);
    assert_int_equal(dropped, 4);
    assert_int_equal(q.count, 6);

    n_seqs = 0;
    uv_buf_t iov[16];
    size_t bytes;
    fc_outq_iov(&q, iov, 16, 1 << 20, &bytes);
    fc_outq_consume(&q, bytes, record);
    int64_t want[] = {1, 2, 3, 4, 5, 5};
    assert_int_equal(n_seqs, 6);
    assert_memory_equal(seqs, want, sizeof want);
    assert_null(fc_outq_last(&q));
    fc_outq_pool_trim();
}

static void test_coalesce_spares_locked_and_started_entries(void **state)
{
    (void)state;
    fc_outq q = {0};
    fc_outq_push(&q, change("a", 1));
    fc_outq_push(&q, change("a", 2));
    fc_outq_push(&q, change("a", 3));
    fc_outq_consume(&q, 1, NULL); /* head partly written: must stay */
    int dropped = fc_outq_push_coalesce(&q, change("a", 4), 1);
    assert_int_equal(dropped, 2);
    assert_int_equal(q.count, 2);
    assert_int_equal(fc_outq_first(&q)->seq, 1);
    assert_int_equal(fc_outq_last(&q)->seq, 4);

    q.locked = 2; /* both in an in-flight write */
    dropped = fc_outq_push_coalesce(&q, change("a", 5), 1);
    assert_int_equal(dropped, 0);
    assert_int_equal(q.count, 3);
    fc_outq_clear(&q);
    assert_int_equal(q.count, 0);
    fc_outq_pool_trim();
}

static void test_iov_respects_byte_cap(void **state)
{
    (void)state;
    fc_outq q = {0};
    for (int i = 1; i <= 10; i++)
        fc_outq_push(&q, change("k", i));
    uv_buf_t iov[16];
    size_t bytes;
    int n = fc_outq_iov(&q, iov, 16, 2, &bytes);
    assert_int_equal(n, 1); /* at least one entry even past the cap */
    n = fc_outq_iov(&q, iov, 3, 1 << 20, &bytes);
    assert_int_equal(n, 3);
    fc_outq_clear(&q);
    fc_outq_pool_trim();
}

static void test_drop_unlocked_keeps_in_flight(void **state)
{
    (void)state;
    fc_outq q = {0};
    for (int i = 1; i <= 5; i++)
        fc_outq_push(&q, change("a", i));
    q.locked = 2;
    assert_int_equal(fc_outq_drop_unlocked(&q), 3);
    assert_int_equal(q.count, 2);
    assert_int_equal(fc_outq_last(&q)->seq, 2);
    fc_outq_push(&q, change("a", 9)); /* the tail is usable again */
    assert_int_equal(fc_outq_last(&q)->seq, 9);
    q.locked = 0;
    fc_outq_consume(&q, 1, NULL); /* head partly written: kept */
    assert_int_equal(fc_outq_drop_unlocked(&q), 2);
    assert_int_equal(q.count, 1);
    assert_ptr_equal(fc_outq_first(&q), fc_outq_last(&q));
    fc_outq_clear(&q);
    fc_outq_pool_trim();
}

/* Many entries span several chunks; coalescing compacts across chunk borders. */
static void test_chunks_and_compaction(void **state)
{
    (void)state;
    fc_outq q = {0};
    for (int i = 1; i <= 100; i++)
        fc_outq_push(&q, change(i % 2 ? "odd" : "even", i));
    assert_int_equal(q.count, 100);
    int dropped = fc_outq_push_coalesce(&q, change("even", 101), 50);
    assert_int_equal(dropped, 50);
    assert_int_equal(q.count, 51);
    assert_int_equal(fc_outq_last(&q)->seq, 101);
    n_seqs = 0;
    while (q.count) {
        uv_buf_t iov[8];
        size_t bytes;
        fc_outq_iov(&q, iov, 8, 1 << 20, &bytes);
        fc_outq_consume(&q, bytes, NULL);
    }
    assert_null(q.head);
    /* Kept entries end exactly at a chunk border, with emptied chunks after it. */
    for (int i = 1; i <= 90; i++)
        fc_outq_push(&q, change(i <= FC_OUTQ_CHUNK ? "a" : "b", i));
    assert_int_equal(fc_outq_push_coalesce(&q, change("b", 91), 10), 60);
    assert_int_equal(q.count, FC_OUTQ_CHUNK + 1);
    assert_int_equal(fc_outq_last(&q)->seq, 91);
    assert_int_equal(fc_outq_first(&q)->seq, 1);
    fc_outq_clear(&q);
    assert_null(q.head);
    for (int i = 1; i <= 61; i++)
        fc_outq_push(&q, change("k", i)); /* exactly 2 full + 1 */
    assert_int_equal(fc_outq_drop_unlocked(&q), 61);
    assert_null(q.head);
    assert_null(q.tail);
    fc_outq_pool_trim();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_and_consume_partial),
        cmocka_unit_test(test_coalesce_keeps_latest_and_other_keys),
        cmocka_unit_test(test_coalesce_spares_locked_and_started_entries),
        cmocka_unit_test(test_iov_respects_byte_cap),
        cmocka_unit_test(test_drop_unlocked_keeps_in_flight),
        cmocka_unit_test(test_chunks_and_compaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
