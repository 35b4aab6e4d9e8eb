/* Private to the PostgreSQL store backend: the handle, the shared core and
 * the helpers its files share.
 *
 * Shape (the same contract as the SQLite backend, see store.h):
 *   - one writer thread with its own connection in pipeline mode commits
 *     every queued change of every handle in one transaction per batch;
 *     each change is one call of the server-side function fc_apply (schema
 *     step 1), which locks the row, checks if_seq/terminal/idempotency and
 *     writes, and answers a refusal as a result row, so one refused change
 *     never aborts the others;
 *   - each handle (one per event loop) has its own read connection, used
 *     synchronously on the loop thread with a deadline (conn.c), so a dead
 *     server costs a read at most the timeout once, then FC_EUNAVAILABLE
 *     at once until the back-off lets it try again. */
#ifndef FC_STORE_PG_INTERNAL_H
#define FC_STORE_PG_INTERNAL_H

#include "store/fanout_internal.h"
#include "store/store.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define FC__PG_TAG "store.postgres"

/* A number macro as a string literal, for SQL text. */
#define FC__PG_STR_(x) #x
#define FC__PG_STR(x) FC__PG_STR_(x)

/* Changes per transaction at most: bounds a commit's size and the rows one
 * transaction id carries in the log (log_since returns one id's rows whole). */
#define FC__PG_BATCH_MAX 512

/* A workflow's events older than retention are deleted once every this many
 * changes (readers skip the few extra rows), as in the SQLite backend. */
#define FC__PG_TRIM_EVERY 64

/* Expired idempotency keys: at most this many deleted per second and node. */
#define FC__PG_IDEM_TRIM 256
#define FC__PG_IDEM_TRIM_EVERY_MS 1000

/* The commits table (schema step 2) keeps a transaction's row this long
 * (seconds); log_since leaves out heard transactions only from a position
 * it gave within half of it (log.c), later ones are read whole. */
#define FC__PG_COMMITS_KEEP_S 120
/* The keep time in use: FC__PG_COMMITS_KEEP_S (a test shortens it). */
extern int fc__pg_commits_keep_s;
/* Expired commits rows: at most this many deleted per second and node. */
#define FC__PG_COMMITS_TRIM 4096

/* A batch that failed with a deadlock or serialization failure (two nodes
 * locking the same keys in different orders) is run again this many times. */
#define FC__PG_RETRIES 5

/* Reconnect back-off after a failure: from MIN, doubling, up to MAX. */
#define FC__PG_BACKOFF_MIN_MS 100
#define FC__PG_BACKOFF_MAX_MS 2000

/* Read-side prepared statements (names "r0", "r1", ...). */
enum {
    FC__PG_R_GET,
    FC__PG_R_LIST,
    FC__PG_R_LIST_STATUS,
    FC__PG_R_EV_HEAD,
    FC__PG_R_TOMB,
    FC__PG_R_PING,
    FC__PG_R_LOG_HEAD,
    FC__PG_R_LOG_SINCE,
    FC__PG_R_LOG_XID,
    FC__PG_R_COMMITS,
    FC__PG_R_LOG_XIDS,
    FC__PG_R_COUNT
};

/* A connection that may be down: the connection, when it may try again, and
 * how long it waits after the next failure. One thread uses it. */
typedef struct fc__pg_link {
    PGconn *conn; /* NULL while down */
    int64_t retry_at_ms;
    int64_t backoff_ms;
    char why[160]; /* the last failure, for errors and health */
} fc__pg_link;

typedef struct fc__pg_store fc__pg_store;

/* What the handles share. Freed when the last handle closes. */
typedef struct fc__pg_core {
    char *conninfo; /* the URL as given */
    int retention;
    int64_t idem_window_ms;
    int timeout_ms;
    int commit_delay_us;

    /* Write side: the writer thread only. */
    fc__pg_link w;
    int64_t idem_trimmed_ms;
    int idem_trim_full; /* the last trim hit its limit: more may be waiting */
    pthread_t thread;
    int thread_started;

    /* The loops' changes to the writer and back (fanout.c). */
    fc__fanout fo;

    /* 1 while the server answers, 0 after a failure until a connection
     * works again: flipped by whoever sees the change first, which logs it. */
    atomic_int up;
    /* When the last batch failed (Unix ms; 0 after a commit): health. */
    atomic_llong write_failed_ms;
    /* Batches failed since the last commit (writer thread): the failure is
     * logged once per streak, the count when batches commit again, so an
     * outage under load is two lines, not one per batch. */
    long failed_batches;
} fc__pg_core;

