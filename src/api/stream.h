/* WebSocket update streams: the upgrade handshake and subscriptions. */
#ifndef FC_API_STREAM_H
#define FC_API_STREAM_H

#include "http/request.h"
#include "server/conn.h"

/* Validates the upgrade request (method, headers, version, Origin, and for
 * FC_WS_UPDATES the workflow and ?since=), answers 101 and sends the
 * initial messages, or answers the precise HTTP error. */
void fc_stream_open(fc_conn *c, fc_http_req *req, fc_ws_kind kind, const char *workflow_id);

#endif
