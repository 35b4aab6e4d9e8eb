/* Unit tests of the SQLite store's incarnations (issue 8): the epoch drawn
 * at create and reported by every read, the tombstone a deletion leaves,
 * schema v4's migration of existing workflows, and rotate-epochs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

#include "common/error.h"
#include "common/time.h"
#include "store/sqlite/sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void assert_epoch(int64_t e)
{
    assert_true(e >= 1 && e <= FC_EPOCH_MAX);
}

/* Runs a change and returns the epoch it reported (asserting success). */
static int64_t epoch_of(fixture *f, fc_change *c, int64_t *seq)
{
    assert_int_equal(run1(f, c), 0);
    int64_t e = c->wf.epoch;
    if (seq) *seq = c->wf.seq;
    free_change(c);
    return e;
}

static void test_epoch_on_every_read(void **state)
{
    fixture *f = *state;
    int64_t e = epoch_of(f, mk_create("e", FC_STATUS_RUNNING, 0, 10), NULL);
    assert_epoch(e);
    assert_int_equal(epoch_of(f, mk_step("e", 1), NULL), e); /* updates keep it */
    assert_int_equal(epoch_of(f, mk_step("e", 2), NULL), e);

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "e", &w), 0);
    assert_int_equal(w.epoch, e);
    fc_workflow_clear(&w);

    rows r = {0};
    int64_t oldest = 0;
    assert_int_equal(fc_store_events_since(f->s, "e", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.epoch[i], e);

    fc_list_query q = {.limit = 10};
    char next[32];
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, next, sizeof next), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.epoch[0], e);

    /* Another workflow gets its own. */
    int64_t e2 = epoch_of(f, mk_create("f", FC_STATUS_RUNNING, 0, 10), NULL);
    assert_epoch(e2);
    assert_int_not_equal(e2, e);
}

/* The example at the store: a re-created id starts again at seq 1,
 * under another epoch, and the deletion is kept as its tombstone. */
static void test_delete_leaves_tombstone(void **state)
{
    fixture *f = *state;
    fc_tombstone t;
    int64_t seq = 0;
    int64_t e1 = epoch_of(f, mk_create("w", FC_STATUS_RUNNING, 0, 10), NULL);
    assert_int_equal(fc_store_tombstone(f->s, "w", &t), FC_ENOTFOUND);
    epoch_of(f, mk_step("w", 1), NULL);
    epoch_of(f, mk_step("w", 2), &seq);
    assert_int_equal(seq, 3);
    int64_t before = fc_time_now_ms();
    assert_int_equal(epoch_of(f, mk(FC_CHANGE_DELETE, "w"), &seq), e1);
    assert_int_equal(seq, 3); /* the state before the deletion */
    assert_int_equal(fc_store_tombstone(f->s, "w", &t), 0);
    assert_int_equal(t.epoch, e1);
    assert_int_equal(t.seq, 4); /* the deletion took the next seq */
    assert_true(t.deleted_at_ms >= before - 1000 && t.deleted_at_ms <= fc_time_now_ms() + 1000);

    int64_t e2 = epoch_of(f, mk_create("w", FC_STATUS_RUNNING, 0, 10), &seq);
    assert_epoch(e2);
    assert_int_not_equal(e2, e1);
    assert_int_equal(seq, 1);
    epoch_of(f, mk_step("w", 5), NULL);
    rows r = {0};
    int64_t oldest = 0;
    assert_int_equal(fc_store_events_since(f->s, "w", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 2); /* only the new incarnation's log */
    assert_int_equal(r.epoch[0], e2);
    assert_int_equal(r.epoch[1], e2);
    assert_int_equal(oldest, 1);

    /* A later deletion replaces the tombstone: one row per id. */
    epoch_of(f, mk(FC_CHANGE_DELETE, "w"), NULL);
    assert_int_equal(fc_store_tombstone(f->s, "w", &t), 0);
    assert_int_equal(t.epoch, e2);
    assert_int_equal(t.seq, 3);
    assert_int_equal(fx_scalar(f, "SELECT COUNT(*) FROM tombstones"), 1);
    /* A failed deletion (unknown id) leaves none. */
    do1(f, mk(FC_CHANGE_DELETE, "nobody"), FC_ENOTFOUND);
    assert_int_equal(fc_store_tombstone(f->s, "nobody", &t), FC_ENOTFOUND);
}

/* A random epoch equal to the id's tombstone is drawn again. */
static void test_new_epoch_avoids(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++) {
        int64_t e = fc__sqlite_new_epoch(0);
        assert_epoch(e);
        assert_int_not_equal(fc__sqlite_new_epoch(e), e);
    }
}

/* A version 3 database opens as version 4: its data kept, every workflow
 * given an epoch, and a tombstone of epoch 0 (its past is unknown). */
