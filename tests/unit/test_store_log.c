/* Unit tests of the commit-ordered log (store interface v6: log_head and
 * log_since; v7: transaction ids and the heard predicate), which only
 * backends several processes write have: on SQLite the functions are NULL;
 * on PostgreSQL (FC_TEST_PG_DSN) the log gives every committed change,
 * deletions included, never skips a transaction that commits after a later
 * one was read, and leaves out the transactions the caller heard. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

#include "common/error.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* What log_since gave. */
typedef struct logged {
    int n;
    char id[64][FC_ID_MAX + 1];
    int64_t seq[64];
    int deleted[64];
    int64_t txid[64];
    int stop_after; /* 0: never */
    /* For heard(): the transactions to leave out (-1: every one), and how
     * many times it was asked. */
    int64_t heard[4];
    int n_heard, asked;
} logged;

static int heard(void *ud, int64_t txid)
{
    logged *l = ud;
    l->asked++;
    for (int i = 0; i < l->n_heard; i++)
        if (l->heard[i] == txid || l->heard[i] == -1) return 1;
    return 0;
}

static int on_log(void *ud, const fc_workflow *w, int deleted, int64_t txid)
{
    logged *l = ud;
    assert_true(l->n < 64);
    snprintf(l->id[l->n], sizeof l->id[0], "%s", w->id);
    l->seq[l->n] = w->seq;
    l->deleted[l->n] = deleted;
    l->txid[l->n] = txid;
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

/* The index of id's last row in l, or -1. */
static int find(const logged *l, const char *id)
{
    int at = -1;
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->id[i], id) == 0) at = i;
    return at;
}

static void test_sqlite_has_no_log(void **state)
{
    fixture *f = *state;
    if (fx_is_pg()) skip();
    assert_false(fc_store_has_log(f->s));
    assert_null(f->s->ops->log_head);
    assert_null(f->s->ops->log_since);
}

static void test_log_gives_changes_and_deletions(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip();
    assert_true(fc_store_has_log(f->s));
    int64_t head = -1, next = -1;
    assert_int_equal(fc_store_log_head(f->s, &head), 0);
    assert_true(head >= 0);
    do1(f, mk_create("a", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_create("b", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_step("a", 1), 0);
    do1(f, mk(FC_CHANGE_DELETE, "b"), 0);

    logged l = {0};
    assert_int_equal(fc_store_log_since(f->s, head, 100, NULL, on_log, &l, &next), 0);
    int a = find(&l, "a"), b = find(&l, "b");
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(l.seq[a], 2); /* the latest state of a */
    assert_int_equal(l.deleted[a], 0);
    assert_int_equal(l.seq[b], 1); /* the state just before the deletion */
    assert_int_equal(l.deleted[b], 1);
    assert_true(next > head);

    /* Nothing committed since: nothing new (repeats would be allowed, none are due). */
    int64_t again = -1;
    memset(&l, 0, sizeof l);
    assert_int_equal(fc_store_log_since(f->s, next, 100, NULL, on_log, &l, &again), 0);
    assert_int_equal(l.n, 0);
    assert_true(again >= next);
    int64_t head2;
    assert_int_equal(fc_store_log_head(f->s, &head2), 0);
    assert_true(head2 >= head);

    /* A limit gives at most that many and comes back for the rest. */
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof id, "m%d", i);
        do1(f, mk_create(id, FC_STATUS_RUNNING, 0, 10), 0);
    }
    memset(&l, 0, sizeof l);
    int64_t pos = again;
    for (int round = 0; round < 10 && find(&l, "m4") < 0; round++)
        assert_int_equal(fc_store_log_since(f->s, pos, 2, NULL, on_log, &l, &pos), 0);
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof id, "m%d", i);
        assert_true(find(&l, id) >= 0);
    }
}

/* Another node's transaction that started first (smaller xid) but commits
 * after a later one was read must still come out of the log. */
static void test_late_commit_is_not_skipped(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip();
    do1(f, mk_create("warm", FC_STATUS_RUNNING, 0, 10), 0);
    int64_t pos;
    assert_int_equal(fc_store_log_head(f->s, &pos), 0);
    /* "slow" is written inside a transaction that stays open. */
    fx_exec(f, "BEGIN; SELECT * FROM fc_apply(0, 'slow', 1, 100, 'n', 'running', 0, 10, '', 0, 0,"
               " '', '\\x00'::bytea, 1000)");
    do1(f, mk_create("fast", FC_STATUS_RUNNING, 0, 10), 0);
    logged l = {0};
    assert_int_equal(fc_store_log_since(f->s, pos, 100, NULL, on_log, &l, &pos), 0);
    assert_true(find(&l, "fast") >= 0);
    assert_int_equal(find(&l, "slow"), -1);
    fx_exec(f, "COMMIT");
    memset(&l, 0, sizeof l);
    assert_int_equal(fc_store_log_since(f->s, pos, 100, NULL, on_log, &l, &pos), 0);
    assert_true(find(&l, "slow") >= 0); /* read from the position before it committed */
}

