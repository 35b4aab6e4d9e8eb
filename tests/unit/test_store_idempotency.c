/* Unit tests of the store's idempotency keys, on SQLite
 * (src/store/sqlite/idempotency.c) and PostgreSQL (fc_apply in
 * src/store/postgres/schema.c): a retry is answered from its key and commits
 * nothing, another request under the key is refused, keys expire after the
 * window and are trimmed in bounded batches, and two submissions of one key
 * in one batch apply once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

#include "common/error.h"
#include "store/sqlite/sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Commits heard through the commit callback. */
static int commits;

static void count_commit(void *ud, const fc_workflow *state, const fc_store_commit *commit,
                         int deleted)
{
    (void)ud;
    (void)state;
    (void)commit;
    (void)deleted;
    commits++;
}

/* Gives c the key and a fingerprint made of one byte (requests differ by it). */
static fc_change *keyed(fc_change *c, const char *key, unsigned char fp)
{
    snprintf(c->idem_key, sizeof c->idem_key, "%s", key);
    memset(c->idem_fp, fp, sizeof c->idem_fp);
    return c;
}

/* Reopens the fixture's store with an idempotency window of ms. */
static void reopen_with_window(fixture *f, int64_t ms)
{
    close_store(f);
    char err[256] = "";
    fc_store_config cfg = {.path = f->path, .retention = 100, .idem_window_ms = ms};
    f->s = fc_store_open(&f->loop, &cfg, err, sizeof err);
    assert_non_null(f->s);
}

static int64_t current_seq(fixture *f, const char *id)
{
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, id, &w), 0);
    int64_t seq = w.seq;
    fc_workflow_clear(&w);
    return seq;
}

static int count_rows(fixture *f, const char *sql)
{
    return (int)fx_scalar(f, sql);
}

/* A retry with the key gets the first outcome (the state then, seq included)
 * and commits nothing: no new seq, no event, no commit callback. */
static void test_same_key_replays_without_commit(void **state)
{
    fixture *f = *state;
    fc_store_on_commit(f->s, count_commit, NULL);
    commits = 0;
    do1(f, mk_create("r", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *a = keyed(mk_step("r", 1), "step-1", 7);
    assert_int_equal(run1(f, a), 0);
    assert_int_equal(a->replayed, 0);
    assert_int_equal(a->wf.seq, 2);
    do1(f, mk_step("r", 2), 0); /* someone else moves on: seq 3 */

    fc_change *b = keyed(mk_step("r", 1), "step-1", 7);
    assert_int_equal(run1(f, b), 0);
    assert_int_equal(b->replayed, 1);
    assert_int_equal(b->wf.seq, 2);
    assert_int_equal(b->wf.current_step, 1);
    assert_string_equal(b->wf.name, a->wf.name);
    assert_string_equal(b->wf.message, a->wf.message);
    assert_int_equal(b->wf.created_at_ms, a->wf.created_at_ms);
    assert_int_equal(b->wf.updated_at_ms, a->wf.updated_at_ms);
    assert_true(a->wf.epoch != 0);
    assert_int_equal(b->wf.epoch, a->wf.epoch);
    assert_int_equal(current_seq(f, "r"), 3);
    assert_int_equal(commits, 3);
    rows r = {0};
    assert_int_equal(fc_store_events_since(f->s, "r", 0, 0, collect, &r, NULL), 0);
    assert_int_equal(r.n, 3);
    free_change(a);
    free_change(b);
    fc_store_on_commit(f->s, NULL, NULL);
}

/* Failures that depend only on the request and the data are outcomes too:
 * a retry of a refused compare-and-set is refused the same way, even once
 * the condition would hold; a retried create of a since deleted workflow
 * gets the creation's answer, not a second workflow. */
static void test_refusals_and_deleted_workflows_replay(void **state)
{
    fixture *f = *state;
    do1(f, keyed(mk_create("d", FC_STATUS_RUNNING, 0, 4), "create-d", 1), 0);
    fc_change *c = keyed(mk_step("d", 1), "cas", 2);
    c->patch.fields |= FC_PATCH_IF_SEQ;
    c->patch.if_seq = 2;
    assert_int_equal(run1(f, c), FC_ESEQ);
    char first[sizeof c->errmsg];
    memcpy(first, c->errmsg, sizeof first);
    free_change(c);
    do1(f, mk_step("d", 1), 0); /* seq 2 now: if_seq 2 would hold */
    c = keyed(mk_step("d", 1), "cas", 2);
    c->patch.fields |= FC_PATCH_IF_SEQ;
    c->patch.if_seq = 2;
    assert_int_equal(run1(f, c), FC_ESEQ);
    assert_int_equal(c->replayed, 1);
    assert_string_equal(c->errmsg, first);
    free_change(c);
    assert_int_equal(current_seq(f, "d"), 2);

    do1(f, mk(FC_CHANGE_DELETE, "d"), 0);
    c = keyed(mk_create("d", FC_STATUS_RUNNING, 0, 4), "create-d", 1);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->replayed, 1);
    assert_int_equal(c->wf.seq, 1);
    free_change(c);
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "d", &w), FC_ENOTFOUND);
}

