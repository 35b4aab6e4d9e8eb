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
 * transaction) and next moves past it, unless fn stopped in it. */
#include "store/postgres/pg_internal.h"

#include "common/error.h"

#include <inttypes.h>
#include <stdio.h>


/* Gives the rows of r from the log columns (xid, deleted, WF columns) to
 * fn; *last gets the last row's xid. 0, FC_EIO, or 1 when fn stopped. */
static int give(const PGresult *r, fc_store_log_fn fn, void *ud, int64_t *last)
{
    for (int i = 0; i < PQntuples(r); i++) {
        fc_workflow w;
        if (fc__pg_read_row(r, i, 2, &w) != 0) return FC_EIO;
        *last = fc__pg_int(r, i, 0);
        if (fn(ud, &w, PQgetvalue(r, i, 1)[0] == '1') != 0) return 1;
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

int fc__pg_log_head(fc_store *bs, int64_t *position)
{
    return pos_read((fc__pg_store *)(void *)bs, position);
}

int fc__pg_log_since(fc_store *bs, int64_t after, int limit, fc_store_log_fn fn, void *ud,
                     int64_t *next)
{
    fc__pg_store *s = (fc__pg_store *)(void *)bs;
    int64_t xmin, last = after;
    *next = after;
    if (pos_read(s, &xmin) != 0) return FC_EIO; /* before the rows: see above */
    if (limit <= 0 || limit > FC__PG_BATCH_MAX * 4) limit = FC__PG_BATCH_MAX * 4;
    char a[24], l[16];
    snprintf(a, sizeof a, "%" PRId64, after);
    snprintf(l, sizeof l, "%d", limit);
    const char *params[2] = {a, l};
    int rc;
    PGresult *r = query(s, FC__PG_R_LOG_SINCE, 2, params, &rc);
    if (!r) return rc;
    int rows = PQntuples(r), full = rows >= limit;
    int g = give(r, fn, ud, &last);
    PQclear(r);
    if (g == FC_EIO) return FC_EIO;
    if (g == 1) {
        /* fn stopped: come back to the last row's transaction. */
        *next = last < xmin ? last : xmin;
        return 0;
    }
    if (!full) {
        *next = xmin;
        return 0;
    }
    if (last > after) {
        *next = last < xmin ? last : xmin;
        return 0;
    }
    /* A whole page of transaction `after`: give it whole, then move on. Its
     * rows are visible, so it has committed and xmin > after. */
    r = query(s, FC__PG_R_LOG_XID, 1, params, &rc);
    if (!r) return rc;
    g = give(r, fn, ud, &last);
    PQclear(r);
    if (g == FC_EIO) return FC_EIO;
    /* fn stopped inside it: the whole transaction again next time. */
    *next = g == 1 ? after : after + 1 < xmin ? after + 1 : xmin;
    return 0;
}
