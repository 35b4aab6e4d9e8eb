/* fc_conn: one client TCP connection, in HTTP mode until it upgrades to a
 * WebSocket. This is the face the API layer (src/api) uses: answer a
 * request, keep a connection alive across an asynchronous store call,
 * upgrade, queue frames, close. All calls happen on the loop thread. */
#ifndef FC_SERVER_CONN_H
#define FC_SERVER_CONN_H

#include "common/buf.h"
#include "common/list.h"
#include "common/map.h"
#include "hub/hub.h"
#include "http/request.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fc_conn fc_conn;
typedef struct fc_server fc_server;
struct fc_config;
struct fc_store;

/* What a connection carries once it is no longer plain request/response. */
typedef enum {
    FC_STREAM_NONE = 0, /* HTTP requests */
    FC_WS_UPDATES,      /* WebSocket, one workflow */
    FC_WS_MULTI,        /* WebSocket, subscribe/unsubscribe ops */
    FC_WS_ECHO,         /* WebSocket echo for conformance suites */
    FC_SSE_ONE,         /* Server-Sent Events, one workflow */
    FC_SSE_MULTI,       /* Server-Sent Events, several workflows */
    FC_LONGPOLL,        /* an HTTP request waiting for the next change */
} fc_stream_kind;

static inline int fc_stream_is_ws(fc_stream_kind k)
{
    return k == FC_WS_UPDATES || k == FC_WS_MULTI || k == FC_WS_ECHO;
}
static inline int fc_stream_is_sse(fc_stream_kind k)
{
    return k == FC_SSE_ONE || k == FC_SSE_MULTI;
}

fc_server *fc_conn_server(const fc_conn *c);
const struct fc_config *fc_server_config(const fc_server *s);
uv_loop_t *fc_server_loop(const fc_server *s);
struct fc_store *fc_server_store(const fc_server *s);
/* 0 when the cluster bus proved itself end to end recently, or there is
 * none (no --nats); else -1 with a reason (for /readyz). */
int fc_server_bus_health(const fc_server *srv, char *why, size_t whylen);
fc_hub *fc_server_hub(const fc_server *s);
/* True while the server takes new connections: the listening socket is open
 * and no shutdown has begun (a shutdown stops accepting first). */
int fc_server_accepting(const fc_server *s);
/* The JWT verifier (--jwt-key), NULL when none is configured. */
struct fc_auth *fc_server_auth(const fc_server *s);
/* True when the open WebSocket and SSE streams have reached --max-connections
 * (plain requests are short-lived and never refused for it). A cheap early
 * check: fc_conn_upgrade and fc_conn_start_sse take the slot itself. */
int fc_server_over_limit(const fc_server *s);
/* Answers 503 for a stream over --max-connections and closes after it. */
void fc_conn_refuse_stream(fc_conn *c);

/* Queues an HTTP response to the current request; keeps the connection
 * open when the request allows it. Ends the current request. */
void fc_conn_respond(fc_conn *c, int status, const char *extra_headers, const char *content_type,
                     const char *body, size_t len);
