/* SQLite store: the writer thread, committing queued changes in groups (group commit). */
#include "store/sqlite/sqlite_internal.h"

#include "common/error.h"
#include "common/log.h"
#include "common/time.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const w_sql[FC__W_COUNT] = {
    [FC__W_BEGIN] = "BEGIN IMMEDIATE",
    /* Changes when another connection (another process) has committed. */
    [FC__W_DATA_VERSION] = "PRAGMA data_version",
    [FC__W_COMMIT] = "COMMIT",
    [FC__W_ROLLBACK] = "ROLLBACK",
    /* The row and its newest event: the current state (schema v3). */
    [FC__W_SELECT] = "SELECT w.pk, w.name, e.status, e.current_step, e.total_steps, e.message,"
                     " e.seq, w.created_at, e.ts, w.epoch FROM workflows w JOIN events e"
                     " ON e.workflow_id = w.id WHERE w.id = ?1 ORDER BY e.seq DESC LIMIT 1",
    /* DO NOTHING instead of a SELECT first: one statement both checks and inserts,
     * and sqlite3_changes() tells which happened. */
    [FC__W_INSERT] = "INSERT INTO workflows (id, name, status, created_at, epoch)"
                     " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
    /* Only a new status touches the workflow row (the list filter's index);
     * everything else of a change is its event row. */
    [FC__W_UPDATE_STATUS] = "UPDATE workflows SET status = ?2 WHERE pk = ?1",
    [FC__W_DELETE] = "DELETE FROM workflows WHERE pk = ?1",
    [FC__W_EV_INSERT] = "INSERT INTO events (workflow_id, seq, status, current_step, total_steps,"
                        " message, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [FC__W_EV_TRIM] = "DELETE FROM events WHERE workflow_id = ?1 AND seq <= ?2",
    [FC__W_EV_DELETE] = "DELETE FROM events WHERE workflow_id = ?1",
    [FC__W_TOMB_GET] = "SELECT epoch FROM tombstones WHERE id = ?1",
    /* One row per id: the latest deletion is the only one a resume can name
     * (an older incarnation's watcher is told to resync, not of the deletion). */
    [FC__W_TOMB_PUT] = "INSERT OR REPLACE INTO tombstones (id, epoch, seq, deleted_at)"
                       " VALUES (?1, ?2, ?3, ?4)",
    [FC__W_IDEM_SELECT] = "SELECT fingerprint, created_at, result, errmsg, workflow_id, name,"
                          " status, current_step, total_steps, message, seq, wf_created_at,"
                          " wf_updated_at, epoch FROM idempotency_keys WHERE key = ?1",
    /* REPLACE: the only row it can meet is an expired use of the same key. */
    [FC__W_IDEM_PUT] = "INSERT OR REPLACE INTO idempotency_keys (key, fingerprint, created_at,"
                       " result, errmsg, workflow_id, name, status, current_step, total_steps,"
                       " message, seq, wf_created_at, wf_updated_at, epoch)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [FC__W_IDEM_TRIM] = "DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM"
                        " idempotency_keys WHERE created_at <= ?1 ORDER BY created_at LIMIT ?2)",
};

/* Outcome of reading a change's current row. */
enum { ROW_MISSING = 0, ROW_FOUND = 1, ROW_FAILED = -1 /* c->result set */, ROW_IOERR = -2 };

/* Steps a write statement to completion and resets it for the next use. On
 * failure copies SQLite's reason into ioerr (before the reset can lose it). */
static int run(fc__sqlite_core *s, sqlite3_stmt *st, char *ioerr, size_t n)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) snprintf(ioerr, n, "%s", sqlite3_errmsg(s->wdb));
    if (fc__sqlite_is_full(s->wdb, rc)) s->full = 1; /* the batch fails as FC_EFULL */
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : FC_EIO;
}

int fc__sqlite_run(fc__sqlite_core *s, sqlite3_stmt *st, char *ioerr, size_t n)
{
    return run(s, st, ioerr, n);
}

/* The errno of the last failed write to the WAL (or, failing that, to the
 * database file). sqlite3_system_errno cannot tell: it reads errno after the
 * rollback has overwritten it. */
