/* The world of the store's unit tests (test_store*.c): a temp directory, a
 * loop and a store per test, changes to submit, and what their done()
 * callbacks saw.
 *
 * One suite, two backends: with FC_TEST_PG_DSN set (a postgres:// URL of a
 * database the role may create databases from, see
 * tests/unit/run_with_postgres.sh) every test gets a fresh PostgreSQL
 * database instead of a SQLite file; the tests of what only SQLite has
 * (its file, lock, WAL, cache) skip themselves with SQLITE_ONLY(). */
#ifndef FC_TESTS_STORE_FIXTURE_H
#define FC_TESTS_STORE_FIXTURE_H

#include "store/store.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdint.h>
#include <uv.h>

#define MAX_ORDER 64

/* One test's world: a temp directory, a loop, the store, and what done() saw. */
typedef struct fixture {
    char dir[64];
    char path[256]; /* the SQLite file, or the PostgreSQL URL */
    char pgdb[32];  /* PostgreSQL: this test's database */
    PGconn *pg;     /* PostgreSQL: the side connection of fx_exec/fx_scalar */
    sqlite3 *side;  /* SQLite: the same */
    uv_loop_t loop;
    fc_store *s;
    int ndone;
    int order[MAX_ORDER];
    int in_order; /* 0 once a done() arrives out of submission order */
} fixture;

/* The done() of changes made by mk(): records c->data (an index) in order. */
void on_done(fc_change *c);
/* Opens the fixture's database (asserts success). */
fc_store *open_store_sync(fixture *f, int retention, int sync_full);
fc_store *open_store(fixture *f, int retention);
/* cmocka setup/teardown: a fresh fixture with a store of retention 100; teardown
 * closes it, checks the loop is empty and removes every file. */
int setup(void **state);

/* Closes the store, lets the loop free it, and checks nothing is left alive. */
void close_store(fixture *f);
int teardown(void **state);

/* A change of id with done = on_done; created ones are named "build" with
 * message "queued"; a step sets current_step. free_change frees one. */
fc_change *mk(fc_change_kind kind, const char *id);
fc_change *mk_create(const char *id, fc_status st, int64_t step, int64_t total);
fc_change *mk_step(const char *id, int64_t step);
void free_change(fc_change *c);

/* Submits the changes (indexes renumbered from the fixture's count), runs the
 * loop until all their done()s ran, and checks they came in order. */
void submit_wait(fixture *f, fc_change **cs, int n);

/* Runs one change to completion and returns its result (c stays the caller's). */
int run1(fixture *f, fc_change *c);
/* Runs c, asserts its result is expect and frees it. */
void do1(fixture *f, fc_change *c, int expect);

/* Rows seen by a list or events_since callback. */
typedef struct rows {
    int n;
    int stop_after; /* 0: never */
    char id[32][FC_ID_MAX + 1];
    int64_t seq[32], step[32], epoch[32];
    char msg[32][32];
} rows;

/* The row callback that fills a rows (ud). */
int collect(const fc_workflow *w, void *ud);

/* True when the suite runs on PostgreSQL (FC_TEST_PG_DSN is set). */
int fx_is_pg(void);
/* The backend's name as the throughput lines print it. */
const char *fx_backend(void);
/* Skips a test of something only the SQLite backend has. */
#define SQLITE_ONLY()                                                                              \
    do {                                                                                           \
        if (fx_is_pg()) skip();                                                                    \
    } while (0)
/* Runs sql on the test's database from a side connection (another process,
 * as far as the store knows), asserting it worked; the connection stays
 * open across calls, so "BEGIN" ... "COMMIT" holds locks in between. */
void fx_exec(fixture *f, const char *sql);
/* The first column of the first row of sql, as an integer. */
int64_t fx_scalar(fixture *f, const char *sql);

/* Another process's connection, used to hold the write lock or inject faults (SQLite). */
sqlite3 *external(fixture *f);
/* Runs sql on db and asserts it succeeded. */
void exec_ok(sqlite3 *db, const char *sql);

/* Removes the database files, so the next open starts from nothing. */
void remove_db(fixture *f);

#endif
