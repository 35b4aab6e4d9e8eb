/* Private to src/server: the server and connection structs and the
 * cross-file helpers (fc__ prefix) between conn.c, ws_session.c and server.c. */
#ifndef FC_SERVER_INTERNAL_H
#define FC_SERVER_INTERNAL_H

#include "cli/config.h"
#include "common/list.h"
#include "hub/hub.h"
#include "server/clients.h"
#include "server/conn.h"
#include "server/outq.h"
#include "server/server.h"
#include "store/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#define FC_WHEEL_SLOTS 20
#define FC_READ_BUF_SIZE (64 * 1024)
#define FC_CLOSE_GRACE_MS 2000
#define FC_PIPELINE_MAX 32 /* requests of one connection in flight at once */
/* Work one connection's input may do per loop turn before the others get
 * theirs: requests or frames, and time. The rest waits in its stash. */
#define FC_INPUT_BUDGET_ITEMS 32
#define FC_INPUT_BUDGET_NS (2 * 1000 * 1000)

/* An answer written before an earlier request of its connection was answered. */
typedef struct fc_parked {
    struct fc_parked *next;
    uint16_t seq;
    uint8_t keep_alive;
    fc_buf *response;
} fc_parked;

/* A timer wheel: one timer visits one of FC_WHEEL_SLOTS lists per tick, so
 * periodic per-connection work is spread evenly over the period. The
 * connections are linked through the fc_list at link_off in fc_conn. pos is
 * the next slot to visit; the expiry wheel counts it in absolute ticks of
 * loop time instead (expiry.c). */
typedef struct fc_wheel {
    uv_timer_t timer;
    fc_list slots[FC_WHEEL_SLOTS];
    unsigned pos;
    uint64_t tick_ms;
    uint64_t shift_ms; /* expiry: added to loop time so ticks start on wall-clock seconds */
    size_t link_off;
    void (*visit)(fc_conn *c);
} fc_wheel;

/* The token expiry wheel's tick: a stream ends at most about this long
 * after its token's exp (and an unauthenticated multi WebSocket after
 * --request-timeout). */
#define FC_EXPIRY_TICK_MS 250

/* What the loops share: the configuration, the listening socket (watched
 * by loop 0), the stream count that --max-connections limits, shutdown. */
typedef struct fc_cluster {
    const fc_config *cfg;
    const fc_server_handlers *handlers; /* the layer above (src/api), from fc_server_run */
    struct fc_auth *auth; /* --jwt-key, NULL = no JWTs; its cache locks itself */
    struct fc_tls *tls;   /* --tls-cert/--tls-key, NULL = plain TCP; reloaded on SIGHUP */
    int n_loops;
    struct fc_server *loops; /* n_loops of them; loop 0 runs on the main thread */
    int listen_fd;
    uv_poll_t listen_poll;   /* on loop 0 */
    uv_timer_t accept_pause; /* restarts accepting after running out of descriptors */
    uv_async_t sig_async;    /* on loop 0: the signal thread saw a signal (signals.c) */
    pthread_t sig_thread;
    int sig_thread_started;
    atomic_int sig_thread_stop;
    atomic_int sig_pending; /* signals seen, not yet handled on loop 0 */
    atomic_int stop_now;    /* SIGTERM/SIGINT seen: loops stop taking new requests at once */
    unsigned next_loop;     /* round-robin for accepted sockets (loop 0 only) */
    int max_conns;
    atomic_int n_streams; /* WebSocket and SSE streams of all loops */
    fc_clients *clients;  /* per-client limits; NULL when none is set */
    int shutting_down;    /* loop 0 only */
    struct fc_feed_relay *relay; /* the other nodes (server/feed.c), from loop 0's init */
    char node_id[160];           /* this node's name on the bus */
    int exit_code;               /* when the start fails: 2 for a refused configuration */
} fc_cluster;

/* One event loop and everything it owns: its connections, hub, store
 * handle, wheels and timers. Nothing in it is touched by another thread,
 * except the inbox (under inbox_lock) and the stop flag. */