static int last_write_errno(sqlite3 *db)
{
    int e = 0;
    sqlite3_file *wal = NULL;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) == SQLITE_OK && wal &&
        wal->pMethods)
        wal->pMethods->xFileControl(wal, SQLITE_FCNTL_LAST_ERRNO, &e);
    if (!e) sqlite3_file_control(db, "main", SQLITE_FCNTL_LAST_ERRNO, &e);
    return e;
}

int fc__sqlite_is_full(sqlite3 *db, int rc)
{
    /* SQLite reports ENOSPC as SQLITE_FULL, but a file-size limit (EFBIG) or a
     * quota (EDQUOT) as a plain write error: to the client all three mean the
     * same, no room for the change. */
    if ((rc & 0xff) == SQLITE_FULL) return 1;
    if (rc != SQLITE_IOERR_WRITE) return 0;
    int e = last_write_errno(db);
    return e == ENOSPC || e == EFBIG || e == EDQUOT;
}

/* Fails one change without touching the database. */
__attribute__((format(printf, 3, 4))) static void fail(fc_change *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->result = code;
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    char *p = malloc((size_t)n + 1);
    if (!p) return NULL;
    if (n > 0) memcpy(p, t, (size_t)n);
    p[n] = '\0';
    return p;
}

/* Reads the current state of c->wf.id into c->wf (keeping id) and its pk into
 * *pk: from the cache, else from the stored row (which then goes into the cache). */
static int load_current(fc__sqlite_core *s, fc_change *c, int64_t *pk, char *ioerr, size_t n)
{
    int rc = fc__wcache_get(&s->wc, c->wf.id, pk, &c->wf);
    if (rc == 0) return ROW_FOUND;
    if (rc == FC_ENOMEM) {
        fail(c, FC_ENOMEM, "out of memory reading workflow '%s'", c->wf.id);
        return ROW_FAILED;
    }
    sqlite3_stmt *st = s->w[FC__W_SELECT];
    sqlite3_bind_text(st, 1, c->wf.id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        fail(c, FC_ENOTFOUND, "workflow '%s' not found", c->wf.id);
        return ROW_MISSING;
    }
    if (rc != SQLITE_ROW) {
        snprintf(ioerr, n, "%s", sqlite3_errmsg(s->wdb));
        sqlite3_reset(st);
        return ROW_IOERR;
    }
    fc_status status;
    const char *sname = (const char *)sqlite3_column_text(st, 2);
    if (!sname || fc_status_parse(sname, &status) != 0) {
        /* Only this row is bad: fail the change, keep the batch. */
        fail(c, FC_EIO, "stored status '%s' of workflow '%s' is not valid", sname ? sname : "",
             c->wf.id);
        sqlite3_reset(st);
        return ROW_FAILED;
    }
    char *name = col_dup(st, 1), *msg = col_dup(st, 5);
    if (!name || !msg) {
        free(name);
        free(msg);
        sqlite3_reset(st);
        fail(c, FC_ENOMEM, "out of memory reading workflow '%s'", c->wf.id);
        return ROW_FAILED;
    }
    free(c->wf.name);
    free(c->wf.message);
    *pk = sqlite3_column_int64(st, 0);
    c->wf.name = name;
    c->wf.status = status;
    c->wf.current_step = sqlite3_column_int64(st, 3);
    c->wf.total_steps = sqlite3_column_int64(st, 4);
    c->wf.message = msg;
    c->wf.seq = sqlite3_column_int64(st, 6);
    c->wf.created_at_ms = sqlite3_column_int64(st, 7);
    c->wf.updated_at_ms = sqlite3_column_int64(st, 8);
    c->wf.epoch = sqlite3_column_int64(st, 9);
    sqlite3_reset(st);
    fc__wcache_put(&s->wc, *pk, &c->wf); /* without it, the next change reads the row again */
    return ROW_FOUND;
}

/* Appends the state in c->wf to the log as change c->wf.seq and drops what
 * falls out of the retention window. */
