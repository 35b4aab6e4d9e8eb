/* Unit tests for src/server/outq.c: queueing, partial writes, coalescing. */
#include "server/outq.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
    if (n_seqs < 64) seqs[n_seqs] = b->seq;
    n_seqs++;
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

/* Consumes everything, recording the seqs in order. */
static void drain(fc_outq *q)
{
    n_seqs = 0;
    while (q->count) {
        uv_buf_t iov[8];
        size_t bytes;
        fc_outq_iov(q, iov, 8, 1 << 20, &bytes);
        fc_outq_consume(q, bytes, record);
    }
    assert_int_equal(fc_outq_bytes(q), 0);
}

/* What fc_outq_bytes must say, recomputed by a walk. */
static size_t walk_bytes(const fc_outq *q)
{
    uv_buf_t iov[256];
    size_t bytes;
    fc_outq_iov(q, iov, 256, SIZE_MAX, &bytes);
    return q->count ? bytes : 0;
}

static void test_coalesce_replaces_pending_in_place(void **state)
{
    (void)state;
    fc_outq q = {0};
    for (int i = 1; i <= 4; i++) {
        fc_outq_push(&q, change("a", i));
        fc_outq_push(&q, change("b", i));
    }
    /* Below the limit nothing is replaced. */
    assert_int_equal(fc_outq_push_coalesce(&q, change("b", 5), 100), 0);
    assert_int_equal(q.count, 9);
    /* Over the limit, the pending a4 becomes a5 where it stands. */
    assert_int_equal(fc_outq_push_coalesce(&q, change("a", 5), 3), 1);
    assert_int_equal(q.count, 9);
    assert_non_null(q.index);
    assert_int_equal(fc_outq_bytes(&q), walk_bytes(&q));
    assert_int_equal(fc_outq_cost(&q), walk_bytes(&q) + 9 * FC_OUTQ_ENTRY_COST);
    /* And again: the index points at the replaced entry. */
    assert_int_equal(fc_outq_push_coalesce(&q, change("a", 6), 3), 1);
    assert_int_equal(fc_outq_push_coalesce(&q, change("c", 1), 3), 0); /* a new key: appended */
    assert_int_equal(q.count, 10);
    drain(&q);
    int64_t want[] = {1, 1, 2, 2, 3, 3, 6, 4, 5, 1};
    assert_int_equal(n_seqs, 10);
    assert_memory_equal(seqs, want, sizeof want);
    assert_null(fc_outq_last(&q));
    assert_null(q.index); /* freed once the queue drained */
    fc_outq_pool_trim();
}

static void test_coalesce_spares_locked_and_started_entries(void **state)
{
    (void)state;
    fc_outq q = {0};
    fc_outq_push(&q, change("a", 1));
    fc_outq_consume(&q, 1, NULL); /* head partly written: must stay */
    assert_int_equal(fc_outq_push_coalesce(&q, change("a", 2), 1), 0);
    assert_int_equal(q.count, 2);
    assert_int_equal(fc_outq_push_coalesce(&q, change("a", 3), 1), 1); /* a2 was not started */
    assert_int_equal(q.count, 2);
    assert_int_equal(fc_outq_first(&q)->seq, 1);
    assert_int_equal(fc_outq_last(&q)->seq, 3);

    q.locked = 2; /* both in an in-flight write */
    assert_int_equal(fc_outq_push_coalesce(&q, change("a", 4), 1), 0);
    assert_int_equal(q.count, 3);
    /* Never replaced by a lower seq (a re-created workflow starts again at 1). */
    assert_int_equal(fc_outq_push_coalesce(&q, change("a", 1), 1), 0);
    assert_int_equal(q.count, 4);
    /* Nor by another incarnation's state, whatever its seq. */
    fc_buf *other = change("a", 9);
    other->epoch = 77;
    assert_int_equal(fc_outq_push_coalesce(&q, other, 1), 0);
    assert_int_equal(q.count, 5);
    assert_int_equal(fc_outq_bytes(&q), walk_bytes(&q));
    fc_outq_clear(&q);
    assert_int_equal(q.count, 0);
    assert_int_equal(fc_outq_bytes(&q), 0);
    assert_null(q.index);
    fc_outq_pool_trim();
}

/* The index follows the head: a written entry is forgotten, and the index
 * goes away below half the limit. */
static void test_coalesce_index_follows_the_head(void **state)
{
    (void)state;
    fc_outq q = {0};
    char key[8];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "k%d", i);
        fc_outq_push(&q, change(key, 1));
    }
    assert_int_equal(fc_outq_push_coalesce(&q, change("k0", 2), 20), 1);
    /* Write k0 (now seq 2) and k1: a new k0 state must be appended, not
     * written into a freed slot. */
    uv_buf_t iov[2];
    size_t bytes;
    fc_outq_iov(&q, iov, 2, 1 << 20, &bytes);
    fc_outq_consume(&q, bytes, NULL);
    assert_int_equal(fc_outq_push_coalesce(&q, change("k0", 3), 20), 0);
    assert_int_equal(q.count, 39);
    assert_int_equal(fc_outq_last(&q)->seq, 3);
    assert_int_equal(fc_outq_bytes(&q), walk_bytes(&q));
    while (q.count >= 10) {
        fc_outq_iov(&q, iov, 1, 1 << 20, &bytes);
        fc_outq_consume(&q, bytes, NULL);
    }
    assert_null(q.index);
    fc_outq_clear(&q);
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

/* Many entries span several chunks; dropping compacts across chunk borders. */
static void test_chunks_and_compaction(void **state)
{
    (void)state;
    fc_outq q = {0};
    for (int i = 1; i <= 100; i++)
        fc_outq_push(&q, change(i % 2 ? "odd" : "even", i));
    assert_int_equal(q.count, 100);
    assert_int_equal(fc_outq_push_coalesce(&q, change("even", 101), 50), 1);
    assert_int_equal(q.count, 100);
    assert_int_equal(fc_outq_last(&q)->seq, 101);
    drain(&q);
    assert_int_equal(n_seqs, 100);
    assert_null(q.head);
    /* Kept entries end exactly at a chunk border, with emptied chunks after it. */
    for (int i = 1; i <= 90; i++)
        fc_outq_push(&q, change(i <= FC_OUTQ_CHUNK ? "a" : "b", i));
    q.locked = FC_OUTQ_CHUNK;
    assert_int_equal(fc_outq_drop_unlocked(&q), 60);
    assert_int_equal(q.count, FC_OUTQ_CHUNK);
    assert_int_equal(fc_outq_last(&q)->seq, FC_OUTQ_CHUNK);
    assert_int_equal(fc_outq_first(&q)->seq, 1);
    assert_int_equal(fc_outq_bytes(&q), walk_bytes(&q));
    fc_outq_push(&q, change("b", 91));
    assert_int_equal(fc_outq_last(&q)->seq, 91);
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
        cmocka_unit_test(test_coalesce_replaces_pending_in_place),
        cmocka_unit_test(test_coalesce_spares_locked_and_started_entries),
        cmocka_unit_test(test_coalesce_index_follows_the_head),
        cmocka_unit_test(test_iov_respects_byte_cap),
        cmocka_unit_test(test_drop_unlocked_keeps_in_flight),
        cmocka_unit_test(test_chunks_and_compaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
