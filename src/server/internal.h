/* Private to src/server: the server and connection structs and the
 * cross-file helpers (fc__ prefix) between conn.c, ws_session.c and server.c. */
#ifndef FC_SERVER_INTERNAL_H
#define FC_SERVER_INTERNAL_H

#include "cli/config.h"
#include "common/list.h"
#include "hub/hub.h"
#include "server/conn.h"
#include "server/outq.h"
#include "store/store.h"

#include <uv.h>

#define FC_WHEEL_SLOTS 20
#define FC_READ_BUF_SIZE (64 * 1024)
#define FC_CLOSE_GRACE_MS 2000
#define FC_SSE_HEARTBEAT_S 15.0
#define FC_PIPELINE_MAX 32 /* requests of one connection in flight at once */

/* An answer written before an earlier request of its connection was answered. */
typedef struct fc_parked {
    struct fc_parked *next;
    uint16_t seq;
    uint8_t keep_alive;
    fc_buf *response;
} fc_parked;

/* A timer wheel: one timer visits one of FC_WHEEL_SLOTS lists per tick, so
 * periodic per-connection work is spread evenly over the period. */
typedef struct fc_wheel {
    uv_timer_t timer;
    fc_list slots[FC_WHEEL_SLOTS];
    unsigned pos;
    void (*visit)(fc_conn *c);
} fc_wheel;

struct fc_server {
    uv_loop_t *loop;
    const fc_config *cfg;
    fc_store *store;
    fc_hub *hub;
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm;
    uv_check_t flush_check;
    uv_idle_t flush_idle;   /* runs while flush work is left, so poll does not block */
    uv_timer_t sweep_timer; /* stuck writers and unanswered closes */
    uv_timer_t shutdown_timer;
    fc_list flush_list;       /* connections with output to write this loop turn */
    fc_list blocked_list;     /* connections whose kernel buffer is full (uv_write pending) */
    fc_list closing_list;     /* WebSockets waiting for the peer's close frame */
    fc_wheel ping_wheel;      /* WebSocket pings, one visit per --ping-interval */
    fc_wheel heartbeat_wheel; /* SSE comment heartbeats, one visit per 15 s */
    int n_conns;   /* open TCP connections */
    int n_streams; /* of those, WebSocket and SSE streams: what --max-connections limits */
    int max_conns;
    int shutting_down;
    int exit_code;
    char *read_buf; /* shared by all connections: an idle connection owns no read buffer */
    fc_buf *ping_frame;
    fc_buf *heartbeat; /* ": keep-alive" SSE comment, shared */
};

/* A fragmented message being reassembled; exists only while one is in progress. */
typedef struct fc_ws_frag {
    uint8_t opcode;
    uint32_t utf8_state;
    size_t len, cap;
    char data[];
} fc_ws_frag;

struct fc_conn {
    uv_tcp_t tcp;         /* first: the handle pointer is the connection pointer */
    uint8_t kind;         /* FC_STREAM_NONE while in HTTP mode */
    unsigned closing : 1; /* uv_close called */
    unsigned closed : 1;  /* close callback ran; memory kept while refs > 0 */
    unsigned busy : 1;    /* a request waits for an asynchronous answer */
    unsigned close_after_write : 1;
    unsigned writing : 1;  /* a uv_write is in flight */
    unsigned in_flush : 1; /* io_link is in flush_list */
    unsigned ws_close_sent : 1;
    unsigned awaiting_pong : 1;
    unsigned reading : 1;
    unsigned subscribed_all : 1;
    unsigned last_request : 1; /* the request being answered ends the connection */
    unsigned has_answering : 1;
    unsigned broken : 1; /* a frame could not be queued: close on the next flush */
    uint16_t refs;
    uint32_t in_len, in_cap;
    char *in; /* unconsumed input (partial frame, pipelined request); NULL when none */
    fc_outq out;
    fc_list io_link;      /* srv->flush_list or srv->blocked_list */
    fc_list wheel_link;   /* a wheel slot, or srv->closing_list */
    uint64_t progress_ms; /* last write progress, or when the close was sent */
    union {
        struct {
            fc_http_req *req; /* HTTP, SSE, long-poll: the request being parsed or answered */
            struct fc_parked *parked; /* answers waiting for an earlier one (pipelining) */
        };
        fc_ws_frag *frag; /* WebSocket: the fragmented message being reassembled */
    };
    uint16_t next_seq;  /* sequence number of the next request parsed */
    uint16_t emit_seq;  /* sequence number of the next answer to write */
    uint16_t deferred;  /* requests waiting for an asynchronous answer */
    uint32_t answering; /* ticket fc_conn_respond answers next (deferred requests) */
    fc_sub sub;
    fc_list multi_subs;
    void *ext; /* API-layer stream state (a long-poll waiter) */
};

/* Every connection reaches its server through the loop, which saves a
 * pointer per connection (the loop's data is the server). */
#define FC_SRV(c) ((fc_server *)(c)->tcp.loop->data)

/* conn.c */
fc_conn *fc__conn_new(void);
/* Calls fn for every open connection (libuv's handle list: no list of our own). */
void fc__conn_foreach(fc_server *srv, void (*fn)(fc_conn *c, void *arg), void *arg);
void fc__conn_start(fc_conn *c);
void fc__conn_close(fc_conn *c);
void fc__conn_schedule_flush(fc_conn *c);
void fc__conn_flush_all(fc_server *srv);

/* ws_session.c */
size_t fc__ws_input(fc_conn *c, char *data, size_t len);
void fc__ws_free_frag(fc_conn *c);
void fc__wheel_init(fc_server *srv, fc_wheel *w, double period_s, void (*visit)(fc_conn *c));
void fc__wheel_add(fc_wheel *w, fc_conn *c);
void fc__ping_init(fc_server *srv);
void fc__ping_add(fc_conn *c);
void fc__heartbeat_init(fc_server *srv);
void fc__heartbeat_add(fc_conn *c);
void fc__ws_sweep_closing(fc_server *srv, uint64_t now);
fc_buf *fc__ws_ping_frame(void);

/* server.c */
void fc__server_conn_gone(fc_server *srv);

#endif