/* The same key with another request is refused and applies nothing; the key
 * keeps its first request. */
static void test_other_request_is_refused(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("m", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, keyed(mk_step("m", 1), "k", 1), 0);
    fc_change *c = keyed(mk_step("m", 5), "k", 2);
    assert_int_equal(run1(f, c), FC_EKEYREUSED);
    assert_int_equal(c->replayed, 0);
    free_change(c);
    assert_int_equal(current_seq(f, "m"), 2);
    c = keyed(mk_step("m", 1), "k", 1);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->replayed, 1);
    free_change(c);
}

/* Keys outlive the process: a store opened again on the file replays them. */
static void test_keys_survive_reopen(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("p", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, keyed(mk_step("p", 3), "durable", 9), 0);
    close_store(f);
    f->s = open_store(f, 100);
    fc_change *c = keyed(mk_step("p", 3), "durable", 9);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->replayed, 1);
    assert_int_equal(c->wf.seq, 2);
    free_change(c);
    assert_int_equal(current_seq(f, "p"), 2);
}

/* Several submissions of one key arriving together (one batch, as retries
 * racing the first attempt do): the first applies, the others replay it. */
static void test_one_key_twice_in_one_batch(void **state)
{
    fixture *f = *state;
    fc_store_on_commit(f->s, count_commit, NULL);
    commits = 0;
    do1(f, mk_create("b", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *cs[4] = {keyed(mk_step("b", 1), "race", 3), keyed(mk_step("b", 1), "race", 3),
                        keyed(mk_step("b", 4), "race", 4), keyed(mk_step("b", 1), "race", 3)};
    submit_wait(f, cs, 4);
    assert_int_equal(cs[0]->result, 0);
    assert_int_equal(cs[0]->replayed, 0);
    assert_int_equal(cs[1]->result, 0);
    assert_int_equal(cs[1]->replayed, 1);
    assert_int_equal(cs[1]->wf.seq, 2);
    assert_int_equal(cs[2]->result, FC_EKEYREUSED);
    assert_int_equal(cs[3]->replayed, 1);
    assert_int_equal(cs[3]->wf.seq, 2);
    for (int i = 0; i < 4; i++)
        free_change(cs[i]);
    assert_int_equal(current_seq(f, "b"), 2);
    assert_int_equal(commits, 2);
    fc_store_on_commit(f->s, NULL, NULL);
}

/* After the window a key counts as never used: the change applies again. */
static void test_key_expires_after_window(void **state)
{
    fixture *f = *state;
    reopen_with_window(f, 500);
    do1(f, mk_create("e", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, keyed(mk_step("e", 1), "short", 5), 0);
    fc_change *c = keyed(mk_step("e", 1), "short", 5);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->replayed, 1);
    free_change(c);
    usleep(700 * 1000);
    c = keyed(mk_step("e", 2), "short", 6); /* even with another request */
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->replayed, 0);
    assert_int_equal(c->wf.seq, 3);
    free_change(c);
}

/* Expired keys are deleted by the writer, at most FC__SQLITE_IDEM_TRIM (plus
 * two per keyed change) per commit, until none is left; live ones stay. */
static void test_expired_keys_trimmed_in_bounded_batches(void **state)
{
    fixture *f = *state;
    reopen_with_window(f, 60000);
    do1(f, mk_create("t", FC_STATUS_RUNNING, 0, 10000), 0); /* first trim: nothing expired */
    if (fx_is_pg())
        fx_exec(f, "INSERT INTO idempotency_keys SELECT 'old-' || i, decode(repeat('00', 32),"
                   " 'hex'), i, 'ok', '', 't', 1, 'build', 'running', 0, 10, '', 1, 0, 0"
                   " FROM generate_series(1, 600) i");
    else
        fx_exec(f, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600)"
                   " INSERT INTO idempotency_keys SELECT 'old-' || i, zeroblob(32), i, 'ok', '',"
                   " 't', 1, 'build', 'running', 0, 10, '', 1, 0, 0 FROM n");
    const char *count = "SELECT COUNT(*) FROM idempotency_keys";
    assert_int_equal(count_rows(f, count), 600);
    usleep((FC__SQLITE_IDEM_TRIM_EVERY_MS + 100) * 1000);
    do1(f, keyed(mk_step("t", 1), "live-1", 1), 0);
    assert_int_equal(count_rows(f, count), 600 - (FC__SQLITE_IDEM_TRIM + 2) + 1);
    /* The trim was full: the next commit trims again without waiting. */
    do1(f, keyed(mk_step("t", 2), "live-2", 1), 0);
    assert_int_equal(count_rows(f, count), 600 - 2 * (FC__SQLITE_IDEM_TRIM + 2) + 2);
    do1(f, mk_step("t", 3), 0);
    assert_int_equal(count_rows(f, count), 2);
    assert_int_equal(count_rows(f, "SELECT COUNT(*) FROM idempotency_keys WHERE key LIKE 'live-%'"),
                     2);
}