/* A callback that stops early gets the rest (again) from the position it is given. */
static void test_stopping_callback_resumes(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip();
    int64_t pos;
    assert_int_equal(fc_store_log_head(f->s, &pos), 0);
    fc_change *cs[3] = {mk_create("s0", FC_STATUS_RUNNING, 0, 1),
                        mk_create("s1", FC_STATUS_RUNNING, 0, 1),
                        mk_create("s2", FC_STATUS_RUNNING, 0, 1)};
    submit_wait(f, cs, 3); /* one batch: one transaction */
    for (int i = 0; i < 3; i++)
        free_change(cs[i]);
    logged l = {.stop_after = 1};
    assert_int_equal(fc_store_log_since(f->s, pos, 100, NULL, on_log, &l, &pos), 0);
    assert_int_equal(l.n, 1);
    l.stop_after = 0;
    assert_int_equal(fc_store_log_since(f->s, pos, 100, NULL, on_log, &l, &pos), 0);
    assert_true(find(&l, "s0") >= 0 && find(&l, "s1") >= 0 && find(&l, "s2") >= 0);
}

/* A page that is all one transaction's rows is given whole by a second
 * query; a callback that stops during that one also comes back to the
 * transaction (it was moved past, so its rows after the stop were lost to
 * a reader that stops when it cannot take more: the catch-up). */
static void test_stop_inside_a_whole_transaction_resumes(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip();
    int64_t pos;
    assert_int_equal(fc_store_log_head(f->s, &pos), 0);
    fc_change *cs[3] = {mk_create("t0", FC_STATUS_RUNNING, 0, 1),
                        mk_create("t1", FC_STATUS_RUNNING, 0, 1),
                        mk_create("t2", FC_STATUS_RUNNING, 0, 1)};
    submit_wait(f, cs, 3); /* one batch: one transaction */
    for (int i = 0; i < 3; i++)
        free_change(cs[i]);
    /* From the transaction's xid the page (2 rows) is all its rows, then
     * the whole transaction is given, stopped here after its first row. */
    logged l = {.stop_after = 3};
    assert_int_equal(fc_store_log_since(f->s, pos, 2, NULL, on_log, &l, &pos), 0);
    if (l.n == 2) { /* the head was before its xid: now at it */
        memset(&l, 0, sizeof l);
        l.stop_after = 3;
        assert_int_equal(fc_store_log_since(f->s, pos, 2, NULL, on_log, &l, &pos), 0);
    }
    assert_int_equal(l.n, 3);
    memset(&l, 0, sizeof l);
    for (int round = 0; round < 4; round++)
        assert_int_equal(fc_store_log_since(f->s, pos, 2, NULL, on_log, &l, &pos), 0);
    assert_true(find(&l, "t0") >= 0 && find(&l, "t1") >= 0 && find(&l, "t2") >= 0);
}

/* Commits one batch of n creates named prefix0.. and returns its
 * transaction id, checking that every change was told it. */
static int64_t batch(fixture *f, const char *prefix, int n)
{
    fc_change *cs[4];
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "%s%d", prefix, i);
        cs[i] = mk_create(id, FC_STATUS_RUNNING, 0, 1);
    }
    submit_wait(f, cs, n); /* one batch: one transaction */
    int64_t txid = cs[0]->txid;
    for (int i = 0; i < n; i++) {
        assert_int_equal(cs[i]->result, 0);
        assert_true(cs[i]->txid == txid);
        assert_int_equal(cs[i]->txn_changes, n);
        free_change(cs[i]);
    }
    assert_true(txid > 0);
    return txid;
}

/* A committed change knows its transaction, as the log names it. */
static void test_changes_carry_their_transaction(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip();
    int64_t pos;
    assert_int_equal(fc_store_log_head(f->s, &pos), 0);
    int64_t a = batch(f, "a", 3), b = batch(f, "b", 1);
    assert_true(b != a);
    logged l = {0};
    assert_int_equal(fc_store_log_since(f->s, pos, 100, NULL, on_log, &l, &pos), 0);
    assert_int_equal(l.n, 4);
    assert_true(l.txid[find(&l, "a0")] == a && l.txid[find(&l, "a2")] == a);
    assert_true(l.txid[find(&l, "b0")] == b);
}

/* With heard, the rows of the transactions heard are left out, those of
 * the others given; the position moves past both. */
static void test_heard_transactions_are_left_out(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip();
    int64_t pos;
    assert_int_equal(fc_store_log_head(f->s, &pos), 0);
    int64_t a = batch(f, "a", 3);
    batch(f, "b", 2);
    logged l = {.heard = {a}, .n_heard = 1};
    assert_int_equal(fc_store_log_since(f->s, pos, 100, heard, on_log, &l, &pos), 0);
    assert_true(l.asked >= 2);
    assert_int_equal(l.n, 2);
    assert_true(find(&l, "b0") >= 0 && find(&l, "b1") >= 0);
    /* Nothing left behind: the next read gives nothing of either. */
    memset(&l, 0, sizeof l);
    assert_int_equal(fc_store_log_since(f->s, pos, 100, NULL, on_log, &l, &pos), 0);
    assert_int_equal(l.n, 0);
    /* A deletion is a transaction of its own, given when not heard. */
    do1(f, mk(FC_CHANGE_DELETE, "a0"), 0);
    memset(&l, 0, sizeof l);
    assert_int_equal(fc_store_log_since(f->s, pos, 100, heard, on_log, &l, &pos), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.deleted[0], 1);
}

