/* Unit tests of the commit-ordered log (store interface v6: log_head and
 * log_since), which only backends several processes write have: on SQLite
 * the functions are NULL; on PostgreSQL (FC_TEST_PG_DSN) the log gives
 * every committed change, deletions included, and never skips a
 * transaction that commits after a later one was read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

#include "common/error.h"

#include <stdio.h>
#include <string.h>

/* What log_since gave. */
typedef struct logged {
    int n;
    char id[64][FC_ID_MAX + 1];
    int64_t seq[64];
    int deleted[64];
    int stop_after; /* 0: never */
} logged;

static int on_log(void *ud, const fc_workflow *w, int deleted)
{
    logged *l = ud;
    assert_true(l->n < 64);
    snprintf(l->id[l->n], sizeof l->id[0], "%s", w->id);
    l->seq[l->n] = w->seq;
    l->deleted[l->n] = deleted;
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
    assert_int_equal(fc_store_log_since(f->s, head, 100, on_log, &l, &next), 0);
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
    assert_int_equal(fc_store_log_since(f->s, next, 100, on_log, &l, &again), 0);
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
        assert_int_equal(fc_store_log_since(f->s, pos, 2, on_log, &l, &pos), 0);
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
    assert_int_equal(fc_store_log_since(f->s, pos, 100, on_log, &l, &pos), 0);
    assert_true(find(&l, "fast") >= 0);
    assert_int_equal(find(&l, "slow"), -1);
    fx_exec(f, "COMMIT");
    memset(&l, 0, sizeof l);
    assert_int_equal(fc_store_log_since(f->s, pos, 100, on_log, &l, &pos), 0);
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
    assert_int_equal(fc_store_log_since(f->s, pos, 100, on_log, &l, &pos), 0);
    assert_int_equal(l.n, 1);
    l.stop_after = 0;
    assert_int_equal(fc_store_log_since(f->s, pos, 100, on_log, &l, &pos), 0);
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
    assert_int_equal(fc_store_log_since(f->s, pos, 2, on_log, &l, &pos), 0);
    if (l.n == 2) { /* the head was before its xid: now at it */
        memset(&l, 0, sizeof l);
        l.stop_after = 3;
        assert_int_equal(fc_store_log_since(f->s, pos, 2, on_log, &l, &pos), 0);
    }
    assert_int_equal(l.n, 3);
    memset(&l, 0, sizeof l);
    for (int round = 0; round < 4; round++)
        assert_int_equal(fc_store_log_since(f->s, pos, 2, on_log, &l, &pos), 0);
    assert_true(find(&l, "t0") >= 0 && find(&l, "t1") >= 0 && find(&l, "t2") >= 0);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
