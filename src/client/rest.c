/* libflowcast REST calls: create, update, get, list and step workflows (blocking). */
#include "client/http.h"
#include "client/tls.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define STEP_RETRIES 50
/* Retries of a request whose answer was lost, and their backoff (ms). */
#define RETRIES_DEFAULT 4
#define RETRY_INITIAL_MS 100
#define RETRY_MAX_MS_DEFAULT 2000
/* Idempotency keys made by the library: 128 random bits in hex. */
#define KEY_HEX_LEN 32

struct fcc_client {
    fcc__urls urls; /* the servers, tried in turn when one cannot answer */
    size_t cur;     /* the one in use: the last that answered */
    char *url_text; /* the list as given */
    char *token;
    unsigned timeout_ms;
    unsigned retries;
    uint64_t retry_max_ms;
    uint64_t rng;         /* backoff jitter */
    SSL_CTX *tls;         /* https: made on first use, or by fcc_client_set_ca_file */
    SSL_SESSION *session; /* https: resumed by the next request's handshake */
    fcc_token_fn token_fn;
    void *token_data;
    int last_code;  /* FCC_E* of the latest failed call, 0 before any */
    fcc_error last; /* its detail */
};

fcc_client *fcc_client_new(const char *url, const char *token, int *err)
{
    fcc_client *c = calloc(1, sizeof *c);
    int e = c ? fcc__urls_parse(url, &c->urls) : FCC_ENOMEM;
    if (e == 0 && token && !fcc__token_valid(token)) e = FCC_EINVAL;
    if (e == 0) {
        c->url_text = strdup(url);
        c->token = token ? strdup(token) : NULL;
        c->timeout_ms = 10000;
        c->retries = RETRIES_DEFAULT;
        c->retry_max_ms = RETRY_MAX_MS_DEFAULT;
        c->rng = fcc__seed();
        if (!c->url_text || (token && !c->token)) e = FCC_ENOMEM;
    }
    if (e != 0) {
        fcc_client_free(c);
        if (err) *err = e;
        return NULL;
    }
    return c;
}

void fcc_client_free(fcc_client *c)
{
    if (!c) return;
    SSL_SESSION_free(c->session);
    SSL_CTX_free(c->tls);
    fcc__urls_free(&c->urls);
    free(c->url_text);
    free(c->token);
    free(c);
}

static int fail(fcc_error *err, int code, const char *msg);

int fcc_client_set_ca_file(fcc_client *c, const char *path, fcc_error *err)
{
    char msg[400];
    SSL_CTX *ctx = fcc__tls_ctx_new(path, msg, sizeof msg);
    if (!ctx) return fail(err, FCC_ETLS, msg);
    SSL_CTX_free(c->tls);
    SSL_SESSION_free(c->session); /* made under the old trust */
    c->session = NULL;
    c->tls = ctx;
    return 0;
}

void fcc_client_set_token_fn(fcc_client *c, fcc_token_fn fn, void *data)
{
    c->token_fn = fn;
    c->token_data = data;
}

void fcc_client_set_timeout(fcc_client *c, unsigned ms)
{
    c->timeout_ms = ms ? ms : 10000;
}

const char *fcc_client_url(const fcc_client *c)
{
    return c->url_text;
}

const char *fcc_client_server(const fcc_client *c)
{
    return c->urls.text[c->cur];
}

const fcc_error *fcc_client_last_error(const fcc_client *c, int *code)
{
    if (code) *code = c->last_code;
    return &c->last;
}

/* Keeps the detail of a failed call for fcc_client_last_error; returns r. */
static int keep(fcc_client *c, int r, const fcc_error *err)
{
    if (r != 0) {
        c->last_code = r;
        c->last = *err;
    }
    return r;
}

/* Moves to the next server of the list; a TLS session belongs to the
 * server that issued it. */
static void next_url(fcc_client *c)
{
    c->cur = (c->cur + 1) % c->urls.n;
    SSL_SESSION_free(c->session);
    c->session = NULL;
}