/* heard is asked only from a position this handle gave last: from any
 * other (a caller that moved back, or a position older than the commits
 * table may keep) every row is given, heard or not. */
static void test_other_positions_read_every_row(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip();
    int64_t old, pos;
    assert_int_equal(fc_store_log_head(f->s, &old), 0);
    batch(f, "a", 2);
    assert_int_equal(fc_store_log_head(f->s, &pos), 0); /* gives a later position */
    logged l = {.heard = {-1}, .n_heard = 1};
    int64_t next;
    assert_int_equal(fc_store_log_since(f->s, old, 100, heard, on_log, &l, &next), 0);
    assert_int_equal(l.asked, 0);
    assert_true(find(&l, "a0") >= 0 && find(&l, "a1") >= 0);
    /* From the position it gave last, everything heard: nothing given. */
    batch(f, "b", 2);
    memset(&l, 0, sizeof l);
    l.heard[0] = -1;
    l.n_heard = 1;
    assert_int_equal(fc_store_log_since(f->s, next, 100, heard, on_log, &l, &next), 0);
    assert_true(l.asked >= 1);
    assert_int_equal(l.n, 0);
}

/* The late commit of test_late_commit_is_not_skipped, through the commits
 * table: its transaction was running when the first read's xmin was taken,
 * so the next read asks about it and gives it. Written by fc_apply
 * directly (as a node of an older version would): the table is filled by
 * triggers, not by this server's writer. */
static void test_late_commit_is_not_skipped_when_filtered(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip();
    int64_t pos;
    assert_int_equal(fc_store_log_head(f->s, &pos), 0);
    fx_exec(f, "BEGIN; SELECT * FROM fc_apply(0, 'slow', 1, 100, 'n', 'running', 0, 10, '', 0, 0,"
               " '', '\\x00'::bytea, 1000)");
    int64_t fast = batch(f, "fast", 1);
    logged l = {.heard = {fast}, .n_heard = 1};
    assert_int_equal(fc_store_log_since(f->s, pos, 100, heard, on_log, &l, &pos), 0);
    assert_int_equal(l.n, 0);
    fx_exec(f, "COMMIT");
    memset(&l, 0, sizeof l);
    l.heard[0] = fast;
    l.n_heard = 1;
    assert_int_equal(fc_store_log_since(f->s, pos, 100, heard, on_log, &l, &pos), 0);
    assert_int_equal(l.n, 1);
    assert_true(find(&l, "slow") >= 0);
}

/* The keep time of the commits table's rows (store/postgres/log.c). */
extern int fc__pg_commits_keep_s;

/* A transaction left open anywhere in the database holds xmin, so the
 * position, at it: with more transactions after it than a read's page,
 * the reads look at the same first page again and again while the others
 * age, and the writer trims their commits rows (here after 2 s, not 120).
 * Once the open transaction ends, their changes must still be given. */
static void test_transactions_behind_an_open_one_outlive_the_trim(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip();
    int64_t pos;
    fc__pg_commits_keep_s = 2;
    assert_int_equal(fc_store_log_head(f->s, &pos), 0);
    fx_exec(f, "BEGIN; SELECT pg_current_xact_id()");
    batch(f, "t", 1);
    batch(f, "u", 1);
    batch(f, "v", 1);
    logged l;
    /* A read every 100 ms (--catchup-interval) past the keep time, each a
     * page of one transaction: t's, every time. */
    for (int i = 0; i < 25; i++) {
        memset(&l, 0, sizeof l);
        assert_int_equal(fc_store_log_since(f->s, pos, 1, heard, on_log, &l, &pos), 0);
        assert_true(l.n >= 1); /* t0, twice when a page holds only its transaction */
        assert_true(find(&l, "u0") < 0 && find(&l, "v0") < 0);
        usleep(100 * 1000);
    }
    batch(f, "w", 1); /* its batch trims the rows older than the keep time */
    assert_int_equal(fx_scalar(f, "SELECT count(*) FROM commits"), 1);
    fx_exec(f, "COMMIT");
    memset(&l, 0, sizeof l);
    assert_int_equal(fc_store_log_since(f->s, pos, 100, heard, on_log, &l, &pos), 0);
    fc__pg_commits_keep_s = 120;
    assert_true(find(&l, "u0") >= 0);
    assert_true(find(&l, "v0") >= 0);
    assert_true(find(&l, "w0") >= 0);
}

int main(void)
{
    alarm(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sqlite_has_no_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_gives_changes_and_deletions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_commit_is_not_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopping_callback_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_inside_a_whole_transaction_resumes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_changes_carry_their_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heard_transactions_are_left_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_positions_read_every_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_commit_is_not_skipped_when_filtered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transactions_behind_an_open_one_outlive_the_trim,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