static int log_event(fc__sqlite_core *s, const fc_workflow *w, char *ioerr, size_t n)
{
    sqlite3_stmt *st = s->w[FC__W_EV_INSERT];
    sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, w->seq);
    sqlite3_bind_text(st, 3, fc_status_name(w->status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, w->current_step);
    sqlite3_bind_int64(st, 5, w->total_steps);
    sqlite3_bind_text(st, 6, w->message, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, w->updated_at_ms);
    if (run(s, st, ioerr, n) != 0) return FC_EIO;
    /* Trimming in steps: one DELETE per FC__SQLITE_TRIM_EVERY changes removes
     * adjacent rows (a page or two) instead of dirtying the log's oldest page
     * at every change. Readers never see the extra rows (sq_events_since). */
    if (w->seq % FC__SQLITE_TRIM_EVERY != 0 || w->seq - s->retention < 1) return 0;
    st = s->w[FC__W_EV_TRIM];
    sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, w->seq - s->retention);
    return run(s, st, ioerr, n);
}

int64_t fc__sqlite_new_epoch(int64_t avoid)
{
    uint64_t r;
    do {
        sqlite3_randomness(sizeof r, &r); /* SQLite's PRNG, seeded by the OS, thread-safe */
        r &= (uint64_t)FC_EPOCH_MAX;
    } while (r == 0 || (int64_t)r == avoid);
    return (int64_t)r;
}

/* The epoch of id's tombstone into *epoch (0 when it has none). */
static int tombstone_epoch(fc__sqlite_core *s, const char *id, int64_t *epoch, char *ioerr,
                           size_t n)
{
    sqlite3_stmt *st = s->w[FC__W_TOMB_GET];
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *epoch = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) snprintf(ioerr, n, "%s", sqlite3_errmsg(s->wdb));
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : FC_EIO;
}

static int apply_create(fc__sqlite_core *s, fc_change *c, int64_t now, char *ioerr, size_t n)
{
    fc_workflow *w = &c->wf;
    if (w->current_step > w->total_steps) {
        fail(c, FC_EINVAL, "current_step (%lld) is greater than total_steps (%lld)",
             (long long)w->current_step, (long long)w->total_steps);
        return 0;
    }
    /* The output must hold "" rather than NULL strings. */
    if (!w->name) w->name = strdup("");
    if (!w->message) w->message = strdup("");
    if (!w->name || !w->message) {
        fail(c, FC_ENOMEM, "out of memory creating workflow '%s'", w->id);
        return 0;
    }
    /* Drawn inside the committing transaction, so the epoch and the row it
     * names become visible together; never the deleted incarnation's again. */
    int64_t dead;
    if (tombstone_epoch(s, w->id, &dead, ioerr, n) != 0) return FC_EIO;
    w->epoch = fc__sqlite_new_epoch(dead);
    sqlite3_stmt *st = s->w[FC__W_INSERT];
    sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, fc_status_name(w->status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, w->epoch);
    if (run(s, st, ioerr, n) != 0) return FC_EIO;
    if (sqlite3_changes(s->wdb) == 0) {
        fail(c, FC_EEXISTS, "workflow '%s' already exists", w->id);
        return 0;
    }
    int64_t pk = sqlite3_last_insert_rowid(s->wdb);
    w->seq = 1;
    w->created_at_ms = w->updated_at_ms = now;
    if (log_event(s, w, ioerr, n) != 0) return FC_EIO;
    fc__wcache_put(&s->wc, pk, w);
    return 0;
}

static int apply_update(fc__sqlite_core *s, fc_change *c, int64_t now, char *ioerr, size_t n)
{
    fc_workflow *w = &c->wf;
    fc_patch *p = &c->patch;
    int64_t pk = 0;
    int r = load_current(s, c, &pk, ioerr, n);
    if (r != ROW_FOUND) return r == ROW_IOERR ? FC_EIO : 0;
    /* if_seq first: like If-Match, a stale precondition is reported before anything
     * about the request itself. */
    if ((p->fields & FC_PATCH_IF_SEQ) && p->if_seq != w->seq) {
        fail(c, FC_ESEQ, "seq mismatch: if_seq is %lld but workflow '%s' is at seq %lld",
             (long long)p->if_seq, w->id, (long long)w->seq);
        return 0;
    }
    if (fc_status_is_terminal(w->status)) {
        fail(c, FC_ETERMINAL, "workflow '%s' is %s and can no longer change", w->id,
             fc_status_name(w->status));
        return 0;
    }
    int status_changed = (p->fields & FC_PATCH_STATUS) && p->status != w->status;
    if (fc_workflow_apply_patch(w, p) != 0) {
        fail(c, FC_EINVAL, "current_step (%lld) is greater than total_steps (%lld)",
             (long long)(p->fields & FC_PATCH_CURRENT_STEP ? p->current_step : w->current_step),
             (long long)(p->fields & FC_PATCH_TOTAL_STEPS ? p->total_steps : w->total_steps));
        return 0;
    }
    w->seq++;
    w->updated_at_ms = now;
    if (status_changed) {
        sqlite3_stmt *st = s->w[FC__W_UPDATE_STATUS];
        sqlite3_bind_int64(st, 1, pk);
        sqlite3_bind_text(st, 2, fc_status_name(w->status), -1, SQLITE_STATIC);
        if (run(s, st, ioerr, n) != 0) return FC_EIO;
    }
    if (log_event(s, w, ioerr, n) != 0) return FC_EIO;
    fc__wcache_put(&s->wc, pk, w);
    return 0;
}