static void test_migration_from_v3(void **state)
{
    fixture *f = *state;
    SQLITE_ONLY();
    close_store(f);
    remove_db(f);
    sqlite3 *db = external(f);
    exec_ok(db, "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                " applied_at INTEGER NOT NULL);"
                "INSERT INTO schema_version VALUES (1, 0), (2, 0), (3, 0);"
                "CREATE TABLE workflows (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
                " name TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL);"
                "CREATE INDEX workflows_status ON workflows(status);"
                "CREATE TABLE events (workflow_id TEXT NOT NULL, seq INTEGER NOT NULL,"
                " status TEXT NOT NULL, current_step INTEGER NOT NULL,"
                " total_steps INTEGER NOT NULL, message TEXT NOT NULL, ts INTEGER NOT NULL,"
                " PRIMARY KEY (workflow_id, seq)) WITHOUT ROWID;"
                "INSERT INTO workflows VALUES (1, 'a', 'deploy', 'running', 1000),"
                " (2, 'b', 'etl', 'pending', 2000);"
                "INSERT INTO events VALUES ('a', 1, 'pending', 0, 9, 'q', 1000),"
                " ('a', 2, 'running', 1, 9, 'one', 1500), ('b', 1, 'pending', 0, 3, '', 2000);");
    sqlite3_close(db);
    f->s = open_store(f, 100);

    fc_workflow a = {0}, b = {0};
    assert_int_equal(fc_store_get(f->s, "a", &a), 0);
    assert_int_equal(fc_store_get(f->s, "b", &b), 0);
    assert_string_equal(a.name, "deploy");
    assert_string_equal(a.message, "one");
    assert_int_equal(a.seq, 2);
    assert_int_equal(a.created_at_ms, 1000);
    assert_int_equal(a.updated_at_ms, 1500);
    assert_int_equal(b.seq, 1);
    assert_int_equal(b.total_steps, 3);
    assert_epoch(a.epoch);
    assert_epoch(b.epoch);
    assert_int_not_equal(a.epoch, b.epoch);
    fc_tombstone t;
    assert_int_equal(fc_store_tombstone(f->s, "a", &t), 0);
    assert_int_equal(t.epoch, 0);
    assert_int_equal(t.seq, 0);
    assert_int_equal(fc_store_tombstone(f->s, "b", &t), 0);
    assert_int_equal(t.epoch, 0);

    /* Changes continue in the epoch the migration gave. */
    int64_t seq = 0;
    assert_int_equal(epoch_of(f, mk_step("a", 2), &seq), a.epoch);
    assert_int_equal(seq, 3);
    fc_workflow_clear(&a);
    fc_workflow_clear(&b);
}

/* rotate-epochs: a new epoch for every workflow, the past of ids without a
 * tombstone marked unknown, refused while a store has the file open. */
static void test_rotate_epochs(void **state)
{
    fixture *f = *state;
    SQLITE_ONLY(); /* PostgreSQL: an UPDATE of the workflows, see docs */
    int64_t ea = epoch_of(f, mk_create("a", FC_STATUS_RUNNING, 0, 10), NULL);
    epoch_of(f, mk_create("gone", FC_STATUS_RUNNING, 0, 10), NULL);
    epoch_of(f, mk(FC_CHANGE_DELETE, "gone"), NULL);
    int64_t eg = epoch_of(f, mk_create("gone", FC_STATUS_RUNNING, 0, 10), NULL);
    fc_tombstone dead;
    assert_int_equal(fc_store_tombstone(f->s, "gone", &dead), 0);

    char err[256] = "";
    int64_t n = -1;
    assert_int_equal(fc_store_sqlite_rotate_epochs(f->path, &n, err, sizeof err), FC_EIO);
    assert_non_null(strstr(err, "in use"));
    assert_int_equal(n, 0);

    close_store(f);
    assert_int_equal(fc_store_sqlite_rotate_epochs(f->path, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    f->s = open_store(f, 100);
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "a", &w), 0);
    assert_epoch(w.epoch);
    assert_int_not_equal(w.epoch, ea);
    assert_int_equal(w.seq, 1); /* nothing else changes */
    fc_workflow_clear(&w);
    assert_int_equal(fc_store_get(f->s, "gone", &w), 0);
    assert_int_not_equal(w.epoch, eg);
    assert_int_not_equal(w.epoch, dead.epoch);
    fc_workflow_clear(&w);
    fc_tombstone t;
    assert_int_equal(fc_store_tombstone(f->s, "a", &t), 0);
    assert_int_equal(t.epoch, 0);
    assert_int_equal(fc_store_tombstone(f->s, "gone", &t), 0); /* a real one stays */
    assert_int_equal(t.epoch, dead.epoch);
    assert_int_equal(t.seq, dead.seq);

    char missing[sizeof f->path + 8];
    snprintf(missing, sizeof missing, "%s.nope", f->path);
    assert_int_equal(fc_store_sqlite_rotate_epochs(missing, &n, err, sizeof err), FC_EIO);
}

int main(void)
{
    alarm(120); /* a lost done() would otherwise hang the run forever */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_epoch_on_every_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_leaves_tombstone, setup, teardown),
        cmocka_unit_test(test_new_epoch_avoids),
        cmocka_unit_test_setup_teardown(test_migration_from_v3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotate_epochs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
