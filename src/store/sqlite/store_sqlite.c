/* SQLite store: open, attach and close, and the reads served on the loop
 * thread (submits and commits travel through the shared fanout.c). */
#include "store/sqlite/sqlite_internal.h"
#include "store/list_internal.h"

#include "common/error.h"
#include "common/log.h"
#include "common/time.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* get and list read the same columns, list with pk in front: the workflow row
 * joined with its newest event, which holds the current state (schema v3). */
#define WF_COLUMNS                                                                                 \
    "w.id, w.name, e.status, e.current_step, e.total_steps, e.message, e.seq, w.created_at, e.ts," \
    " w.epoch"
#define WF_NEWEST_EVENT                                                                            \
    " JOIN events e ON e.workflow_id = w.id"                                                       \
    " AND e.seq = (SELECT MAX(seq) FROM events WHERE workflow_id = w.id)"

static const char *const r_sql[FC__R_COUNT] = {
    /* events_since reads two statements; one read transaction makes them agree. */
    [FC__R_BEGIN] = "BEGIN",
    [FC__R_COMMIT] = "COMMIT",
    [FC__R_GET] = "SELECT " WF_COLUMNS " FROM workflows w" WF_NEWEST_EVENT " WHERE w.id = ?1",
    [FC__R_LIST] = ("SELECT w.pk, " WF_COLUMNS " FROM workflows w" WF_NEWEST_EVENT
                    " WHERE w.pk < ?1 ORDER BY w.pk DESC LIMIT ?2"),
    [FC__R_LIST_STATUS] = ("SELECT w.pk, " WF_COLUMNS " FROM workflows w" WF_NEWEST_EVENT
                           " WHERE w.status = ?3 AND w.pk < ?1 ORDER BY w.pk DESC LIMIT ?2"),
    [FC__R_EV_HEAD] = ("SELECT name, created_at,"
                       " (SELECT MAX(seq) FROM events WHERE workflow_id = ?1),"
                       " (SELECT MIN(seq) FROM events WHERE workflow_id = ?1), epoch"
                       " FROM workflows WHERE id = ?1"),
    [FC__R_EVENTS] = ("SELECT seq, status, current_step, total_steps, message, ts FROM events"
                      " WHERE workflow_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"),
    [FC__R_TOMB] = "SELECT epoch, seq, deleted_at FROM tombstones WHERE id = ?1",
    /* Reads the schema and a page of the table: enough to see an unreadable file. */
    [FC__R_PING] = "SELECT 1 FROM workflows LIMIT 1",
};

static fc__sqlite_store *from_base(fc_store *bs)
{
    return (fc__sqlite_store *)(void *)bs;
}

/* Text column as a C string; SQLite owns it until the statement moves on. */
static char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return (char *)(t ? t : (const unsigned char *)"");
}

/* Fills w from the WF_COLUMNS starting at column `at`, pointing into SQLite's
 * memory (valid until the next step or reset). FC_EIO on a corrupt status. */
static int read_row(sqlite3_stmt *st, int at, fc_workflow *w)
{
    memset(w, 0, sizeof *w);
    snprintf(w->id, sizeof w->id, "%s", col_text(st, at));
    w->name = col_text(st, at + 1);
    if (fc_status_parse(col_text(st, at + 2), &w->status) != 0) {
        FC_ERROR(FC__SQLITE_TAG, "workflow '%s' has invalid stored status '%s'", w->id,
                 col_text(st, at + 2));
        return FC_EIO;
    }
    w->current_step = sqlite3_column_int64(st, at + 3);
    w->total_steps = sqlite3_column_int64(st, at + 4);
    w->message = col_text(st, at + 5);
    w->seq = sqlite3_column_int64(st, at + 6);
    w->created_at_ms = sqlite3_column_int64(st, at + 7);
    w->updated_at_ms = sqlite3_column_int64(st, at + 8);
    w->epoch = sqlite3_column_int64(st, at + 9);
    return 0;
}

static int read_failed(fc__sqlite_store *s, const char *what)
{
    FC_ERROR(FC__SQLITE_TAG, "%s failed: %s", what, sqlite3_errmsg(s->rdb));
    return FC_EIO;
}

static int sq_get(fc_store *bs, const char *id, fc_workflow *out)
{
    fc__sqlite_store *s = from_base(bs);
    sqlite3_stmt *st = s->r[FC__R_GET];
    fc_workflow row;
    int ret;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        ret = FC_ENOTFOUND;
    else if (rc != SQLITE_ROW)
        ret = read_failed(s, "get");
    else if ((ret = read_row(st, 0, &row)) == 0)
        ret = fc_workflow_copy(out, &row); /* out must outlive the statement */
    sqlite3_reset(st);
    return ret;
}

