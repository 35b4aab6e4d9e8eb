/* PostgreSQL store: open, attach and close, and the reads served on the
 * loop thread over the handle's own connection (submits and commits travel
 * through the shared fanout.c). */
#include "store/postgres/pg_internal.h"
#include "store/list_internal.h"

#include "common/error.h"
#include "common/log.h"
#include "common/time.h"
#include "metrics/metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A timeout of 0 in fc_store_config. */
#define DEFAULT_TIMEOUT_MS 2000

#define WF_COLUMNS                                                                                 \
    "id, name, status, current_step, total_steps, message, seq, created_at, updated_at, epoch"
/* The deleted state of a tombstone in the same columns: seq is the deleted
 * state's, one before the deletion's. */
#define TOMB_COLUMNS                                                                               \
    "id, name, status, current_step, total_steps, message, seq - 1, created_at, updated_at, epoch"
/* The log's rows (log.c): every logged change (the event joined with its
 * workflow's name, creation time and epoch) and every tombstone, by the
 * xid of the transaction that wrote it. */
#define LOG_ROWS(where)                                                                            \
    "SELECT e.xid, 0 AS deleted, w.id, w.name, e.status, e.current_step, e.total_steps,"         \
    " e.message, e.seq, w.created_at, e.ts, w.epoch FROM events e JOIN workflows w"               \
    " ON w.id = e.workflow_id WHERE e." where                                                     \
    " UNION ALL SELECT xid, 1, " TOMB_COLUMNS " FROM tombstones WHERE " where                     \
    " ORDER BY 1, 2 DESC, 3, 9"

static const char *const r_sql[FC__PG_R_COUNT] = {
    [FC__PG_R_GET] = "SELECT " WF_COLUMNS " FROM workflows WHERE id = $1",
    [FC__PG_R_LIST] = "SELECT pk, " WF_COLUMNS " FROM workflows WHERE pk < $1::bigint"
                      " ORDER BY pk DESC LIMIT $2::int",
    [FC__PG_R_LIST_STATUS] = "SELECT pk, " WF_COLUMNS " FROM workflows WHERE status = $3 AND"
                             " pk < $1::bigint ORDER BY pk DESC LIMIT $2::int",
    /* One statement, so the head row and the events come from one snapshot.
     * first: the lowest seq still in the log, the few rows older than
     * retention that wait for their trim (FC__PG_TRIM_EVERY) left out. */
    [FC__PG_R_EV_HEAD] =
        "SELECT w.name, w.created_at, w.epoch, m.first, e.seq, e.status, e.current_step,"
        " e.total_steps, e.message, e.ts FROM workflows w"
        " CROSS JOIN LATERAL (SELECT CASE WHEN MIN(seq) IS NULL THEN 0"
        "   ELSE GREATEST(MIN(seq), w.seq - $3::bigint + 1) END AS first"
        "   FROM events WHERE workflow_id = w.id) m"
        " LEFT JOIN LATERAL (SELECT * FROM events WHERE workflow_id = w.id"
        "   AND seq > GREATEST($2::bigint, m.first - 1) ORDER BY seq LIMIT $4::bigint) e ON true"
        " WHERE w.id = $1 ORDER BY e.seq",
    [FC__PG_R_TOMB] = "SELECT epoch, seq, deleted_at FROM tombstones WHERE id = $1",
    /* Reads the schema: a database without it is not healthy either. */
    [FC__PG_R_PING] = "SELECT 1 FROM workflows LIMIT 1",
    [FC__PG_R_LOG_HEAD] = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    [FC__PG_R_LOG_SINCE] = LOG_ROWS("xid >= $1::bigint") " LIMIT $2::int",
    [FC__PG_R_LOG_XID] = LOG_ROWS("xid = $1::bigint"),
    [FC__PG_R_COMMITS] = "SELECT xid FROM commits WHERE xid >= $1::bigint ORDER BY xid"
                         " LIMIT $2::int",
    [FC__PG_R_LOG_XIDS] = LOG_ROWS("xid = ANY($1::bigint[])") " LIMIT $2::int",
};

static fc__pg_store *from_base(fc_store *bs)
{
    return (fc__pg_store *)(void *)bs;
}

