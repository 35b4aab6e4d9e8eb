/* SQLite store: connection set-up (pragmas) and the ordered schema migrations. */
#include "store/sqlite/sqlite_internal.h"

#include "common/error.h"
#include "common/log.h"
#include "common/time.h"

#include <stdio.h>
#include <string.h>

/* Readers and the writer never wait on each other in WAL mode; this only covers
 * checkpoints and other processes (a backup tool) holding the write lock. */
#define FC__SQLITE_BUSY_MS 5000

/* After a checkpoint the WAL file is truncated back to this size, so one burst
 * of writes does not leave a huge file behind for good. */
#define FC__SQLITE_WAL_LIMIT "67108864"

/* The schema, as an ordered list of steps. Step i (0-based) brings the database
 * to version i + 1. Never edit a released step: append a new one. */
static const char *const migrations[] = {
    /* 1: workflows and their append-only change log. pk is the rowid: it only
     * grows, so it gives the list order and a cheap, stable page cursor. Events
     * are always read by (workflow_id, seq), so they are clustered on that key. */
    "CREATE TABLE workflows ("
    "  pk INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  name TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  current_step INTEGER NOT NULL,"
    "  total_steps INTEGER NOT NULL,"
    "  message TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE events ("
    "  workflow_id TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  status TEXT NOT NULL,"
    "  current_step INTEGER NOT NULL,"
    "  total_steps INTEGER NOT NULL,"
    "  message TEXT NOT NULL,"
    "  ts INTEGER NOT NULL,"
    "  PRIMARY KEY (workflow_id, seq)"
    ") WITHOUT ROWID;",
    /* 2: a status filter pages through this index (status, then rowid) instead of
     * scanning every workflow. */
    "CREATE INDEX workflows_status ON workflows(status);",
    /* 3: a change writes only its event row. The current state of a workflow is
     * its newest event (retention always keeps it); the workflows row keeps
     * what does not change per step: id, name, creation time, and the status
     * for the list filter (rewritten only when the status changes). Before,
     * every change also rewrote the workflows row: about 25 more pages per
     * commit of 33 changes under ingest, for state the log already held.
     * A workflow whose newest state is missing from the log gets it first. */
    "INSERT OR IGNORE INTO events (workflow_id, seq, status, current_step, total_steps, message,"
    "  ts) SELECT id, seq, status, current_step, total_steps, message, updated_at FROM workflows;"
    "CREATE TABLE workflows_v3 ("
    "  pk INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  name TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL"
    ");"
    "INSERT INTO workflows_v3 (pk, id, name, status, created_at)"
    "  SELECT pk, id, name, status, created_at FROM workflows;"
    "DROP TABLE workflows;"
    "ALTER TABLE workflows_v3 RENAME TO workflows;"
    "CREATE INDEX workflows_status ON workflows(status);",
    /* 4: incarnations. A workflow's epoch is drawn at random when it is
     * created, so (id, epoch, seq) never names two different changes, even
     * when the id is deleted and created again (seq restarts at 1). The log
     * holds only the current incarnation's events (a deletion drops them),
     * so events take their epoch from the workflows row. A deletion leaves a
     * tombstone: the deleted incarnation and the seq the deletion took, so a
     * watcher resuming that incarnation is told of the deletion. Workflows
     * that exist now get an epoch, and a tombstone of epoch 0: whether they
     * were deleted and re-created before tombstones were kept is unknown, so
     * a resume without an epoch cannot be proven continuous for them.
     * random() is evaluated per row; % keeps it within 2^53-1 (JavaScript's
     * exact integers), and abs() of a remainder cannot overflow. */
    "ALTER TABLE workflows ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;"
    "UPDATE workflows SET epoch = 1 + abs(random() % 9007199254740991);"
    "CREATE TABLE tombstones ("
    "  id TEXT PRIMARY KEY,"
    "  epoch INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  deleted_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "INSERT INTO tombstones (id, epoch, seq, deleted_at)"
    "  SELECT id, 0, 0, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) FROM workflows;",
    /* 5: idempotency keys (idempotency.c). One row per key: the fingerprint of
     * the request it came with, when it was first used, and that request's
     * outcome (result names the store error, "ok" on success; the state
     * columns hold fc_change.wf), so a retry is answered without the event
     * log, which may have moved on or been deleted with its workflow. The
     * created_at index finds expired keys for trimming, oldest first. */
    "CREATE TABLE idempotency_keys ("
    "  key TEXT NOT NULL UNIQUE,"
    "  fingerprint BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  result TEXT NOT NULL,"
    "  errmsg TEXT NOT NULL,"
    "  workflow_id TEXT NOT NULL,"
    "  epoch INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  current_step INTEGER NOT NULL,"
    "  total_steps INTEGER NOT NULL,"
    "  message TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  wf_created_at INTEGER NOT NULL,"
    "  wf_updated_at INTEGER NOT NULL"
    ");"
    "CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof *migrations))

int fc__sqlite_schema_latest(void)
{
    return N_MIGRATIONS;
}

int fc__sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out, char *err, size_t errlen)
{
    /* PERSISTENT: these live as long as the connection, which tells SQLite to
     * keep them out of its short-lived lookaside memory. */
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot prepare \"%.60s\": %s", sql, sqlite3_errmsg(db));
        *out = NULL;
        return FC_EIO;
    }
    return 0;
}

