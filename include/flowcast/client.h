/* libflowcast: the C client of a flowcast server (live updates over WebSocket with
 * reconnect and resume, and a small blocking REST client), over http:// or
 * https:// (TLS, the server's certificate and name verified). Prefix: fcc_.
 *
 * Several servers (a cluster, docs/cluster.md): wherever a URL is taken, a
 * comma-separated list "URL,URL,..." (at most 16) may be given. The watch
 * and the REST client use one server at a time, starting with the first;
 * when a connection cannot be made or is lost they move on to the next
 * (round robin), a watch resuming every workflow by (epoch, seq) exactly as
 * it does on one server, and the backoff delay applies once per full round
 * of URLs (see fcc_watch_options.backoff_initial_ms and "Retries and
 * idempotency" below).
 *
 * Threads: a watch belongs to the thread that runs its loop; call the
 * fcc_watch_* functions only there (from its callbacks, or from a handle
 * of that loop such as a uv_async_t another thread signals). A REST client
 * is not shared between threads without a lock; separate clients are
 * independent.
 *
 * ABI: the shared library's SOVERSION changes whenever a struct the caller
 * allocates (fcc_watch_options, fcc_patch, fcc_workflow, ...) changes size or
 * layout. Structs the library allocates and only lends to a callback
 * (fcc_update, fcc_state_info) grow by fields appended at their end, without
 * a new SOVERSION: code built against the older header reads the fields it
 * knows at the same offsets and never sees the new ones. */
#ifndef FLOWCAST_CLIENT_H
#define FLOWCAST_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FCC_API __attribute__((visibility("default")))
#else
#define FCC_API
#endif

/* Every function that can fail returns 0 or one of these negative codes. */
enum {
    FCC_OK = 0,
    FCC_EINVAL = -1,    /* bad argument (bad URL, bad id, ...) */
    FCC_ENOMEM = -2,    /* out of memory */
    FCC_ECONNECT = -3,  /* could not connect, or the connection broke */
    FCC_ETIMEOUT = -4,  /* no answer within the timeout */
    FCC_EPROTO = -5,    /* the server's answer was not what the protocol says */
    FCC_EHTTP = -6,     /* the server answered with an HTTP error (see fcc_error) */
    FCC_ENOTFOUND = -7, /* unknown workflow */
    FCC_ERETRIES = -8,  /* gave up after max_retries reconnect attempts */
    FCC_ETLS = -9,      /* https: the server's certificate is not trusted (the message names
                           the reason: unknown issuer, expired, another host name, ...), the
                           CA file is unusable, or the TLS handshake failed */
    FCC_EAUTH = -10,    /* the token expired or was refused mid-stream and no token callback
                           could give a working one, or the token does not allow a watched
                           workflow */
};

/* Short text for an FCC_E* code ("connection failed", ...). The detail of
 * a failure (the server's own error message when it sent one) is in the
 * fcc_error of a REST call, fcc_client_last_error, the reason of a watch's
 * state callback, and fcc_watch_last_error. */
FCC_API const char *fcc_strerror(int err);

/* ---------------------------------------------------------------- backoff */

/* The reconnect rule: retry n (n = 0 for the first retry) waits a uniformly
 * random delay in [0, min(max_ms, initial_ms * 2^n)] ("full jitter").
 * *rng is the state of a xorshift generator (any non-zero seed); the function
 * is pure apart from advancing it, so tests can replay it with a fixed seed. */
FCC_API uint64_t fcc_backoff_delay(uint64_t initial_ms, uint64_t max_ms, unsigned attempt,
                                   uint64_t *rng);
/* The upper bound of that interval: min(max_ms, initial_ms * 2^attempt). */
FCC_API uint64_t fcc_backoff_ceiling(uint64_t initial_ms, uint64_t max_ms, unsigned attempt);

/* ---------------------------------------------------------------- tokens */

/* Longest bearer token the library sends. */
#define FCC_TOKEN_MAX 4096

