/* Unit tests of a store backend through fc_store, run on SQLite and (with
 * FC_TEST_PG_DSN, see store_fixture.h) PostgreSQL: changes, reads, order of
 * done(), errors. SQLite's schema and file handling have
 * test_store_sqlite_schema.c and test_store_sqlite_open.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

#include "common/error.h"
#include "common/time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_create_get_list(void **state)
{
    fixture *f = *state;
    const char *ids[] = {"w1", "w2", "w3", "w4", "w5"};
    fc_change *cs[5];
    int64_t before = fc_time_now_ms();
    for (int i = 0; i < 5; i++)
        cs[i] = mk_create(ids[i], i % 2 ? FC_STATUS_RUNNING : FC_STATUS_PENDING, i, 10);
    submit_wait(f, cs, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cs[i]->result, 0);
        assert_int_equal(cs[i]->wf.seq, 1);
        assert_true(cs[i]->wf.created_at_ms >= before);
        assert_int_equal(cs[i]->wf.created_at_ms, cs[i]->wf.updated_at_ms);
        assert_true(cs[i]->commit_ns > 0);
        free_change(cs[i]);
    }

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "w3", &w), 0);
    assert_string_equal(w.id, "w3");
    assert_string_equal(w.name, "build");
    assert_string_equal(w.message, "queued");
    assert_int_equal(w.status, FC_STATUS_PENDING);
    assert_int_equal(w.current_step, 2);
    assert_int_equal(w.total_steps, 10);
    assert_int_equal(w.seq, 1);
    assert_true(w.created_at_ms >= before);
    fc_workflow_clear(&w);
    assert_int_equal(fc_store_get(f->s, "nope", &w), FC_ENOTFOUND);

    /* Newest first, two per page. */
    char cur[32];
    rows r = {0};
    fc_list_query q = {.limit = 2};
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.id[0], "w5");
    assert_string_equal(r.id[1], "w4");
    assert_string_not_equal(cur, "");
    char cur2[32];
    q.cursor = cur;
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur2, sizeof cur2), 0);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.id[2], "w3");
    assert_string_equal(r.id[3], "w2");
    q.cursor = cur2;
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 5);
    assert_string_equal(r.id[4], "w1");
    assert_string_equal(cur, ""); /* no more pages */

    /* A page that ends exactly at the last row has no next page either. */
    memset(&r, 0, sizeof r);
    fc_list_query all = {.limit = 5};
    assert_int_equal(fc_store_list(f->s, &all, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 5);
    assert_string_equal(cur, "");

    /* Status filter: w2 and w4 are running. */
    memset(&r, 0, sizeof r);
    fc_list_query qs = {.has_status = 1, .status = FC_STATUS_RUNNING, .limit = 1};
    assert_int_equal(fc_store_list(f->s, &qs, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.id[0], "w4");
    qs.cursor = cur;
    assert_int_equal(fc_store_list(f->s, &qs, collect, &r, cur2, sizeof cur2), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.id[1], "w2");
    assert_string_equal(cur2, "");

    /* A callback that stops early still gets a cursor to resume from. */
    memset(&r, 0, sizeof r);
    r.stop_after = 2;
    fc_list_query big = {.limit = 100};
    assert_int_equal(fc_store_list(f->s, &big, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 2);
    assert_string_not_equal(cur, "");

    /* Bad cursors and limits. */
    const char *bad[] = {"", "abc", "-1", "0", "12x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fc_list_query qb = {.limit = 2, .cursor = bad[i]};
        assert_int_equal(fc_store_list(f->s, &qb, collect, &r, cur, sizeof cur), FC_EINVAL);
    }
    fc_list_query ql = {.limit = 0};
    assert_int_equal(fc_store_list(f->s, &ql, collect, &r, cur, sizeof cur), FC_EINVAL);
}

static void test_update(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("u", FC_STATUS_PENDING, 0, 10), 0);

    fc_change *c = mk(FC_CHANGE_UPDATE, "u");
    c->patch.fields = FC_PATCH_STATUS | FC_PATCH_CURRENT_STEP | FC_PATCH_MESSAGE;
    c->patch.status = FC_STATUS_RUNNING;
    c->patch.current_step = 3;
    c->patch.message = strdup("compiling");
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 2);
    assert_string_equal(c->wf.name, "build");
    assert_string_equal(c->wf.message, "compiling");
    assert_int_equal(c->wf.status, FC_STATUS_RUNNING);
    assert_int_equal(c->wf.current_step, 3);
    assert_int_equal(c->wf.total_steps, 10);
    assert_true(c->wf.updated_at_ms >= c->wf.created_at_ms);
    assert_true(c->wf.created_at_ms > 0);
    free_change(c);

    c = mk_step("u", 4);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 3);
    assert_string_equal(c->wf.message, "compiling");
    free_change(c);

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "u", &w), 0);
    assert_int_equal(w.seq, 3);
    assert_int_equal(w.current_step, 4);
    assert_int_equal(w.status, FC_STATUS_RUNNING);
    fc_workflow_clear(&w);

    /* The status index follows status changes. */
    rows r = {0};
    char cur[32];
    fc_list_query q = {.has_status = 1, .status = FC_STATUS_RUNNING, .limit = 10};
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 1);
    q.status = FC_STATUS_PENDING;
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 0);
}

