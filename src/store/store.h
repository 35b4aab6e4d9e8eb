/* The store interface: every backend (SQLite today, PostgreSQL later) is a
 * const fc_store_ops table behind an fc_store. The hub and the API use only
 * this header.
 *
 * Threading: a handle belongs to one event loop and every function on it is
 * called on that loop's thread. Reads are synchronous (they must be fast
 * point or range lookups). Changes are asynchronous: fc_store_submit()
 * queues a change; the backend commits changes that arrive together in one
 * transaction (group commit) on its own thread, and calls each change's
 * done() callback on the loop thread, on a later loop turn, in submission
 * order, after the commit is durable.
 *
 * Several loops share one store through handles (fc_store_attach), one per
 * loop. Every handle hears of every change committed through any of them,
 * in commit order, through its commit callback: that is how each loop
 * publishes every change to its own subscribers in the same order.
 *
 * Idempotency: a change may carry a key (fc_change.idem_key). The backend
 * stores the key with the change's outcome in the change's own transaction,
 * and checks for an earlier use of the key inside that same transaction, so
 * of any number of concurrent submissions of one key exactly one is applied:
 * a later one with the same fingerprint gets the stored outcome back
 * (replayed = 1, nothing committed, nothing reported to on_commit), one with
 * another fingerprint fails with FC_EKEYREUSED. A key is remembered for the
 * window of fc_store_config; an older one counts as never used. */
#ifndef FC_STORE_STORE_H
#define FC_STORE_STORE_H

#include "model/workflow.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Idempotency keys: 1..FC_IDEM_KEY_MAX visible ASCII characters. */
#define FC_IDEM_KEY_MAX 128
/* The fingerprint of the request a key was first used with (a SHA-256). */
#define FC_IDEM_FP_LEN 32
/* How long a key is remembered when fc_store_config leaves it at 0: 24 h. */
#define FC_IDEM_WINDOW_DEFAULT_MS (24 * 3600 * 1000LL)

typedef enum { FC_CHANGE_CREATE, FC_CHANGE_UPDATE, FC_CHANGE_DELETE } fc_change_kind;

/* One change request. The caller allocates it, fills the input fields and
 * keeps it alive until done() runs; done() may free it.
 *   CREATE: input `wf` (id, name, status, current_step, total_steps, message;
 *           epoch, seq and times are set by the store). Output `wf` = stored
 *           state, seq 1, with the new incarnation's epoch.
 *   UPDATE: input `wf.id` and `patch`. Output `wf` = state after the change.
 *   DELETE: input `wf.id`. Output `wf` = the state just before deletion; the
 *           deletion itself is change seq + 1 of that epoch, and the store
 *           keeps it as the id's tombstone.
 * result is 0 or FC_ENOTFOUND, FC_EEXISTS, FC_ESEQ, FC_ETERMINAL,
 * FC_EINVAL (current_step > total_steps after the patch), FC_EFULL (the
 * disk is full; reads go on working), FC_EKEYREUSED, FC_EIO; errmsg then
 * holds a human-readable reason.
 *   Optional input idem_key ("" = none) with idem_fp, the fingerprint of the
 * request (opaque to the store; equal fingerprints mean the same request).
 * When the key was used within the window with the same fingerprint, the
 * change is not applied: result, errmsg and wf are the first outcome's and
 * replayed is 1. The outcomes remembered are the ones that depend only on
 * the request and the stored data (0, FC_ENOTFOUND, FC_EEXISTS, FC_ESEQ,
 * FC_ETERMINAL, FC_EINVAL); after any other failure the key stays unused. */
typedef struct fc_change {
    fc_change_kind kind;
    fc_workflow wf;
    fc_patch patch;
    int result;
    char errmsg[160];
    uint64_t submit_ns; /* set by fc_store_submit: monotonic time of the submission */
    uint64_t commit_ns; /* monotonic time of the commit; 0 until the writer took it */
    /* Output, backends with a commit log: the committing transaction's id
     * (a log position, see log_since) and how many changes it committed;
     * 0 and 0 otherwise. */
    int64_t txid;
    uint32_t txn_changes;
    char idem_key[FC_IDEM_KEY_MAX + 1];
    unsigned char idem_fp[FC_IDEM_FP_LEN];
    int replayed; /* output: the outcome of the key's first use, nothing applied */
    void (*done)(struct fc_change *c);
    void *data;
    uint32_t ticket;        /* the caller's (e.g. the HTTP request to answer) */
    struct fc_change *next; /* backend-private queue link */
    void *origin;           /* backend-private: the handle it was submitted on */
} fc_change;

