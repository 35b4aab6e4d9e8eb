/* PostgreSQL store: the commit-ordered log (store interface v6).
 *
 * Every event row (one per change still in the log) and every tombstone
 * records `xid`, the 64-bit id (pg_current_xact_id) of the transaction
 * that wrote it. A position is an xid: log_since(after) returns the rows
 * with xid >= after and says to come back with next = the xmin of a
 * snapshot taken BEFORE the rows were read
 * (pg_snapshot_xmin(pg_current_snapshot()), the oldest transaction still
 * running then). Why no change is ever skipped:
 *   - xids are handed out when a transaction first writes, not when it
 *     commits, so a transaction with a small xid may commit after one with
 *     a larger xid was already read. Such a transaction was running when
 *     the snapshot was taken, so its xid >= that xmin = next: the next read
 *     covers it;
 *   - every transaction with xid < xmin had ended before the snapshot, so
 *     its rows were visible to the read that followed: nothing below next
 *     is left unread.
 * A change trimmed by retention or deleted with its workflow before it was
 * read is not given; the feed fills what it misses from events_since (and
 * a deletion is in the log as its tombstone). Rows at or above next are
 * read again next time (repeats are allowed, the feed drops them by
 * (epoch, seq)). With a limit, next stops at the last row's xid, so the
 * rows of that transaction not given yet are read next time; when a whole
 * page is one transaction's rows, that transaction's rows are given whole
 * (at most FC__PG_BATCH_MAX: a writer never commits more changes in one
 * transaction) and next moves past it, unless fn stopped in it.
 *
 * With a heard predicate (the cluster's catch-up, whose bus brought most
 * changes already) a read first asks the commits table (schema step 2: a
 * row per transaction that wrote the log, written by triggers) which
 * transactions committed from `after` on, one row per batch, and reads the
 * rows of only those heard() does not vouch for: with the bus up, a read
 * costs a row per transaction instead of one per change and node. The
 * xmin argument above holds unchanged, the commits rows being written in
 * the transactions they name. The table keeps a row FC__PG_COMMITS_KEEP_S
 * (writer.c trims it), so it is asked only from a position this handle
 * gave, and only while its last read that reached the end of the log
 * (xmin: every transaction committed before it was looked at then; later
 * ones wrote their rows since) is less than half of that ago. A position
 * the store gives is not enough: pages of a log that grows faster than
 * they are read, or a transaction left open anywhere in the database
 * (xmin, so the position, stays at it while full pages pass over later
 * ones), keep giving positions whose transactions committed long ago,
 * their rows trimmed before they were looked at. Any other read (the
 * first after the store was down for a minute, a position the caller
 * moved back, a minute of full pages) reads every row until one reaches
 * the end. */
#include "store/postgres/pg_internal.h"

#include "common/error.h"
#include "common/time.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Gives the rows of r from the log columns (xid, deleted, WF columns) to
 * fn; *last gets the last row's xid. 0, FC_EIO, or 1 when fn stopped. */
static int give(const PGresult *r, fc_store_log_fn fn, void *ud, int64_t *last)
{
    for (int i = 0; i < PQntuples(r); i++) {
        fc_workflow w;
        if (fc__pg_read_row(r, i, 2, &w) != 0) return FC_EIO;
        *last = fc__pg_int(r, i, 0);
        if (fn(ud, &w, PQgetvalue(r, i, 1)[0] == '1', *last) != 0) return 1;
    }
    return 0;
}

static PGresult *query(fc__pg_store *s, int idx, int n, const char *const *params, int *rc)
{
    char name[8], err[200];
    int broken;
    snprintf(name, sizeof name, "r%d", idx);
    PGconn *c = fc__pg_reader(s);
    *rc = FC_EIO;
    if (!c) return NULL;
    PGresult *r = fc__pg_exec(c, name, NULL, n, params, s->core->timeout_ms, &broken, err,
                              sizeof err);
    if (!r) fc__pg_read_failed(s, broken, "log_since", err);
    else *rc = 0;
    return r;
}

static int pos_read(fc__pg_store *s, int64_t *position)
{
    int rc;
    PGresult *r = query(s, FC__PG_R_LOG_HEAD, 0, NULL, &rc);
    if (!r) return rc;
    *position = fc__pg_int(r, 0, 0);
    PQclear(r);
    return 0;
}

int fc__pg_commits_keep_s = FC__PG_COMMITS_KEEP_S;

/* The position given, and whether it is the end of the log (see above). */
static void remember(fc__pg_store *s, int64_t next, int at_end)
{
    s->log_next = next;
    if (at_end) s->log_end_ns = fc_time_mono_ns();
}

/* Whether the commits table still holds every transaction from after on
 * that was not looked at already. */
static int window_known(const fc__pg_store *s, int64_t after)
{
    return after == s->log_next && s->log_end_ns != 0 &&
           fc_time_mono_ns() - s->log_end_ns < (uint64_t)fc__pg_commits_keep_s * 1000000000ull / 2;
}

int fc__pg_log_head(fc_store *bs, int64_t *position)
{
    fc__pg_store *s = (fc__pg_store *)(void *)bs;
    int rc = pos_read(s, position);
    if (rc == 0) remember(s, *position, 1); /* what committed before: in the store */
    return rc;
}