void fcc_client_set_retries(fcc_client *c, unsigned retries, uint64_t backoff_max_ms)
{
    c->retries = retries;
    c->retry_max_ms = backoff_max_ms ? backoff_max_ms : RETRY_MAX_MS_DEFAULT;
}

void fcc_workflow_clear(fcc_workflow *w)
{
    free(w->id);
    free(w->name);
    free(w->status);
    free(w->message);
    free(w->created_at);
    free(w->updated_at);
    free(w->json);
    memset(w, 0, sizeof *w);
}

void fcc_workflow_page_clear(fcc_workflow_page *p)
{
    for (size_t i = 0; i < p->count; i++)
        fcc_workflow_clear(&p->items[i]);
    free(p->items);
    free(p->next_cursor);
    memset(p, 0, sizeof *p);
}

static int fail(fcc_error *err, int code, const char *msg)
{
    if (err) {
        err->http_status = 0;
        err->code[0] = '\0';
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return code;
}

static char *dup_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return strdup(s ? s : "");
}

/* Fills w from a workflow object; FCC_EPROTO when it is not one. */
static int workflow_from_json(json_t *o, fcc_workflow *w)
{
    memset(w, 0, sizeof *w);
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "id"))) return FCC_EPROTO;
    w->id = dup_str(o, "id");
    w->name = dup_str(o, "name");
    w->status = dup_str(o, "status");
    w->message = dup_str(o, "message");
    w->created_at = dup_str(o, "created_at");
    w->updated_at = dup_str(o, "updated_at");
    w->current_step = json_integer_value(json_object_get(o, "current_step"));
    w->total_steps = json_integer_value(json_object_get(o, "total_steps"));
    w->seq = json_integer_value(json_object_get(o, "seq"));
    w->epoch = json_integer_value(json_object_get(o, "epoch"));
    w->json = json_dumps(o, JSON_COMPACT);
    if (!w->id || !w->name || !w->status || !w->message || !w->created_at || !w->updated_at ||
        !w->json) {
        fcc_workflow_clear(w);
        return FCC_ENOMEM;
    }
    return 0;
}

/* The answer was lost: the server may or may not have seen the request. */
static int answer_lost(int r)
{
    return r == FCC_ECONNECT || r == FCC_ETIMEOUT || r == FCC_EPROTO;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Asks the token callback for a fresh token after the server answered 401
 * token_expired; 0 when c->token was replaced, else FCC_EAUTH in *err. */
static int refresh_token(fcc_client *c, fcc_error *err)
{
    char buf[FCC_TOKEN_MAX + 1] = "", msg[400];
    if (c->token_fn(c->token_data, buf, sizeof buf) != 0) {
        buf[sizeof buf - 1] = '\0';
        snprintf(msg, sizeof msg, "the token expired and the token callback failed%s%.300s",
                 buf[0] ? ": " : "", buf);
        return fail(err, FCC_EAUTH, msg);
    }
    buf[sizeof buf - 1] = '\0';
    if (!fcc__token_valid(buf))
        return fail(err, FCC_EAUTH,
                    "the token callback gave no valid token (1-4096 visible ASCII characters)");
    char *t = strdup(buf);
    if (!t) return fail(err, FCC_ENOMEM, "out of memory");
    free(c->token);
    c->token = t;
    return 0;
}

/* Whether a status says a gateway in front of the server (a proxy or load
 * balancer) found no server behind it: another URL of the list may have one. */
static int gateway_failed(int status)
{
    return status == 502 || status == 503 || status == 504;
}

/* Sends a request, again with the same body and key while its answer is
 * lost (up to c->retries times), and parses a 2xx JSON body into *out
 * (caller decrefs). Replaying a change is safe only because of the key: the
 * server answers a retry of a change it applied with its first answer.
 * With several URLs a retry goes to the next one (and a 502/503/504 counts
 * as lost too); the backoff delay comes once per full round of them.
 * An expired token (401 token_expired) is refreshed through the token
 * callback once per call and the request sent again, with the same key. */
static int call(fcc_client *c, const char *method, const char *path, json_t *body,
                const char *idem_key, json_t **out, fcc_error *err)
{
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        if (!text) return fail(err, FCC_ENOMEM, "out of memory");
    }
    if (c->urls.any_tls && !c->tls && fcc_client_set_ca_file(c, NULL, err) != 0) {
        free(text);
        return FCC_ETLS;
    }
    fcc__http_response resp;
    int r, refreshed = 0, many = c->urls.n > 1;
    unsigned attempt = 0;
    size_t start = c->cur;
    for (;;) {
        fcc__http_target t = {.url = &c->urls.url[c->cur],
                              .url_text = c->urls.text[c->cur],
                              .token = c->token,
                              .timeout_ms = c->timeout_ms,
                              .tls = c->urls.url[c->cur].tls ? c->tls : NULL,
                              .session = &c->session};
        r = fcc__http_request(&t, method, path, text, idem_key, &resp, err);
        if (r == 0 && resp.status == 401 && c->token_fn && !refreshed) {
            fcc__error_from_body(resp.status, resp.body, resp.body_len, err);
            if (strcmp(err->code, "token_expired") == 0) {
                free(resp.body);
                refreshed = 1;
                r = refresh_token(c, err);
                if (r != 0) break;
                continue; /* not a lost answer: the retry budget stays whole */
            }
        }
        int gateway = r == 0 && many && gateway_failed(resp.status);
        if ((r == 0 && !gateway) || (r != 0 && !answer_lost(r)) || attempt >= c->retries) break;
        if (gateway) free(resp.body);
        if (many) next_url(c);
        if (c->cur == start)
            sleep_ms(fcc_backoff_delay(RETRY_INITIAL_MS, c->retry_max_ms,
                                       attempt / (unsigned)c->urls.n, &c->rng));
        attempt++;
    }
    free(text);
    if (r != 0) return r;
    if (resp.status < 200 || resp.status > 299) {
        fcc__error_from_body(resp.status, resp.body, resp.body_len, err);
        free(resp.body);
        return FCC_EHTTP;
    }
    json_error_t je;
    *out = json_loadb(resp.body, resp.body_len, 0, &je);
    free(resp.body);
    if (!*out) return fail(err, FCC_EPROTO, "the server's answer is not JSON");
    return 0;
}

