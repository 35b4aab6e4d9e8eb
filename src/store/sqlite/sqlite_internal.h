/* Private to the SQLite store backend: the handle and the helpers its files share. */
#ifndef FC_STORE_SQLITE_INTERNAL_H
#define FC_STORE_SQLITE_INTERNAL_H

#include "common/list.h"
#include "common/map.h"
#include "store/fanout_internal.h"
#include "store/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stddef.h>
#include <uv.h>

#define FC__SQLITE_TAG "store.sqlite"

/* The writer deletes events that fell out of retention once every this many
 * changes of a workflow; the log holds up to this many more rows than
 * retention, which readers skip. */
#define FC__SQLITE_TRIM_EVERY 64

/* Memory for the workflow states the writer keeps: about 200 bytes each
 * with short names and messages (40,000 workflows), 4.5 KB at the most. */
#define FC__SQLITE_CACHE_BYTES (8u << 20)

/* Expired idempotency keys are deleted at most once a second, at most this
 * many (plus two per keyed change of the batch) in one commit, so trimming
 * a day's backlog never makes one commit slow; a full trim runs again at
 * the next commit until it catches up. */
#define FC__SQLITE_IDEM_TRIM 256
#define FC__SQLITE_IDEM_TRIM_EVERY_MS 1000

/* Writer-side prepared statements, indexes into fc__sqlite_store.w. */
enum {
    FC__W_BEGIN,
    FC__W_DATA_VERSION,
    FC__W_COMMIT,
    FC__W_ROLLBACK,
    FC__W_SELECT,
    FC__W_INSERT,
    FC__W_UPDATE_STATUS,
    FC__W_DELETE,
    FC__W_EV_INSERT,
    FC__W_EV_TRIM,
    FC__W_EV_DELETE,
    FC__W_TOMB_GET,
    FC__W_TOMB_PUT,
    FC__W_IDEM_SELECT,
    FC__W_IDEM_PUT,
    FC__W_IDEM_TRIM,
    FC__W_COUNT
};

/* Read-side prepared statements, indexes into fc__sqlite_store.r. */
enum {
    FC__R_BEGIN,
    FC__R_COMMIT,
    FC__R_GET,
    FC__R_LIST,
    FC__R_LIST_STATUS,
    FC__R_EV_HEAD,
    FC__R_EVENTS,
    FC__R_TOMB,
    FC__R_PING,
    FC__R_COUNT
};

/* The writer's cache of current states (wcache.c): writer thread only. */
typedef struct fc__wc_entry fc__wc_entry;
typedef struct fc__wcache {
    fc_map map;
    fc_list lru;   /* least recently used first */
    size_t bytes;  /* what the entries take, their strings included */
    size_t budget; /* bytes kept at most */
} fc__wcache;

/* What the handles share: the writer, its connection and queue, the
 * checkpointer. Freed when the last handle closes. */
typedef struct fc__sqlite_core {
    char *path;
    int sync_full;
    int retention;
    fc_store_lock *lock; /* this process's hold on the file, for the core's life */
    int64_t idem_window_ms;

    /* Write side: used only by the writer thread, and by the last close after the join. */
    sqlite3 *wdb;
    sqlite3_stmt *w[FC__W_COUNT];
    fc__wcache wc;
    int64_t data_version; /* PRAGMA data_version when wc was last known good */
    int full;             /* a write of the current batch failed with SQLITE_FULL */
    /* When expired idempotency keys were last trimmed, and whether that
     * trim hit its limit (more may be waiting). */
    int64_t idem_trimmed_ms;
    int idem_trim_full;
    pthread_t thread;
    int thread_started;

    /* The loops' changes to the writer and back (fanout.c). */
    fc__fanout fo;

    /* Background checkpoints (checkpoint.c): their own connection and thread,
     * so a commit never waits for WAL pages to be copied back and fsynced. */
    sqlite3 *cdb;
    pthread_t cthread;
    int cthread_started;
    pthread_mutex_t clock;
    pthread_cond_t ccond;
    int cstop;
    atomic_int wal_frames; /* frames in the WAL after the last commit (writer → checkpointer) */
    /* When the last batch failed (Unix ms; 0 after a commit) and whether it
     * was for want of space: writer → health checks on the loops. */
    atomic_llong write_failed_ms;
    atomic_int write_failed_full;
} fc__sqlite_core;

/* One event loop's handle on the store. */
typedef struct fc__sqlite_store {
    fc__fanout_handle fh; /* must stay first: fc_store * is cast back to this */
    fc__sqlite_core *core;

    /* Read side: used only on the loop thread. */
    sqlite3 *rdb;
    sqlite3_stmt *r[FC__R_COUNT];
} fc__sqlite_store;