/* Makes the answer to the current request the last one on this connection. */
void fc_conn_close_after_reply(fc_conn *c);
/* Closes a streaming connection (SSE) once everything queued is written. */
void fc_conn_close_when_written(fc_conn *c);
/* Queues {"error":{"code","message"}} with status (extra_headers as above). */
void fc_conn_respond_error(fc_conn *c, int status, const char *extra_headers, const char *code,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Answers the current request later (after an asynchronous store call):
 * keeps c's memory alive, and lets the connection go on with pipelined
 * requests; answers still leave in request order. Returns the ticket to give
 * fc_conn_answer, which makes the next fc_conn_respond answer that request;
 * then call fc_conn_release. */
uint32_t fc_conn_defer(fc_conn *c);
void fc_conn_answer(fc_conn *c, uint32_t ticket);

/* Keeps c (memory, not the socket) alive across a wait that must hold the
 * connection alone (long-poll): nothing else is parsed until it is answered.
 * fc_conn_release drops it. fc_conn_is_closed tells whether the socket went
 * away meanwhile. */
void fc_conn_hold(fc_conn *c);
void fc_conn_release(fc_conn *c);
int fc_conn_is_closed(const fc_conn *c);

/* The token subject (the 16-byte hash of fc_auth_grant.sub) of the request
 * being routed, or NULL; sub must stay valid until it is set back to NULL
 * (fc_api_handle sets it around the routing, which takes stream slots and
 * writes synchronously). */
void fc_conn_set_subject(fc_conn *c, const uint8_t *sub);

/* Takes one change from the client's --write-rate bucket: 0, or -1 after
 * answering 429 with Retry-After (the client is over the rate) or 503 (the
 * client table is full). The client is the request's token subject when it
 * has one, else its IP address (server/clients.h). */
int fc_conn_take_write(fc_conn *c);

/* Counts c as one of its client's --max-streams-per-client streams: its
 * address's and, with a subject, its token subject's. 0 (also when no limit
 * is set or c already counts), or -1 after answering 503. fc_conn_upgrade
 * and fc_conn_start_sse take it themselves; a long-poll takes it while it
 * waits. fc_conn_release_client_slot gives it back (closing does too). */
int fc_conn_take_client_slot(fc_conn *c);
void fc_conn_release_client_slot(fc_conn *c);
/* An open stream's token changes ({"op":"auth"}): it is to count against
 * subject sub (NULL = none) instead of its previous one. 0, or -1 when sub
 * is at its --max-streams-per-client limit or the table is full (counted;
 * the stream keeps its previous subject's slot). */
int fc_conn_move_subject_slot(fc_conn *c, const uint8_t *sub);

/* Answers 101 and turns c into a WebSocket of the given kind. The request
 * must have been validated (fc_api). Takes one --max-connections slot,
 * atomically across the loops. Returns 0; FC_ELIMIT when no slot is left
 * (503 answered); or FC_ENOMEM (nothing answered). */
int fc_conn_upgrade(fc_conn *c, const char *accept_key, fc_stream_kind kind);
fc_stream_kind fc_conn_kind(const fc_conn *c);

/* Queues a frame (takes over one reference). */
void fc_conn_send(fc_conn *c, fc_buf *frame);
/* Queues a change frame for a subscriber (takes over one reference); when
 * its socket takes no more (a write is pending) and its backlog has passed
 * limit, the queued state of the same workflow is replaced instead. Returns
 * how many were dropped. */
int fc_conn_send_coalesce(fc_conn *c, fc_buf *frame, uint32_t limit);
/* Whether a multi-workflow stream has subscribed to all workflows. */
int fc_conn_has_all(const fc_conn *c);
void fc_conn_set_all(fc_conn *c, int on);
/* Sets this loop's backlog gauges in its metrics shard: the largest and
 * total unsent backlog (messages) of its connections. Each loop does it four
 * times a second; a scrape does it for its own loop first, so the other
 * loops' part of the figure is up to 250 ms old. */
void fc_server_update_gauges(fc_server *s);

/* Starts the closing handshake with code and reason. */
void fc_conn_ws_close(fc_conn *c, uint16_t code, const char *reason);

/* Turns c into a Server-Sent Events stream: answers 200 text/event-stream
 * (the body lasts until the connection closes) and sends heartbeats.
 * Returns like fc_conn_upgrade, or 1 for a HEAD request: its answer (the same
 * status and headers, no body) is sent and no stream starts. */
int fc_conn_start_sse(fc_conn *c, fc_stream_kind kind);
/* Marks c as waiting for a change (long-poll) or back to plain HTTP. */
void fc_conn_set_kind(fc_conn *c, fc_stream_kind kind);
/* Ends the stream at at_ms (wall clock, ms since the epoch; 0 = never):
 * then fc_stream_on_expiry is called, on a tick of the loop's expiry wheel
 * (within FC_EXPIRY_TICK_MS, 250 ms). Setting it again moves the deadline.
 * Only with --jwt-key; without it this does nothing. O(1), no allocation. */
void fc_conn_set_expiry(fc_conn *c, int64_t at_ms);
/* A multi WebSocket opened without a credential: until an auth op succeeds,
 * every other op is refused. */
int fc_conn_unauthenticated(const fc_conn *c);
void fc_conn_set_unauthenticated(fc_conn *c, int on);
/* One pointer of stream state owned by the API layer (e.g. a long-poll waiter). */
void *fc_conn_ext(const fc_conn *c);
void fc_conn_set_ext(fc_conn *c, void *ext);

/* The single-workflow subscription embedded in every connection, and the
 * list of fc_stream_sub of a multi-workflow stream, with its index by
 * workflow id (set up on first use: NULL when out of memory). */
fc_sub *fc_conn_sub(fc_conn *c);
fc_list *fc_conn_multi_subs(fc_conn *c);
fc_map *fc_conn_multi_index(fc_conn *c);

#endif