static int call_workflow(fcc_client *c, const char *method, const char *path, json_t *body,
                         const char *idem_key, fcc_workflow *out, fcc_error *err)
{
    json_t *j = NULL;
    int r = call(c, method, path, body, idem_key, &j, err);
    if (r == 0) {
        r = workflow_from_json(j, out);
        if (r != 0) fail(err, r, "the server's answer is not a workflow");
    }
    json_decref(j);
    return r;
}

/* Builds "/api/workflows/<id>" after checking the id's alphabet. */
static int workflow_path(const char *id, char out[96], fcc_error *err)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 64 ||
        strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789_-") != n)
        return fail(err, FCC_EINVAL, "invalid workflow id (allowed: 1-64 of A-Z a-z 0-9 _ -)");
    snprintf(out, 96, "/api/workflows/%s", id);
    return 0;
}

/* The key of one change: the caller's (checked), else 128 random bits. */
static int change_key(fcc_client *c, const char *given, char out[FCC_IDEMPOTENCY_KEY_MAX + 1],
                      fcc_error *err)
{
    if (given) {
        size_t n = strlen(given);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)given[i] < 0x21 || (unsigned char)given[i] > 0x7e) n = 0;
        if (n == 0 || n > FCC_IDEMPOTENCY_KEY_MAX)
            return fail(err, FCC_EINVAL,
                        "invalid idempotency key (1-128 visible ASCII characters)");
        memcpy(out, given, n + 1);
        return 0;
    }
    unsigned char raw[KEY_HEX_LEN / 2];
    if (getrandom(raw, sizeof raw, GRND_NONBLOCK) != (ssize_t)sizeof raw) {
        /* No entropy yet (early boot): unique enough for one client's retries. */
        for (size_t i = 0; i < sizeof raw; i += 8) {
            uint64_t v = fcc__rand(&c->rng);
            memcpy(raw + i, &v, 8);
        }
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

static void set_str(json_t *o, const char *key, const char *v)
{
    if (v) json_object_set_new(o, key, json_string(v));
}

static void set_int(json_t *o, const char *key, int64_t v)
{
    if (v >= 0) json_object_set_new(o, key, json_integer(v));
}

static int create_(fcc_client *c, const fcc_create *p, fcc_workflow *out, fcc_error *err)
{
    if (!p->name || p->total_steps < 0)
        return fail(err, FCC_EINVAL, "name and total_steps are required");
    char key[FCC_IDEMPOTENCY_KEY_MAX + 1];
    int r = change_key(c, p->idempotency_key, key, err);
    if (r != 0) return r;
    json_t *b = json_object();
    if (!b) return fail(err, FCC_ENOMEM, "out of memory");
    set_str(b, "name", p->name);
    set_int(b, "total_steps", p->total_steps);
    set_str(b, "id", p->id);
    set_str(b, "status", p->status);
    set_int(b, "current_step", p->current_step);
    set_str(b, "message", p->message);
    r = call_workflow(c, "POST", "/api/workflows", b, key, out, err);
    json_decref(b);
    return r;
}

/* Checks the presence of p's fields (see FCC_PATCH_INIT): 0, or
 * FCC_EINVAL with the reason. */
static int patch_check(const fcc_patch *p, fcc_error *err)
{
    if (p->initialised != FCC_PATCH_INITIALISED)
        return fail(err, FCC_EINVAL,
                    "fcc_patch not made with FCC_PATCH_INIT (a zeroed patch would set "
                    "current_step and total_steps to 0); refused, nothing sent");
    if ((p->current_step < 0 && p->current_step != FCC_UNSET) ||
        (p->total_steps < 0 && p->total_steps != FCC_UNSET))
        return fail(err, FCC_EINVAL,
                    "current_step and total_steps are FCC_UNSET or >= 0 in an fcc_patch");
    if (!p->status && !p->message && p->current_step == FCC_UNSET && p->total_steps == FCC_UNSET)
        return fail(err, FCC_EINVAL, "the fcc_patch changes nothing (every field unset)");
    return 0;
}

static int update_(fcc_client *c, const char *id, const fcc_patch *p, fcc_workflow *out,
                   fcc_error *err)
{
    char path[96], key[FCC_IDEMPOTENCY_KEY_MAX + 1];
    int r = patch_check(p, err);
    if (r == 0) r = workflow_path(id, path, err);
    if (r == 0) r = change_key(c, p->idempotency_key, key, err);
    if (r != 0) return r;
    json_t *b = json_object();
    if (!b) return fail(err, FCC_ENOMEM, "out of memory");
    set_str(b, "status", p->status);
    set_int(b, "current_step", p->current_step);
    set_int(b, "total_steps", p->total_steps);
    set_str(b, "message", p->message);
    if (p->if_seq > 0) json_object_set_new(b, "if_seq", json_integer(p->if_seq));
    r = call_workflow(c, "PATCH", path, b, key, out, err);
    json_decref(b);
    return r;
}

static int get_(fcc_client *c, const char *id, fcc_workflow *out, fcc_error *err)
{
    char path[96];
    int r = workflow_path(id, path, err);
    return r ? r : call_workflow(c, "GET", path, NULL, NULL, out, err);
}

/* Appends s to out percent-encoded (everything but unreserved characters). */
static void query_param(char *out, size_t cap, const char *name, const char *s)
{
    size_t n = strlen(out);
    n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, "%c%s=", strchr(out, '?') ? '&' : '?',
                          name);
    for (; *s && n + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            strchr("-_.~", ch))
            out[n++] = (char)ch;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", ch);
    }
    out[n < cap ? n : cap - 1] = '\0';
}

