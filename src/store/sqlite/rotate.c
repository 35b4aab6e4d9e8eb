/* SQLite store: rotating every workflow's epoch offline (flowcast
 * rotate-epochs), after a backup was restored or the file was replaced. */
#include "store/sqlite/sqlite_internal.h"

#include "common/error.h"

#include <stdio.h>

/* Runs sql; on failure writes what and SQLite's reason into err. */
static int exec_or(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK) return 0;
    int busy = (sqlite3_extended_errcode(db) & 0xff) == SQLITE_BUSY;
    snprintf(err, errlen, "%s: %s", what,
             busy ? "the database is in use (stop the server first)" : sqlite3_errmsg(db));
    return FC_EIO;
}

/* Gives every workflow a new epoch (never its old one, never its
 * tombstone's) and marks the past of every id without a tombstone as
 * unknown, so a bare seq (no epoch) is not trusted either. One transaction. */
static int rotate(sqlite3 *db, int64_t *rotated, char *err, size_t errlen)
{
    sqlite3_stmt *sel = NULL, *upd = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT w.pk, w.epoch, COALESCE(t.epoch, 0) FROM workflows w"
                                " LEFT JOIN tombstones t ON t.id = w.id",
                                -1, &sel, NULL);
    if (rc == SQLITE_OK)
        rc =
            sqlite3_prepare_v2(db, "UPDATE workflows SET epoch = ?2 WHERE pk = ?1", -1, &upd, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
        int64_t old = sqlite3_column_int64(sel, 1), dead = sqlite3_column_int64(sel, 2);
        int64_t e;
        do
            e = fc__sqlite_new_epoch(old);
        while (e == dead);
        sqlite3_bind_int64(upd, 1, sqlite3_column_int64(sel, 0));
        sqlite3_bind_int64(upd, 2, e);
        rc = sqlite3_step(upd) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_reset(upd);
        (*rotated)++;
    }
    if (rc != SQLITE_DONE) snprintf(err, errlen, "cannot rotate epochs: %s", sqlite3_errmsg(db));
    sqlite3_finalize(sel);
    sqlite3_finalize(upd);
    if (rc != SQLITE_DONE) return FC_EIO;
    return exec_or(db,
                   "INSERT OR IGNORE INTO tombstones (id, epoch, seq, deleted_at)"
                   "  SELECT id, 0, 0, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
                   "  FROM workflows",
                   "cannot mark the past unknown", err, errlen);
}

int fc_store_sqlite_rotate_epochs(const char *path, int64_t *rotated, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int version;
    *rotated = 0;
    /* The servers' own lock first: a running server's loops would go on with
     * the old epochs in their subscriptions. */
    fc_store_lock *lock = fc_store_lock_acquire(path, NULL, err, errlen);
    if (!lock) return FC_EIO;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        fc_store_lock_release(lock);
        return FC_EIO;
    }
    sqlite3_extended_result_codes(db, 1);
    /* EXCLUSIVE locking, set before the file is first read: the connection
     * then takes the database file for itself (no shared memory), which
     * fails at once while any other connection has it open (a server from
     * before the lock file, a backup tool). */
    int r = exec_or(db, "PRAGMA locking_mode=EXCLUSIVE", "cannot lock", err, errlen);
    if (r == 0) r = exec_or(db, "BEGIN EXCLUSIVE; COMMIT", "cannot lock", err, errlen);
    if (r == 0) r = fc__sqlite_migrate(db, &version, err, errlen);
    if (r == 0) r = exec_or(db, "BEGIN IMMEDIATE", "cannot start", err, errlen);
    if (r == 0) r = rotate(db, rotated, err, errlen);
    if (r == 0) r = exec_or(db, "COMMIT", "cannot commit", err, errlen);
    if (r != 0 && !sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (r != 0) *rotated = 0;
    sqlite3_close(db);
    fc_store_lock_release(lock);
    return r;
}