/* Supplies a fresh bearer token when the server says the current one has
 * expired (and, on a multi-workflow watch, shortly before it expires; see
 * fcc_watch_options.token_fn). Writes the token (1..FCC_TOKEN_MAX visible
 * ASCII characters, NUL-terminated) into buf, which holds cap =
 * FCC_TOKEN_MAX + 1 bytes, and returns 0; on failure returns non-zero and may
 * leave a one-line reason in buf (reported in the error message). Called
 * synchronously on the thread that runs the watch's loop (or inside the REST
 * call): it may block while it fetches a token, and the caller does nothing
 * else meanwhile. data is the data pointer given with it. The library copies
 * the token; buf is not kept. */
typedef int (*fcc_token_fn)(void *data, char *buf, size_t cap);

/* ---------------------------------------------------------------- live updates */

typedef struct fcc_watch fcc_watch;

/* One change of one workflow, as the server sent it. Every pointer is valid
 * only during the callback (copy what you keep).
 *
 * A position in a workflow's history is the pair (epoch, seq): the epoch names
 * one incarnation of the id (the server draws a new one each time a workflow
 * is created, so a workflow deleted and created again under the same id has
 * another epoch) and seq counts that incarnation's changes from 1. An update
 * whose epoch differs from the previous one of the same id is a new workflow:
 * take it as a fresh state (it comes with resync set, or is its creation),
 * never as a continuation. To resume in another process, keep the last
 * (epoch, seq) delivered and pass both to fcc_watch_add_from. */
typedef struct fcc_update {
    const char *workflow_id;
    const char *status;    /* "pending", "running", ...; NULL when deleted */
    int64_t current_step;  /* 0 when deleted */
    int64_t total_steps;   /* 0 when deleted */
    const char *message;   /* "" when none or deleted */
    const char *timestamp; /* RFC 3339 commit time; NULL when unknown */
    int64_t seq;           /* 0 when a deletion was only noticed on resubscribe */
    int resync;            /* 1: a current state replacing history the watch cannot have:
                              the log no longer reaches back, or a new incarnation */
    int deleted;           /* 1: this incarnation (epoch) was deleted. A watch of given ids
                              delivers a later incarnation of the id only when the server
                              sends it on the same stream (a resume across the deletion);
                              otherwise no more updates of the id follow */
    const char *json;      /* the message exactly as received (one JSON object) */
    int64_t epoch;         /* the incarnation, in [1, 2^53-1]; 0 when the server sent none
                              (an older server; also a deletion only noticed on
                              resubscribe carries the epoch the watch knew). Appended
                              after json, so code built against the older header still
                              reads the fields above at the same offsets */
    const char *name;      /* the workflow's name (UTF-8, as the server sent it; names are
                              never empty), on every update that is not a deletion: live
                              changes, resume replays and resyncs, so a workflow first met
                              on a stream needs no GET. "" on a deletion (the server sends
                              none) and from a server older than issue 11: "" means
                              unknown, never NULL. Valid during the callback, like every
                              pointer here. Appended last (no new SOVERSION: the library
                              allocates fcc_update, see ABI at the top) */
} fcc_update;

typedef enum fcc_state {
    FCC_STATE_CONNECTING = 1, /* opening a connection (first one or a retry) */
    FCC_STATE_OPEN,           /* WebSocket open, subscriptions sent */
    FCC_STATE_RECONNECTING,   /* connection lost; next attempt after delay_ms */
    FCC_STATE_CLOSED,         /* final: the watch is freed when the callback returns */
} fcc_state;

typedef struct fcc_state_info {
    fcc_state state;
    unsigned attempt;   /* RECONNECTING: number of this retry, from 1 */
    uint64_t delay_ms;  /* RECONNECTING: how long until it starts */
    int error;          /* RECONNECTING/CLOSED: why the connection ended (FCC_E*), 0 if asked */
    const char *reason; /* one line for humans, or NULL; valid during the callback */
} fcc_state_info;

typedef void (*fcc_update_cb)(fcc_watch *w, const fcc_update *u, void *data);
typedef void (*fcc_state_cb)(fcc_watch *w, const fcc_state_info *s, void *data);