static int apply_delete(fc__sqlite_core *s, fc_change *c, int64_t now, char *ioerr, size_t n)
{
    int64_t pk = 0;
    int r = load_current(s, c, &pk, ioerr, n);
    if (r != ROW_FOUND) return r == ROW_IOERR ? FC_EIO : 0;
    sqlite3_stmt *st = s->w[FC__W_DELETE];
    sqlite3_bind_int64(st, 1, pk);
    fc__wcache_drop(&s->wc, c->wf.id);
    if (run(s, st, ioerr, n) != 0) return FC_EIO;
    st = s->w[FC__W_EV_DELETE];
    sqlite3_bind_text(st, 1, c->wf.id, -1, SQLITE_STATIC);
    if (run(s, st, ioerr, n) != 0) return FC_EIO;
    /* The deletion is the incarnation's last change: it takes the next seq. */
    st = s->w[FC__W_TOMB_PUT];
    sqlite3_bind_text(st, 1, c->wf.id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, c->wf.epoch);
    sqlite3_bind_int64(st, 3, c->wf.seq + 1);
    sqlite3_bind_int64(st, 4, now);
    return run(s, st, ioerr, n);
}

/* The cache holds what this writer committed; if anyone else committed since
 * (another process on the same file), it may be stale: start over. Runs
 * inside the batch's transaction, so nothing can change after the check. */
static int check_cache(fc__sqlite_core *s, char *ioerr, size_t n)
{
    sqlite3_stmt *st = s->w[FC__W_DATA_VERSION];
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        snprintf(ioerr, n, "%s", sqlite3_errmsg(s->wdb));
        sqlite3_reset(st);
        return FC_EIO;
    }
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (v != s->data_version) {
        fc__wcache_clear(&s->wc);
        s->data_version = v;
    }
    return 0;
}

/* Applies one change inside the batch's transaction: a change with an
 * idempotency key that was already used is answered from the key instead
 * (checked here, inside the transaction, so two submissions of one key in
 * any batches apply once), and a new key is stored with the outcome. 0 or
 * FC_EIO (the batch must roll back). */
static int apply_one(fc__sqlite_core *s, fc_change *c, int64_t now, int *keyed, char *ioerr,
                     size_t n)
{
    c->result = 0;
    c->errmsg[0] = '\0';
    c->replayed = 0;
    if (c->idem_key[0]) {
        int r = fc__idem_check(s, c, now, ioerr, n);
        if (r != FC__IDEM_NEW) return r == FC__IDEM_ANSWERED ? 0 : FC_EIO;
        (*keyed)++;
    }
    int rc = 0;
    switch (c->kind) {
    case FC_CHANGE_CREATE:
        rc = apply_create(s, c, now, ioerr, n);
        break;
    case FC_CHANGE_UPDATE:
        rc = apply_update(s, c, now, ioerr, n);
        break;
    case FC_CHANGE_DELETE:
        rc = apply_delete(s, c, now, ioerr, n);
        break;
    default:
        fail(c, FC_EINVAL, "unknown change kind %d", (int)c->kind);
        break;
    }
    return rc != 0 ? rc : fc__idem_record(s, c, now, ioerr, n);
}