/* A batch that rolls back stores no key: the retry applies the change. */
static void test_rolled_back_change_keeps_key_unused(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("x", FC_STATUS_RUNNING, 0, 10), 0);
    /* A trigger makes the step's event insert fail, rolling the batch back. */
    if (fx_is_pg())
        fx_exec(f, "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS"
                   " $$BEGIN RAISE EXCEPTION 'injected'; END$$;"
                   " CREATE TRIGGER boom BEFORE INSERT ON events FOR EACH ROW"
                   " WHEN (NEW.current_step = 7) EXECUTE FUNCTION boom()");
    else
        fx_exec(f, "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.current_step = 7"
                   " BEGIN SELECT RAISE(ABORT, 'injected'); END");
    fc_change *c = keyed(mk_step("x", 7), "io", 1);
    assert_int_equal(run1(f, c), FC_EIO);
    assert_int_equal(c->replayed, 0);
    free_change(c);
    fx_exec(f, fx_is_pg() ? "DROP TRIGGER boom ON events" : "DROP TRIGGER boom");
    c = keyed(mk_step("x", 7), "io", 1);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->replayed, 0);
    assert_int_equal(c->wf.seq, 2);
    free_change(c);
}

int main(void)
{
    alarm(120); /* a lost done() would otherwise hang the run forever */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_key_replays_without_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_and_deleted_workflows_replay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_other_request_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_survive_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_key_twice_in_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_expires_after_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_keys_trimmed_in_bounded_batches, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rolled_back_change_keeps_key_unused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
