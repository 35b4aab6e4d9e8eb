/* WebSocket update streams: the upgrade handshake and subscriptions. */
#ifndef FC_API_STREAM_H
#define FC_API_STREAM_H

#include "http/request.h"
#include "server/conn.h"
#include "api/api.h"

/* Validates the upgrade request (method, headers, version, Origin, and for
 * FC_WS_UPDATES the workflow and ?since=), answers 101 and sends the
 * initial messages, or answers the precise HTTP error. */
void fc_stream_open(fc_conn *c, fc_http_req *req, fc_stream_kind kind, const char *workflow_id);

/* --- shared by the WebSocket and SSE streams (src/api only) --- */

/* Encodes one update for connection c (a WebSocket frame, an SSE event). */
typedef fc_buf *(*fc__stream_encoder)(fc_conn *c, const fc_workflow *w, int resync, void *ud);
fc_buf *fc__stream_encode_ws(fc_conn *c, const fc_workflow *w, int resync, void *ud);

/* Sends w's current state (since < 0), or the logged changes after since,
 * or the current state with "resync":true when the log no longer reaches
 * back (or the client claims a seq the server never had). Returns the seq
 * the subscriber is now at. */
int64_t fc__stream_send_initial(fc_conn *c, const fc_workflow *w, int64_t since,
                                fc__stream_encoder encode, void *ud);
/* Answers a failed read of workflow id: 404 (unknown) or 500. */
void fc__stream_answer_read_error(fc_conn *c, int err, const char *id);
/* Reads workflow id into w (caller clears it); when that fails, answers
 * 404 (unknown) or 500 and returns the error. */
int fc__stream_get_or_answer(fc_conn *c, const char *id, fc_workflow *w);
/* Subscribes c's own (single-workflow) subscription, or adds one entry to its
 * multi-workflow list (id NULL: all workflows). Out of memory fails the
 * connection: FC_ENOMEM / NULL. */
int fc__stream_subscribe_one(fc_conn *c, const char *id, int64_t last_seq);
fc_stream_sub *fc__stream_add_sub(fc_conn *c, const char *id, int64_t last_seq);
/* When the stream limit (--max-connections) is reached, answers 503, closes
 * after it, and returns 1. */
int fc__stream_refuse_over_limit(fc_conn *c);
/* Parses a non-negative decimal seq; -1 when malformed. */
int64_t fc__stream_parse_since(const char *s);
/* Unsubscribes and frees one subscription of a multi-workflow stream. */
void fc__stream_drop_sub(fc_conn *c, fc_stream_sub *s);

/* SSE (src/api/sse.c). */
void fc_sse_open(fc_conn *c, fc_http_req *req, fc_stream_kind kind, const char *workflow_id);
/* Returns the SSE form of a hub frame for connection c (a new reference). */
fc_buf *fc_sse_from_frame(fc_conn *c, fc_buf *frame);

#endif