/* Applies one batch in one transaction. Every change gets its result; if
 * SQLite fails, the batch is rolled back and every change reports FC_EIO,
 * because none of it was committed. */
static void apply_batch(fc__sqlite_core *s, fc_change *batch)
{
    char ioerr[96] = "";
    int64_t now = fc_time_now_ms(); /* one timestamp per batch = per commit */
    s->full = 0;
    int failed = run(s, s->w[FC__W_BEGIN], ioerr, sizeof ioerr) != 0;
    if (!failed) failed = check_cache(s, ioerr, sizeof ioerr) != 0;
    fc_change *c;
    int count = 0, keyed = 0;

    for (c = batch; c; c = c->next) {
        count++;
        if (!failed && apply_one(s, c, now, &keyed, ioerr, sizeof ioerr) != 0) failed = 1;
    }
    if (!failed && fc__idem_trim(s, now, keyed, ioerr, sizeof ioerr) != 0) failed = 1;
    if (!failed && run(s, s->w[FC__W_COMMIT], ioerr, sizeof ioerr) != 0) failed = 1;
    if (failed) {
        /* SQLite may already have rolled back on its own (e.g. SQLITE_FULL). */
        if (!sqlite3_get_autocommit(s->wdb)) {
            char rberr[96];
            if (run(s, s->w[FC__W_ROLLBACK], rberr, sizeof rberr) != 0)
                FC_ERROR(FC__SQLITE_TAG, "rollback failed: %s", rberr);
        }
        FC_ERROR(FC__SQLITE_TAG, "batch of %d changes rolled back: %s", count, ioerr);
        fc__wcache_clear(&s->wc);
        atomic_store(&s->write_failed_full, s->full);
        atomic_store(&s->write_failed_ms, now);
        for (c = batch; c; c = c->next) {
            c->replayed = 0;
            if (s->full)
                fail(c, FC_EFULL, "storage full, change not saved: %s", ioerr);
            else
                fail(c, FC_EIO, "storage error, change not saved: %s", ioerr);
        }
    } else {
        atomic_store(&s->write_failed_ms, 0);
    }
    uint64_t t = fc_time_mono_ns();
    for (c = batch; c; c = c->next) {
        c->commit_ns = t;
        c->txid = 0; /* no commit log: one process writes */
        c->txn_changes = 0;
    }
}

/* The writer takes every queued change at once and applies them in one
 * transaction, so a burst costs one commit (and with FULL, one fsync). */
static void *writer_main(void *arg)
{
    fc__sqlite_core *s = arg;
    fc_change *batch;
    while ((batch = fc__fanout_take(&s->fo, 0))) {
        apply_batch(s, batch);
        fc__fanout_hand_back(&s->fo, batch);
    }
    return NULL;
}

int fc__sqlite_writer_start(fc__sqlite_core *s, char *err, size_t errlen)
{
    if (fc__wcache_init(&s->wc, FC__SQLITE_CACHE_BYTES) != 0) {
        snprintf(err, errlen, "out of memory");
        return FC_ENOMEM;
    }
    for (int i = 0; i < FC__W_COUNT; i++)
        if (fc__sqlite_prepare(s->wdb, w_sql[i], &s->w[i], err, errlen) != 0) goto fail;

    int rc = fc__sqlite_thread_start(&s->thread, "fc-writer", writer_main, s);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the writer thread: %s", strerror(rc));
        goto fail;
    }
    s->thread_started = 1;
    return 0;

fail:
    for (int i = 0; i < FC__W_COUNT; i++) {
        sqlite3_finalize(s->w[i]);
        s->w[i] = NULL;
    }
    fc__wcache_destroy(&s->wc);
    return FC_EIO;
}

int fc__sqlite_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
    /* Signals belong to the server's signal thread: store threads block them all. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0) pthread_setname_np(*t, name); /* shows in top -H and perf */
    return rc;
}

void fc__sqlite_writer_stop(fc__sqlite_core *s)
{
    if (s->thread_started) {
        fc__fanout_stop(&s->fo);
        pthread_join(s->thread, NULL);
        s->thread_started = 0;
        fc__wcache_destroy(&s->wc);
    }
    for (int i = 0; i < FC__W_COUNT; i++) {
        sqlite3_finalize(s->w[i]);
        s->w[i] = NULL;
    }
}