/* Zero-initialise, then set what you need; zero means the default. */
typedef struct fcc_watch_options {
    fcc_update_cb on_update;     /* required */
    fcc_state_cb on_state;       /* optional */
    void *data;                  /* passed to both callbacks */
    uint64_t backoff_initial_ms; /* default 100. With several URLs a failure moves to the
                                    next URL at once; the backoff delay (attempt n / number
                                    of URLs) comes when every URL failed in turn */
    uint64_t backoff_max_ms;     /* default 30000 */
    unsigned max_retries;        /* consecutive failed attempts before CLOSED (each URL
                                    tried counts as one); 0 = forever */
    uint64_t ping_interval_ms;   /* ping the server after this much silence; default 15000 */
    uint64_t pong_timeout_ms;    /* the server is dead when silent this long after a ping;
                                    default 10000 */
    uint64_t connect_timeout_ms; /* TCP connect + TLS and WebSocket handshakes; default 10000 */
    uint64_t seed;               /* jitter seed; 0 = random */
    const char *token;           /* optional bearer credential (a JWT, or the server's --api-token),
                                    sent as "Authorization: Bearer" (RFC 6750) on every handshake;
                                    copied by fcc_watch_new; visible ASCII, at most 4096 bytes */
    /* Fields below were added in SOVERSION 2 (a caller built against the
     * older, shorter struct must be rebuilt). */
    fcc_token_fn token_fn; /* optional: a fresh token when the current one expires, called
                              with data. Without it an expired token ends the watch
                              (FCC_EAUTH). With it: when the server ends the stream because
                              the token expired (close code 4401, or the op error
                              "token_expired") or refuses a handshake with 401, the watch
                              gets a token and reconnects at once, resuming every workflow
                              by (epoch, seq): nothing lost, nothing repeated. A second
                              refusal in a row waits the backoff delay first. On a
                              multi-workflow watch (several ids or all) it is also called
                              shortly before the token's exp (read from the JWT payload,
                              not verified; halfway through its remaining life, at most
                              30 s before exp) and the new token replaces the old on the
                              open connection ({"op":"auth"}): no reconnect at all. When
                              token is NULL it is called before the first connection */
    const char *ca_file;   /* https: PEM file of the CA certificates to trust instead of
                              the system store; NULL = the system store. Read by
                              fcc_watch_new; ignored for http:// */
} fcc_watch_options;

/* Creates a watch of the server at url ("http://host:port" or
 * "https://host:port"; the port defaults to 80 / 443), or of the first
 * server of a list "URL,URL,..." that answers (see the top of this file;
 * fcc_watch_url names the one in use). With https the
 * connection is TLS 1.2+, with SNI, and the server's certificate must chain
 * to a trusted CA and name the URL's host (a DNS name, or the IP address of
 * an IP literal); a failure ends the watch with FCC_ETLS and a reason.
 * loop may be NULL: the watch then owns a private loop and is driven by
 * fcc_watch_run. The watch writes with libuv (writev), which does not block
 * SIGPIPE: a process that must outlive a server's reset ignores SIGPIPE
 * (the REST calls never raise it). Returns NULL and sets *err (FCC_EINVAL for a bad URL,
 * options or token, FCC_ETLS when ca_file cannot be read or holds no
 * certificate). */
FCC_API fcc_watch *fcc_watch_new(uv_loop_t *loop, const char *url, const fcc_watch_options *opts,
                                 int *err);

/* Adds a workflow to watch, before fcc_watch_start or while the watch runs.
 * since < 0: start with its current state; since >= 0: every change after
 * seq `since` of the incarnation the server holds now. Without an epoch the
 * server resumes only when it can prove the id was never deleted; otherwise
 * the first update is the current state with resync set. Adding an id that
 * is already added changes nothing (ids are a set: each change is delivered
 * once); the first position wins.
 * On a running watch (call it on the loop's thread, see the top of this
 * file): on the open multi-workflow stream the id is subscribed at once (one
 * op, no reconnect); a watch open on one workflow's stream moves to the
 * multi-workflow stream on the next loop turn (a RECONNECTING state with
 * error 0 and delay 0, then OPEN), resuming every workflow by (epoch, seq);
 * while connecting or waiting, the next connection subscribes it. An id
 * unknown to the server ends the watch with FCC_ENOTFOUND, as at start.
 * A watch whose set was changed while running does not end when its set
 * becomes empty (by deletions or fcc_watch_remove): it stays open for
 * fcc_watch_add. FCC_EINVAL for a bad id or a closing watch. */