int64_t fc__pg_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int fc__pg_read_row(const PGresult *r, int row, int at, fc_workflow *w)
{
    memset(w, 0, sizeof *w);
    snprintf(w->id, sizeof w->id, "%s", PQgetvalue(r, row, at));
    w->name = PQgetvalue(r, row, at + 1);
    if (fc_status_parse(PQgetvalue(r, row, at + 2), &w->status) != 0) {
        FC_ERROR(FC__PG_TAG, "workflow '%s' has invalid stored status '%s'", w->id,
                 PQgetvalue(r, row, at + 2));
        return FC_EIO;
    }
    w->current_step = fc__pg_int(r, row, at + 3);
    w->total_steps = fc__pg_int(r, row, at + 4);
    w->message = PQgetvalue(r, row, at + 5);
    w->seq = fc__pg_int(r, row, at + 6);
    w->created_at_ms = fc__pg_int(r, row, at + 7);
    w->updated_at_ms = fc__pg_int(r, row, at + 8);
    w->epoch = fc__pg_int(r, row, at + 9);
    return 0;
}

static int prepare_reader(PGconn *c, void *arg, char *err, size_t errlen)
{
    fc__pg_store *s = arg;
    for (int i = 0; i < FC__PG_R_COUNT; i++) {
        char name[8];
        snprintf(name, sizeof name, "r%d", i);
        if (fc__pg_prepare(c, name, r_sql[i], s->core->timeout_ms, err, errlen) != 0)
            return FC_EIO;
    }
    return 0;
}

PGconn *fc__pg_reader(fc__pg_store *s)
{
    return fc__pg_link_get(s->core, &s->r, prepare_reader, s);
}

int fc__pg_read_failed(fc__pg_store *s, int broken, const char *what, const char *err)
{
    if (broken) {
        fc__pg_link_down(s->core, &s->r, err);
        return FC_EUNAVAILABLE;
    }
    FC_ERROR(FC__PG_TAG, "%s: %s", what, err);
    return FC_EIO;
}

/* Runs read statement idx with params: 0 with the result in *out (caller
 * clears), FC_EUNAVAILABLE (down) or FC_EIO. A connection that broke is
 * tried once more at once when that cost little: after a server restart the
 * first use of an old connection fails, and a new one works. */
static int pg_rexec(fc__pg_store *s, int idx, int n, const char *const *params, const char *what,
                 PGresult **out)
{
    char name[8], err[200];
    snprintf(name, sizeof name, "r%d", idx);
    int64_t start = fc_time_now_ms();
    for (int attempt = 0; attempt < 2; attempt++) {
        PGconn *c = fc__pg_reader(s);
        if (!c) return FC_EUNAVAILABLE;
        int broken;
        *out = fc__pg_exec(c, name, NULL, n, params, s->core->timeout_ms, &broken, err, sizeof err);
        if (*out) return 0;
        int rc = fc__pg_read_failed(s, broken, what, err);
        if (rc != FC_EUNAVAILABLE || fc_time_now_ms() - start > 100) return rc;
    }
    return FC_EUNAVAILABLE;
}

static int pg_get(fc_store *bs, const char *id, fc_workflow *out)
{
    fc__pg_store *s = from_base(bs);
    PGresult *r;
    const char *params[1] = {id};
    int ret = pg_rexec(s, FC__PG_R_GET, 1, params, "get", &r);
    if (ret != 0) return ret;
    fc_workflow w;
    if (PQntuples(r) == 0)
        ret = FC_ENOTFOUND;
    else if ((ret = fc__pg_read_row(r, 0, 0, &w)) == 0)
        ret = fc_workflow_copy(out, &w);
    PQclear(r);
    return ret;
}

static int pg_list(fc_store *bs, const fc_list_query *q, fc_store_row_cb cb, void *ud,
                   char *next_cursor, size_t cursor_len)
{
    fc__pg_store *s = from_base(bs);
    int64_t before, last = 0;
    if (fc__store_list_args(q, next_cursor, cursor_len, &before) != 0) return FC_EINVAL;
    char b[24], l[16];
    snprintf(b, sizeof b, "%" PRId64, before);
    snprintf(l, sizeof l, "%d", q->limit + 1); /* one more tells whether a next page exists */
    const char *params[3] = {b, l, q->has_status ? fc_status_name(q->status) : NULL};
    PGresult *r;
    int ret = pg_rexec(s, q->has_status ? FC__PG_R_LIST_STATUS : FC__PG_R_LIST, q->has_status ? 3 : 2,
                    params, "list", &r);
    if (ret != 0) return ret;
    int rows = PQntuples(r), n = 0, more = rows > q->limit;
    for (; n < rows && n < q->limit; n++) {
        fc_workflow w;
        if ((ret = fc__pg_read_row(r, n, 1, &w)) != 0) break;
        last = fc__pg_int(r, n, 0);
        if (cb(&w, ud) != 0) {
            more = n + 1 < rows;
            n++;
            break;
        }
    }
    PQclear(r);
    if (ret == 0 && more && next_cursor) snprintf(next_cursor, cursor_len, "%" PRId64, last);
    return ret;
}