static void test_events_since(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("e", FC_STATUS_RUNNING, 0, 10), 0);
    for (int i = 1; i <= 4; i++)
        do1(f, mk_step("e", i), 0);

    rows r = {0};
    int64_t oldest = -1;
    assert_int_equal(fc_store_events_since(f->s, "e", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(oldest, 1);
    assert_int_equal(r.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r.seq[i], i + 1);
        assert_int_equal(r.step[i], i);
        assert_string_equal(r.id[i], "e");
    }
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_events_since(f->s, "e", 3, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.seq[0], 4);
    assert_int_equal(r.seq[1], 5);
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_events_since(f->s, "e", 0, 2, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.seq[1], 2);
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_events_since(f->s, "e", 5, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(oldest, 1);
    assert_int_equal(fc_store_events_since(f->s, "x", 0, 0, collect, &r, &oldest), FC_ENOTFOUND);
    assert_int_equal(oldest, 0);
}

static void test_retention(void **state)
{
    fixture *f = *state;
    close_store(f);
    f->s = open_store(f, 3);
    do1(f, mk_create("r", FC_STATUS_RUNNING, 0, 100), 0);
    for (int i = 1; i <= 10; i++)
        do1(f, mk_step("r", i), 0);

    rows r = {0};
    int64_t oldest = 0;
    assert_int_equal(fc_store_events_since(f->s, "r", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(oldest, 9);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.seq[0], 9);
    assert_int_equal(r.seq[2], 11);
    assert_int_equal(r.step[2], 10);
}

static void test_if_seq(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("s", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *c = mk_step("s", 1);
    c->patch.fields |= FC_PATCH_IF_SEQ;
    c->patch.if_seq = 5;
    assert_int_equal(run1(f, c), FC_ESEQ);
    assert_non_null(strstr(c->errmsg, "if_seq is 5"));
    assert_non_null(strstr(c->errmsg, "seq 1"));
    free_change(c);

    c = mk_step("s", 1);
    c->patch.fields |= FC_PATCH_IF_SEQ;
    c->patch.if_seq = 1;
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 2);
    free_change(c);
}

static void test_terminal(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("t", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *c = mk(FC_CHANGE_UPDATE, "t");
    c->patch.fields = FC_PATCH_STATUS;
    c->patch.status = FC_STATUS_COMPLETED;
    do1(f, c, 0);

    c = mk_step("t", 2);
    assert_int_equal(run1(f, c), FC_ETERMINAL);
    assert_non_null(strstr(c->errmsg, "completed"));
    free_change(c);
    c = mk(FC_CHANGE_UPDATE, "t");
    c->patch.fields = FC_PATCH_STATUS;
    c->patch.status = FC_STATUS_RUNNING;
    do1(f, c, FC_ETERMINAL);

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "t", &w), 0);
    assert_int_equal(w.seq, 2);
    fc_workflow_clear(&w);
    do1(f, mk(FC_CHANGE_DELETE, "t"), 0); /* deleting a finished workflow is fine */
}

static void test_step_gt_total(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("g", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *c = mk_step("g", 11);
    c->patch.fields |= FC_PATCH_MESSAGE;
    c->patch.message = strdup("too far");
    assert_int_equal(run1(f, c), FC_EINVAL);
    assert_string_equal(c->errmsg, "current_step (11) is greater than total_steps (10)");
    free_change(c);

    c = mk(FC_CHANGE_UPDATE, "g");
    c->patch.fields = FC_PATCH_TOTAL_STEPS;
    c->patch.total_steps = -1;
    assert_int_equal(run1(f, c), FC_EINVAL);
    assert_string_equal(c->errmsg, "current_step (0) is greater than total_steps (-1)");
    free_change(c);

    do1(f, mk_create("g2", FC_STATUS_RUNNING, 5, 4), FC_EINVAL);

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "g", &w), 0);
    assert_int_equal(w.seq, 1); /* nothing written */
    assert_string_equal(w.message, "queued");
    fc_workflow_clear(&w);
    assert_int_equal(fc_store_get(f->s, "g2", &w), FC_ENOTFOUND);
}

