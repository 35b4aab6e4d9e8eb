/* Resuming a stream at a position a client gives back, (epoch, seq): the
 * replay from the event log, the in-band deletion of an incarnation that
 * ended after the position, and "resync":true when continuity cannot be
 * proven. Shared by every stream transport (WebSocket single and multi,
 * SSE single and multi). */
#include "api/stream.h"
#include "common/error.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "wire/wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses a non-negative decimal integer of at most max. -1 when malformed. */
static int64_t parse_uint(const char *s, size_t n, int64_t max)
{
    char buf[24];
    if (n == 0 || n >= sizeof buf || strspn(s, "0123456789") < n) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    return errno == ERANGE || v > max ? -1 : (int64_t)v;
}

int fc__stream_parse_pos(const char *s, size_t n, fc__stream_pos *out)
{
    const char *colon = memchr(s, ':', n);
    out->epoch = 0;
    if (colon) {
        out->epoch = parse_uint(s, (size_t)(colon - s), FC_EPOCH_MAX);
        if (out->epoch < 1) return -1;
        n -= (size_t)(colon + 1 - s);
        s = colon + 1;
    }
    out->seq = parse_uint(s, n, INT64_MAX);
    return out->seq < 0 ? -1 : 0;
}

int64_t fc__stream_parse_epoch(const char *s)
{
    int64_t e = parse_uint(s, strlen(s), FC_EPOCH_MAX);
    return e < 1 ? -1 : e;
}

/* The deletion a resume must be told of: pos names a change of the
 * incarnation the tombstone records, from before its deletion. */
static int deletion_after(const fc_tombstone *t, fc__stream_pos pos)
{
    return pos.epoch != 0 && t->epoch == pos.epoch && pos.seq < t->seq;
}

int fc__stream_resume_read(fc_conn *c, const char *id, fc__stream_pos pos, fc__stream_resume *r)
{
    fc_store *store = fc_server_store(fc_conn_server(c));
    memset(r, 0, sizeof *r);
    r->pos = pos;
    int rc = fc_store_get(store, id, &r->w);
    if (rc != 0 && rc != FC_ENOTFOUND) return rc;
    r->exists = rc == 0;
    if (!r->exists) snprintf(r->w.id, sizeof r->w.id, "%s", id); /* for the deletion */

    if (r->exists && (pos.seq < 0 || pos.epoch == r->w.epoch)) {
        r->mode = pos.seq < 0 ? FC__RESUME_CURRENT : FC__RESUME_SAME;
        return 0;
    }
    if (r->exists && pos.epoch == 0 && pos.seq == 0) {
        /* Nothing seen yet, so nothing ambiguous: the current incarnation from its start. */
        r->mode = FC__RESUME_SAME;
        return 0;
    }
    if (!r->exists && (pos.epoch == 0 || pos.seq < 0)) return FC_ENOTFOUND;

    /* Another incarnation, or a bare seq (no epoch): only the tombstone can tell. */
    fc_tombstone t;
    int tr = fc_store_tombstone(store, id, &t);
    if (tr != 0 && tr != FC_ENOTFOUND) {
        fc__stream_resume_clear(r);
        return tr;
    }
    int has_tomb = tr == 0;
    if (has_tomb && deletion_after(&t, pos)) {
        r->tell_deleted = 1;
        r->tomb = t;
    }
    if (!r->exists) return r->tell_deleted ? 0 : FC_ENOTFOUND;
    if (pos.epoch == 0 && !has_tomb)
        r->mode = FC__RESUME_SAME; /* never deleted here: the bare seq can only mean this one */
    else
        r->mode = FC__RESUME_RESYNC;
    return 0;
}

void fc__stream_resume_clear(fc__stream_resume *r)
{
    fc_workflow_clear(&r->w);
}

/* Hands one frame to the transport's encoder and queues the result. */
static void send_frame(fc_conn *c, fc_buf *frame, fc__stream_encoder encode, void *ud)
{
    if (!frame) return;
    fc_buf *out = encode(c, frame, ud);
    fc_buf_unref(frame);
    if (out) fc_conn_send(c, out);
}

typedef struct replay {
    fc_conn *c;
    int64_t epoch;
    fc_buf **frames;
    size_t n, cap;
    int64_t last_seq;
    int broken; /* out of memory, or a row of another incarnation (it was re-created meanwhile) */
} replay;

static int replay_row(const fc_workflow *w, void *ud)
{
    replay *r = ud;
    if (w->epoch != r->epoch) return r->broken = 1;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        fc_buf **f = realloc(r->frames, cap * sizeof *f);
        if (!f) return r->broken = 1;
        r->frames = f;
        r->cap = cap;
    }
    fc_buf *b = fc_wire_update_frame(w, 0);
    if (!b) return r->broken = 1;
    r->frames[r->n++] = b;
    r->last_seq = w->seq;
    return 0;
}

/* Replays the logged changes after since when the log still reaches back to
 * since + 1; returns the seq it ended at, or -1 (nothing sent) when it does not. */
static int64_t replay_log(fc_conn *c, const fc_workflow *w, int64_t since,
                          fc__stream_encoder encode, void *ud)
{
    replay r = {.c = c, .epoch = w->epoch};
    int64_t oldest = 0;
    int rc = fc_store_events_since(fc_server_store(fc_conn_server(c)), w->id, since, 0, replay_row,
                                   &r, &oldest);
    int ok = rc == 0 && !r.broken && oldest != 0 && oldest <= since + 1;
    for (size_t i = 0; i < r.n; i++) {
        if (ok)
            send_frame(c, r.frames[i], encode, ud);
        else
            fc_buf_unref(r.frames[i]);
    }
    free(r.frames);
    if (!ok) return -1;
    return r.last_seq > w->seq ? r.last_seq : w->seq;
}

int fc__stream_resume_send(fc_conn *c, const fc__stream_resume *r, fc__stream_encoder encode,
                           void *ud, fc__stream_pos *at)
{
    if (r->tell_deleted) {
        fc_workflow gone = {.epoch = r->tomb.epoch, .seq = r->tomb.seq};
        memcpy(gone.id, r->w.id, sizeof gone.id);
        send_frame(c, fc_wire_deleted_frame(&gone, r->tomb.deleted_at_ms), encode, ud);
        FC_METRIC_ADD(deletions_told, 1);
    }
    if (!r->exists) return 1;
    const fc_workflow *w = &r->w;
    int64_t since = r->pos.seq;
    at->epoch = w->epoch;
    at->seq = w->seq;
    int resync = r->mode == FC__RESUME_RESYNC;
    if (r->mode == FC__RESUME_SAME) {
        if (since == w->seq) return 0; /* up to date: nothing to send */
        if (since < w->seq) {
            int64_t end = replay_log(c, w, since, encode, ud);
            if (end >= 0) {
                at->seq = end;
                return 0;
            }
        }
        /* The log no longer reaches back, or the client is ahead of the
         * server (a database restored without rotate-epochs). */
        resync = 1;
    }
    if (resync) FC_METRIC_ADD(resyncs, 1);
    send_frame(c, fc_wire_update_frame(w, resync), encode, ud);
    return 0;
}

fc_buf *fc__stream_encode_ws(fc_conn *c, fc_buf *frame, void *ud)
{
    (void)c;
    (void)ud;
    return fc_buf_ref(frame);
}