static int pg_events_since(fc_store *bs, const char *id, int64_t since, int limit,
                           fc_store_row_cb cb, void *ud, int64_t *oldest)
{
    fc__pg_store *s = from_base(bs);
    if (oldest) *oldest = 0;
    if (strlen(id) > FC_ID_MAX) return FC_ENOTFOUND;
    char sn[24], ret_s[16], lim[16];
    snprintf(sn, sizeof sn, "%" PRId64, since);
    snprintf(ret_s, sizeof ret_s, "%d", s->core->retention);
    snprintf(lim, sizeof lim, "%d", limit);
    const char *params[4] = {id, sn, ret_s, limit > 0 ? lim : NULL}; /* LIMIT NULL: all */
    PGresult *r;
    int ret = pg_rexec(s, FC__PG_R_EV_HEAD, 4, params, "events_since", &r);
    if (ret != 0) return ret;
    int rows = PQntuples(r);
    if (rows == 0) {
        PQclear(r);
        return FC_ENOTFOUND;
    }
    if (oldest) *oldest = fc__pg_int(r, 0, 3);
    fc_workflow w;
    memset(&w, 0, sizeof w);
    snprintf(w.id, sizeof w.id, "%s", id);
    w.name = PQgetvalue(r, 0, 0);
    w.created_at_ms = fc__pg_int(r, 0, 1);
    w.epoch = fc__pg_int(r, 0, 2);
    for (int i = 0; i < rows && !PQgetisnull(r, i, 4); i++) {
        w.seq = fc__pg_int(r, i, 4);
        if (fc_status_parse(PQgetvalue(r, i, 5), &w.status) != 0) {
            FC_ERROR(FC__PG_TAG, "event %s/%" PRId64 " has invalid status", id, w.seq);
            ret = FC_EIO;
            break;
        }
        w.current_step = fc__pg_int(r, i, 6);
        w.total_steps = fc__pg_int(r, i, 7);
        w.message = PQgetvalue(r, i, 8);
        w.updated_at_ms = fc__pg_int(r, i, 9);
        if (cb(&w, ud) != 0) break;
    }
    PQclear(r);
    return ret;
}

static int pg_tombstone(fc_store *bs, const char *id, fc_tombstone *out)
{
    fc__pg_store *s = from_base(bs);
    memset(out, 0, sizeof *out);
    const char *params[1] = {id};
    PGresult *r;
    int ret = pg_rexec(s, FC__PG_R_TOMB, 1, params, "tombstone", &r);
    if (ret != 0) return ret;
    if (PQntuples(r) == 0) {
        ret = FC_ENOTFOUND;
    } else {
        out->epoch = fc__pg_int(r, 0, 0);
        out->seq = fc__pg_int(r, 0, 1);
        out->deleted_at_ms = fc__pg_int(r, 0, 2);
    }
    PQclear(r);
    return ret;
}

static int pg_health(fc_store *bs, char *why, size_t whylen)
{
    fc__pg_store *s = from_base(bs);
    PGresult *r;
    int rc = pg_rexec(s, FC__PG_R_PING, 0, NULL, "health", &r);
    if (rc != 0) {
        snprintf(why, whylen, "%s: %s",
                 rc == FC_EUNAVAILABLE ? "PostgreSQL is unreachable" : "cannot read the database",
                 s->r.why[0] ? s->r.why : "query failed");
        return -1;
    }
    PQclear(r);
    int64_t failed = atomic_load(&s->core->write_failed_ms);
    int64_t ago = fc_time_now_ms() - failed;
    /* A failed batch counts for about one timeout: a later commit clears it. */
    if (failed != 0 && ago < s->core->timeout_ms) {
        snprintf(why, whylen, "the last write failed %.1f s ago", (double)ago / 1000);
        return -1;
    }
    return 0;
}

static void core_free(fc__pg_core *s)
{
    fc__pg_writer_stop(s);
    fc__pg_link_close(&s->w);
    fc__fanout_destroy(&s->fo);
    free(s->conninfo);
    free(s);
}

static void handle_release(fc__pg_store *s)
{
    fc__pg_link_close(&s->r);
    s->core = NULL;
    fc__fanout_release(&s->fh);
}