static void test_unknown_id(void **state)
{
    fixture *f = *state;
    fc_change *c = mk_step("ghost", 1);
    assert_int_equal(run1(f, c), FC_ENOTFOUND);
    assert_string_equal(c->errmsg, "workflow 'ghost' not found");
    free_change(c);
    do1(f, mk(FC_CHANGE_DELETE, "ghost"), FC_ENOTFOUND);
}

static void test_duplicate_create(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("d", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *c = mk_create("d", FC_STATUS_PENDING, 0, 3);
    assert_int_equal(run1(f, c), FC_EEXISTS);
    assert_string_equal(c->errmsg, "workflow 'd' already exists");
    free_change(c);
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "d", &w), 0);
    assert_int_equal(w.total_steps, 10);
    fc_workflow_clear(&w);
}

static void test_delete(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("x1", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_create("x2", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_step("x1", 7), 0);
    fc_change *c = mk(FC_CHANGE_DELETE, "x1");
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 2); /* the state just before deletion */
    assert_int_equal(c->wf.current_step, 7);
    assert_string_equal(c->wf.name, "build");
    free_change(c);

    fc_workflow w = {0};
    rows r = {0};
    int64_t oldest = 0;
    char cur[32];
    assert_int_equal(fc_store_get(f->s, "x1", &w), FC_ENOTFOUND);
    assert_int_equal(fc_store_events_since(f->s, "x1", 0, 0, collect, &r, &oldest), FC_ENOTFOUND);
    fc_list_query q = {.limit = 10};
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.id[0], "x2");

    /* The id is free again, with a fresh log. */
    do1(f, mk_create("x1", FC_STATUS_PENDING, 0, 1), 0);
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_events_since(f->s, "x1", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(oldest, 1);
}

/* Changes submitted during one loop turn reach the writer together and are
 * committed in one transaction (one commit time), however fast the writer is. */
static void test_one_turn_one_commit(void **state)
{
    fixture *f = *state;
    enum { N = 10 };
    fc_change *cs[N];
    char id[16];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "t%d", i);
        cs[i] = mk_create(id, FC_STATUS_RUNNING, 0, 10);
        cs[i]->data = (void *)(intptr_t)(f->ndone + i);
    }
    int base = f->ndone;
    for (int i = 0; i < N; i++) {
        fc_store_submit(f->s, cs[i]);
        usleep(2000); /* a writer woken per change would have taken the first ones */
    }
    while (f->ndone < base + N)
        uv_run(&f->loop, UV_RUN_ONCE);
    for (int i = 0; i < N; i++) {
        assert_int_equal(cs[i]->result, 0);
        assert_true(cs[i]->commit_ns == cs[0]->commit_ns);
    }
    for (int i = 0; i < N; i++)
        free_change(cs[i]);
}

/* Holds the store's writes from outside (another process), so the writer
 * parks on its next batch: SQLite's write lock, PostgreSQL's table lock. */
static void hold_writes(fixture *f)
{
    fx_exec(f, fx_is_pg() ? "BEGIN; LOCK TABLE workflows IN EXCLUSIVE MODE" : "BEGIN IMMEDIATE");
}

/* Holding the write lock from outside parks the writer on a first change, so
 * the next ones pile up and must commit as one batch. */
static void test_done_order(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("o", FC_STATUS_RUNNING, 0, 100), 0);
    hold_writes(f);

    fc_change *cs[8];
    int base = f->ndone;
    cs[0] = mk_step("o", 1);
    cs[0]->data = (void *)(intptr_t)base;
    fc_store_submit(f->s, cs[0]);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* this loop turn hands cs[0] to the writer */
    usleep(100 * 1000);              /* the writer takes cs[0] and waits for the lock */
    cs[1] = mk_step("o", 2);
    cs[2] = mk_step("ghost", 1); /* fails, the others go on */
    cs[3] = mk_step("o", 3);
    cs[4] = mk_create("o", FC_STATUS_RUNNING, 0, 1); /* EEXISTS */
    cs[5] = mk_create("o2", FC_STATUS_RUNNING, 0, 1);
    cs[6] = mk(FC_CHANGE_DELETE, "o2");
    cs[7] = mk_step("o", 4);
    for (int i = 1; i < 8; i++) {
        cs[i]->data = (void *)(intptr_t)(base + i);
        fc_store_submit(f->s, cs[i]);
    }
    fx_exec(f, "COMMIT");
    while (f->ndone < base + 8)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->in_order);

    int expect[8] = {0, 0, FC_ENOTFOUND, 0, FC_EEXISTS, 0, 0, 0};
    int64_t seqs[8] = {2, 3, 0, 4, 0, 1, 1, 5};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(cs[i]->result, expect[i]);
        if (expect[i] == 0) assert_int_equal(cs[i]->wf.seq, seqs[i]);
    }
    /* One commit for the whole pile (the first change normally committed alone
     * before it, unless the writer was too slow to take it during the sleep). */
    assert_true(cs[0]->commit_ns <= cs[1]->commit_ns);
    for (int i = 2; i < 8; i++)
        assert_true(cs[i]->commit_ns == cs[1]->commit_ns);
    assert_int_equal(cs[1]->wf.updated_at_ms, cs[7]->wf.updated_at_ms);
    for (int i = 0; i < 8; i++)
        free_change(cs[i]);
}

