/* libflowcast live-update watch: tokens that expire. The token callback
 * gives a fresh token when the server ends a stream at the token's exp (or
 * refuses a handshake), the watch reconnects and resumes by (epoch, seq);
 * a multi-workflow stream is refreshed in place ({"op":"auth"}) shortly
 * before exp, so that it never ends at all. */
#include "client/watch.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ws/frame.h"

/* The in-place refresh starts halfway through the token's remaining life,
 * but at most this long before exp; after a failed or stale answer the
 * callback is asked again (see again()). */
#define MARGIN_MAX_MS 30000
#define RETRY_MS 1000

int fcc__watch_set_token(fcc_watch *w, const char *token)
{
    if (!fcc__token_valid(token)) return FCC_EINVAL;
    char *t = strdup(token);
    if (!t) return FCC_ENOMEM;
    free(w->token);
    w->token = t;
    int64_t exp = 0;
    w->token_exp = fcc__jwt_exp(t, &exp) == 0 ? exp : 0;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Asks the callback; 0 with a valid token in buf, else FCC_EAUTH and why. */
static int fetch(fcc_watch *w, char buf[FCC_TOKEN_MAX + 1], char *why, size_t cap)
{
    buf[0] = '\0';
    int r = w->o.token_fn(w->o.data, buf, FCC_TOKEN_MAX + 1);
    buf[FCC_TOKEN_MAX] = '\0';
    if (r != 0) {
        snprintf(why, cap, "the token callback failed%s%.300s", buf[0] ? ": " : "", buf);
        return FCC_EAUTH;
    }
    if (!fcc__token_valid(buf)) {
        snprintf(why, cap, "the token callback gave no valid token (1-%d visible ASCII characters)",
                 FCC_TOKEN_MAX);
        return FCC_EAUTH;
    }
    return 0;
}

int fcc__watch_auth_before_connect(fcc_watch *w)
{
    if (!w->o.token_fn || (w->token && !w->need_token)) return 0;
    char buf[FCC_TOKEN_MAX + 1], why[400] = "out of memory";
    int r = fetch(w, buf, why, sizeof why);
    if (w->closing) return -1; /* closed from inside the callback */
    if (r == 0) r = fcc__watch_set_token(w, buf);
    if (r != 0) {
        fcc__watch_retry(w, r, why, 0);
        return -1;
    }
    w->need_token = 0;
    return 0;
}

void fcc__watch_auth_expired(fcc_watch *w, const char *reason)
{
    char why[400];
    if (!w->o.token_fn) {
        snprintf(why, sizeof why, "%.300s (no token callback to get a fresh one)", reason);
        fcc__watch_finish(w, FCC_EAUTH, why);
        return;
    }
    /* Once per open connection at once; a token refused again right after
     * a refresh waits the backoff delay, so a callback handing out bad
     * tokens cannot make the watch spin. */
    int immediate = w->reauth_now;
    w->reauth_now = 0;
    w->need_token = 1;
    snprintf(why, sizeof why, "%.300s; reconnecting with a fresh token", reason);
    fcc__watch_retry(w, FCC_EAUTH, why, immediate);
}

static int multi(const fcc_watch *w)
{
    return w->all || fcc__watch_sub_count(w) != 1;
}

static void on_refresh(uv_timer_t *t);

/* Arms the in-place refresh for a token that expires at exp (Unix s). */
static void schedule(fcc_watch *w, int64_t exp)
{
    uv_timer_stop(&w->refresh);
    if (!exp || !w->o.token_fn || !multi(w)) return;
    int64_t left = exp * 1000 - now_ms();
    int64_t margin = left / 2 < MARGIN_MAX_MS ? left / 2 : MARGIN_MAX_MS;
    uv_timer_start(&w->refresh, on_refresh, left - margin > 0 ? (uint64_t)(left - margin) : 0, 0);
}

/* Asks again a little later while the token in force lasts (at most
 * RETRY_MS later, sooner as exp nears); at exp the server ends the stream
 * and the reconnect path takes over. */
static void again(fcc_watch *w)
{
    int64_t left = w->token_exp * 1000 - now_ms();
    int64_t delay = left / 3 < RETRY_MS ? left / 3 : RETRY_MS;
    if (delay >= 50) uv_timer_start(&w->refresh, on_refresh, (uint64_t)delay, 0);
}

static void on_refresh(uv_timer_t *t)
{
    fcc_watch *w = t->data;
    fcc__conn *c = w->conn;
    if (!c || c->dead || !c->upgraded || w->auth_token) return;
    char buf[FCC_TOKEN_MAX + 1], why[400];
    int r = fetch(w, buf, why, sizeof why);
    if (w->closing || w->conn != c) return;
    int64_t exp = 0;
    /* A token no fresher than the one in force (a cache that has not
     * renewed yet) is not worth sending. */
    if (r != 0 || (fcc__jwt_exp(buf, &exp) == 0 && w->token_exp && exp <= w->token_exp)) {
        again(w);
        return;
    }
    json_t *op = json_pack("{s:s, s:s}", "op", "auth", "token", buf);
    char *text = op ? json_dumps(op, JSON_COMPACT) : NULL;
    json_decref(op);
    if (!text || !(w->auth_token = strdup(buf))) {
        free(text);
        again(w);
        return;
    }
    fcc__watch_send(w, FC_WS_OP_TEXT, text, strlen(text));
    free(text);
}

void fcc__watch_auth_opened(fcc_watch *w)
{
    w->reauth_now = 1;
    free(w->auth_token); /* an answer can only come on the connection it was sent on */
    w->auth_token = NULL;
    schedule(w, w->token_exp);
}

int fcc__watch_auth_answer(fcc_watch *w, const char *op, const char *code, const char *id,
                           int64_t exp, int has_exp)
{
    if (strcmp(op, "authenticated") == 0) {
        if (w->auth_token) {
            free(w->token);
            w->token = w->auth_token; /* later handshakes carry it too */
            w->auth_token = NULL;
        }
        w->token_exp = has_exp ? exp : 0; /* the server's word: null = never */
        schedule(w, w->token_exp);
        return 1;
    }
    /* The new token was refused: invalid (unauthorized) or without read
     * (forbidden, naming no workflow); the old one stays in force until its exp. */
    if (strcmp(op, "error") == 0 && code && w->auth_token &&
        (strcmp(code, "unauthorized") == 0 || (strcmp(code, "forbidden") == 0 && !id))) {
        free(w->auth_token);
        w->auth_token = NULL;
        again(w);
        return 1;
    }
    return 0;
}