struct fc_server {
    fc_cluster *cl;
    int index;
    /* While a request is routed: its token's subject hash, or NULL
     * (fc_conn_set_subject). Routing is synchronous on the loop, so one per
     * loop serves every connection without a field of its own. */
    const uint8_t *subject;
    uv_loop_t *loop;
    uv_thread_t thread; /* loops other than 0 */
    const fc_config *cfg;
    const fc_server_handlers *handlers; /* the cluster's, copied: set before loop state init */
    fc_store *store;
    fc_hub *hub;
    struct fc_feed *feed; /* the one way from the store and the bus to the hub */
    uv_async_t wake; /* sockets in the inbox, or a shutdown */
    uv_mutex_t inbox_lock;
    int *inbox; /* accepted sockets for this loop; guarded by inbox_lock */
    int inbox_len, inbox_cap;
    atomic_int stop_requested;
    uv_check_t flush_check;
    uv_idle_t flush_idle;   /* runs while flush work is left, so poll does not block */
    uv_timer_t sweep_timer; /* stuck writers, unanswered closes, the metrics gauges */
    uv_timer_t shutdown_timer;
    fc_list flush_list;   /* connections with output to write this loop turn */
    fc_list blocked_list; /* connections whose kernel buffer is full (uv_write pending) */
    fc_list closing_list; /* WebSockets waiting for the peer's close frame */
    fc_list input_list;   /* connections with input left over from an earlier turn */
    /* HTTP connections by deadline: every entry is appended with "now" and
     * the timeout is the same for all, so each list is sorted by deadline
     * and the sweep looks only at its head. */
    fc_list request_list;     /* a request begun (or a fresh connection): --request-timeout */
    fc_list idle_list;        /* keep-alive, between requests: --idle-timeout */
    size_t freed_since_trim;  /* bytes of answers freed since the last malloc_trim */
    fc_wheel ping_wheel;      /* WebSocket pings, one visit per --ping-interval */
    fc_wheel heartbeat_wheel; /* SSE comment heartbeats, one visit per --sse-heartbeat */
    fc_wheel expiry_wheel;    /* streams whose token expires (--jwt-key only) */
    int n_conns;              /* open TCP connections */
    int shutting_down;
    char *read_buf; /* shared by the loop's connections: an idle one owns no read buffer */
    char *tls_buf;  /* plaintext decrypted from read_buf (TLS only), shared likewise */
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

/* The frame at the head of a WebSocket's input while its payload arrives over
 * several reads: how many payload bytes are already unmasked (and, for text,
 * validated), and the UTF-8 state after them. The input stash holds at most
 * UINT32_MAX bytes, so done fits. */
typedef struct fc_ws_rx {
    uint32_t done;
    uint32_t utf8;
} fc_ws_rx;

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
    unsigned broken : 1;      /* a frame could not be queued: close on the next flush */
    unsigned over_limit : 1;  /* unsent output passed --max-output and has not drained to half */
    unsigned http_timer : 2;  /* FC__TIMER_*: which HTTP deadline list wheel_link is in */
    unsigned unauthed : 1;    /* a multi WebSocket opened without a credential, not yet auth'd */
    unsigned tls : 1;         /* a TLS connection: allocated as an fc_conn_tls */
    unsigned client_pair : 1; /* client points to the stream's address and subject entries */
    unsigned tls_started : 1; /* TLS: the first byte was a handshake record */
    unsigned tls_counted : 1; /* TLS: a failed handshake was counted in the metrics */
    unsigned tls_up : 1;      /* TLS: the handshake completed (and was counted) */
    uint16_t refs;
    uint32_t in_len, in_cap;
    char *in; /* unconsumed input (partial frame, pipelined request); NULL when none */
    fc_outq out;
    fc_list io_link;        /* srv->flush_list or srv->blocked_list */
    fc_list wheel_link;     /* a wheel slot, srv->closing_list, or an HTTP deadline list */
    fc_list input_link;     /* srv->input_list */
    fc_list exp_link;       /* a slot of srv->expiry_wheel while the stream's token expires */
    uint64_t progress_ms;   /* last write progress, or when the close was sent */
    uint64_t over_since_ms; /* when over_limit was set */
    uint64_t timer_ms;      /* when the HTTP deadline (http_timer) started */
    union {
        struct {
            fc_http_req *req; /* HTTP, SSE, long-poll: the request being parsed or answered */
            struct fc_parked *parked; /* answers waiting for an earlier one (pipelining) */
        };
        struct {              /* WebSocket */
            fc_ws_frag *frag; /* the fragmented message being reassembled */
            fc_ws_rx rx;      /* the partly received frame at the head of the input */
        };
    };
    uint16_t next_seq;  /* sequence number of the next request parsed */
    uint16_t emit_seq;  /* sequence number of the next answer to write */
    uint16_t deferred;  /* requests waiting for an asynchronous answer */
    uint16_t timer_seq; /* next_seq when the HTTP deadline started */
    uint32_t answering; /* ticket fc_conn_respond answers next (deferred requests) */
    uint32_t exp_tick;  /* with exp_link: when, in loop time / FC_EXPIRY_TICK_MS (fills padding) */
    fc_sub sub;
    fc_list multi_subs;
    fc_map *multi_index; /* multi_subs by workflow id; allocated on first use */
    void *ext;           /* API-layer stream state (a long-poll waiter) */
    /* The stream's entry in cl->clients when it counts there, or with
     * client_pair its entries for its address and its token subject
     * (conn_answer.c): a subject costs a connection nothing until it holds
     * one (8 more bytes in every fc_conn would cost 16 with the allocator). */
    void *client;
    char *cors_origin; /* the allowed Origin of the last deferred request, or NULL */
};