static void test_reopen(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("p", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_step("p", 1), 0);
    do1(f, mk_step("p", 2), 0);
    close_store(f);
    f->s = open_store_sync(f, 100, 1); /* the power-loss-safe mode reads the same file */

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "p", &w), 0);
    assert_int_equal(w.seq, 3);
    assert_int_equal(w.current_step, 2);
    fc_workflow_clear(&w);
    fc_change *c = mk_step("p", 3);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 4);
    free_change(c);
    rows r = {0};
    int64_t oldest = 0;
    assert_int_equal(fc_store_events_since(f->s, "p", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(oldest, 1);
}

static void test_submit_before_close(void **state)
{
    fixture *f = *state;
    fc_change *c = mk_create("late", FC_STATUS_RUNNING, 0, 10);
    c->data = (void *)(intptr_t)f->ndone;
    fc_store_submit(f->s, c);
    fc_store_close(f->s); /* runs the remaining done() before returning */
    f->s = NULL;
    assert_int_equal(f->ndone, 1);
    assert_int_equal(c->result, 0);
    free_change(c);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

    f->s = open_store(f, 100);
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "late", &w), 0);
    assert_int_equal(w.seq, 1);
    fc_workflow_clear(&w);
}

static void count_commit(void *ud, const fc_workflow *state, const fc_store_commit *commit,
                         int deleted)
{
    (void)state;
    (void)commit;
    (void)deleted;
    (*(int *)ud)++;
}

/* A handle's close never calls its commit callback (the server closes the
 * loop's consumer of commits first): the changes close finishes still get
 * their done(), and another handle of the store still hears of them. Both
 * ways back: the changes themselves (one handle) and shared batches. */
