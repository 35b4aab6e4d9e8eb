/* The API layer: REST handlers and WebSocket stream subscriptions. The
 * server core calls these through the fc_api_handlers table it is given at
 * start-up (it never includes src/api); they answer through
 * src/server/conn.h. */
#ifndef FC_API_API_H
#define FC_API_API_H

#include "http/request.h"
#include "server/conn.h"
#include "server/server.h"

#include <stddef.h>
#include <stdint.h>

/* The API's request and stream handlers for the server core (src/main.c
 * passes them to fc_server_run): fc_api_handle, fc_stream_on_text,
 * fc_stream_on_close, fc_stream_on_expiry and fc_stream_deliver. */
extern const fc_server_handlers fc_api_handlers;

/* Handles one complete HTTP request (REST, metrics, health, upgrades).
 * The request stays owned by the connection. */
void fc_api_handle(fc_conn *c, fc_http_req *req);

/* A complete text message from a client on an update stream. */
void fc_stream_on_text(fc_conn *c, const char *data, size_t len);
/* The connection is closing: drop its subscriptions. */
void fc_stream_on_close(fc_conn *c);
/* The stream's token expired (or a multi WebSocket opened without one was
 * not authenticated in time): end it as the protocol says (stream_auth.c). */
void fc_stream_on_expiry(fc_conn *c);
/* The hub delivers a change to a stream connection. */
void fc_stream_deliver(void *owner, fc_sub *sub, fc_buf *frame, int deleted);

/* Long-poll (src/api/longpoll.c): GET /api/workflows/{id}?wait_since=N&timeout=S. */
void fc_longpoll_start(fc_conn *c, fc_http_req *req, const char *workflow_id);
/* A change arrived for the waiting request: answer it on the next loop turn. */
void fc_longpoll_wake(fc_conn *c);
/* The connection closes while waiting. */
void fc_longpoll_cancel(fc_conn *c);
/* The token expired while waiting: answer 401 token_expired now. */
void fc_longpoll_expire(fc_conn *c);

/* One subscription of a multi-workflow stream (GET /api/updates). */
typedef struct fc_stream_sub {
    fc_sub sub;
    fc_list conn_link; /* in fc_conn_multi_subs() */
    fc_map_node by_id; /* in fc_conn_multi_index(); key NULL when not indexed */
} fc_stream_sub;

#endif