/* Frees the strings inside c (wf and patch), not c itself. */
void fc_change_clear(fc_change *c);

typedef struct fc_list_query {
    int has_status;
    fc_status status;
    int limit;          /* 1..1000 */
    const char *cursor; /* NULL for the first page; else a next_cursor from before */
} fc_list_query;

/* Called once per row; the row is only valid during the call. Return 0 to go on. */
typedef int (*fc_store_row_cb)(const fc_workflow *w, void *ud);

typedef struct fc_store fc_store;

/* Where a committed change sits: when, and in which transaction. */
typedef struct fc_store_commit {
    uint64_t commit_ns; /* monotonic time of the commit */
    /* Backends with a commit log (fc_store_has_log): the transaction's id,
     * as log_since's heard predicate names it (> 0), and how many changes
     * it committed (>= 1); 0 and 0 otherwise. */
    int64_t txid;
    uint32_t txn_changes;
} fc_store_commit;

/* A committed change as every handle hears of it: the state after it (for a
 * deletion, the state just before), its commit, and whether it deleted the
 * workflow. state and commit are only valid during the call. */
typedef void (*fc_store_commit_fn)(void *ud, const fc_workflow *state,
                                   const fc_store_commit *commit, int deleted);

/* The last deletion of an id: its incarnation, the seq the deletion took
 * (the deleted state's seq + 1) and when it was committed (Unix ms). A
 * tombstone with epoch 0 means "the id's past is unknown" (it existed before
 * the store kept tombstones): no position of it can be proven continuous. */
typedef struct fc_tombstone {
    int64_t epoch;
    int64_t seq;
    int64_t deleted_at_ms;
} fc_tombstone;

typedef struct fc_store_config {
    /* A database file (SQLite), or a postgres:// / postgresql:// URL (PostgreSQL). */
    const char *path;
    int sync_full;    /* 1: survive power loss (synchronous=FULL); 0: survive process crash */
    int retention;    /* events kept per workflow (>= 1) */
    /* Seconds the integrity check at open may take (SQLite: PRAGMA
     * quick_check); past it the rest is skipped with a warning. 0: no check.
     * A failed check fails the open. */
    double check_seconds;
    /* Idempotency keys are remembered this long; 0: FC_IDEM_WINDOW_DEFAULT_MS. */
    int64_t idem_window_ms;
    /* PostgreSQL: seconds a connect, a read or a batch commit may take before
     * the store counts the server as unreachable; 0: 2 s. SQLite ignores it. */
    double timeout_s;
    /* PostgreSQL: after committing a batch of two or more changes, the
     * writer waits up to this long (microseconds) for as many changes as
     * that batch held before it takes the next (group commit: a third of a
     * transaction's PostgreSQL CPU is fixed, whatever its size); a batch of
     * one never makes the next wait. 0: never. SQLite ignores it. */
    int commit_delay_us;
} fc_store_config;

/* A committed change as the commit-ordered log gives it back: like
 * fc_store_commit_fn (state after the change; for a deletion the state just
 * before, deleted = 1), with its transaction's id. state is only valid
 * during the call; 0 goes on. */
typedef int (*fc_store_log_fn)(void *ud, const fc_workflow *state, int deleted, int64_t txid);
/* Whether log_since may leave out the rows of transaction txid: 1 when
 * the caller already has every change it committed. */
typedef int (*fc_store_heard_fn)(void *ud, int64_t txid);

