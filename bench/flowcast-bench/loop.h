/* flowcast-bench internals shared by the event loop (loop.c: subscribers
 * and the phases of a run) and the publishers (pub.c). */
#ifndef FCB_LOOP_H
#define FCB_LOOP_H

#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>

#include "bench.h"
#include "tls.h"

#define PUB_TAG (UINT64_C(1) << 63)

enum { SUB_IDLE, SUB_QUEUED, SUB_CONNECTING, SUB_TLS, SUB_HANDSHAKE, SUB_OPEN, SUB_DEAD };
enum { PUB_CLOSED, PUB_CONNECTING, PUB_TLS, PUB_OPEN };
enum { REQ_PUBLISH, REQ_CREATE };

typedef struct sub {
    int fd;
    uint32_t wf;
    uint8_t state;
    uint8_t ready;     /* open and counted in ctx.ready */
    uint8_t got_first; /* flowcast: the current-state message arrived */
    uint8_t ever_ready;
    uint8_t is_down; /* dropped after being ready, not back yet */
    uint32_t stash_len, stash_cap;
    uint8_t *stash; /* partial frame carried to the next read; NULL when idle */
    SSL *ssl;       /* --tls only */
    uint64_t t_start;
    uint64_t not_before;
    uint32_t backoff_ms;
    uint8_t port_ix; /* index in o->sub_ports (a cluster) */
} sub;

typedef struct req {
    uint64_t t;
    uint32_t wf;
    uint32_t seq;
    uint8_t kind;
} req;

typedef struct pub {
    int fd;
    uint8_t state;
    uint8_t want_out;
    uint64_t not_before;
    SSL *ssl; /* --tls only */
    char *rbuf;
    size_t rlen, rcap;
    char *wbuf;
    size_t wlen, woff, wcap;
    req *ring;
    uint32_t head, count;
} pub;

typedef struct ctx {
    const fcb_opts *o;
    fcb_result *r;
    int ep;
    SSL_CTX *tls; /* --tls: every connection's context; else NULL */
    uint32_t P;   /* sequence slots per subscriber: publishers for peers, 1 for flowcast */
    sub *subs;
    uint32_t *last;      /* [sub * P + p] highest seq seen */
    uint32_t *per_wf;    /* subscribers per workflow */
    uint32_t *acked_max; /* [wf * P + p] highest acknowledged seq */
    uint32_t *next_seq;  /* [wf * P + p] peers: last seq sent */
    uint32_t *snap;      /* acked_max at the first drop (storm) */
    pub pubs[FCB_MAX_PUB];
    uint8_t *rbuf;
    uint32_t *q;
    uint32_t qhead, qlen;
    uint32_t connecting, ready, down, failed;
    uint64_t first_drop, first_connect_t, last_ready_t;
    uint64_t expected_sent, progress_seen, progress_t;
    uint64_t next_wf, creates_pending, errors_printed;
    uint64_t last_delivery_t;
    int running; /* publish phase */
    int publishing_done;
    struct sockaddr_in dst;
} ctx;

/* The address subscriber i (or publisher k) connects to now: c->dst with the
 * port of its --sub-ports / --pub-ports entry, if any. */
struct sockaddr_in fcb_sub_dst(const ctx *c, uint32_t i);
struct sockaddr_in fcb_pub_dst(const ctx *c, uint32_t k);

/* Set by SIGINT/SIGTERM or a fatal answer: every phase ends. */
extern volatile sig_atomic_t fcb_stop;

void *fcb_xcalloc(size_t n, size_t sz);
/* The id of workflow (or channel) wf: "<prefix>-<wf>". */
int fcb_wf_id(const fcb_opts *o, uint32_t wf, char *out, size_t cap);
/* The Authorization header line (with CRLF) for --token, or "". */
const char *fcb_auth_header(const fcb_opts *o);

/* The WebSocket upgrade request for path (with --token's header) in buf;
 * its length, or -1 when it does not fit. */
int fcb_ws_request(const fcb_opts *o, const char *path, char *buf, size_t cap);

/* Publishers (pub.c). */
void fcb_pub_start(ctx *c, uint32_t k, uint64_t now);
void fcb_pub_flush(ctx *c, uint32_t k);
void fcb_pub_request(ctx *c, uint32_t k, uint8_t kind, uint32_t wf);
void fcb_pub_event(ctx *c, uint32_t k, uint32_t events);
int fcb_pub_has_room(const ctx *c, uint32_t k);

/* Connect churn (churn.c): runs o->churn connection lifecycles (TCP, TLS
 * with --tls, WebSocket upgrade with stage ws) with connect_conc in flight,
 * for at most o->duration seconds; fills r's churn fields and server
 * samples. Returns 0, or -1 when nothing could be done. */
int fcb_churn_run(ctx *c);

#endif
