/* SQLite store: idempotency keys, checked, recorded and trimmed by the writer
 * inside the transaction of the change they belong to (schema v5). */
#include "store/sqlite/sqlite_internal.h"

#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The outcomes a retry gets back, by their stored names. The names, not the
 * FC_E* values, are what the database holds, so the codes may be renumbered. */
static const struct {
    int result;
    const char *name;
} outcomes[] = {
    {0, "ok"},
    {FC_ENOTFOUND, "not_found"},
    {FC_EEXISTS, "exists"},
    {FC_ESEQ, "seq_mismatch"},
    {FC_ETERMINAL, "terminal"},
    {FC_EINVAL, "invalid"},
};

static const char *outcome_name(int result)
{
    for (size_t i = 0; i < sizeof outcomes / sizeof *outcomes; i++)
        if (outcomes[i].result == result) return outcomes[i].name;
    return NULL;
}

static int outcome_parse(const char *name, int *result)
{
    for (size_t i = 0; i < sizeof outcomes / sizeof *outcomes; i++)
        if (strcmp(outcomes[i].name, name) == 0) return (*result = outcomes[i].result), 0;
    return -1;
}

/* A text column, "" for NULL (SQLite gives NULL on OOM too). */
static const char *text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

static char *text_dup(sqlite3_stmt *st, int i)
{
    return strdup(text(st, i));
}

/* Copies a stored outcome (the columns after fingerprint and created_at)
 * into c. FC__IDEM_ANSWERED; a row this server cannot read fails c alone. */
static int replay(fc_change *c, sqlite3_stmt *st)
{
    fc_status status;
    int result;
    if (outcome_parse(text(st, 2), &result) != 0 || fc_status_parse(text(st, 6), &status) != 0) {
        c->result = FC_EIO;
        snprintf(c->errmsg, sizeof c->errmsg, "stored outcome of idempotency key is not valid");
        return FC__IDEM_ANSWERED;
    }
    char *name = text_dup(st, 5), *msg = text_dup(st, 9);
    if (!name || !msg) {
        free(name);
        free(msg);
        c->result = FC_ENOMEM;
        snprintf(c->errmsg, sizeof c->errmsg, "out of memory replaying an idempotent change");
        return FC__IDEM_ANSWERED;
    }
    fc_workflow *w = &c->wf;
    free(w->name);
    free(w->message);
    snprintf(w->id, sizeof w->id, "%s", text(st, 4));
    w->name = name;
    w->status = status;
    w->current_step = sqlite3_column_int64(st, 7);
    w->total_steps = sqlite3_column_int64(st, 8);
    w->message = msg;
    w->seq = sqlite3_column_int64(st, 10);
    w->created_at_ms = sqlite3_column_int64(st, 11);
    w->updated_at_ms = sqlite3_column_int64(st, 12);
    w->epoch = sqlite3_column_int64(st, 13);
    c->result = result;
    snprintf(c->errmsg, sizeof c->errmsg, "%s", text(st, 3));
    c->replayed = 1;
    return FC__IDEM_ANSWERED;
}

int fc__idem_check(fc__sqlite_core *s, fc_change *c, int64_t now, char *ioerr, size_t n)
{
    sqlite3_stmt *st = s->w[FC__W_IDEM_SELECT];
    sqlite3_bind_text(st, 1, c->idem_key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), ret = FC__IDEM_NEW;
    if (rc == SQLITE_ROW) {
        int64_t created = sqlite3_column_int64(st, 1);
        const void *fp = sqlite3_column_blob(st, 0);
        int fplen = sqlite3_column_bytes(st, 0);
        if (now - created >= s->idem_window_ms) {
            ret = FC__IDEM_NEW; /* expired: as if never used; recording replaces the row */
        } else if (fplen != FC_IDEM_FP_LEN || memcmp(fp, c->idem_fp, FC_IDEM_FP_LEN) != 0) {
            c->result = FC_EKEYREUSED;
            snprintf(c->errmsg, sizeof c->errmsg,
                     "idempotency key already used for a different request");
            ret = FC__IDEM_ANSWERED;
        } else {
            ret = replay(c, st);
        }
    } else if (rc != SQLITE_DONE) {
        snprintf(ioerr, n, "%s", sqlite3_errmsg(s->wdb));
        ret = FC_EIO;
    }
    sqlite3_reset(st);
    return ret;
}

int fc__idem_record(fc__sqlite_core *s, const fc_change *c, int64_t now, char *ioerr, size_t n)
{
    const char *rname = outcome_name(c->result);
    if (!c->idem_key[0] || !rname) return 0;
    const fc_workflow *w = &c->wf;
    sqlite3_stmt *st = s->w[FC__W_IDEM_PUT];
    sqlite3_bind_text(st, 1, c->idem_key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, c->idem_fp, FC_IDEM_FP_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, rname, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, c->errmsg, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, w->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, w->name ? w->name : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, fc_status_name(w->status), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, w->current_step);
    sqlite3_bind_int64(st, 10, w->total_steps);
    sqlite3_bind_text(st, 11, w->message ? w->message : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 12, w->seq);
    sqlite3_bind_int64(st, 13, w->created_at_ms);
    sqlite3_bind_int64(st, 14, w->updated_at_ms);
    sqlite3_bind_int64(st, 15, w->epoch);
    return fc__sqlite_run(s, st, ioerr, n);
}

int fc__idem_trim(fc__sqlite_core *s, int64_t now, int keyed, char *ioerr, size_t n)
{
    if (!s->idem_trim_full && now - s->idem_trimmed_ms < FC__SQLITE_IDEM_TRIM_EVERY_MS) return 0;
    int limit = FC__SQLITE_IDEM_TRIM + 2 * keyed;
    sqlite3_stmt *st = s->w[FC__W_IDEM_TRIM];
    sqlite3_bind_int64(st, 1, now - s->idem_window_ms);
    sqlite3_bind_int(st, 2, limit);
    if (fc__sqlite_run(s, st, ioerr, n) != 0) return FC_EIO;
    s->idem_trimmed_ms = now;
    s->idem_trim_full = sqlite3_changes(s->wdb) >= limit;
    return 0;
}
