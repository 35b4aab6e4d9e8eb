/* libflowcast live-update watch: connection lifecycle on libuv (resolve, connect,
 * handshake, keep-alive, reconnect with backoff, close). */
#include "client/watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/tls.h"
#include "ws/frame.h"
#include "ws/handshake.h"

#define DEF(v, d) ((v) ? (v) : (d))

static void start_attempt(fcc_watch *w);

void fcc__watch_emit(fcc_watch *w, fcc_state st, unsigned attempt, uint64_t delay, int err,
                     const char *reason)
{
    if (err != 0) {
        w->last_error = err;
        snprintf(w->last_message, sizeof w->last_message, "%s",
                 reason ? reason : fcc_strerror(err));
    }
    fcc_state_info s = {
        .state = st, .attempt = attempt, .delay_ms = delay, .error = err, .reason = reason};
    if (w->o.on_state) w->o.on_state(w, &s, w->o.data);
}

fcc_watch *fcc_watch_new(uv_loop_t *loop, const char *url, const fcc_watch_options *opts, int *err)
{
    int e = FCC_EINVAL;
    fcc_watch *w = NULL;
    if (!opts || !opts->on_update) goto fail;
    e = FCC_ENOMEM;
    w = calloc(1, sizeof *w);
    if (!w || fc_map_init(&w->subs) != 0) goto fail;
    fc_list_init(&w->sub_list);
    if ((e = fcc__urls_parse(url, &w->urls)) != 0) goto fail;
    w->url = w->urls.url[0];
    w->url_text = w->urls.text[0];
    if (opts->token && (e = fcc__watch_set_token(w, opts->token)) != 0) goto fail;
    if (w->urls.any_tls) {
        char msg[400];
        e = FCC_ETLS;
        if (!(w->tls = fcc__tls_ctx_new(opts->ca_file, msg, sizeof msg))) goto fail;
    }
    w->o = *opts;
    /* The caller's strings need not outlive this call: w->token is ours. */
    w->o.token = w->o.ca_file = NULL;
    w->o.backoff_initial_ms = DEF(opts->backoff_initial_ms, 100);
    w->o.backoff_max_ms = DEF(opts->backoff_max_ms, 30000);
    w->o.ping_interval_ms = DEF(opts->ping_interval_ms, 15000);
    w->o.pong_timeout_ms = DEF(opts->pong_timeout_ms, 10000);
    w->o.connect_timeout_ms = DEF(opts->connect_timeout_ms, 10000);
    w->rng = opts->seed ? opts->seed : fcc__seed();
    w->reauth_now = 1;
    if (!loop) {
        if (uv_loop_init(&w->own_loop) != 0) goto fail;
        w->owns_loop = 1;
        loop = &w->own_loop;
    }
    w->loop = loop;
    uv_timer_init(loop, &w->timer);
    uv_timer_init(loop, &w->retry);
    uv_timer_init(loop, &w->refresh);
    w->timer.data = w->retry.data = w->refresh.data = w;
    return w;
fail:
    if (w) {
        fc_map_destroy(&w->subs);
        SSL_CTX_free(w->tls);
        free(w->token);
        fcc__urls_free(&w->urls);
        free(w);
    }
    if (err) *err = e;
    return NULL;
}

int fcc_watch_start(fcc_watch *w)
{
    if (w->started || w->closing || (!w->all && fcc__watch_sub_count(w) == 0)) return FCC_EINVAL;
    w->started = 1;
    start_attempt(w);
    return 0;
}

size_t fcc__watch_sub_count(const fcc_watch *w)
{
    return w->subs.count - w->gone_n;
}

/* ---------------------------------------------------------------- closing */

static void free_watch(fcc_watch *w)
{
    while (!fc_list_empty(&w->sub_list))
        fcc__sub_remove(w, fc_container_of(w->sub_list.next, fcc__sub, link));
    fc_map_destroy(&w->subs);
    free(w->pending);
    SSL_SESSION_free(w->tls_session);
    SSL_CTX_free(w->tls);
    free(w->auth_token);
    free(w->token);
    fcc__urls_free(&w->urls);
    free(w);
}