typedef struct fc_store_ops {
    /* 7: transaction ids (fc_store_commit, log_since's heard); 6:
     * log_head/log_since; 5: health; 4: changes carry idempotency keys
     * (3: epochs and tombstones) */
    int version;
    const char *name;
    /* Finishes the handle's queued changes (their done() runs inside close)
     * and frees the handle; the last handle's close also stops the writer,
     * checkpoints and frees the store. Never calls the handle's commit
     * callback: its consumer may be closed already. What close finishes is
     * told to the other handles as usual, not to this one. */
    void (*close)(fc_store *s);
    /* A new handle on the same store for another loop; it hears of changes
     * committed after it was attached. NULL with a reason in err. */
    fc_store *(*attach)(fc_store *s, uv_loop_t *loop, char *err, size_t errlen);
    /* Sets the handle's commit callback (NULL: none). It runs on the handle's
     * loop once for every change committed through any handle, in commit
     * order; for the handle's own changes, before their done(); never from
     * inside close (see there). */
    void (*on_commit)(fc_store *s, fc_store_commit_fn fn, void *ud);
    /* Queues a change (see fc_change). Never calls done() from inside. */
    void (*submit)(fc_store *s, fc_change *c);
    /* Reads one workflow into out (caller clears it), its epoch included.
     * 0, FC_ENOTFOUND or FC_EIO. */
    int (*get)(fc_store *s, const char *id, fc_workflow *out);
    /* Lists workflows newest first. next_cursor gets "" when there is no next page. */
    int (*list)(fc_store *s, const fc_list_query *q, fc_store_row_cb cb, void *ud,
                char *next_cursor, size_t cursor_len);
    /* Calls cb for each logged change of id with seq > since, oldest first, at
     * most limit rows (limit <= 0: all). Each row is the workflow state after
     * that change (name and created_at may be empty/0), with the epoch of
     * the current incarnation (the log only ever holds that one's changes).
     * *oldest gets the lowest seq still in the log (0 when the log is empty).
     * 0, FC_ENOTFOUND (no such workflow) or FC_EIO. */
    int (*events_since)(fc_store *s, const char *id, int64_t since, int limit, fc_store_row_cb cb,
                        void *ud, int64_t *oldest);
    /* Reads the tombstone of id into out: 0, FC_ENOTFOUND (never deleted in
     * this database, as far as it knows) or FC_EIO. */
    int (*tombstone)(fc_store *s, const char *id, fc_tombstone *out);
    /* Since version 5; may be NULL (the store is taken as healthy). Whether
     * the store can serve right now: it answers a trivial read, and its
     * writes are not failing. 0, or -1 with a reason in why. Loop thread. */
    int (*health)(fc_store *s, char *why, size_t whylen);
    /* Since v6; NULL for backends only one process writes (SQLite).
     * log_head: the current log position (an opaque, non-decreasing int64; 0 = start).
     * log_since: calls fn for every change committed after position `after` was read,
     *   oldest first as far as the backend can tell, AT LEAST once (repeats allowed: the feed
     *   drops them by (epoch, seq)), at most `limit` rows, and sets *next to pass next time.
     *   It may give only the latest state of a workflow that changed several times (the feed
     *   fills gaps from events_since). Returns 0 or FC_EIO. Loop thread, synchronous.
     *   heard (may be NULL; v7) is asked once per transaction of the window: 1 leaves that
     *   transaction's rows out (the caller had them from elsewhere, the cluster bus), so a
     *   read costs rows only for what was not heard. The backend may ignore it and give
     *   every row (e.g. when it no longer knows the window's transactions). */
    int (*log_head)(fc_store *s, int64_t *position);
    int (*log_since)(fc_store *s, int64_t after, int limit, fc_store_heard_fn heard,
                     fc_store_log_fn fn, void *ud, int64_t *next);
} fc_store_ops;

/* Every backend's handle starts with this. */
struct fc_store {
    const fc_store_ops *ops;
};

static inline void fc_store_close(fc_store *s)
{
    s->ops->close(s);
}
static inline fc_store *fc_store_attach(fc_store *s, uv_loop_t *loop, char *err, size_t errlen)
{
    return s->ops->attach(s, loop, err, errlen);
}
static inline void fc_store_on_commit(fc_store *s, fc_store_commit_fn fn, void *ud)
{
    s->ops->on_commit(s, fn, ud);
}
static inline void fc_store_submit(fc_store *s, fc_change *c)
{
    s->ops->submit(s, c);
}
static inline int fc_store_get(fc_store *s, const char *id, fc_workflow *out)
{
    return s->ops->get(s, id, out);
}
static inline int fc_store_list(fc_store *s, const fc_list_query *q, fc_store_row_cb cb, void *ud,
                                char *next_cursor, size_t cursor_len)
{
    return s->ops->list(s, q, cb, ud, next_cursor, cursor_len);
}
static inline int fc_store_events_since(fc_store *s, const char *id, int64_t since, int limit,
                                        fc_store_row_cb cb, void *ud, int64_t *oldest)
{
    return s->ops->events_since(s, id, since, limit, cb, ud, oldest);
}