/* A TLS connection (c->tls): its session lives behind the fc_conn, so a
 * plain connection does not pay for the pointer (8 more bytes moved fc_conn
 * into the allocator's next size class, 16 bytes per connection). */
typedef struct fc_conn_tls {
    fc_conn conn;
    struct fc_tls_conn *session;
} fc_conn_tls;
#define FC_TLS_SESSION(c) (((fc_conn_tls *)(c))->session)

/* Every connection reaches its server through the loop, which saves a
 * pointer per connection (the loop's data is the server). */
#define FC_SRV(c) ((fc_server *)(c)->tcp.loop->data)

enum { FC__TIMER_NONE, FC__TIMER_REQUEST, FC__TIMER_IDLE };

/* conn.c */
/* A connection; with tls, an fc_conn_tls (its session still to be set). */
fc_conn *fc__conn_new(int tls);
/* Processes the input the connections on input_list have left (a budget each). */
void fc__conn_run_input(fc_server *srv);
/* The connection's output drained under its limit: resume its input. */
void fc__conn_input_ready(fc_conn *c);
/* Closes HTTP connections past --request-timeout or --idle-timeout. */
void fc__conn_sweep_http(fc_server *srv, uint64_t now);
/* Calls fn for every open connection (libuv's handle list: no list of our own). */
void fc__conn_foreach(fc_server *srv, void (*fn)(fc_conn *c, void *arg), void *arg);
void fc__conn_start(fc_conn *c);
void fc__conn_close(fc_conn *c);
void fc__conn_schedule_flush(fc_conn *c);
void fc__conn_flush_all(fc_server *srv);
/* Sends "100 Continue" for the request being read when it asked for one and
 * every earlier answer is out (conn_answer.c calls it after each answer). */
void fc__conn_maybe_continue(fc_conn *c);
/* conn_write.c: closes connections over --max-output past --slow-timeout. */
void fc__conn_sweep_over_limit(fc_server *srv, uint64_t now);

/* tls_conn.c: the TLS layer between the socket and the connection. */
/* Decrypts ciphertext read from the socket and hands the plaintext to
 * fc__conn_take_input; answers a plain-HTTP client 400 (not TLS). */
void fc__tls_input(fc_conn *c, const char *data, size_t len);
/* Writes c's queued output through TLS (flush's part for a TLS connection). */
void fc__tls_flush(fc_conn *c);
/* Last words before the socket closes: close_notify (or the pending alert),
 * if the kernel takes them now. */
void fc__tls_goodbye(fc_conn *c);
/* A TLS connection reached --request-timeout: counts a stalled handshake. */
void fc__tls_timed_out(fc_conn *c);

