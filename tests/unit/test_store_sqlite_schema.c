/* Unit tests of the SQLite store's schema (src/store/sqlite/schema.c):
 * migrations run once, and a version 2 database opens as version 3 with
 * every state kept. */
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

static int count_versions(fixture *f, int *max)
{
    sqlite3 *db = external(f);
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT COUNT(*), MAX(version) FROM schema_version", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    *max = sqlite3_column_int(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_migration_idempotent(void **state)
{
    fixture *f = *state;
    int max = 0;
    int latest = fc__sqlite_schema_latest();
    assert_true(latest >= 1);
    assert_int_equal(count_versions(f, &max), latest);
    assert_int_equal(max, latest);
    close_store(f);
    f->s = open_store(f, 100);
    close_store(f);
    f->s = open_store(f, 100);
    assert_int_equal(count_versions(f, &max), latest);
    assert_int_equal(max, latest);

    /* A database from a newer server is refused, not misread. */
    close_store(f);
    sqlite3 *db = external(f);
    exec_ok(db, "INSERT INTO schema_version VALUES (999, 0)");
    sqlite3_close(db);
    char err[256] = "";
    fc_store_config cfg = {.path = f->path, .retention = 10};
    assert_null(fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "newer"));
    cfg.retention = 0;
    assert_null(fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err));
}

/* A version 2 database (each change rewrote the workflow row) opens as
 * version 3 (the current state is the newest event) with every state kept,
 * including a row whose newest state had not reached the log. */
static void test_migration_from_v2(void **state)
{
    fixture *f = *state;
    close_store(f);
    remove_db(f);
    sqlite3 *db = external(f);
    exec_ok(db,
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
            " applied_at INTEGER NOT NULL);"
            "INSERT INTO schema_version VALUES (1, 0), (2, 0);"
            "CREATE TABLE workflows (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
            " name TEXT NOT NULL, status TEXT NOT NULL, current_step INTEGER NOT NULL,"
            " total_steps INTEGER NOT NULL, message TEXT NOT NULL, seq INTEGER NOT NULL,"
            " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
            "CREATE TABLE events (workflow_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " status TEXT NOT NULL, current_step INTEGER NOT NULL,"
            " total_steps INTEGER NOT NULL, message TEXT NOT NULL, ts INTEGER NOT NULL,"
            " PRIMARY KEY (workflow_id, seq)) WITHOUT ROWID;"
            "CREATE INDEX workflows_status ON workflows(status);"
            "INSERT INTO workflows VALUES (1, 'old', 'deploy', 'running', 2, 9, 'two', 3,"
            " 1000, 3000), (2, 'gap', 'etl', 'completed', 5, 5, 'done', 5, 1000, 5000);"
            "INSERT INTO events VALUES ('old', 1, 'pending', 0, 9, 'q', 1000),"
            " ('old', 2, 'running', 1, 9, 'one', 2000), ('old', 3, 'running', 2, 9, 'two', 3000),"
            " ('gap', 2, 'running', 4, 5, 'four', 4000);");
    sqlite3_close(db);
    f->s = open_store(f, 100);
    int max = 0;
    assert_int_equal(count_versions(f, &max), fc__sqlite_schema_latest());

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "old", &w), 0);
    assert_string_equal(w.name, "deploy");
    assert_string_equal(w.message, "two");
    assert_int_equal(w.status, FC_STATUS_RUNNING);
    assert_int_equal(w.seq, 3);
    assert_int_equal(w.current_step, 2);
    assert_int_equal(w.created_at_ms, 1000);
    assert_int_equal(w.updated_at_ms, 3000);
    fc_workflow_clear(&w);
    assert_int_equal(fc_store_get(f->s, "gap", &w), 0);
    assert_int_equal(w.seq, 5);
    assert_int_equal(w.status, FC_STATUS_COMPLETED);
    assert_int_equal(w.updated_at_ms, 5000);
    fc_workflow_clear(&w);

    rows r = {0};
    int64_t oldest = 0;
    assert_int_equal(fc_store_events_since(f->s, "gap", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.seq[1], 5);
    assert_int_equal(oldest, 2);

    fc_list_query q = {.limit = 10, .has_status = 1, .status = FC_STATUS_COMPLETED};
    char next[32];
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, next, sizeof next), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.id[0], "gap");

    /* Changes continue from the migrated state. */
    fc_change *c = mk_step("old", 3);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 4);
    assert_string_equal(c->wf.name, "deploy");
    free_change(c);
    assert_int_equal(fc_store_get(f->s, "old", &w), 0);
    assert_int_equal(w.seq, 4);
    assert_int_equal(w.current_step, 3);
    fc_workflow_clear(&w);
}

int main(void)
{
    alarm(120); /* a lost done() would otherwise hang the run forever */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migration_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v2, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