static int list_(fcc_client *c, const char *status, const char *cursor, unsigned limit,
                 fcc_workflow_page *out, fcc_error *err)
{
    memset(out, 0, sizeof *out);
    char path[1024] = "/api/workflows", num[16];
    if (status) query_param(path, sizeof path, "status", status);
    if (cursor) query_param(path, sizeof path, "cursor", cursor);
    if (limit) {
        snprintf(num, sizeof num, "%u", limit);
        query_param(path, sizeof path, "limit", num);
    }
    json_t *j = NULL;
    int r = call(c, "GET", path, NULL, NULL, &j, err);
    if (r != 0) return r;
    json_t *arr = json_object_get(j, "workflows");
    if (!json_is_array(arr)) {
        json_decref(j);
        return fail(err, FCC_EPROTO, "the server's answer has no \"workflows\" list");
    }
    size_t n = json_array_size(arr);
    out->items = calloc(n ? n : 1, sizeof *out->items);
    const char *next = json_string_value(json_object_get(j, "next_cursor"));
    if (next) out->next_cursor = strdup(next);
    r = out->items && (!next || out->next_cursor) ? 0 : FCC_ENOMEM;
    for (size_t i = 0; r == 0 && i < n; i++) {
        r = workflow_from_json(json_array_get(arr, i), &out->items[i]);
        if (r == 0) out->count++;
    }
    json_decref(j);
    if (r != 0) {
        fcc_workflow_page_clear(out);
        return fail(err, r, r == FCC_ENOMEM ? "out of memory" : "malformed workflow in the list");
    }
    return 0;
}

