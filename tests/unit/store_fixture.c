/* Helpers of the store unit tests, on SQLite or PostgreSQL (see store_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static fixture *G;
static int db_serial; /* done() has no user pointer to spare: c->data carries the index */

void on_done(fc_change *c)
{
    int idx = (int)(intptr_t)c->data;
    if (G->ndone < MAX_ORDER) G->order[G->ndone] = idx;
    if (idx != G->ndone) G->in_order = 0;
    G->ndone++;
}

fc_store *open_store_sync(fixture *f, int retention, int sync_full)
{
    char err[256] = "";
    fc_store_config cfg = {.path = f->path, .sync_full = sync_full, .retention = retention};
    fc_store *s = fc_store_open(&f->loop, &cfg, err, sizeof err);
    if (!s) fprintf(stderr, "open failed: %s\n", err);
    assert_non_null(s);
    return s;
}

fc_store *open_store(fixture *f, int retention)
{
    return open_store_sync(f, retention, 0);
}

int fx_is_pg(void)
{
    const char *dsn = getenv("FC_TEST_PG_DSN");
    return dsn && *dsn;
}

const char *fx_backend(void)
{
    return fx_is_pg() ? "store.postgres" : "store.sqlite";
}

/* Runs sql on the admin database (FC_TEST_PG_DSN), asserting it worked. */
static void pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("FC_TEST_PG_DSN"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

static void pg_side_close(fixture *f)
{
    if (f->pg) PQfinish(f->pg);
    f->pg = NULL;
}

static PGresult *pg_side(fixture *f, const char *sql)
{
    if (!f->pg) {
        f->pg = PQconnectdb(f->path);
        assert_int_equal(PQstatus(f->pg), CONNECTION_OK);
    }
    PGresult *r = PQexec(f->pg, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(f->pg));
    assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    return r;
}

static sqlite3 *sqlite_side(fixture *f)
{
    if (!f->side) f->side = external(f);
    return f->side;
}

void fx_exec(fixture *f, const char *sql)
{
    if (fx_is_pg())
        PQclear(pg_side(f, sql));
    else
        exec_ok(sqlite_side(f), sql);
}

int64_t fx_scalar(fixture *f, const char *sql)
{
    int64_t v;
    if (fx_is_pg()) {
        PGresult *r = pg_side(f, sql);
        assert_true(PQntuples(r) >= 1);
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        return v;
    }
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(sqlite_side(f), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Closes the side connection of fx_exec and fx_scalar. */
static void side_close(fixture *f)
{
    pg_side_close(f);
    if (f->side) sqlite3_close(f->side);
    f->side = NULL;
}

/* Removes the database files, so the next open starts from nothing. */
void remove_db(fixture *f)
{
    side_close(f);
    if (fx_is_pg()) {
        char sql[96];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->pgdb);
        pg_admin(sql);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", f->pgdb);
        pg_admin(sql);
        return;
    }
    char p[sizeof f->path + 8];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
}

int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/fc-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/flowcast.db", f->dir);
    if (fx_is_pg()) {
        /* A fresh database per test, named after the process and a counter. */
        const char *dsn = getenv("FC_TEST_PG_DSN");
        const char *slash = strrchr(dsn, '/');
        assert_non_null(slash);
        snprintf(f->pgdb, sizeof f->pgdb, "fct_%d_%d", (int)getpid(), ++db_serial);
        snprintf(f->path, sizeof f->path, "%.*s/%s", (int)(slash - dsn), dsn, f->pgdb);
        char sql[64];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", f->pgdb);
        pg_admin(sql);
    }
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->in_order = 1;
    f->s = open_store(f, 100);
    G = f;
    *state = f;
    return 0;
}

/* Closes the store, lets the loop free it, and checks nothing is left alive. */
void close_store(fixture *f)
{
    fc_store_close(f->s);
    f->s = NULL;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

int teardown(void **state)
{
    fixture *f = *state;
    if (f->s) close_store(f);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    side_close(f);
    if (fx_is_pg()) {
        char sql[96];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->pgdb);
        pg_admin(sql);
    } else {
        remove_db(f);
    }
    assert_int_equal(rmdir(f->dir), 0);
    free(f);
    G = NULL;
    return 0;
}

fc_change *mk(fc_change_kind kind, const char *id)
{
    static int next_index;
    fc_change *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->kind = kind;
    snprintf(c->wf.id, sizeof c->wf.id, "%s", id);
    c->done = on_done;
    c->data = (void *)(intptr_t)next_index++;
    return c;
}

fc_change *mk_create(const char *id, fc_status st, int64_t step, int64_t total)
{
    fc_change *c = mk(FC_CHANGE_CREATE, id);
    c->wf.name = strdup("build");
    c->wf.message = strdup("queued");
    c->wf.status = st;
    c->wf.current_step = step;
    c->wf.total_steps = total;
    return c;
}

fc_change *mk_step(const char *id, int64_t step)
{
    fc_change *c = mk(FC_CHANGE_UPDATE, id);
    c->patch.fields = FC_PATCH_CURRENT_STEP;
    c->patch.current_step = step;
    return c;
}

void free_change(fc_change *c)
{
    fc_change_clear(c);
    free(c);
}

/* Submits the changes (indexes renumbered from the fixture's count), runs the
 * loop until all their done()s ran, and checks they came in order. */
void submit_wait(fixture *f, fc_change **cs, int n)
{
    int target = f->ndone + n;
    for (int i = 0; i < n; i++) {
        cs[i]->data = (void *)(intptr_t)(f->ndone + i);
        fc_store_submit(f->s, cs[i]);
    }
    assert_int_equal(f->ndone, target - n); /* never from inside submit */
    while (f->ndone < target)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->in_order);
}

/* Runs one change to completion and returns its result (c stays the caller's). */
int run1(fixture *f, fc_change *c)
{
    submit_wait(f, &c, 1);
    return c->result;
}

void do1(fixture *f, fc_change *c, int expect)
{
    int rc = run1(f, c);
    if (rc != expect) fprintf(stderr, "result %d: %s\n", rc, c->errmsg);
    assert_int_equal(rc, expect);
    free_change(c);
}

int collect(const fc_workflow *w, void *ud)
{
    rows *r = ud;
    assert_true(r->n < 32);
    snprintf(r->id[r->n], sizeof r->id[0], "%s", w->id);
    snprintf(r->msg[r->n], sizeof r->msg[0], "%s", w->message);
    r->seq[r->n] = w->seq;
    r->step[r->n] = w->current_step;
    r->epoch[r->n] = w->epoch;
    r->n++;
    return r->stop_after && r->n >= r->stop_after;
}

/* Another process's connection, used to hold the write lock or inject faults. */
sqlite3 *external(fixture *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    return db;
}

void exec_ok(sqlite3 *db, const char *sql)
{
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}