/* One event loop's handle on the store. */
struct fc__pg_store {
    fc__fanout_handle fh; /* must stay first: fc_store * is cast back to this */
    fc__pg_core *core;

    /* Read side: the loop thread only. */
    fc__pg_link r;
    /* The last log position this handle gave (log_head, log_since's next)
     * and when (monotonic ns) a read from it, or from the positions before
     * it, last reached the end of the log (0: none since it moved back):
     * log.c. */
    int64_t log_next;
    uint64_t log_end_ns;
};

/* conn.c */

/* Connects to conninfo within timeout_ms (libpq's own connect_timeout has a
 * 2 s floor and blocks): keepalives on, statement_timeout and
 * tcp_user_timeout at timeout_ms. NULL with a reason in err. */
PGconn *fc__pg_connect(const char *conninfo, int timeout_ms, char *err, size_t errlen);
/* Sends what libpq buffered and waits for the next result of a query sent
 * in pipeline or asynchronous mode, until deadline_ms (Unix ms). The result
 * (caller clears; NULL between queries as PQgetResult), or NULL with
 * *failed = 1 and a reason in err when the connection broke or the time
 * ran out (the caller must then drop the connection). */
PGresult *fc__pg_result(PGconn *c, int64_t deadline_ms, int *failed, char *err, size_t errlen);
/* Runs one statement (prepared when name is set, else sql; sql without
 * params may hold several) with params and returns its (last) result within timeout_ms, or NULL with a reason in err
 * and *broken = 1 when the connection must be dropped (a plain SQL error
 * leaves it usable: *broken = 0). */
PGresult *fc__pg_exec(PGconn *c, const char *name, const char *sql, int n,
                      const char *const *params, int timeout_ms, int *broken, char *err,
                      size_t errlen);
/* Prepares sql as statement name on c within timeout_ms. 0 or FC_EIO with err. */
int fc__pg_prepare(PGconn *c, const char *name, const char *sql, int timeout_ms, char *err,
                   size_t errlen);
/* True when the result is an error a retry of the transaction may cure:
 * deadlock, serialization failure, unique violation. */
int fc__pg_retryable(const PGresult *r);
/* Marks link down after a failure (drops the connection, schedules the next
 * try) and flips core->up to 0, logging the change once. */
void fc__pg_link_down(fc__pg_core *core, fc__pg_link *l, const char *why);
/* The link's connection, connecting first when down (or when the server
 * sent something while it sat idle: a shutdown's FATAL) and the back-off
 * allows; NULL when down (l->why says why). prepare: called on a new
 * connection to prepare its statements (0 or FC_EIO with err). */
PGconn *fc__pg_link_get(fc__pg_core *core, fc__pg_link *l,
                        int (*prepare)(PGconn *c, void *arg, char *err, size_t errlen), void *arg);
void fc__pg_link_close(fc__pg_link *l);

/* schema.c */

/* Creates or migrates the schema on c under an advisory lock; *version gets
 * the version reached. 0 or FC_EIO with a reason in err. */
int fc__pg_migrate(PGconn *c, int *version, char *err, size_t errlen);
/* The schema version this build produces. */
int fc__pg_schema_latest(void);

/* writer.c */

/* Starts the writer thread (it connects on its own). 0 or FC_EIO. */
int fc__pg_writer_start(fc__pg_core *s, char *err, size_t errlen);
/* Lets the writer commit everything queued, then joins it. */
void fc__pg_writer_stop(fc__pg_core *s);

/* log.c (loop thread, on the handle's read connection) */

int fc__pg_log_head(fc_store *s, int64_t *position);
int fc__pg_log_since(fc_store *s, int64_t after, int limit, fc_store_heard_fn heard,
                     fc_store_log_fn fn, void *ud,
                     int64_t *next);

/* store_pg.c */

/* The handle's read connection, or NULL (down: FC_EUNAVAILABLE). */
PGconn *fc__pg_reader(fc__pg_store *s);
/* After a failed read: drops the connection if it broke. FC_EUNAVAILABLE
 * when it did, else FC_EIO (a plain SQL error), logged. */
int fc__pg_read_failed(fc__pg_store *s, int broken, const char *what, const char *err);
/* Fills w from a row of the read columns (id, name, status, current_step,
 * total_steps, message, seq, created_at, updated_at, epoch) starting at
 * column at; strings point into r. FC_EIO on a bad status. */
int fc__pg_read_row(const PGresult *r, int row, int at, fc_workflow *w);
int64_t fc__pg_int(const PGresult *r, int row, int col);

#endif