FCC_API int fcc_watch_add(fcc_watch *w, const char *workflow_id, int64_t since);
/* The same, resuming from a position (epoch, since) the application kept from
 * an earlier fcc_update (or fcc_workflow). epoch 0 = unknown, as fcc_watch_add;
 * FCC_EINVAL for an epoch outside [0, 2^53-1].
 * When the workflow was deleted and created again since that position, the
 * watch delivers the deletion of the old incarnation (when the server still
 * knows it), then the new incarnation's current state with resync set, and
 * follows the new incarnation; when it was deleted and not created again, the
 * deletion, and the id is no longer watched. */
FCC_API int fcc_watch_add_from(fcc_watch *w, const char *workflow_id, int64_t epoch, int64_t since);
/* Watches every workflow (each change of any workflow, no initial states).
 * Before fcc_watch_start only (FCC_EINVAL after). */
FCC_API int fcc_watch_add_all(fcc_watch *w);
/* Stops watching a workflow, before fcc_watch_start or while the watch runs
 * (on the loop's thread): no update of it is delivered after this returns
 * (on the open multi-workflow stream an unsubscribe op is sent; updates
 * already on the way are dropped). An id not watched changes nothing (0).
 * FCC_EINVAL for a bad id, a closing watch, or a watch of all workflows
 * (fcc_watch_add_all covers every id; there is nothing to take one from). */
FCC_API int fcc_watch_remove(fcc_watch *w, const char *workflow_id);

/* Starts connecting. One workflow uses GET /api/workflows/{id}/updates; several
 * or all use GET /api/updates. Every change is delivered once, in seq order per
 * incarnation of a workflow, across reconnects: the watch resumes each workflow
 * from the (epoch, seq) it last delivered, and a skipped range or a new
 * incarnation is announced by resync (and a deletion), never continued silently. */
FCC_API int fcc_watch_start(fcc_watch *w);

/* Closes the connection and handles. The CLOSED state callback (error 0) is
 * the last one; the watch is freed after it returns. Safe from callbacks;
 * calling it twice is harmless. */
FCC_API void fcc_watch_close(fcc_watch *w);

/* For a watch created with loop NULL: starts it, runs its loop until it is
 * CLOSED and frees it. Returns the error of the CLOSED state (0 when closed by
 * fcc_watch_close). */
FCC_API int fcc_watch_run(fcc_watch *w);

/* The URL of the server in use (or being tried): one of the list given to
 * fcc_watch_new. Valid while the watch lives. */
FCC_API const char *fcc_watch_url(const fcc_watch *w);
/* The loop the watch runs on (its private one when created with loop NULL),
 * to add handles to it: a uv_async_t through which another thread asks
 * for fcc_watch_add/remove, or a timer. */
FCC_API uv_loop_t *fcc_watch_loop(fcc_watch *w);
/* The latest failure of the watch: its one-line message ("" before any;
 * the server's error message when the server refused with one, e.g. a
 * handshake answered 503 or 404), and its FCC_E* code in *code (0 before
 * any; code may be NULL). The same text the state callback got as reason.
 * Valid until the watch's next callback or until it is freed. */
FCC_API const char *fcc_watch_last_error(const fcc_watch *w, int *code);

/* ---------------------------------------------------------------- REST */

typedef struct fcc_client fcc_client;

/* Detail of a failed REST call. */
typedef struct fcc_error {
    int http_status;   /* the HTTP status when the server answered, else 0 */
    char code[48];     /* the server's error code ("not_found", ...) or "" */
    char message[512]; /* one line: the server's message, or what went wrong */
} fcc_error;