/* schema.c */

/* Opens one connection with the server's pragmas (WAL, synchronous, busy_timeout).
 * create: allow creating the file. Returns 0 or FC_EIO with a reason in err. */
int fc__sqlite_connect(const char *path, int create, int sync_full, sqlite3 **out, char *err,
                       size_t errlen);
/* Brings the schema up to date, one transaction per missing step, and stores the
 * resulting version in *version. Returns 0 or FC_EIO with a reason in err. */
int fc__sqlite_migrate(sqlite3 *db, int *version, char *err, size_t errlen);
/* Runs PRAGMA quick_check for at most seconds (0: not at all). 0 when the
 * file is sound or the time ran out (logged), FC_EIO with the first problem
 * in err when it is corrupt. */
int fc__sqlite_check(sqlite3 *db, double seconds, char *err, size_t errlen);
/* Number of migration steps this build knows (the schema version it produces). */
int fc__sqlite_schema_latest(void);
/* Prepares a statement that lives as long as the connection. 0 or FC_EIO. */
int fc__sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out, char *err, size_t errlen);

/* wcache.c */

/* 0 or FC_ENOMEM. budget: bytes kept at most. */
int fc__wcache_init(fc__wcache *wc, size_t budget);
void fc__wcache_destroy(fc__wcache *wc);
/* Copies the cached state of id into out (freeing what out held) and its pk
 * into *pk. 0, FC_ENOTFOUND (not cached) or FC_ENOMEM. */
int fc__wcache_get(fc__wcache *wc, const char *id, int64_t *pk, fc_workflow *out);
/* Caches a copy of w (replacing an older state), evicting the least recently
 * used entries past the budget. 0 or FC_ENOMEM (then nothing is cached for w->id). */
int fc__wcache_put(fc__wcache *wc, int64_t pk, const fc_workflow *w);
void fc__wcache_drop(fc__wcache *wc, const char *id);
/* Forgets everything: after a rollback the cached states may be ahead of the database. */
void fc__wcache_clear(fc__wcache *wc);

/* idempotency.c (writer thread, inside the batch's transaction) */

enum { FC__IDEM_NEW = 0, FC__IDEM_ANSWERED = 1 };
/* Looks c's key up (c->idem_key must be set). FC__IDEM_NEW: unused or
 * expired, apply c. FC__IDEM_ANSWERED: c->result (and for a replay
 * c->replayed, c->errmsg and c->wf) is set, do not apply c. FC_EIO with
 * SQLite's reason in ioerr. */
int fc__idem_check(fc__sqlite_core *s, fc_change *c, int64_t now, char *ioerr, size_t n);
/* Stores c's key with its outcome when it has a key and an outcome worth
 * repeating (see fc_change). 0 or FC_EIO. */
int fc__idem_record(fc__sqlite_core *s, const fc_change *c, int64_t now, char *ioerr, size_t n);
/* Deletes expired keys when due, at most FC__SQLITE_IDEM_TRIM + 2 * keyed. 0 or FC_EIO. */
int fc__idem_trim(fc__sqlite_core *s, int64_t now, int keyed, char *ioerr, size_t n);

/* writer.c */

/* True when rc (from a statement on db) means the disk is full: SQLITE_FULL,
 * or a write error from ENOSPC, EFBIG (file-size limit) or EDQUOT. */
int fc__sqlite_is_full(sqlite3 *db, int rc);
/* Steps a write statement of the writer to completion and resets it; on
 * failure SQLite's reason goes to ioerr and a full disk marks the batch
 * (s->full). 0 or FC_EIO. */
int fc__sqlite_run(fc__sqlite_core *s, sqlite3_stmt *st, char *ioerr, size_t n);

/* A new epoch for id: random in [1, FC_EPOCH_MAX], never `avoid` (the id's
 * tombstone or its current epoch, 0 for none). Thread-safe. */
int64_t fc__sqlite_new_epoch(int64_t avoid);

/* Starts a store thread named name (up to 15 characters) with every signal
 * blocked. pthread_create's result. */
int fc__sqlite_thread_start(pthread_t *t, const char *name, void *(*fn)(void *), void *arg);
/* Prepares the writer's statements on s->wdb and starts the writer thread. */
int fc__sqlite_writer_start(fc__sqlite_core *s, char *err, size_t errlen);
int fc__sqlite_checkpointer_start(fc__sqlite_core *s, char *err, size_t errlen);
void fc__sqlite_checkpointer_stop(fc__sqlite_core *s);
/* Lets the writer commit everything queued, joins it and finalizes its statements. */
void fc__sqlite_writer_stop(fc__sqlite_core *s);

#endif
