/* The flowcast server: listener, event loop, timers, signals, shutdown.
 * The core knows nothing of routes or stream protocols: it hands requests
 * and stream events to the handlers it is given at start-up (src/api's, as
 * src/main.c wires them), so dependencies point one way (api -> server). */
#ifndef FC_SERVER_SERVER_H
#define FC_SERVER_SERVER_H

#include "cli/config.h"
#include "http/request.h"
#include "hub/hub.h"
#include "server/conn.h"

#include <stddef.h>

/* The layer above the core. Every slot is required; all are called on the
 * connection's loop thread, never from inside a call the handler made. */
typedef struct fc_server_handlers {
    /* One complete HTTP request (REST, metrics, health, upgrades). The
     * request stays owned by the connection. */
    void (*request)(fc_conn *c, fc_http_req *req);
    /* A complete, UTF-8-valid text message from a client on a multi
     * WebSocket (FC_WS_MULTI). */
    void (*on_text)(fc_conn *c, const char *data, size_t len);
    /* A connection whose kind is not FC_STREAM_NONE is closing: drop what
     * the handler attached to it (subscriptions, a long-poll wait). */
    void (*on_close)(fc_conn *c);
    /* The deadline set with fc_conn_set_expiry passed: end the stream as the
     * protocol says. */
    void (*on_expiry)(fc_conn *c);
    /* Each loop's hub hands a change to a subscriber (see fc_hub_deliver_fn). */
    fc_hub_deliver_fn deliver;
} fc_server_handlers;

/* Runs the server until SIGINT/SIGTERM; returns the process exit code.
 * handlers must stay valid until it returns. */
int fc_server_run(const fc_config *cfg, const fc_server_handlers *handlers);

#endif
