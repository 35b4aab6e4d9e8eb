/* PostgreSQL store: the writer thread. It takes every queued change (up to
 * FC__PG_BATCH_MAX) and commits them in one transaction sent as one
 * pipeline: BEGIN, the changes, COMMIT, one Sync: one round trip per batch
 * whatever its size. The batch first takes an advisory lock per workflow
 * in one global order (LOCK_SQL), so two nodes' transactions never
 * deadlock on each other's workflows (a deadlock, say on an idempotency
 * key two batches share, is retried); the changes are applied in id order
 * within rounds (a stable sort: one
 * workflow's changes keep their submission order); changes of different
 * workflows are independent, and they all commit at once, so the order in
 * which one transaction applies them is not observable. done() and the commit
 * callbacks still run in submission order.
 *
 * The batch runs in rounds: round r holds the r-th change of each workflow
 * in it. A round's updates (with or without an idempotency key), when
 * there are two or more, are one fc_apply_set call (schema.c: one
 * set-based statement, a fraction of the CPU of one fc_apply per change);
 * its other changes are one fc_apply call each. A round never holds two changes of
 * one workflow: UPDATE ... FROM with two input rows for one row applies
 * only one of them. */
#include "store/postgres/pg_internal.h"

#include "common/error.h"
#include "common/log.h"
#include "common/time.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define APPLY_SQL                                                                                  \
    "SELECT * FROM fc_apply($1::int, $2, $3::bigint, $4::int, $5, $6, $7::bigint, $8::bigint,"     \
    " $9, $10::int, $11::bigint, $12, $13::bytea, $14::bigint)"
#define UPDATES_SQL                                                                                \
    "SELECT * FROM fc_apply_set($1::text[], $2::int[], $3::text[], $4::bigint[], $5::bigint[],"    \
    " $6::text[], $7::bigint[], $8::text[], $9::bytea[], $10::bigint, $11::int, $12::bigint)"
/* Before any change, the batch takes a transaction-scoped advisory lock
 * per workflow id (key pair: "flow" in ASCII, the id's hashtext), in key
 * order: two nodes' batches then never wait for each other in a cycle,
 * since every row a batch locks (a workflow, its tombstone) belongs to an
 * id whose advisory lock it already holds. The rounds below take row
 * locks in no global order (updates before creates, deletes and repeated keys,
 * fc_apply_set in its plan's order), and two nodes' batches
 * deadlocked 3-6 times a run of test_hostile_postgres_batch (a batch
 * waiting out the deadlock and its retries passed --db-timeout: 503).
 * Advisory locks live only in the lock table (no tuple write, no WAL):
 * PostgreSQL spent about 49 us of CPU per change with them against 77 us
 * with SELECT ... ORDER BY id FOR UPDATE and 46 us with no lock
 * (bench/ingest_postgres.py, alternating runs). Colliding hashes only make
 * two workflows wait for each other. */
#define LOCK_SQL                                                                                   \
    "SELECT pg_advisory_xact_lock(1718382455, h) FROM (SELECT DISTINCT hashtext(id) AS h"        \
    " FROM unnest($1::text[]) AS id) AS ids ORDER BY h"
/* SKIP LOCKED: two nodes trimming at once take different rows, never wait. */
#define TRIM_SQL                                                                                   \
    "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys"                  \
    " WHERE created_at <= $1::bigint ORDER BY created_at LIMIT $2::int FOR UPDATE SKIP LOCKED)"

/* Commits rows past $2 seconds (fc__pg_commits_keep_s; schema.c step 2),
 * like the keys: SKIP LOCKED, at most $1 a time. */
#define COMMITS_TRIM_SQL                                                                           \
    "DELETE FROM commits WHERE xid IN (SELECT xid FROM commits WHERE at < now() -"                \
    " $2::int * interval '1 s' LIMIT $1::int FOR UPDATE SKIP LOCKED)"
/* The batch's transaction id, as its event and tombstone rows and its
 * commits row record it (the log position of its changes). */
