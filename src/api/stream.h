/* WebSocket update streams: the upgrade handshake and subscriptions. */
#ifndef FC_API_STREAM_H
#define FC_API_STREAM_H

#include "http/request.h"
#include "server/conn.h"
#include "api/api.h"
#include "store/store.h"

#include <jansson.h>

/* Validates the upgrade request (method, headers, version, Origin, and for
 * FC_WS_UPDATES the workflow and ?since=), answers 101 and sends the
 * initial messages, or answers the precise HTTP error. */
void fc_stream_open(fc_conn *c, fc_http_req *req, fc_stream_kind kind, const char *workflow_id);

/* --- shared by the WebSocket and SSE streams (src/api only) --- */

/* Turns a WebSocket frame of the hub (an update or a deletion) into what
 * connection c sends (the frame itself, an SSE event); a new reference or NULL. */
typedef fc_buf *(*fc__stream_encoder)(fc_conn *c, fc_buf *frame, void *ud);
fc_buf *fc__stream_encode_ws(fc_conn *c, fc_buf *frame, void *ud);

/* A position a client gives back: change seq of incarnation epoch. */
typedef struct fc__stream_pos {
    int64_t seq;   /* -1: none (start with the current state) */
    int64_t epoch; /* 0: not given (a legacy bare seq) */
} fc__stream_pos;

enum {
    FC__RESUME_CURRENT, /* no position: the current state */
    FC__RESUME_SAME,    /* the position is of the current incarnation: replay after it */
    FC__RESUME_RESYNC,  /* continuity cannot be proven: the current state, "resync":true */
};

/* What resuming one workflow needs, read before anything is sent (so a
 * failure can still be an HTTP answer). */
typedef struct fc__stream_resume {
    fc_workflow w; /* the current state when exists; else only w.id */
    int exists;
    int mode;         /* FC__RESUME_* */
    int tell_deleted; /* first the deletion of the incarnation pos names (tomb) */
    fc_tombstone tomb;
    fc__stream_pos pos;
} fc__stream_resume;

/* Parses "E:N" or a bare "N" (n bytes at s) into out. 0, or -1 when malformed
 * (E outside 1..2^53-1, N negative or not decimal). */
int fc__stream_parse_pos(const char *s, size_t n, fc__stream_pos *out);
/* Reads ?since=N|E:N and ?epoch=E of req into pos (seq -1 when absent);
 * answers 400 and returns -1 when malformed. */
int fc__stream_query_pos(fc_conn *c, fc_http_req *req, fc__stream_pos *pos);
/* Parses an epoch 1..2^53-1; -1 when malformed. */
int64_t fc__stream_parse_epoch(const char *s);
/* Reads what resuming workflow id at pos needs into r (clear it with
 * fc__stream_resume_clear when this returns 0). The rules:
 *   - no position: the current state;
 *   - pos.epoch is the current epoch, or pos is a bare seq of a workflow
 *     never deleted in this database (or 0): replay the log after pos.seq,
 *     or resync when the log no longer reaches back or pos.seq is ahead;
 *   - anything else: the current state with "resync":true, preceded by the
 *     deletion of pos's incarnation when the tombstone shows it ended after pos.
 * 0: there is something to send (the workflow exists, or it is gone and the
 * deletion is owed); FC_ENOTFOUND or FC_EIO otherwise (nothing to clear). */
int fc__stream_resume_read(fc_conn *c, const char *id, fc__stream_pos pos, fc__stream_resume *r);
/* Sends the initial messages of r through encode. Returns 0 with *at the
 * (epoch, seq) the subscriber is now at, or 1 when the workflow is gone
 * (only its deletion was sent; do not subscribe). */
int fc__stream_resume_send(fc_conn *c, const fc__stream_resume *r, fc__stream_encoder encode,
                           void *ud, fc__stream_pos *at);
void fc__stream_resume_clear(fc__stream_resume *r);
/* Answers a failed read of workflow id: 404 (unknown) or 500. */
void fc__stream_answer_read_error(fc_conn *c, int err, const char *id);
/* Reads workflow id into w (caller clears it); when that fails, answers
 * 404 (unknown) or 500 and returns the error. */
int fc__stream_get_or_answer(fc_conn *c, const char *id, fc_workflow *w);
/* Subscribes c's own (single-workflow) subscription, or adds one entry to its
 * multi-workflow list (id NULL: all workflows). Out of memory fails the
 * connection: FC_ENOMEM / NULL. */
int fc__stream_subscribe_one(fc_conn *c, const char *id, fc__stream_pos at);
fc_stream_sub *fc__stream_add_sub(fc_conn *c, const char *id, fc__stream_pos at);
/* When the stream limit (--max-connections) is reached, answers 503, closes
 * after it, and returns 1. */
int fc__stream_refuse_over_limit(fc_conn *c);
/* Parses a non-negative decimal seq; -1 when malformed. */
int64_t fc__stream_parse_since(const char *s);
/* Unsubscribes and frees one subscription of a multi-workflow stream. */
void fc__stream_drop_sub(fc_conn *c, fc_stream_sub *s);

/* Multi-workflow op messages: {"op":"error","code","message"}, plus
 * "workflow_id" when one id is at fault; any text message. */
void fc__stream_op_error(fc_conn *c, const char *workflow_id, const char *code, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));
void fc__stream_send_text(fc_conn *c, const char *s);
/* Drops every subscription of c (its own and its multi-workflow ones). */
void fc__stream_unsubscribe(fc_conn *c);
/* {"op":"auth","token":...} on a multi WebSocket (stream_auth.c): verifies
 * the token and, when good, puts it in force in place of the old one. */
void fc__stream_op_auth(fc_conn *c, json_t *msg);

/* SSE (src/api/sse.c). */
void fc_sse_open(fc_conn *c, fc_http_req *req, fc_stream_kind kind, const char *workflow_id);
/* Returns the SSE form of a hub frame for connection c (a new reference). */
fc_buf *fc_sse_from_frame(fc_conn *c, fc_buf *frame);

#endif