/* A workflow as the server returned it. Owned by the caller: fcc_workflow_clear. */
typedef struct fcc_workflow {
    char *id;
    char *name;
    char *status;
    int64_t current_step;
    int64_t total_steps;
    char *message;
    int64_t seq;
    int64_t epoch; /* the incarnation (see fcc_update); 0 from an older server */
    char *created_at;
    char *updated_at;
    char *json; /* the object as one line of JSON */
} fcc_workflow;

typedef struct fcc_workflow_page {
    fcc_workflow *items;
    size_t count;
    char *next_cursor; /* NULL on the last page */
} fcc_workflow_page;

/* Longest Idempotency-Key the server accepts (visible ASCII characters). */
#define FCC_IDEMPOTENCY_KEY_MAX 128

/* Fields to create; name and total_steps are required, NULL/negative = unset.
 * idempotency_key: see "Retries and idempotency" below; NULL = a new random key. */
typedef struct fcc_create {
    const char *name;
    int64_t total_steps;
    const char *id;
    const char *status;
    int64_t current_step; /* < 0: unset */
    const char *message;
    const char *idempotency_key;
} fcc_create;

/* An integer field of fcc_patch that is not changed. */
#define FCC_UNSET INT64_MIN
/* Marks a patch made with FCC_PATCH_INIT; never set it by hand. */
#define FCC_PATCH_INITIALISED 0x46435031u

/* Fields to change. Start from FCC_PATCH_INIT, which leaves every field
 * unchanged, and set only what changes:
 *
 *     fcc_patch p = FCC_PATCH_INIT;
 *     p.current_step = 3;
 *     p.message = "compiling";
 *
 * A string field changes when it is not NULL, an integer field when it is
 * not FCC_UNSET (a negative value other than FCC_UNSET is refused).
 * fcc_workflow_update refuses, with FCC_EINVAL and a message and without
 * sending anything, a patch not made with FCC_PATCH_INIT (so a zeroed or
 * hand-initialised one can never set current_step and total_steps to 0 by
 * accident) and a patch that changes nothing. if_seq > 0 makes it a
 * compare-and-set. idempotency_key: see "Retries and idempotency" below;
 * NULL = a new random key. (Before SOVERSION 3 a zero field meant "set to
 * 0" and negative meant unchanged; such code now fails with FCC_EINVAL.) */
typedef struct fcc_patch {
    uint32_t initialised; /* FCC_PATCH_INITIALISED, set by FCC_PATCH_INIT */
    const char *status;
    int64_t current_step;
    int64_t total_steps;
    const char *message;
    int64_t if_seq;
    const char *idempotency_key;
} fcc_patch;

#define FCC_PATCH_INIT                                                                             \
    {                                                                                              \
        .initialised = FCC_PATCH_INITIALISED, .current_step = FCC_UNSET, .total_steps = FCC_UNSET  \
    }

/* Retries and idempotency. When the answer to a request is lost (the
 * connection fails, breaks or times out: FCC_ECONNECT, FCC_ETIMEOUT,
 * FCC_EPROTO), the client sends the same request again, up to 4 more times
 * by default, after a random delay of at most min(backoff_max_ms,
 * 100 ms * 2^n) before retry n (full jitter, see fcc_backoff_delay).
 * With several URLs each retry goes to the next URL of the list, also when
 * a server (or the proxy in front of it) answers 502, 503 or 504; the delay
 * comes once per full round (n = retries so far / number of URLs), and the
 * client keeps using the URL that answered for its later calls. Every
 * create and update carries an Idempotency-Key header, the same on each
 * retry: a server that already applied the change (its answer was lost, or
 * it was killed after the commit) answers the retry with the first answer
 * and applies nothing, so a change is applied at most once however often it
 * is sent. The key is random per call unless fcc_create.idempotency_key /
 * fcc_patch.idempotency_key gives one (1..FCC_IDEMPOTENCY_KEY_MAX visible
 * ASCII characters): a producer that records its key before sending can
 * send the same change again after its own restart. A key is remembered by
 * the server for its --idempotency-window (24 h by default); the same key
 * with another request is answered 422 (FCC_EHTTP, code
 * "idempotency_key_reused"). fcc_workflow_step makes one key per PATCH it
 * sends; its retries after a lost answer reuse it. */