#define TXID_SQL "SELECT pg_current_xact_id()::text::bigint"

/* How a batch's pipeline ended. */
enum { RUN_OK, RUN_RETRY, RUN_SQLERR, RUN_BROKEN };

__attribute__((format(printf, 3, 4))) static void fail(fc_change *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->result = code;
    c->replayed = 0;
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
}

/* Every statement of the writer, its own and those inside fc_apply and
 * fc_apply_set, runs a generic plan, planned once per connection. By
 * default PostgreSQL plans a statement five times with its parameters'
 * values and then keeps the generic plan only if it costs no more than
 * those did; a batch of fewer than 10 changes costs less than the generic
 * plan's estimate (an array parameter counts as 10 elements), so a writer
 * whose first batches were small planned the set-based update and the
 * advisory locks again at every batch: about 0.5 ms of PostgreSQL CPU per
 * batch (pgbench, batches of 1: 0.7-1.1 ms against 0.19-0.26 ms per
 * transaction), more than the batch's own work; which plan a writer kept
 * depended on its first five batches. The generic plans are the ones
 * schema.c designs for (an index probe per change). */
#define GENERIC_SQL "SET plan_cache_mode = force_generic_plan"

static int prepare_writer(PGconn *c, void *arg, char *err, size_t errlen)
{
    fc__pg_core *s = arg;
    int broken;
    PGresult *r = fc__pg_exec(c, NULL, GENERIC_SQL, 0, NULL, s->timeout_ms, &broken, err, errlen);
    if (!r) return FC_EIO;
    PQclear(r);
    return fc__pg_prepare(c, "apply", APPLY_SQL, s->timeout_ms, err, errlen) ||
           fc__pg_prepare(c, "updates", UPDATES_SQL, s->timeout_ms, err, errlen) ||
           fc__pg_prepare(c, "lock", LOCK_SQL, s->timeout_ms, err, errlen) ||
           fc__pg_prepare(c, "trim", TRIM_SQL, s->timeout_ms, err, errlen) ||
           fc__pg_prepare(c, "ctrim", COMMITS_TRIM_SQL, s->timeout_ms, err, errlen) ||
           fc__pg_prepare(c, "txid", TXID_SQL, s->timeout_ms, err, errlen);
}

typedef struct ordered {
    const char *id;
    int index;
} ordered;