static int64_t lower(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Gives every row of transaction xid (a page of the log held nothing but
 * some of its rows): 0, FC_EIO, or 1 when fn stopped. */
static int give_whole(fc__pg_store *s, int64_t xid, fc_store_log_fn fn, void *ud)
{
    char x[24];
    snprintf(x, sizeof x, "%" PRId64, xid);
    const char *params[1] = {x};
    int rc;
    PGresult *r = query(s, FC__PG_R_LOG_XID, 1, params, &rc);
    if (!r) return rc;
    int64_t last;
    int g = give(r, fn, ud, &last);
    PQclear(r);
    return g;
}

/* Gives the rows r holds (a page of at most limit rows from `from` on, in
 * xid order) and sets *next, or leaves it when FC_EIO. when_short: *next
 * when the page was not full; then AT_END, else 0. */
#define AT_END 2
static int give_page(fc__pg_store *s, PGresult *r, int limit, int64_t from, int64_t xmin,
                     int64_t when_short, fc_store_log_fn fn, void *ud, int64_t *next)
{
    int64_t last = from;
    int full = PQntuples(r) >= limit;
    int g = give(r, fn, ud, &last);
    PQclear(r);
    if (g == FC_EIO) return FC_EIO;
    if (g == 1) { /* fn stopped: come back to the last row's transaction */
        *next = lower(last, xmin);
    } else if (!full) {
        *next = when_short;
        return AT_END;
    } else if (last > from) { /* the last transaction may be cut: again next time */
        *next = lower(last, xmin);
    } else {
        /* A whole page of transaction `from`: give it whole, then move on.
         * Its rows are visible, so it has committed and xmin > from. */
        g = give_whole(s, from, fn, ud);
        if (g == FC_EIO) return FC_EIO;
        *next = g == 1 ? from : lower(from + 1, xmin);
    }
    return 0;
}

/* Query idx (LOG_SINCE or COMMITS) from position after, at most limit rows. */
static PGresult *query_from(fc__pg_store *s, int idx, int64_t after, int limit, int *rc)
{
    char a[24], l[16];
    snprintf(a, sizeof a, "%" PRId64, after);
    snprintf(l, sizeof l, "%d", limit);
    const char *params[2] = {a, l};
    return query(s, idx, 2, params, rc);
}

static int read_all(fc__pg_store *s, int64_t after, int limit, int64_t xmin, fc_store_log_fn fn,
                    void *ud, int64_t *next)
{
    int rc;
    PGresult *r = query_from(s, FC__PG_R_LOG_SINCE, after, limit, &rc);
    if (!r) return rc;
    return give_page(s, r, limit, after, xmin, xmin, fn, ud, next);
}

/* The transactions from after on (at most limit) heard() does not vouch
 * for, as an array literal in *list (caller frees), their count in
 * *unheard and the first in *first; *when_short: where the next read
 * starts if these transactions' rows fit in a page. 0 or an error. */
static int unheard_of(fc__pg_store *s, int64_t after, int limit, int64_t xmin,
                      fc_store_heard_fn heard, void *ud, char **list, int *unheard,
                      int64_t *first, int64_t *when_short, int *more)
{
    int rc;
    PGresult *r = query_from(s, FC__PG_R_COMMITS, after, limit, &rc);
    if (!r) return rc;
    int n = PQntuples(r);
    char *p = malloc((size_t)n * 21 + 3);
    if (!p) {
        PQclear(r);
        return FC_ENOMEM;
    }
    size_t len = 0;
    int64_t last = after;
    *unheard = 0;
    p[len++] = '{';
    for (int i = 0; i < n; i++) {
        last = fc__pg_int(r, i, 0);
        if (heard(ud, last)) continue;
        if ((*unheard)++ == 0) *first = last;
        else p[len++] = ',';
        len += (size_t)sprintf(p + len, "%" PRId64, last);
    }
    p[len++] = '}';
    p[len] = '\0';
    PQclear(r);
    /* A full page of transactions: more may follow the last. */
    *more = n >= limit;
    *when_short = *more ? lower(last + 1, xmin) : xmin;
    *list = p;
    return 0;
}

static int read_unheard(fc__pg_store *s, int64_t after, int limit, int64_t xmin,
                        fc_store_heard_fn heard, fc_store_log_fn fn, void *ud, int64_t *next)
{
    char *list = NULL;
    int unheard = 0;
    int64_t first = after, when_short = xmin;
    int more = 0;
    int rc = unheard_of(s, after, limit, xmin, heard, ud, &list, &unheard, &first, &when_short,
                        &more);
    if (rc != 0) return rc;
    if (unheard == 0) {
        free(list);
        *next = when_short;
        return more ? 0 : AT_END;
    }
    char l[16];
    snprintf(l, sizeof l, "%d", limit);
    const char *params[2] = {list, l};
    PGresult *r = query(s, FC__PG_R_LOG_XIDS, 2, params, &rc);
    free(list);
    if (!r) return rc;
    rc = give_page(s, r, limit, first, xmin, when_short, fn, ud, next);
    return rc == AT_END && more ? 0 : rc;
}

int fc__pg_log_since(fc_store *bs, int64_t after, int limit, fc_store_heard_fn heard,
                     fc_store_log_fn fn, void *ud, int64_t *next)
{
    fc__pg_store *s = (fc__pg_store *)(void *)bs;
    int64_t xmin;
    *next = after;
    if (pos_read(s, &xmin) != 0) return FC_EIO; /* before the rows: see above */
    if (limit <= 0 || limit > FC__PG_BATCH_MAX * 4) limit = FC__PG_BATCH_MAX * 4;
    int rc = heard && window_known(s, after)
                 ? read_unheard(s, after, limit, xmin, heard, fn, ud, next)
                 : read_all(s, after, limit, xmin, fn, ud, next);
    if (rc == 0 || rc == AT_END) {
        /* Moved back or elsewhere: not known until a read reaches the end. */
        if (after != s->log_next) s->log_end_ns = 0;
        remember(s, *next, rc == AT_END);
    }
    return rc == AT_END ? 0 : rc;
}