/* A client for url ("http://host:port" or "https://host:port", verified as
 * for fcc_watch_new against the system store unless fcc_client_set_ca_file;
 * or a list "URL,URL,...", see "Retries and idempotency" above);
 * token (may be NULL) is sent as "Authorization: Bearer". Requests are
 * blocking, one connection each (over https a later one resumes the TLS
 * session of the one before). Returns NULL for a bad URL or token
 * (*err = FCC_EINVAL) or on OOM. */
FCC_API fcc_client *fcc_client_new(const char *url, const char *token, int *err);
FCC_API void fcc_client_free(fcc_client *c);
/* Timeout for connecting and for each read/write; default 10000 ms. */
FCC_API void fcc_client_set_timeout(fcc_client *c, unsigned ms);
/* The URL (or list of URLs) the client was made with. */
FCC_API const char *fcc_client_url(const fcc_client *c);
/* The URL of the list in use: the one that answered last. */
FCC_API const char *fcc_client_server(const fcc_client *c);
/* The detail of the latest call of c that failed (also when it was given no
 * fcc_error): the server's HTTP status, error code and message, or what went
 * wrong; its FCC_E* code in *code (0 before any failure; code may be
 * NULL). Valid until the next call on c. */
FCC_API const fcc_error *fcc_client_last_error(const fcc_client *c, int *code);
/* Retries after a lost answer (see above): retries more attempts at most
 * (0: none; default 4), backoff_max_ms the longest wait before one (0: the
 * default, 2000). */
FCC_API void fcc_client_set_retries(fcc_client *c, unsigned retries, uint64_t backoff_max_ms);
/* https: trust the CA certificates in path (PEM) instead of the system store
 * (NULL: the system store again). FCC_ETLS with the reason in *err when the
 * file cannot be read or holds no certificate. */
FCC_API int fcc_client_set_ca_file(fcc_client *c, const char *path, fcc_error *err);
/* When a request is answered 401 with code "token_expired", calls fn(data, ...)
 * for a fresh token (see fcc_token_fn) once and sends the request again
 * (a change with the same Idempotency-Key); the new token is kept for later
 * requests. A failing callback makes the call fail with FCC_EAUTH. fn NULL:
 * off (the 401 is returned as FCC_EHTTP). */
FCC_API void fcc_client_set_token_fn(fcc_client *c, fcc_token_fn fn, void *data);

/* Each returns 0 and fills *out, or FCC_E* and fills *err (err may be NULL). */
FCC_API int fcc_workflow_create(fcc_client *c, const fcc_create *p, fcc_workflow *out,
                                fcc_error *err);
FCC_API int fcc_workflow_update(fcc_client *c, const char *id, const fcc_patch *p,
                                fcc_workflow *out, fcc_error *err);
FCC_API int fcc_workflow_get(fcc_client *c, const char *id, fcc_workflow *out, fcc_error *err);
/* One page, newest first; status and cursor may be NULL, limit 0 = server default. */
FCC_API int fcc_workflow_list(fcc_client *c, const char *status, const char *cursor, unsigned limit,
                              fcc_workflow_page *out, fcc_error *err);
/* Advances current_step by one (GET, then PATCH with if_seq, retried while
 * another writer wins the race). A pending or paused workflow becomes
 * running; reaching total_steps makes it completed. message may be NULL. */
FCC_API int fcc_workflow_step(fcc_client *c, const char *id, const char *message, fcc_workflow *out,
                              fcc_error *err);

FCC_API void fcc_workflow_clear(fcc_workflow *w);
FCC_API void fcc_workflow_page_clear(fcc_workflow_page *p);

#ifdef __cplusplus
}
#endif

#endif