static int step_(fcc_client *c, const char *id, const char *message, fcc_workflow *out,
                 fcc_error *err)
{
    for (int i = 0; i < STEP_RETRIES; i++) {
        fcc_workflow cur;
        int r = get_(c, id, &cur, err);
        if (r != 0) return r;
        if (cur.current_step >= cur.total_steps &&
            (strcmp(cur.status, "pending") == 0 || strcmp(cur.status, "running") == 0 ||
             strcmp(cur.status, "paused") == 0)) {
            char msg[160];
            snprintf(msg, sizeof msg, "workflow %s is already at its last step (%lld of %lld)", id,
                     (long long)cur.current_step, (long long)cur.total_steps);
            fcc_workflow_clear(&cur);
            return fail(err, FCC_EINVAL, msg);
        }
        fcc_patch p = FCC_PATCH_INIT;
        p.current_step = cur.current_step + 1;
        p.message = message;
        p.if_seq = cur.seq;
        if (strcmp(cur.status, "pending") == 0 || strcmp(cur.status, "paused") == 0)
            p.status = "running";
        if (p.current_step == cur.total_steps) p.status = "completed";
        r = update_(c, id, &p, out, err);
        fcc_workflow_clear(&cur);
        if (r != FCC_EHTTP || strcmp(err->code, "seq_mismatch") != 0) return r;
    }
    return fail(err, FCC_ETIMEOUT, "too many concurrent changes; gave up");
}

/* The public calls: each keeps the detail of a failure for
 * fcc_client_last_error, also when the caller passes no err. */

int fcc_workflow_create(fcc_client *c, const fcc_create *p, fcc_workflow *out, fcc_error *err)
{
    fcc_error e;
    int r = create_(c, p, out, &e);
    if (err && r != 0) *err = e;
    return keep(c, r, &e);
}

int fcc_workflow_update(fcc_client *c, const char *id, const fcc_patch *p, fcc_workflow *out,
                        fcc_error *err)
{
    fcc_error e;
    int r = update_(c, id, p, out, &e);
    if (err && r != 0) *err = e;
    return keep(c, r, &e);
}

int fcc_workflow_get(fcc_client *c, const char *id, fcc_workflow *out, fcc_error *err)
{
    fcc_error e;
    int r = get_(c, id, out, &e);
    if (err && r != 0) *err = e;
    return keep(c, r, &e);
}

int fcc_workflow_list(fcc_client *c, const char *status, const char *cursor, unsigned limit,
                      fcc_workflow_page *out, fcc_error *err)
{
    fcc_error e;
    int r = list_(c, status, cursor, limit, out, &e);
    if (err && r != 0) *err = e;
    return keep(c, r, &e);
}

int fcc_workflow_step(fcc_client *c, const char *id, const char *message, fcc_workflow *out,
                      fcc_error *err)
{
    fcc_error e;
    int r = step_(c, id, message, out, &e);
    if (err && r != 0) *err = e;
    return keep(c, r, &e);
}
