/* libflowcast live-update watch: private state shared by watch.c (connection
 * lifecycle) and watch_msg.c (frames, messages, subscriptions, resume). */
#ifndef FC_CLIENT_WATCH_H
#define FC_CLIENT_WATCH_H

#include <openssl/ssl.h>

#include "client/internal.h"
#include "common/list.h"
#include "common/map.h"

#define FCC__ID_MAX 64
#define FCC__MAX_MESSAGE (16u << 20)
#define FCC__EPOCH_MAX INT64_C(9007199254740991) /* 2^53-1: epochs are exact JS numbers */

/* One watched workflow and the last position (epoch, seq) delivered to the
 * application: the watch resumes from it and drops what does not follow it. */
typedef struct fcc__sub {
    fc_map_node node; /* key = id */
    fc_list link;     /* in fcc_watch.sub_list, in order of addition */
    char id[FCC__ID_MAX + 1];
    int64_t epoch;    /* incarnation of last_seq; 0 while unknown */
    int64_t retired;  /* the incarnation epoch replaced (0: none): a late message of it
                         is old, not yet another incarnation */
    int64_t last_seq; /* -1 before the first update */
    int seen;         /* the server has confirmed it exists */
    int gone;         /* incarnation `epoch` was deleted: not subscribed again, but
                         kept (watches of given ids only) so that a repeat of the
                         deletion is dropped and a new incarnation revives it */
} fcc__sub;

/* One TCP connection attempt; freed in its close callback. */
typedef struct fcc__conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    fcc_watch *w;
    char *rbuf; /* unparsed input */
    size_t rlen, rcap;
    uint8_t *msg; /* reassembled fragments of a data message */
    size_t msg_len;
    int msg_active;
    int upgraded;
    int single;    /* opened on the single-workflow stream */
    int dead;      /* closing: ignore further input */
    int counted;   /* its close completes fcc__watch_finish */
    int got_close; /* close code the server sent, 0 if none */
    int expired;   /* the server said the token expired: reconnect with a fresh one */
    char key[25];
    /* https only (watch_tls.c): the TLS session between the socket and rbuf. */
    SSL *ssl;
    BIO *tls_in, *tls_out; /* ciphertext from and to the socket */
    char *cbuf;            /* ciphertext read from the socket */
    int tls_ready;         /* handshake done: the upgrade request went out */
} fcc__conn;

struct fcc_watch {
    uv_loop_t *loop;
    uv_loop_t own_loop;
    int owns_loop;
    fcc__urls urls;       /* the servers, tried in turn (round robin) */
    size_t cur;           /* index of the one in use */
    size_t round_start;   /* the URL where the failures since the last open began */
    fcc__url url;         /* urls.url[cur] */
    const char *url_text; /* urls.text[cur] */
    char *token;          /* owned copy of the options' bearer token, or NULL */
    fcc_watch_options o;
    SSL_CTX *tls;             /* https: verification context; NULL for http */
    SSL_SESSION *tls_session; /* resumed by the next connection's handshake */

    /* Token refresh (watch_auth.c). */
    uv_timer_t refresh; /* multi-workflow streams: in-place refresh before exp */
    int64_t token_exp;  /* exp of the token in force (Unix s), 0 = unknown or none */
    char *auth_token;   /* sent in an {"op":"auth"} not yet answered, or NULL */
    int reauth_now;     /* the next refused token is retried at once (set when a
                           connection opens: a refusal right after a refresh waits) */
    int need_token;     /* the token was refused: ask the callback before connecting */

    fc_map subs;
    fc_list sub_list;
    size_t gone_n; /* subs marked gone */
    int all;
    int dynamic; /* the set was changed while running: an empty set does not end it */

    char (*pending)[FCC__ID_MAX + 1]; /* ids of sent subscribe ops awaiting an answer */
    size_t pending_head, pending_n, pending_cap;

    uv_timer_t timer; /* connect timeout, then keep-alive */
    uv_timer_t retry; /* backoff wait */
    uv_getaddrinfo_t gai;
    int gai_active;
    fcc__conn *conn;

    uint64_t rng;
    unsigned attempt; /* retries since the last open connection */
    int started, opened_once, closing, closed_handles, handles_to_close;
    uint64_t last_rx, ping_sent;
    int ping_out;
    int final_error;
    char final_reason[256];
    int last_error;         /* the latest failure (FCC_E*), 0 before any */
    char last_message[512]; /* its one line (the server's message when it sent one) */
};

/* watch.c */
void fcc__watch_emit(fcc_watch *w, fcc_state st, unsigned attempt, uint64_t delay, int err,
                     const char *reason);
/* Drops the connection and schedules a retry (or ends the watch). */
void fcc__watch_conn_fail(fcc_watch *w, int err, const char *reason);
/* Ends the watch: closes everything, then reports CLOSED with err/reason. */
void fcc__watch_finish(fcc_watch *w, int err, const char *reason);
/* Sends a masked frame on the current connection. */
void fcc__watch_send(fcc_watch *w, uint8_t opcode, const void *payload, size_t len);
/* Number of workflows still watched (deleted ones do not count). */
size_t fcc__watch_sub_count(const fcc_watch *w);