/* Runs SQL without results; on failure writes what into err. */
static int exec_sql(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return FC_EIO;
    }
    return 0;
}

int fc__sqlite_connect(const char *path, int create, int sync_full, sqlite3 **out, char *err,
                       size_t errlen)
{
    /* NOMUTEX: each connection is used by one thread at a time (the loop or the
     * writer), so SQLite's per-call mutex would be pure overhead. */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return FC_EIO;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, FC__SQLITE_BUSY_MS);

    /* journal_mode answers with the mode in effect; anything but "wal" (e.g. on a
     * file system without shared memory) would break reads during writes. */
    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "cannot enable WAL on %s: %s", path, sqlite3_errmsg(db));
        goto fail;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcmp(mode, "wal") != 0) {
        snprintf(err, errlen, "cannot enable WAL on %s (journal_mode stays %s)", path,
                 mode ? mode : "?");
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;

    /* In WAL mode NORMAL syncs only at checkpoints: a commit survives a crash of
     * the process, not of the machine. FULL syncs the WAL at every commit; group
     * commit keeps that to one fsync per batch. */
    const char *sync = sync_full ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
    /* Measured on the ingest scenario (64 producers, 1,000 workflows): with the
     * default 2 MB page cache and pread I/O, half the server's CPU went to the
     * kernel copying the same pages back in; a larger cache, memory-mapped
     * reads remove most of it. Checkpoints run in their own thread
     * (checkpoint.c). */
    const char *tuning = "PRAGMA journal_size_limit=" FC__SQLITE_WAL_LIMIT ";"
                         "PRAGMA cache_size=-65536;"
                         "PRAGMA mmap_size=268435456;"
                         "PRAGMA temp_store=MEMORY;";
    if (exec_sql(db, sync, "cannot set pragmas", err, errlen) != 0 ||
        exec_sql(db, tuning, "cannot set pragmas", err, errlen) != 0)
        goto fail;
    *out = db;
    return 0;

fail:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return FC_EIO;
}

/* Reads the highest applied migration into *v (0 for a new database). */
static int read_version(sqlite3 *db, int *v, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1, &st,
                                NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "cannot read schema_version: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return FC_EIO;
    }
    *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

/* Applies migration step (1-based) unless another process got there first. */
static int apply_step(sqlite3 *db, int step, char *err, size_t errlen)
{
    char sql[96];
    int cur;
    /* IMMEDIATE takes the write lock up front, so the version we read cannot
     * change before we write the step. */
    if (exec_sql(db, "BEGIN IMMEDIATE", "cannot start migration", err, errlen) != 0) return FC_EIO;
    if (read_version(db, &cur, err, errlen) != 0) goto fail;
    if (cur < step) {
        if (exec_sql(db, migrations[step - 1], "migration failed", err, errlen) != 0) goto fail;
        snprintf(sql, sizeof sql, "INSERT INTO schema_version VALUES (%d, %lld)", step,
                 (long long)fc_time_now_ms());
        if (exec_sql(db, sql, "cannot record migration", err, errlen) != 0) goto fail;
    }
    if (exec_sql(db, "COMMIT", "cannot commit migration", err, errlen) != 0) goto fail;
    if (cur < step) FC_INFO(FC__SQLITE_TAG, "schema migrated to version %d", step);
    return 0;

fail:
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return FC_EIO;
}

int fc__sqlite_migrate(sqlite3 *db, int *version, char *err, size_t errlen)
{
    int cur;
    /* One row per applied step, with when it ran: the current version is the
     * highest, and the history helps when debugging an old database. */
    if (exec_sql(db,
                 "CREATE TABLE IF NOT EXISTS schema_version ("
                 "  version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                 "cannot create schema_version", err, errlen) != 0)
        return FC_EIO;
    if (read_version(db, &cur, err, errlen) != 0) return FC_EIO;
    if (cur > N_MIGRATIONS) {
        /* A newer server wrote this file; its schema may mean things we do not know. */
        snprintf(err, errlen, "database schema version %d is newer than this server's (%d)", cur,
                 N_MIGRATIONS);
        return FC_EIO;
    }
    for (int step = cur + 1; step <= N_MIGRATIONS; step++)
        if (apply_step(db, step, err, errlen) != 0) return FC_EIO;
    *version = N_MIGRATIONS;
    return 0;
}