static void handle_closed(fcc_watch *w)
{
    if (++w->closed_handles < w->handles_to_close) return;
    fcc__watch_emit(w, FCC_STATE_CLOSED, 0, 0, w->final_error,
                    w->final_reason[0] ? w->final_reason : NULL);
    if (!w->owns_loop) free_watch(w);
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void on_conn_closed(uv_handle_t *h)
{
    fcc__conn *c = h->data;
    fcc_watch *w = c->w;
    free(c->rbuf);
    free(c->msg);
    free(c->cbuf);
    int counted = c->counted;
    free(c);
    if (counted) handle_closed(w);
}

static void drop_conn(fcc_watch *w)
{
    fcc__conn *c = w->conn;
    if (!c) return;
    w->conn = NULL;
    c->dead = 1;
    fcc__watch_tls_free(w, c);
    if (w->closing) {
        c->counted = 1;
        w->handles_to_close++;
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

void fcc__watch_finish(fcc_watch *w, int err, const char *reason)
{
    if (w->closing) return;
    w->closing = 1;
    w->final_error = err;
    snprintf(w->final_reason, sizeof w->final_reason, "%.250s", reason ? reason : "");
    w->handles_to_close = 3; /* the three timers */
    drop_conn(w);
    if (w->gai_active) {
        w->handles_to_close++; /* on_resolved runs with UV_ECANCELED */
        uv_cancel((uv_req_t *)&w->gai);
    }
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
    uv_close((uv_handle_t *)&w->retry, on_timer_closed);
    uv_close((uv_handle_t *)&w->refresh, on_timer_closed);
}

void fcc_watch_close(fcc_watch *w)
{
    fcc__watch_finish(w, 0, NULL);
}

int fcc_watch_run(fcc_watch *w)
{
    if (!w->owns_loop) return FCC_EINVAL;
    int r = w->started ? 0 : fcc_watch_start(w);
    if (r != 0) fcc__watch_finish(w, r, "nothing to watch");
    uv_run(&w->own_loop, UV_RUN_DEFAULT);
    r = w->final_error;
    uv_loop_close(&w->own_loop);
    free_watch(w);
    return r;
}

/* ---------------------------------------------------------------- retry */

static void on_retry(uv_timer_t *t)
{
    start_attempt(t->data);
}

/* Moves to the next server of the list. A TLS session belongs to the
 * server that issued it, so it is not offered to the next one. */
static void next_url(fcc_watch *w)
{
    w->cur = (w->cur + 1) % w->urls.n;
    w->url = w->urls.url[w->cur];
    w->url_text = w->urls.text[w->cur];
    SSL_SESSION_free(w->tls_session);
    w->tls_session = NULL;
}

const char *fcc_watch_url(const fcc_watch *w)
{
    return w->url_text;
}

uv_loop_t *fcc_watch_loop(fcc_watch *w)
{
    return w->loop;
}

const char *fcc_watch_last_error(const fcc_watch *w, int *code)
{
    if (code) *code = w->last_error;
    return w->last_error ? w->last_message : "";
}

void fcc__watch_conn_fail(fcc_watch *w, int err, const char *reason)
{
    fcc__watch_retry(w, err, reason, 0);
}

void fcc__watch_retry(fcc_watch *w, int err, const char *reason, int immediate)
{
    if (w->closing) return;
    drop_conn(w);
    uv_timer_stop(&w->timer);
    uv_timer_stop(&w->refresh);
    if (!w->all && !w->dynamic && fcc__watch_sub_count(w) == 0) {
        fcc__watch_finish(w, 0, "every watched workflow was deleted");
        return;
    }
    if (w->o.max_retries && w->attempt >= w->o.max_retries) {
        char why[300];
        snprintf(why, sizeof why, "gave up after %u retries: %.200s", w->attempt, reason);
        fcc__watch_finish(w, FCC_ERETRIES, why);
        return;
    }
    uint64_t delay = 0;
    char why[400];
    if (!immediate) {
        /* A failure moves on to the next server at once; the backoff delay
         * comes only once every server failed in turn (a full round). */
        if (w->urls.n > 1) {
            next_url(w);
            snprintf(why, sizeof why, "%.250s; next: %.120s", reason ? reason : "failed",
                     w->url_text);
            reason = why;
        }
        if (w->cur == w->round_start)
            delay = fcc_backoff_delay(w->o.backoff_initial_ms, w->o.backoff_max_ms,
                                      w->attempt / (unsigned)w->urls.n, &w->rng);
    }
    w->attempt++;
    fcc__watch_emit(w, FCC_STATE_RECONNECTING, w->attempt, delay, err, reason);
    if (!w->closing) uv_timer_start(&w->retry, on_retry, delay, 0);
}

/* ---------------------------------------------------------------- keep-alive */

static void on_timer(uv_timer_t *t)
{
    fcc_watch *w = t->data;
    char why[96];
    if (!w->conn || !w->conn->upgraded) {
        snprintf(why, sizeof why, "no answer within %llu ms",
                 (unsigned long long)w->o.connect_timeout_ms);
        fcc__watch_conn_fail(w, FCC_ETIMEOUT, why);
        return;
    }
    uint64_t now = uv_now(w->loop);
    if (w->ping_out) {
        if (now - w->ping_sent >= w->o.pong_timeout_ms) {
            snprintf(why, sizeof why, "server silent for %llu ms after a ping",
                     (unsigned long long)(now - w->ping_sent));
            fcc__watch_conn_fail(w, FCC_ETIMEOUT, why);
            return;
        }
        uv_timer_start(t, on_timer, w->ping_sent + w->o.pong_timeout_ms - now, 0);
    } else if (now - w->last_rx >= w->o.ping_interval_ms) {
        fcc__watch_send(w, FC_WS_OP_PING, "fcc", 3);
        w->ping_out = 1;
        w->ping_sent = now;
        uv_timer_start(t, on_timer, w->o.pong_timeout_ms, 0);
    } else {
        uv_timer_start(t, on_timer, w->last_rx + w->o.ping_interval_ms - now, 0);
    }
}

/* ---------------------------------------------------------------- I/O */

typedef struct write_req {
    uv_write_t req;
    uint8_t data[];
} write_req;

static void on_write(uv_write_t *req, int status)
{
    (void)status; /* a failed write also fails the read side, which reconnects */
    free(req);
}

void fcc__watch_write_raw(fcc__conn *c, const void *data, size_t len)
{
    write_req *r = malloc(sizeof *r + len);
    if (!r) {
        fcc__watch_conn_fail(c->w, FCC_ENOMEM, "out of memory");
        return;
    }
    memcpy(r->data, data, len);
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)len);
    if (uv_write(&r->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) free(r);
}

void fcc__watch_send(fcc_watch *w, uint8_t opcode, const void *payload, size_t len)
{
    fcc__conn *c = w->conn;
    if (!c || c->dead) return;
    write_req *r = malloc(sizeof *r + len + FCC__WS_MAX_HEADER);
    if (!r) {
        fcc__watch_conn_fail(w, FCC_ENOMEM, "out of memory");
        return;
    }
    uint64_t m = fcc__rand(&w->rng);
    size_t n = fcc__ws_frame_encode(r->data, opcode, payload, len, (const uint8_t *)&m);
    if (c->ssl) {
        fcc__watch_tls_write(c, r->data, n);
        free(r);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)n);
    if (uv_write(&r->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) free(r);
}

/* Checks the 101 answer; returns 1 when upgraded, 0 when it needs more bytes. */
static int handshake(fcc_watch *w, fcc__conn *c)
{
    fcc__http_head h;
    int r = fcc__http_head_parse(c->rbuf, c->rlen, &h);
    if (r == 0) return 0;
    if (r < 0) {
        fcc__watch_conn_fail(w, FCC_EPROTO, "the server's answer is not HTTP");
        return 0;
    }
    if (h.status != 101) {
        size_t blen = c->rlen - h.head_len;
        if (h.content_length >= 0 && blen < (size_t)h.content_length) return 0;
        fcc_error e;
        fcc__error_from_body(h.status, c->rbuf + h.head_len, blen, &e);
        if (h.status == 401 && w->o.token_fn)
            fcc__watch_auth_expired(w, e.message);
        else if (h.status == 404)
            fcc__watch_not_found(w, e.message);
        else if (h.status >= 500 || h.status == 429)
            fcc__watch_conn_fail(w, FCC_EHTTP, e.message);
        else
            fcc__watch_finish(w, FCC_EHTTP, e.message);
        return 0;
    }
    char expect[FC_WS_ACCEPT_LEN + 1];
    fc_ws_accept_key(c->key, strlen(c->key), expect);
    if (strcmp(expect, h.accept) != 0) {
        fcc__watch_finish(w, FCC_EPROTO, "wrong Sec-WebSocket-Accept from the server");
        return 0;
    }
    c->rlen -= h.head_len;
    memmove(c->rbuf, c->rbuf + h.head_len, c->rlen);
    c->upgraded = 1;
    w->attempt = 0;
    w->round_start = w->cur;
    w->opened_once = 1;
    w->last_rx = uv_now(w->loop);
    w->ping_out = 0;
    w->pending_head = w->pending_n = 0;
    uv_timer_start(&w->timer, on_timer, w->o.ping_interval_ms, 0);
    fcc__watch_auth_opened(w);
    fcc__watch_emit(w, FCC_STATE_OPEN, 0, 0, 0, NULL);
    if (w->conn == c && !c->dead) fcc__watch_subscribe(w);
    return w->conn == c && !c->dead;
}

/* Room for ciphertext: OpenSSL copies it into its input BIO at once. */
#define CBUF_SIZE 65536

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    fcc__conn *c = h->data;
    (void)hint;
    if (c->ssl) {
        if (!c->cbuf) c->cbuf = malloc(CBUF_SIZE);
        *buf = uv_buf_init(c->cbuf, c->cbuf ? CBUF_SIZE : 0);
        return;
    }
    if (c->rcap - c->rlen < 16384) {
        size_t cap = c->rcap ? c->rcap * 2 : 65536;
        char *nb = realloc(c->rbuf, cap);
        if (!nb) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        c->rbuf = nb;
        c->rcap = cap;
    }
    *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fcc__conn *c = s->data;
    fcc_watch *w = c->w;
    (void)buf;
    if (c->dead) return;
    if (n < 0) {
        char why[320];
        if (c->got_close == 4401 || c->expired) {
            fcc__watch_auth_expired(w, "the server ended the stream: token expired");
            return;
        }
        if (c->got_close)
            snprintf(why, sizeof why, "server closed the connection (code %d)", c->got_close);
        else
            snprintf(why, sizeof why, "connection lost: %s",
                     n == UV_EOF ? "closed by the server" : uv_strerror((int)n));
        fcc__watch_conn_fail(w, FCC_ECONNECT, why);
        return;
    }
    w->last_rx = uv_now(w->loop);
    w->ping_out = 0;
    if (c->ssl) {
        fcc__watch_tls_read(w, c, (size_t)n);
        return;
    }
    c->rlen += (size_t)n;
    fcc__watch_input(w, c);
}

void fcc__watch_input(fcc_watch *w, fcc__conn *c)
{
    if (!c->upgraded && !handshake(w, c)) return;
    fcc__watch_frames(w, c);
}

static void on_connect(uv_connect_t *req, int status)
{
    fcc__conn *c = req->data;
    fcc_watch *w = c->w;
    if (c->dead || status == UV_ECANCELED) return;
    if (status < 0) {
        char why[320];
        snprintf(why, sizeof why, "cannot connect to %s: %s", w->url_text, uv_strerror(status));
        fcc__watch_conn_fail(w, FCC_ECONNECT, why);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (w->url.tls)
        fcc__watch_tls_start(w, c);
    else
        fcc__watch_send_upgrade(w, c);
}

void fcc__watch_send_upgrade(fcc_watch *w, fcc__conn *c)
{
    char path[256], req_text[1024 + FCC__TOKEN_MAX];
    c->single = fcc__watch_path(w, path, sizeof path);
    fcc__ws_key(&w->rng, c->key);
    int len = snprintf(req_text, sizeof req_text,
                       "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                       "Sec-WebSocket-Version: 13\r\nUser-Agent: libflowcast\r\n"
                       "%s%s%s\r\n",
                       path, w->url.hostport, c->key, w->token ? "Authorization: Bearer " : "",
                       w->token ? w->token : "", w->token ? "\r\n" : "");
    if (c->ssl)
        fcc__watch_tls_write(c, req_text, (size_t)len);
    else
        fcc__watch_write_raw(c, req_text, (size_t)len);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    fcc_watch *w = req->data;
    w->gai_active = 0;
    if (w->closing) {
        uv_freeaddrinfo(res);
        handle_closed(w);
        return;
    }
    if (status < 0) {
        char why[320];
        snprintf(why, sizeof why, "cannot resolve %s: %s", w->url.host, uv_strerror(status));
        fcc__watch_conn_fail(w, FCC_ECONNECT, why);
        return;
    }
    fcc__conn *c = calloc(1, sizeof *c);
    if (!c) {
        uv_freeaddrinfo(res);
        fcc__watch_conn_fail(w, FCC_ENOMEM, "out of memory");
        return;
    }
    c->w = w;
    c->tcp.data = c;
    c->connect_req.data = c;
    uv_tcp_init(w->loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    w->conn = c;
    int r = uv_tcp_connect(&c->connect_req, &c->tcp, res->ai_addr, on_connect);
    uv_freeaddrinfo(res);
    if (r < 0) {
        char why[320];
        snprintf(why, sizeof why, "cannot connect to %s: %s", w->url_text, uv_strerror(r));
        fcc__watch_conn_fail(w, FCC_ECONNECT, why);
    }
}

static void start_attempt(fcc_watch *w)
{
    if (w->closing) return;
    fcc__watch_emit(w, FCC_STATE_CONNECTING, w->attempt, 0, 0, NULL);
    if (w->closing || fcc__watch_auth_before_connect(w) != 0) return;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    w->gai.data = w;
    int r = uv_getaddrinfo(w->loop, &w->gai, on_resolved, w->url.host, w->url.port, &hints);
    if (r < 0) {
        fcc__watch_conn_fail(w, FCC_ECONNECT, uv_strerror(r));
        return;
    }
    w->gai_active = 1;
    uv_timer_start(&w->timer, on_timer, w->o.connect_timeout_ms, 0);
}