/* conn.c: plaintext input, from the socket or from TLS. */
void fc__conn_take_input(fc_conn *c, char *data, size_t len);
/* conn_write.c: for tls_conn.c. */
void fc__conn_delivered(const fc_buf *b);
void fc__conn_output_shrank(fc_conn *c);
/* Hands owned bytes (malloc'ed, freed once written) at base + off to
 * uv_write and marks c blocked; -1 when that failed (c is closed). */
int fc__conn_write_owned(fc_conn *c, char *base, size_t off, size_t len);

/* ws_session.c */
size_t fc__ws_input(fc_conn *c, char *data, size_t len);
void fc__ws_free_frag(fc_conn *c);
void fc__wheel_init(fc_server *srv, fc_wheel *w, double period_s, void (*visit)(fc_conn *c));
/* A wheel of tick_ms per slot over the fc_list at link_off in fc_conn,
 * turned by turn (NULL: one slot per tick, in turn, for periodic work). */
void fc__wheel_setup(fc_server *srv, fc_wheel *w, uint64_t tick_ms, size_t link_off,
                     void (*visit)(fc_conn *c), uv_timer_cb turn);
/* Visits every connection of slot i (visit may unlink the one it is given). */
void fc__wheel_visit_slot(fc_wheel *w, unsigned i);
void fc__wheel_add(fc_wheel *w, fc_conn *c);
void fc__ping_init(fc_server *srv);
void fc__ping_add(fc_conn *c);
void fc__heartbeat_init(fc_server *srv);
void fc__heartbeat_add(fc_conn *c);
/* expiry.c: the expiry wheel runs only with --jwt-key (no token expires otherwise). */
void fc__expiry_init(fc_server *srv);
void fc__ws_sweep_closing(fc_server *srv, uint64_t now);
fc_buf *fc__ws_ping_frame(void);

/* server.c */
/* Sets up what a loop owns besides its libuv handles and store: its
 * connection lists, read buffer, shared ping and heartbeat frames and hub
 * (srv->loop must be set). 0, or -1 when out of memory (loop_free releases
 * what was taken). Also used by the fuzz harness, so it never lags. */
int fc__server_loop_state_init(fc_server *srv);
void fc__server_conn_gone(fc_server *srv);
/* Work was queued for the check phase (output, leftover input): poll does
 * not sleep before it, wherever it was queued (fc__conn_schedule_flush and
 * fc__conn_input_ready call it when their list stops being empty; the
 * check phase stops it once both are empty). */
void fc__server_flush_soon(fc_server *srv);
/* Starts serving an accepted socket on srv's loop (srv's thread). */
void fc__server_adopt(fc_server *srv, int fd);
/* Asks every loop to shut down (loop 0's thread). */
void fc__cluster_shutdown(fc_cluster *cl);

/* server/feed.c: the loop's feed and the cluster relay. open after the
 * loop's store (loop 0 first: it makes the relay); start once every loop is
 * open; commit from the store's commit callback; close when the loop
 * finishes (before its store); free after every loop has ended. */
int fc__server_feed_open(fc_server *srv);
int fc__server_feed_start(fc_cluster *cl);
void fc__server_feed_commit(fc_server *srv, const fc_workflow *state,
                            const fc_store_commit *commit, int deleted);
void fc__server_feed_close(fc_server *srv);
void fc__server_feed_free(fc_cluster *cl);

/* signals.c */
/* Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread
 * it starts later (call first): only the signal thread takes them. */
void fc__signals_block(void);
/* Starts the signal thread and its wake-up on loop 0. 0 or -1. */
int fc__signals_start(fc_cluster *cl);
/* Stops and joins the signal thread and closes its wake-up handle (loop 0's
 * thread, when loop 0 finishes). Safe to call when it never started. */
void fc__signals_stop(fc_cluster *cl);

/* listener.c */
/* Binds and listens (cl->listen_fd), before the store is opened, so a busy
 * port fails before the database file is created. 0 or a libuv error (logged). */
int fc__listener_bind(fc_cluster *cl);
/* Accepts on loop 0 from the bound socket. 0 or a libuv error (logged). */
int fc__listener_start(fc_cluster *cl);
void fc__listener_stop(fc_cluster *cl);

#endif