static void pg_close(fc_store *bs)
{
    fc__pg_store *s = from_base(bs);
    fc__pg_core *core = s->core;
    int last = fc__fanout_detach(&s->fh);
    if (last < 0) return;
    handle_release(s);
    if (last) {
        core_free(core);
        FC_INFO(FC__PG_TAG, "closed");
    }
}

static fc_store *pg_attach(fc_store *bs, uv_loop_t *loop, char *err, size_t errlen);

static const fc_store_ops fc_store_pg_ops = {
    .version = 7,
    .name = "postgres",
    .close = pg_close,
    .attach = pg_attach,
    .on_commit = fc__fanout_on_commit,
    .submit = fc__fanout_submit,
    .get = pg_get,
    .list = pg_list,
    .events_since = pg_events_since,
    .tombstone = pg_tombstone,
    .health = pg_health,
    .log_head = fc__pg_log_head,
    .log_since = fc__pg_log_since,
};

static fc__pg_store *handle_new(fc__pg_core *core, uv_loop_t *loop, char *err, size_t errlen)
{
    fc__pg_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->fh.base.ops = &fc_store_pg_ops;
    s->core = core;
    s->r.backoff_ms = FC__PG_BACKOFF_MIN_MS;
    if (!fc__pg_reader(s)) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", s->r.why);
        handle_release(s);
        return NULL;
    }
    if (fc__fanout_attach(&core->fo, &s->fh, loop, err, errlen) != 0) {
        handle_release(s);
        return NULL;
    }
    return s;
}

static fc_store *pg_attach(fc_store *bs, uv_loop_t *loop, char *err, size_t errlen)
{
    fc__pg_store *s = handle_new(from_base(bs)->core, loop, err, errlen);
    return s ? &s->fh.base : NULL;
}

/* Connects once to migrate the schema and says where it is. */
static int migrate(fc__pg_core *s, char *err, size_t errlen)
{
    char why[200];
    PGconn *c = fc__pg_connect(s->conninfo, s->timeout_ms, why, sizeof why);
    if (!c) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", why);
        return FC_EIO;
    }
    int version = 0;
    int rc = fc__pg_migrate(c, &version, err, errlen);
    if (rc == 0) {
        /* Host, port and database only: the URL may hold a password. */
        fc_log_field f[] = {FC_LOG_STR("host", PQhost(c)), FC_LOG_STR("port", PQport(c)),
                            FC_LOG_STR("database", PQdb(c)), FC_LOG_INT("schema", version),
                            FC_LOG_INT("retention", s->retention)};
        FC_LOGF(FC_LOG_INFO, FC__PG_TAG, f, sizeof f / sizeof f[0],
                "opened PostgreSQL %s:%s/%s (schema v%d, retention=%d)", PQhost(c), PQport(c),
                PQdb(c), version, s->retention);
    }
    PQfinish(c);
    return rc;
}

fc_store *fc_store_pg_open(uv_loop_t *loop, const fc_store_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->path || !cfg->path[0]) {
        snprintf(err, errlen, "no database URL");
        return NULL;
    }
    if (cfg->retention < 1) {
        snprintf(err, errlen, "retention must be at least 1 (got %d)", cfg->retention);
        return NULL;
    }
    fc__pg_core *s = calloc(1, sizeof *s);
    if (!s || !(s->conninfo = strdup(cfg->path))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->retention = cfg->retention;
    s->idem_window_ms = cfg->idem_window_ms > 0 ? cfg->idem_window_ms : FC_IDEM_WINDOW_DEFAULT_MS;
    s->timeout_ms = cfg->timeout_s > 0 ? (int)(cfg->timeout_s * 1000) : DEFAULT_TIMEOUT_MS;
    s->commit_delay_us = cfg->commit_delay_us > 0 ? cfg->commit_delay_us : 0;
    s->w.backoff_ms = FC__PG_BACKOFF_MIN_MS;
    atomic_store(&s->up, 1);
    if (fc__fanout_init(&s->fo) != 0) {
        free(s->conninfo);
        free(s);
        snprintf(err, errlen, "cannot set up store synchronisation");
        return NULL;
    }
    fc__pg_store *h = NULL;
    if (migrate(s, err, errlen) != 0) goto fail;
    if (!(h = handle_new(s, loop, err, errlen))) goto fail;
    if (fc__pg_writer_start(s, err, errlen) != 0) goto fail;
    fc_metrics_store_up(1);
    return &h->fh.base;

fail:
    if (h) {
        fc__fanout_detach(&h->fh);
        handle_release(h);
    }
    core_free(s);
    return NULL;
}