static inline int fc_store_tombstone(fc_store *s, const char *id, fc_tombstone *out)
{
    return s->ops->tombstone(s, id, out);
}

static inline int fc_store_health(fc_store *s, char *why, size_t whylen)
{
    return s->ops->version >= 5 && s->ops->health ? s->ops->health(s, why, whylen) : 0;
}

/* Callers check fc_store_has_log first. */
static inline int fc_store_log_head(fc_store *s, int64_t *position)
{
    return s->ops->log_head(s, position);
}
static inline int fc_store_log_since(fc_store *s, int64_t after, int limit,
                                     fc_store_heard_fn heard, fc_store_log_fn fn, void *ud,
                                     int64_t *next)
{
    return s->ops->log_since(s, after, limit, heard, fn, ud, next);
}

/* Whether the store has a commit-ordered log other processes write to
 * (log_head/log_since): PostgreSQL, not SQLite. */
static inline int fc_store_has_log(const fc_store *s)
{
    return s->ops->version >= 6 && s->ops->log_head && s->ops->log_since;
}

/* Opens the store cfg->path names: a postgres:// or postgresql:// URL opens
 * PostgreSQL (fc_store_pg_open), anything else is a SQLite file
 * (fc_store_sqlite_open). The one place the backend is chosen. */
fc_store *fc_store_open(uv_loop_t *loop, const fc_store_config *cfg, char *err, size_t errlen);
/* True when path is a PostgreSQL URL (postgres:// or postgresql://). */
int fc_store_is_postgres(const char *path);
/* 0 when fc_store_open can take path: a PostgreSQL URL, or a SQLite file
 * path without "://". Else -1 and why (truncated to len): a URL of another
 * scheme (POSTGRES://, mysql://) would open as a SQLite file of that name.
 * why names the scheme only, never the rest (it may hold a password). */
int fc_store_path_check(const char *path, char *why, size_t len);

/* Opens the PostgreSQL store at the URL cfg->path, creating or migrating its
 * schema (under an advisory lock, so several nodes may start at once).
 * NULL with a reason in err when the server cannot be reached or the schema
 * is newer than this build's. */
fc_store *fc_store_pg_open(uv_loop_t *loop, const fc_store_config *cfg, char *err,
                           size_t errlen);

/* The lock that gives one process a SQLite database file: an flock on the
 * sidecar "<path>.lock", held until released or the process ends. The server
 * takes it in fc_store_sqlite_open; offline tools working on the file take it
 * the same way, so they never run beside a server. NULL with a reason in err
 * and *code (if not NULL) FC_EBUSY when another process holds it, FC_EIO or
 * FC_ENOMEM otherwise. */
typedef struct fc_store_lock fc_store_lock;
fc_store_lock *fc_store_lock_acquire(const char *db_path, int *code, char *err, size_t errlen);
/* Releases the lock (removes the lock file) and frees l; NULL is fine. */
void fc_store_lock_release(fc_store_lock *l);

/* Opens (creating and migrating) the SQLite store; done() callbacks run on loop.
 * Takes the database lock (fc_store_lock_acquire) for as long as the store is
 * open, and checks the file's integrity (cfg->check_seconds) before using it.
 * Returns NULL and writes a reason into err on failure. */
fc_store *fc_store_sqlite_open(uv_loop_t *loop, const fc_store_config *cfg, char *err,
                               size_t errlen);

/* Gives every workflow of the SQLite database at path a new epoch, so that
 * no position a client holds from before counts as continuous (after a
 * backup was restored, or the file replaced): offline, refused while a
 * server has the file open. *rotated gets the number of workflows.
 * 0 or FC_EIO with a reason in err. */
int fc_store_sqlite_rotate_epochs(const char *path, int64_t *rotated, char *err, size_t errlen);

#endif