/* Writes the upgrade request on a connection that is ready for it (TCP
 * connected, or the TLS handshake done). */
void fcc__watch_send_upgrade(fcc_watch *w, fcc__conn *c);
/* Handles the plaintext that arrived in c->rbuf (rlen grew by n). */
void fcc__watch_input(fcc_watch *w, fcc__conn *c);
/* Writes bytes to the socket as they are (ciphertext, or plain HTTP). */
void fcc__watch_write_raw(fcc__conn *c, const void *data, size_t len);
/* Restarts the connection at once (delay 0), or after the backoff delay
 * when immediate is 0; reports RECONNECTING with err and reason. */
void fcc__watch_retry(fcc_watch *w, int err, const char *reason, int immediate);

/* watch_tls.c: the TLS layer of one connection, on memory BIOs. */
/* Starts the handshake of a just-connected connection (0, or it failed the
 * connection). */
int fcc__watch_tls_start(fcc_watch *w, fcc__conn *c);
/* Feeds n bytes of ciphertext from c->cbuf; decrypts what it can into
 * c->rbuf and passes it on (fcc__watch_input). */
void fcc__watch_tls_read(fcc_watch *w, fcc__conn *c, size_t n);
/* Encrypts len bytes and writes them to the socket. */
void fcc__watch_tls_write(fcc__conn *c, const void *data, size_t len);
/* Frees the connection's TLS state, keeping a resumable session in w. */
void fcc__watch_tls_free(fcc_watch *w, fcc__conn *c);

/* watch_auth.c: tokens that expire. */
/* Called when a connection opens: schedules the in-place refresh. */
void fcc__watch_auth_opened(fcc_watch *w);
/* The server refused the token (handshake 401, close 4401, op error
 * token_expired): gets a fresh one through the callback and reconnects, or
 * ends the watch (FCC_EAUTH) when there is no callback. */
void fcc__watch_auth_expired(fcc_watch *w, const char *reason);
/* Handles the answers to the auth op: "authenticated", and while one is
 * outstanding the op errors "unauthorized" and "forbidden" without a
 * workflow_id (id NULL). 1 when op was one of those. */
int fcc__watch_auth_answer(fcc_watch *w, const char *op, const char *code, const char *id,
                           int64_t exp, int has_exp);
/* Before each connection attempt: fetches a token through the callback when
 * the watch has none or the last one was refused. 0: go on; else the
 * attempt was rescheduled (the callback failed). */
int fcc__watch_auth_before_connect(fcc_watch *w);
/* Sets the token in force (an owned copy); 0 or FCC_ENOMEM/FCC_EINVAL. */
int fcc__watch_set_token(fcc_watch *w, const char *token);

/* watch_msg.c */
fcc__sub *fcc__sub_add(fcc_watch *w, const char *id, int64_t epoch, int64_t since);
/* Whether a message at (epoch, seq) of s is new to the application: another
 * incarnation than the tracked one always is (its seq starts again at 1),
 * the tracked one only past the last seq or as a resync below it (a server
 * that lost changes, e.g. a restored database), the one it replaced never.
 * epoch 0 (unknown on either side) compares by seq alone. A sub marked gone
 * takes only another incarnation, never a second deletion. */
int fcc__sub_fresh(const fcc__sub *s, int64_t epoch, int64_t seq, int resync, int deleted);
void fcc__sub_remove(fcc_watch *w, fcc__sub *s);
/* Builds the upgrade request path for this connection into out; 1 when it
 * is the single-workflow stream, 0 for the multi-workflow one. */
int fcc__watch_path(fcc_watch *w, char *out, size_t cap);
/* Sends the subscribe ops of a multi-workflow connection that just opened. */
void fcc__watch_subscribe(fcc_watch *w);
/* Sends the subscribe op of one workflow (with its position) on the open
 * multi-workflow connection. */
void fcc__watch_subscribe_one(fcc_watch *w, fcc__sub *s);
/* The watched workflow id, or NULL. */
fcc__sub *fcc__watch_find_sub(fcc_watch *w, const char *id);
/* Whether the open connection is a single-workflow stream while the set
 * changes at run time (a dynamic watch belongs on the multi stream). */
int fcc__watch_stream_stale(fcc_watch *w);

/* watch_set.c */
/* Reconnects on the next loop turn at once (no backoff), resuming every
 * workflow by position: the stream no longer fits the watched set. */
void fcc__watch_switch_stream(fcc_watch *w);
/* Consumes complete frames from c->rbuf. */
void fcc__watch_frames(fcc_watch *w, fcc__conn *c);
/* Handles one complete text message (NUL-terminated, len bytes): an op answer
 * or an update, delivered unless it repeats one the application has. */
void fcc__watch_message(fcc_watch *w, const char *text, size_t len);
/* The single-workflow handshake answered 404: deleted (known) or unknown. */
void fcc__watch_not_found(fcc_watch *w, const char *message);

#endif