static int by_id(const void *a, const void *b)
{
    const ordered *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* order[k] = the index in cs of the k-th change to apply: by id, then by
 * submission (the index breaks ties, so the sort is stable). */
static void apply_order(fc_change *const *cs, int n, int *order)
{
    ordered tmp[FC__PG_BATCH_MAX];
    for (int i = 0; i < n; i++)
        tmp[i] = (ordered){cs[i]->wf.id, i};
    qsort(tmp, (size_t)n, sizeof *tmp, by_id);
    for (int i = 0; i < n; i++)
        order[i] = tmp[i].index;
}

/* One query of a batch: fc_apply for one change (set = 0) or
 * fc_apply_set for a round's updates; its changes are
 * members[first .. first + count - 1] (indexes in cs, in id order). */
typedef struct step {
    int set, first, count;
} step;

/* Where a change's outcome is: row `row` of r, its columns from `at` on. */
typedef struct answer {
    const PGresult *r;
    int row, at;
} answer;

/* An update may join a set (a key an earlier change carries never gets here). */
static int plain_update(const fc_change *c)
{
    return c->kind == FC_CHANGE_UPDATE;
}

/* 1 when an earlier change of the batch (in submission order) carries c's
 * idempotency key. */
static int key_taken(fc_change *const *cs, int i)
{
    if (!cs[i]->idem_key[0]) return 0;
    for (int j = 0; j < i; j++)
        if (strcmp(cs[j]->idem_key, cs[i]->idem_key) == 0) return 1;
    return 0;
}

/* Splits the changes (order: apply order) into rounds, round r holding the
 * r-th change of each workflow, and each round into its queries: the
 * updates first (one set when two or more: a set of one costs more than
 * fc_apply), then the others. A change whose key an earlier change of the
 * batch carries comes last, in submission order: the first request sent
 * owns the key, as on SQLite, not the one on the smaller id (a key on two
 * requests of one batch has two fingerprints or one workflow: the later
 * one is a replay or refused, it changes no workflow). members gets the
 * change indexes in query order. Returns the number of queries. */
static int plan_batch(fc_change *const *cs, const int *order, int n, step *steps, int *members)
{
    int round[FC__PG_BATCH_MAX], rounds = 0, nsteps = 0, m = 0, prev = -1;
    unsigned char late[FC__PG_BATCH_MAX];
    for (int i = 0; i < n; i++)
        late[i] = (unsigned char)key_taken(cs, i);
    for (int k = 0; k < n; k++) {
        round[k] = -1;
        if (late[order[k]]) continue;
        int same = prev >= 0 && strcmp(cs[order[k]]->wf.id, cs[order[prev]]->wf.id) == 0;
        round[k] = same ? round[prev] + 1 : 0;
        if (round[k] >= rounds) rounds = round[k] + 1;
        prev = k;
    }
    for (int r = 0; r < rounds; r++) {
        int first = m;
        for (int k = 0; k < n; k++)
            if (round[k] == r && plain_update(cs[order[k]])) members[m++] = order[k];
        if (m > first) steps[nsteps++] = (step){m - first > 1, first, m - first};
        for (int k = 0; k < n; k++)
            if (round[k] == r && !plain_update(cs[order[k]])) {
                steps[nsteps++] = (step){0, m, 1};
                members[m++] = order[k];
            }
    }
    for (int i = 0; i < n; i++)
        if (late[i]) {
            steps[nsteps++] = (step){0, m, 1};
            members[m++] = i;
        }
    return nsteps;
}

/* A growing string: an array literal being built. */
typedef struct text_buf {
    char *p;
    size_t len, cap;
    int oom;
} text_buf;

static void put(text_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* s as an element of an array literal: in double quotes, with " and \
 * escaped, an element is exactly the string (never NULL, never split at a
 * comma or brace, its white space kept). */
static void put_quoted(text_buf *b, const char *s)
{
    put(b, "\"", 1);
    for (const char *run = s;; s++) {
        if (*s == '"' || *s == '\\' || !*s) {
            put(b, run, (size_t)(s - run));
            if (!*s) break;
            put(b, "\\", 1);
            run = s;
        }
    }
    put(b, "\"", 1);
}

static void put_int(text_buf *b, int64_t v)
{
    char num[24];
    put(b, num, (size_t)snprintf(num, sizeof num, "%" PRId64, v));
}

enum { A_IDS, A_FIELDS, A_STATUS, A_STEP, A_TOTAL, A_MESSAGE, A_IF_SEQ, A_KEYS, A_FPS, N_ARRAYS };

/* Queues the fc_apply_set call of cs[members[0 .. count-1]] (updates of
 * distinct workflows with distinct keys, in id order) on the pipeline. The arrays
 * go as text literals: the ids and messages are UTF-8 text already, and
 * quoting costs less than the binary format's per-element headers would
 * save. 0, or -1 with a reason in err. */
static int send_updates(fc__pg_core *s, PGconn *conn, fc_change *const *cs, const int *members,
                        int count, int64_t now, char *err, size_t errlen)
{
    text_buf a[N_ARRAYS] = {{0}};
    for (int k = 0; k < count; k++) {
        const fc_patch *p = &cs[members[k]]->patch;
        fc_status st = (p->fields & FC_PATCH_STATUS) ? p->status : FC_STATUS_PENDING;
        for (int j = 0; j < N_ARRAYS; j++)
            put(&a[j], k ? "," : "{", 1);
        put_quoted(&a[A_IDS], cs[members[k]]->wf.id);
        put_int(&a[A_FIELDS], p->fields);
        put_quoted(&a[A_STATUS], fc_status_name(st));
        put_int(&a[A_STEP], p->current_step);
        put_int(&a[A_TOTAL], p->total_steps);
        put_quoted(&a[A_MESSAGE], p->message ? p->message : "");
        put_int(&a[A_IF_SEQ], p->if_seq);
        put_quoted(&a[A_KEYS], cs[members[k]]->idem_key);
        char fp[2 * FC_IDEM_FP_LEN + 3] = "\\x";
        for (int i = 0; i < FC_IDEM_FP_LEN; i++)
            snprintf(fp + 2 + 2 * i, 3, "%02x", cs[members[k]]->idem_fp[i]);
        put_quoted(&a[A_FPS], fp);
    }
    int oom = 0;
    for (int j = 0; j < N_ARRAYS; j++) {
        put(&a[j], "}", 1);
        oom |= a[j].oom;
    }
    char tnow[24], retention[16], window[24];
    snprintf(tnow, sizeof tnow, "%" PRId64, now);
    snprintf(retention, sizeof retention, "%d", s->retention);
    snprintf(window, sizeof window, "%" PRId64, s->idem_window_ms);
    const char *params[12] = {a[A_IDS].p,    a[A_FIELDS].p,  a[A_STATUS].p, a[A_STEP].p,
                              a[A_TOTAL].p,  a[A_MESSAGE].p, a[A_IF_SEQ].p, a[A_KEYS].p,
                              a[A_FPS].p,    tnow,           retention,     window};
    int rc = -1;
    if (oom)
        snprintf(err, errlen, "out of memory building a batch");
    else if (PQsendQueryPrepared(conn, "updates", 12, params, NULL, NULL, 0))
        rc = 0;
    else
        snprintf(err, errlen, "%s", PQerrorMessage(conn));
    for (int j = 0; j < N_ARRAYS; j++)
        free(a[j].p);
    return rc;
}

/* Queues the LOCK_SQL of the batch's workflows when it holds two or more:
 * a batch of one workflow waits, if at all, at that workflow's first row,
 * holding nothing another batch needs (bar an idempotency key both carry).
 * *sent tells whether it did. 0, or -1 with a reason in err. */
static int send_lock(PGconn *conn, fc_change *const *cs, const int *order, int n, int *sent,
                     char *err, size_t errlen)
{
    text_buf ids = {0};
    int distinct = 0;
    for (int k = 0; k < n; k++) {
        if (k > 0 && strcmp(cs[order[k]]->wf.id, cs[order[k - 1]]->wf.id) == 0) continue;
        put(&ids, distinct++ ? "," : "{", 1);
        put_quoted(&ids, cs[order[k]]->wf.id);
    }
    put(&ids, "}", 1);
    *sent = distinct >= 2;
    int rc = 0;
    if (ids.oom) {
        snprintf(err, errlen, "out of memory building a batch");
        rc = -1;
    } else if (*sent &&
               !PQsendQueryPrepared(conn, "lock", 1, (const char *const *)&ids.p, NULL, NULL, 0)) {
        snprintf(err, errlen, "%s", PQerrorMessage(conn));
        rc = -1;
    }
    free(ids.p);
    return rc;
}

/* Queues c's fc_apply call on the pipeline. 0, or -1 when libpq refused it. */
static int send_apply(fc__pg_core *s, PGconn *conn, const fc_change *c, int64_t now)
{
    char num[7][24], fp[2 * FC_IDEM_FP_LEN + 3];
    const fc_workflow *w = &c->wf;
    const fc_patch *p = &c->patch;
    int kind = c->kind == FC_CHANGE_CREATE ? 0 : c->kind == FC_CHANGE_UPDATE ? 1 : 2;
    int upd = kind == 1;
    fc_status st =
        upd ? ((p->fields & FC_PATCH_STATUS) ? p->status : FC_STATUS_PENDING) : w->status;
    snprintf(num[0], sizeof num[0], "%d", kind);
    snprintf(num[1], sizeof num[1], "%" PRId64, now);
    snprintf(num[2], sizeof num[2], "%d", s->retention);
    snprintf(num[3], sizeof num[3], "%" PRId64, upd ? p->current_step : w->current_step);
    snprintf(num[4], sizeof num[4], "%" PRId64, upd ? p->total_steps : w->total_steps);
    snprintf(num[5], sizeof num[5], "%u", upd ? p->fields : 0u);
    snprintf(num[6], sizeof num[6], "%" PRId64, upd ? p->if_seq : 0);
    char window[24];
    snprintf(window, sizeof window, "%" PRId64, s->idem_window_ms);
    char *q = fp;
    q += sprintf(q, "\\x");
    for (int i = 0; i < FC_IDEM_FP_LEN; i++)
        q += sprintf(q, "%02x", c->idem_fp[i]);
    const char *msg = upd ? (p->message ? p->message : "") : (w->message ? w->message : "");
    const char *params[14] = {num[0],
                              w->id,
                              num[1],
                              num[2],
                              kind == 0 && w->name ? w->name : "",
                              fc_status_name(st),
                              num[3],
                              num[4],
                              msg,
                              num[5],
                              num[6],
                              c->idem_key,
                              fp,
                              window};
    return PQsendQueryPrepared(conn, "apply", 14, params, NULL, NULL, 0) ? 0 : -1;
}

static const struct {
    const char *name;
    int result;
} outcomes[] = {
    {"ok", 0},
    {"not_found", FC_ENOTFOUND},
    {"exists", FC_EEXISTS},
    {"seq_mismatch", FC_ESEQ},
    {"terminal", FC_ETERMINAL},
    {"invalid", FC_EINVAL},
    {"key_reused", FC_EKEYREUSED},
};

/* Copies the n bytes of s into out (size outlen > 0), cut to fit, NUL-ended. */
static void copy_text(char *out, size_t outlen, const char *s, size_t n)
{
    if (n >= outlen) n = outlen - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

/* Copies an answer (columns r_result .. r_epoch from a.at on) into c. */
static void take_outcome(fc_change *c, answer a)
{
    const PGresult *r = a.r;
    int row = a.row;
    const char *name = PQgetvalue(r, row, a.at);
    int result = FC_EIO;
    for (size_t i = 0; i < sizeof outcomes / sizeof *outcomes; i++)
        if (strcmp(outcomes[i].name, name) == 0) result = outcomes[i].result;
    if (result == FC_EIO) {
        fail(c, FC_EIO, "stored outcome '%s' is not valid", name);
        return;
    }
    c->result = result;
    c->replayed = PQgetvalue(r, row, a.at + 2)[0] == 't';
    /* Copies, not snprintf: this runs per change, and formatting was most of it. */
    copy_text(c->errmsg, sizeof c->errmsg, PQgetvalue(r, row, a.at + 1),
              (size_t)PQgetlength(r, row, a.at + 1));
    if (PQgetisnull(r, row, a.at + 9)) return; /* no state (key_reused): c->wf stays the input */
    fc_status st;
    if (fc_status_parse(PQgetvalue(r, row, a.at + 5), &st) != 0) {
        fail(c, FC_EIO, "stored status '%s' of workflow '%s' is not valid",
             PQgetvalue(r, row, a.at + 5), c->wf.id);
        return;
    }
    char *wname = strdup(PQgetvalue(r, row, a.at + 4)), *msg = strdup(PQgetvalue(r, row, a.at + 8));
    if (!wname || !msg) {
        free(wname);
        free(msg);
        fail(c, FC_ENOMEM, "out of memory reading workflow '%s'", c->wf.id);
        return;
    }
    fc_workflow *w = &c->wf;
    free(w->name);
    free(w->message);
    copy_text(w->id, sizeof w->id, PQgetvalue(r, row, a.at + 3),
              (size_t)PQgetlength(r, row, a.at + 3));
    w->name = wname;
    w->message = msg;
    w->status = st;
    w->current_step = fc__pg_int(r, row, a.at + 6);
    w->total_steps = fc__pg_int(r, row, a.at + 7);
    w->seq = fc__pg_int(r, row, a.at + 9);
    w->created_at_ms = fc__pg_int(r, row, a.at + 10);
    w->updated_at_ms = fc__pg_int(r, row, a.at + 11);
    w->epoch = fc__pg_int(r, row, a.at + 12);
}

/* Checks that r is the answer to query st (a row per change; a set's rows
 * name their input by r_index, 1-based, in any order) and points each of
 * its changes at its row. 0, or -1 (nothing pointed) when it is not. */
static int take_answers(const PGresult *r, const step *st, const int *members, answer *ans)
{
    const int *m = members + st->first;
    if (!st->set) {
        if (PQntuples(r) != 1 || PQnfields(r) != 13) return -1;
        ans[m[0]] = (answer){r, 0, 0};
        return 0;
    }
    unsigned char seen[FC__PG_BATCH_MAX] = {0};
    int at[FC__PG_BATCH_MAX];
    if (PQntuples(r) != st->count || PQnfields(r) != 14) return -1;
    for (int row = 0; row < st->count; row++) {
        int64_t k = fc__pg_int(r, row, 0) - 1;
        if (k < 0 || k >= st->count || seen[k]) return -1;
        seen[k] = 1;
        at[k] = row;
    }
    for (int k = 0; k < st->count; k++)
        ans[m[k]] = (answer){r, at[k], 1};
    return 0;
}

/* Sends the batch cs[0..n-1] as one pipeline (the queries of plan_batch)
 * and reads every answer. On RUN_OK the outcome of cs[i] is ans[i], pointing into
 * held[0 .. nsteps-1] (caller clears). ioerr gets the first failure's
 * reason. */
static int run_batch(fc__pg_core *s, PGconn *conn, fc_change *const *cs, const int *order, int n,
                     const step *steps, int nsteps, const int *members, int64_t now, int trim,
                     PGresult **held, answer *ans, int *trimmed, int64_t *txid, char *ioerr,
                     size_t errlen)
{
    int64_t deadline = now + s->timeout_ms;
    char cutoff[24], limit[16];
    snprintf(cutoff, sizeof cutoff, "%" PRId64, now - s->idem_window_ms);
    snprintf(limit, sizeof limit, "%d", FC__PG_IDEM_TRIM + 2 * n);
    const char *trim_params[2] = {cutoff, limit};
    char keep[16];
    snprintf(keep, sizeof keep, "%d", fc__pg_commits_keep_s);
    const char *ctrim_params[2] = {FC__PG_STR(FC__PG_COMMITS_TRIM), keep};
    ioerr[0] = '\0';
    int ok =
        PQenterPipelineMode(conn) && PQsendQueryParams(conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    int lock = 0;
    ok = ok && send_lock(conn, cs, order, n, &lock, ioerr, errlen) == 0;
    for (int k = 0; ok && k < nsteps; k++) {
        const step *st = &steps[k];
        ok =
            (st->set ? send_updates(s, conn, cs, members + st->first, st->count, now, ioerr, errlen)
                     : send_apply(s, conn, cs[members[st->first]], now)) == 0;
    }
    if (ok && trim)
        ok = PQsendQueryPrepared(conn, "trim", 2, trim_params, NULL, NULL, 0) &&
             PQsendQueryPrepared(conn, "ctrim", 2, ctrim_params, NULL, NULL, 0);
    ok = ok && PQsendQueryPrepared(conn, "txid", 0, NULL, NULL, NULL, 0) &&
         PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) && PQpipelineSync(conn);
    if (!ok) {
        if (!ioerr[0]) snprintf(ioerr, errlen, "%s", PQerrorMessage(conn));
        return RUN_BROKEN;
    }

    int queries = 1 + lock + nsteps + 2 * trim + 2, outcome = RUN_OK, failed;
    for (int q = 0; q < queries; q++) {
        PGresult *r = fc__pg_result(conn, deadline, &failed, ioerr, errlen);
        if (failed) return RUN_BROKEN;
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (st == PGRES_FATAL_ERROR && outcome == RUN_OK) {
            snprintf(ioerr, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
            outcome = fc__pg_retryable(r) ? RUN_RETRY : RUN_SQLERR;
        }
        int k = q - 1 - lock, apply = k >= 0 && k < nsteps;
        if (trim && k == nsteps && st == PGRES_COMMAND_OK) *trimmed = atoi(PQcmdTuples(r));
        if (k == nsteps + 2 * trim && st == PGRES_TUPLES_OK && PQntuples(r) == 1)
            *txid = fc__pg_int(r, 0, 0);
        if (apply && st == PGRES_TUPLES_OK && take_answers(r, &steps[k], members, ans) == 0)
            held[k] = r;
        else
            PQclear(r);
        if (apply && !held[k] && outcome == RUN_OK) {
            snprintf(ioerr, errlen, "%s gave no answer", steps[k].set ? "fc_apply_set" : "fc_apply");
            outcome = RUN_SQLERR;
        }
        /* Each query's results end with a NULL. */
        if (r && (r = fc__pg_result(conn, deadline, &failed, ioerr, errlen))) PQclear(r);
        if (failed) return RUN_BROKEN;
    }
    PGresult *sync = fc__pg_result(conn, deadline, &failed, ioerr, errlen);
    int synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    if (failed || !synced || !PQexitPipelineMode(conn)) {
        if (!failed) snprintf(ioerr, errlen, "pipeline out of step");
        return RUN_BROKEN;
    }
    if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
        /* An error left the transaction open and aborted. */
        int broken;
        char rberr[96];
        PGresult *r = fc__pg_exec(conn, NULL, "ROLLBACK", 0, NULL, s->timeout_ms, &broken, rberr,
                                  sizeof rberr);
        PQclear(r);
        if (!r) return RUN_BROKEN;
    }
    return outcome;
}

/* Tells each change of a committed batch its transaction: its id and how
 * many changes it committed (what the cluster's catch-up compares with
 * what the bus brought, feed/relay.c). */
static void name_transaction(fc_change *const *cs, int n, int64_t txid)
{
    uint32_t applied = 0;
    for (int i = 0; i < n; i++)
        applied += cs[i]->result == 0 && !cs[i]->replayed;
    for (int i = 0; i < n; i++) {
        cs[i]->txid = txid;
        cs[i]->txn_changes = applied;
    }
}

/* Commits cs[0..n-1] in one transaction (again after a deadlock or a
 * serialization failure) and sets every change's result. */
static void apply_batch(fc__pg_core *s, fc_change *const *cs, int n)
{
    char ioerr[200] = "";
    PGresult *held[FC__PG_BATCH_MAX];
    answer ans[FC__PG_BATCH_MAX];
    int order[FC__PG_BATCH_MAX], members[FC__PG_BATCH_MAX];
    step steps[FC__PG_BATCH_MAX];
    int outcome = RUN_BROKEN, sent = 0;
    apply_order(cs, n, order);
    int nsteps = plan_batch(cs, order, n, steps, members);
    int64_t now = fc_time_now_ms();
    /* A trim that hit its limit runs again at the next commit. */
    int trim = s->idem_trim_full || now - s->idem_trimmed_ms >= FC__PG_IDEM_TRIM_EVERY_MS;
    int trimmed = 0;
    int64_t txid = 0;
    for (int attempt = 0; attempt < FC__PG_RETRIES; attempt++) {
        PGconn *conn = fc__pg_link_get(s, &s->w, prepare_writer, s);
        if (!conn) {
            snprintf(ioerr, sizeof ioerr, "%s", s->w.why);
            outcome = RUN_BROKEN;
            break;
        }
        memset(held, 0, sizeof(PGresult *) * (size_t)nsteps);
        now = fc_time_now_ms(); /* one timestamp per commit */
        sent = 1;
        outcome = run_batch(s, conn, cs, order, n, steps, nsteps, members, now, trim, held, ans,
                            &trimmed, &txid, ioerr, sizeof ioerr);
        if (outcome == RUN_OK) break;
        for (int k = 0; k < nsteps; k++)
            PQclear(held[k]);
        if (outcome == RUN_BROKEN) fc__pg_link_down(s, &s->w, ioerr);
        if (outcome != RUN_RETRY) break;
    }
    uint64_t t = fc_time_mono_ns();
    for (int i = 0; i < n; i++) {
        fc_change *c = cs[i];
        c->commit_ns = t;
        if (outcome == RUN_OK) {
            take_outcome(c, ans[i]);
        } else if (outcome == RUN_BROKEN && !sent) {
            fail(c, FC_EUNAVAILABLE, "database unreachable, change not saved: %s", ioerr);
        } else if (outcome == RUN_BROKEN) {
            /* The COMMIT may or may not have reached the server. */
            fail(c, FC_EUNAVAILABLE,
                 "database connection lost, change may not be saved (retry with the same "
                 "Idempotency-Key): %s",
                 ioerr);
        } else {
            fail(c, FC_EIO, "storage error, change not saved: %s", ioerr);
        }
    }
    if (outcome == RUN_OK) {
        name_transaction(cs, n, txid);
        for (int k = 0; k < nsteps; k++)
            PQclear(held[k]);
        if (trim) {
            s->idem_trimmed_ms = now;
            s->idem_trim_full = trimmed >= FC__PG_IDEM_TRIM + 2 * n;
        }
        atomic_store(&s->write_failed_ms, 0);
        if (s->failed_batches > 0)
            FC_INFO(FC__PG_TAG, "batches commit again (%ld failed meanwhile)", s->failed_batches);
        s->failed_batches = 0;
    } else {
        if (s->failed_batches++ == 0)
            FC_ERROR(FC__PG_TAG, "batch of %d changes not committed: %s", n, ioerr);
        atomic_store(&s->write_failed_ms, now);
    }
}

/* Takes up to FC__PG_BATCH_MAX queued changes, commits them, hands them
 * back; until the store stops and the queue is empty. Group commit: with
 * --commit-delay, after a batch of several changes the writer waits a
 * little for as many again. A transaction costs PostgreSQL about 200 us of
 * CPU whatever its size plus about 30 per change (docs/cluster.md,
 * Capacity), and three nodes' writers each commit a third of the changes,
 * so their batches were a third as large as one node's (6-7 changes):
 * waiting up to 0.5 ms made them larger and the cluster's CPU per durable
 * change fell from 150-166 to 110-113 us (bench/cluster.sh --only "ingest
 * unpinned", alternating). A lone change (the last batch was one) never
 * waits, so a writer that is not busy adds no latency. */
static void *writer_main(void *arg)
{
    fc__pg_core *s = arg;
    fc_change *cs[FC__PG_BATCH_MAX], *batch;
    int prev = 0; /* the last batch's size: what the next one waits for */
    uint64_t delay_ns = (uint64_t)s->commit_delay_us * 1000;
    while ((batch = fc__fanout_take_linger(&s->fo, FC__PG_BATCH_MAX, prev, delay_ns))) {
        int n = 0;
        for (fc_change *c = batch; c; c = c->next)
            cs[n++] = c;
        apply_batch(s, cs, n);
        prev = n;
        fc__fanout_hand_back(&s->fo, batch);
    }
    fc__pg_link_close(&s->w);
    return NULL;
}

int fc__pg_writer_start(fc__pg_core *s, char *err, size_t errlen)
{
    sigset_t all, old;
    sigfillset(&all);
    /* Signals belong to the server's signal thread. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, writer_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the writer thread: %s", strerror(rc));
        return FC_EIO;
    }
    pthread_setname_np(s->thread, "fc-pg-writer");
    s->thread_started = 1;
    return 0;
}

void fc__pg_writer_stop(fc__pg_core *s)
{
    if (!s->thread_started) return;
    fc__fanout_stop(&s->fo);
    pthread_join(s->thread, NULL);
    s->thread_started = 0;
}