static int sq_list(fc_store *bs, const fc_list_query *q, fc_store_row_cb cb, void *ud,
                   char *next_cursor, size_t cursor_len)
{
    fc__sqlite_store *s = from_base(bs);
    int64_t before, last = 0;
    int n = 0, stop = 0, more = 0, ret = 0, rc;

    if (fc__store_list_args(q, next_cursor, cursor_len, &before) != 0) return FC_EINVAL;

    sqlite3_stmt *st = s->r[q->has_status ? FC__R_LIST_STATUS : FC__R_LIST];
    sqlite3_bind_int64(st, 1, before);
    /* One row more than asked tells whether there is a next page. */
    sqlite3_bind_int(st, 2, q->limit + 1);
    if (q->has_status) sqlite3_bind_text(st, 3, fc_status_name(q->status), -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == q->limit || stop) {
            more = 1;
            break;
        }
        fc_workflow w;
        if ((ret = read_row(st, 1, &w)) != 0) break;
        last = sqlite3_column_int64(st, 0);
        n++;
        stop = cb(&w, ud) != 0;
    }
    if (ret == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE) ret = read_failed(s, "list");
    sqlite3_reset(st);
    if (ret == 0 && more && next_cursor) snprintf(next_cursor, cursor_len, "%" PRId64, last);
    return ret;
}