static void test_close_never_calls_on_commit(void **state)
{
    fixture *f = *state;
    int heard1 = 0, heard2 = 0;
    fc_store_on_commit(f->s, count_commit, &heard1);
    fc_change *c = mk_create("a", FC_STATUS_RUNNING, 0, 10);
    c->data = (void *)(intptr_t)f->ndone;
    fc_store_submit(f->s, c);
    fc_store_close(f->s);
    f->s = NULL;
    assert_int_equal(f->ndone, 1);
    assert_int_equal(c->result, 0);
    assert_int_equal(heard1, 0);
    free_change(c);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

    f->s = open_store(f, 100);
    uv_loop_t loop2;
    char err[256] = "";
    assert_int_equal(uv_loop_init(&loop2), 0);
    fc_store *s2 = fc_store_attach(f->s, &loop2, err, sizeof err);
    assert_non_null(s2);
    fc_store_on_commit(f->s, count_commit, &heard1);
    fc_store_on_commit(s2, count_commit, &heard2);
    /* b waits for its commit in handle 1's close; c, committed through
     * handle 2, waits in handle 1's queue until then. */
    fc_change *b = mk_create("b", FC_STATUS_RUNNING, 0, 10);
    b->data = (void *)(intptr_t)(f->ndone + 1); /* finished second */
    fc_store_submit(f->s, b);
    c = mk_create("c", FC_STATUS_RUNNING, 0, 10);
    c->data = (void *)(intptr_t)f->ndone;
    fc_store_submit(s2, c);
    while (f->ndone < 2)
        uv_run(&loop2, UV_RUN_ONCE);
    fc_store_close(f->s);
    f->s = NULL;
    assert_int_equal(f->ndone, 3);
    assert_int_equal(b->result, 0);
    assert_int_equal(heard1, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    while (heard2 < 2)
        uv_run(&loop2, UV_RUN_ONCE);
    fc_store_close(s2);
    assert_int_equal(uv_run(&loop2, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop2), 0);
    assert_int_equal(heard1, 0);
    assert_int_equal(heard2, 2);
    free_change(b);
    free_change(c);
}

/* A failure in the middle of a batch (here a trigger raising an error on the
 * third change's event row) must roll back the whole batch and report FC_EIO
 * for every change in it. */
static void test_storage_error_rolls_back(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("k", FC_STATUS_RUNNING, 0, 10), 0);
    hold_writes(f);
    if (fx_is_pg())
        fx_exec(f, "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS"
                   " $$BEGIN RAISE EXCEPTION 'injected failure'; END$$;"
                   " CREATE TRIGGER boom BEFORE INSERT ON events FOR EACH ROW"
                   " WHEN (NEW.message = 'boom') EXECUTE FUNCTION boom()");
    else
        fx_exec(f, "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.message = 'boom'"
                   " BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
    fc_change *cs[4];
    int base = f->ndone;
    cs[0] = mk_step("k", 1);
    cs[0]->data = (void *)(intptr_t)base;
    fc_store_submit(f->s, cs[0]);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* hands cs[0] to the writer on its own */
    usleep(100 * 1000);
    cs[1] = mk_create("k2", FC_STATUS_RUNNING, 0, 10);
    cs[2] = mk_step("k", 2);
    cs[2]->patch.fields |= FC_PATCH_MESSAGE;
    cs[2]->patch.message = strdup("boom");
    cs[3] = mk_create("k3", FC_STATUS_RUNNING, 0, 10);
    for (int i = 1; i < 4; i++) {
        cs[i]->data = (void *)(intptr_t)(base + i);
        fc_store_submit(f->s, cs[i]);
    }
    fx_exec(f, "COMMIT");
    while (f->ndone < base + 4)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->in_order);

    int first_alone = cs[0]->commit_ns != cs[1]->commit_ns;
    assert_int_equal(cs[0]->result, first_alone ? 0 : FC_EIO);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(cs[i]->result, FC_EIO);
        assert_non_null(strstr(cs[i]->errmsg, "injected failure"));
    }
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "k2", &w), FC_ENOTFOUND);
    assert_int_equal(fc_store_get(f->s, "k", &w), 0);
    assert_int_equal(w.seq, first_alone ? 2 : 1);
    fc_workflow_clear(&w);
    for (int i = 0; i < 4; i++)
        free_change(cs[i]);

    /* The writer recovers once the fault is gone. */
    fx_exec(f, fx_is_pg() ? "DROP TRIGGER boom ON events" : "DROP TRIGGER boom");
    do1(f, mk_create("k2", FC_STATUS_RUNNING, 0, 10), 0);
}

/* Not a pass/fail test: prints the group-commit throughput for the record. */
static void test_throughput(void **state)
{
    enum { NWF = 100, NUPD = 20000 };
    fixture *f = *state;
    fc_change *creates[NWF];
    char id[16];
    for (int i = 0; i < NWF; i++) {
        snprintf(id, sizeof id, "b%d", i);
        creates[i] = mk_create(id, FC_STATUS_RUNNING, 0, NUPD);
    }
    submit_wait(f, creates, NWF);
    for (int i = 0; i < NWF; i++)
        free_change(creates[i]);

    fc_change *cs = calloc(NUPD, sizeof *cs);
    assert_non_null(cs);
    int base = f->ndone;
    uint64_t t0 = fc_time_mono_ns();
    for (int i = 0; i < NUPD; i++) {
        fc_change *c = &cs[i];
        c->kind = FC_CHANGE_UPDATE;
        snprintf(c->wf.id, sizeof c->wf.id, "b%d", i % NWF);
        c->patch.fields = FC_PATCH_CURRENT_STEP;
        c->patch.current_step = i / NWF + 1;
        c->done = on_done;
        c->data = (void *)(intptr_t)(base + i);
        fc_store_submit(f->s, c);
    }
    while (f->ndone < base + NUPD)
        uv_run(&f->loop, UV_RUN_ONCE);
    uint64_t t1 = fc_time_mono_ns();
    assert_true(f->in_order);
    for (int i = 0; i < NUPD; i++) {
        assert_int_equal(cs[i].result, 0);
        fc_change_clear(&cs[i]);
    }
    free(cs);
    printf("%s: %d updates over %d workflows in %.1f ms = %.0f changes/s\n", fx_backend(), NUPD, NWF,
           (double)(t1 - t0) / 1e6, NUPD / ((double)(t1 - t0) / 1e9));
}

int main(void)
{
    alarm(120); /* a lost done() would otherwise hang the run forever */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_get_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_terminal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_gt_total, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_turn_one_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_before_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_never_calls_on_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_error_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throughput, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