static int sq_events_since(fc_store *bs, const char *id, int64_t since, int limit,
                           fc_store_row_cb cb, void *ud, int64_t *oldest)
{
    fc__sqlite_store *s = from_base(bs);
    sqlite3_stmt *head = s->r[FC__R_EV_HEAD], *ev = s->r[FC__R_EVENTS];
    int ret = 0, rc;

    if (oldest) *oldest = 0;
    if (strlen(id) > FC_ID_MAX) return FC_ENOTFOUND; /* could never have been stored */
    rc = sqlite3_step(s->r[FC__R_BEGIN]);
    sqlite3_reset(s->r[FC__R_BEGIN]);
    if (rc != SQLITE_DONE) return read_failed(s, "events_since begin");

    /* The head row stays current while the events are read: its name and
     * created_at decorate every event row without a copy. */
    sqlite3_bind_text(head, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(head);
    if (rc == SQLITE_DONE) {
        ret = FC_ENOTFOUND;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        ret = read_failed(s, "events_since");
        goto out;
    }
    /* The log may still hold a few rows older than retention (trimmed in
     * steps, see FC__SQLITE_TRIM_EVERY): they are not part of it. */
    int64_t first = sqlite3_column_int64(head, 3); /* NULL (empty log) reads as 0 */
    int64_t floor = sqlite3_column_int64(head, 2) - s->core->retention + 1;
    if (first > 0 && first < floor) first = floor;
    if (oldest) *oldest = first;
    if (since < first - 1) since = first - 1;

    fc_workflow w;
    memset(&w, 0, sizeof w);
    snprintf(w.id, sizeof w.id, "%s", id);
    w.name = col_text(head, 0);
    w.created_at_ms = sqlite3_column_int64(head, 1);
    w.epoch = sqlite3_column_int64(head, 4);
    sqlite3_bind_text(ev, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ev, 2, since);
    sqlite3_bind_int(ev, 3, limit > 0 ? limit : -1); /* LIMIT -1: no limit */
    while ((rc = sqlite3_step(ev)) == SQLITE_ROW) {
        w.seq = sqlite3_column_int64(ev, 0);
        if (fc_status_parse(col_text(ev, 1), &w.status) != 0) {
            FC_ERROR(FC__SQLITE_TAG, "event %s/%" PRId64 " has invalid status", id, w.seq);
            ret = FC_EIO;
            break;
        }
        w.current_step = sqlite3_column_int64(ev, 2);
        w.total_steps = sqlite3_column_int64(ev, 3);
        w.message = col_text(ev, 4);
        w.updated_at_ms = sqlite3_column_int64(ev, 5);
        if (cb(&w, ud) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (ret == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE) ret = read_failed(s, "events_since");

out:
    sqlite3_reset(ev);
    sqlite3_reset(head);
    rc = sqlite3_step(s->r[FC__R_COMMIT]);
    sqlite3_reset(s->r[FC__R_COMMIT]);
    if (rc != SQLITE_DONE && ret == 0) ret = read_failed(s, "events_since commit");
    return ret;
}

static int sq_tombstone(fc_store *bs, const char *id, fc_tombstone *out)
{
    fc__sqlite_store *s = from_base(bs);
    sqlite3_stmt *st = s->r[FC__R_TOMB];
    int ret = FC_ENOTFOUND;
    memset(out, 0, sizeof *out);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->epoch = sqlite3_column_int64(st, 0);
        out->seq = sqlite3_column_int64(st, 1);
        out->deleted_at_ms = sqlite3_column_int64(st, 2);
        ret = 0;
    } else if (rc != SQLITE_DONE) {
        ret = read_failed(s, "tombstone");
    }
    sqlite3_reset(st);
    return ret;
}

/* Not healthy while a read fails, or for FC__WRITE_FAIL_MS after a batch
 * failed: long enough to be seen, and short, because a balancer that routes
 * writes away would otherwise never let one succeed and clear it. */
#define FC__WRITE_FAIL_MS 10000

static int sq_health(fc_store *bs, char *why, size_t whylen)
{
    fc__sqlite_store *s = from_base(bs);
    sqlite3_stmt *st = s->r[FC__R_PING];
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        snprintf(why, whylen, "cannot read the database: %s", sqlite3_errmsg(s->rdb));
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return -1;
    int64_t failed = atomic_load(&s->core->write_failed_ms);
    int64_t ago = fc_time_now_ms() - failed;
    if (failed != 0 && ago < FC__WRITE_FAIL_MS) {
        snprintf(why, whylen, "the last write failed %.1f s ago (%s)", (double)ago / 1000,
                 atomic_load(&s->core->write_failed_full) ? "storage full" : "storage error");
        return -1;
    }
    return 0;
}

static void close_reader(fc__sqlite_store *s)
{
    for (int i = 0; i < FC__R_COUNT; i++) {
        sqlite3_finalize(s->r[i]);
        s->r[i] = NULL;
    }
    if (s->rdb && sqlite3_close(s->rdb) != SQLITE_OK)
        FC_ERROR(FC__SQLITE_TAG, "closing the read connection: %s", sqlite3_errmsg(s->rdb));
    s->rdb = NULL;
}

/* Opens the handle's read connection. 0 or FC_EIO with a reason in err. */
static int open_reader(fc__sqlite_store *s, char *err, size_t errlen)
{
    fc__sqlite_core *core = s->core;
    if (fc__sqlite_connect(core->path, 0, core->sync_full, &s->rdb, err, errlen) != 0)
        return FC_EIO;
    /* The read connection only reads; query_only turns a slip into an error. */
    if (sqlite3_exec(s->rdb, "PRAGMA query_only=1", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure the read connection: %s", sqlite3_errmsg(s->rdb));
        return FC_EIO;
    }
    for (int i = 0; i < FC__R_COUNT; i++)
        if (fc__sqlite_prepare(s->rdb, r_sql[i], &s->r[i], err, errlen) != 0) return FC_EIO;
    return 0;
}

/* Stops the threads, checkpoints and closes the write side, frees the core. */
static void core_free(fc__sqlite_core *s)
{
    fc__sqlite_checkpointer_stop(s);
    fc__sqlite_writer_stop(s);
    if (s->wdb) {
        /* Readers are gone: fold the whole WAL into the database and empty it, so
         * the next open starts without a recovery pass over a large WAL. */
        int rc = sqlite3_wal_checkpoint_v2(s->wdb, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        if (rc != SQLITE_OK)
            FC_WARN(FC__SQLITE_TAG, "final checkpoint failed: %s", sqlite3_errmsg(s->wdb));
        if (sqlite3_close(s->wdb) != SQLITE_OK)
            FC_ERROR(FC__SQLITE_TAG, "closing the write connection: %s", sqlite3_errmsg(s->wdb));
    }
    fc__fanout_destroy(&s->fo);
    fc_store_lock_release(s->lock); /* last: every write is done */
    free(s->path);
    free(s);
}

/* Releases what a detached handle holds: its read connection and its loop
 * handles (the struct is freed in their close callbacks). */
static void handle_release(fc__sqlite_store *s)
{
    close_reader(s);
    s->core = NULL;
    fc__fanout_release(&s->fh);
}

/* Finishes this handle's changes, detaches it and closes its read
 * connection; the last handle also closes the store. The handle's memory is
 * freed in its loop handles' close callbacks: the caller must run the loop
 * once more (e.g. uv_run(loop, UV_RUN_DEFAULT) or UV_RUN_NOWAIT) after close. */
static void sq_close(fc_store *bs)
{
    fc__sqlite_store *s = from_base(bs);
    fc__sqlite_core *core = s->core;
    int last = fc__fanout_detach(&s->fh);
    if (last < 0) return;
    handle_release(s);
    if (last) {
        core_free(core);
        FC_INFO(FC__SQLITE_TAG, "closed");
    }
}

static fc_store *sq_attach(fc_store *bs, uv_loop_t *loop, char *err, size_t errlen);

static const fc_store_ops fc_store_sqlite_ops = {
    .version = 7, /* log_head and log_since stay NULL: only this process writes */
    .name = "sqlite",
    .close = sq_close,
    .attach = sq_attach,
    .on_commit = fc__fanout_on_commit,
    .submit = fc__fanout_submit,
    .get = sq_get,
    .list = sq_list,
    .events_since = sq_events_since,
    .tombstone = sq_tombstone,
    .health = sq_health,
};

/* A new handle of core on loop, in a free slot. NULL with a reason in err. */
static fc__sqlite_store *handle_new(fc__sqlite_core *core, uv_loop_t *loop, char *err,
                                    size_t errlen)
{
    fc__sqlite_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->fh.base.ops = &fc_store_sqlite_ops;
    s->core = core;
    if (open_reader(s, err, errlen) != 0 ||
        fc__fanout_attach(&core->fo, &s->fh, loop, err, errlen) != 0) {
        handle_release(s);
        return NULL;
    }
    return s;
}

static fc_store *sq_attach(fc_store *bs, uv_loop_t *loop, char *err, size_t errlen)
{
    fc__sqlite_store *s = handle_new(from_base(bs)->core, loop, err, errlen);
    return s ? &s->fh.base : NULL;
}

/* The shared part: migrations, the writer, the checkpointer. NULL with a reason in err. */
static fc__sqlite_core *core_open(const fc_store_config *cfg, int *version, char *err,
                                  size_t errlen)
{
    fc__sqlite_core *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(cfg->path))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->sync_full = cfg->sync_full;
    s->retention = cfg->retention;
    s->idem_window_ms = cfg->idem_window_ms > 0 ? cfg->idem_window_ms : FC_IDEM_WINDOW_DEFAULT_MS;
    int fanout = 0;
    /* Before SQLite touches the file: a second server must not even recover its WAL. */
    if (!(s->lock = fc_store_lock_acquire(cfg->path, NULL, err, errlen))) goto fail;
    if (fc__sqlite_connect(cfg->path, 1, cfg->sync_full, &s->wdb, err, errlen) != 0) goto fail;
    if (fc__sqlite_check(s->wdb, cfg->check_seconds, err, errlen) != 0) goto fail;
    if (fc__sqlite_migrate(s->wdb, version, err, errlen) != 0) goto fail;
    if (fc__fanout_init(&s->fo) != 0) goto fail_sys;
    fanout = 1;
    if (fc__sqlite_writer_start(s, err, errlen) != 0) goto fail;
    if (fc__sqlite_checkpointer_start(s, err, errlen) != 0) goto fail;
    return s;

fail_sys:
    snprintf(err, errlen, "cannot set up store synchronisation");
fail:
    fc__sqlite_checkpointer_stop(s);
    fc__sqlite_writer_stop(s);
    if (s->wdb) sqlite3_close(s->wdb);
    if (fanout) fc__fanout_destroy(&s->fo);
    fc_store_lock_release(s->lock);
    free(s->path);
    free(s);
    return NULL;
}

fc_store *fc_store_sqlite_open(uv_loop_t *loop, const fc_store_config *cfg, char *err,
                               size_t errlen)
{
    int version = 0;
    if (!cfg || !cfg->path || !cfg->path[0]) {
        snprintf(err, errlen, "no database path");
        return NULL;
    }
    if (cfg->retention < 1) {
        snprintf(err, errlen, "retention must be at least 1 (got %d)", cfg->retention);
        return NULL;
    }
    if (!sqlite3_threadsafe()) {
        snprintf(err, errlen, "SQLite was built without thread support");
        return NULL;
    }
    fc__sqlite_core *core = core_open(cfg, &version, err, errlen);
    if (!core) return NULL;
    fc__sqlite_store *s = handle_new(core, loop, err, errlen);
    if (!s) {
        core_free(core);
        return NULL;
    }
    fc_log_field f[] = {FC_LOG_STR("path", cfg->path), FC_LOG_INT("schema", version),
                        FC_LOG_STR("synchronous", cfg->sync_full ? "FULL" : "NORMAL"),
                        FC_LOG_INT("retention", core->retention)};
    FC_LOGF(FC_LOG_INFO, FC__SQLITE_TAG, f, sizeof f / sizeof f[0],
            "opened %s (schema v%d, synchronous=%s, retention=%d)", cfg->path, version,
            cfg->sync_full ? "FULL" : "NORMAL", core->retention);
    return &s->fh.base;
}
