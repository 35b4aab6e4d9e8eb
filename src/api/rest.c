/* REST handlers: routing, auth, workflows CRUD through the store, health and metrics. */
#include "api/access.h"
#include "api/api.h"
#include "api/idempotency.h"
#include "api/ready.h"
#include "api/stream.h"
#include "api/workflow_json.h"
#include "cli/config.h"
#include "common/error.h"
#include "common/log.h"
#include "http/cors.h"
#include "http/host.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "web/assets.h"
#include "wire/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PATH_MAX_LEN 512

/* --- helpers ---------------------------------------------------------- */

static void respond_json(fc_conn *c, int status, const char *extra, char *json, size_t len)
{
    if (!json) {
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
        return;
    }
    fc_conn_respond(c, status, extra, "application/json", json, len);
    free(json);
}

/* The HTTP status and error code of each store error (extra: headers or NULL). */
static void respond_store_error(fc_conn *c, const char *extra, int err, const char *msg)
{
    static const struct {
        int err, status;
        const char *code;
    } map[] = {
        {FC_ENOTFOUND, 404, "not_found"}, {FC_EEXISTS, 409, "already_exists"},
        {FC_ESEQ, 409, "seq_mismatch"},   {FC_ETERMINAL, 409, "terminal_status"},
        {FC_EINVAL, 400, "bad_request"},  {FC_EFULL, 507, "storage_full"},
    };
    /* The database is unreachable (PostgreSQL down): a retry later can work,
     * so not a 500. Retry-After: the store retries its connection within 2 s. */
    if (err == FC_EUNAVAILABLE) {
        char hdr[160];
        snprintf(hdr, sizeof hdr, "%sRetry-After: 1\r\n", extra ? extra : "");
        fc_conn_respond_error(c, 503, hdr, "store_unavailable", "%s",
                              msg[0] ? msg : "the database is unreachable");
        return;
    }
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        if (map[i].err == err) {
            fc_conn_respond_error(c, map[i].status, extra, map[i].code, "%s", msg);
            return;
        }
    }
    fc_conn_respond_error(c, 500, extra, "internal", "%s", msg[0] ? msg : "storage error");
}

static void method_not_allowed(fc_conn *c, const char *allow)
{
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    fc_conn_respond_error(c, 405, hdr, "method_not_allowed", "method not allowed; use %s", allow);
}

static int json_body(fc_conn *c, const fc_http_req *req)
{
    const char *ct = fc_http_header(req, FC_H_CONTENT_TYPE);
    size_t n = ct ? strcspn(ct, "; \t") : 0;
    if (ct && n == 16 && strncasecmp(ct, "application/json", 16) == 0) return 1;
    fc_conn_respond_error(c, 415, NULL, "unsupported_media_type",
                          "Content-Type must be application/json%s%s", ct ? ", not " : "",
                          ct ? ct : "");
    return 0;
}

/* --- changes (asynchronous: answered when the store has committed) ---- */

/* Marks an answer given again for a retry (as Stripe's API does): the
 * status and body are the first answer's, byte for byte. */
#define REPLAYED_HEADER "Idempotent-Replayed: true\r\n"

/* The answer to a change: from the store's result and state, so a replayed
 * outcome gets the same status and body as the first time. */
static void answer_change(fc_conn *c, fc_change *ch)
{
    const char *replayed = ch->replayed ? REPLAYED_HEADER : NULL;
    if (ch->result == FC_EKEYREUSED) {
        fc_conn_respond_error(c, 422, NULL, "idempotency_key_reused",
                              "Idempotency-Key \"%s\" was already used for a different request "
                              "(another method, path or body); use a new key for a new request",
                              ch->idem_key);
    } else if (ch->result != 0) {
        respond_store_error(c, replayed, ch->result, ch->errmsg);
    } else if (ch->kind == FC_CHANGE_DELETE) {
        fc_conn_respond(c, 204, replayed, NULL, NULL, 0);
    } else {
        size_t len;
        char *json = fc_wire_workflow(&ch->wf, &len);
        int created = ch->kind == FC_CHANGE_CREATE;
        if (!created) { /* the common answer (a PATCH) formats no header */
            respond_json(c, 200, replayed, json, len);
            return;
        }
        char hdr[192];
        snprintf(hdr, sizeof hdr, "Location: /api/workflows/%s\r\n%s", ch->wf.id,
                 replayed ? replayed : "");
        respond_json(c, 201, hdr, json, len);
    }
}

static void change_done(fc_change *ch)
{
    fc_conn *c = ch->data;
    /* The store has already reported the change to every loop's hub. */
    if (ch->replayed)
        FC_METRIC_ADD(idempotent_replays, 1);
    else if (ch->result == 0)
        FC_METRIC_ADD(changes_committed, 1);
    if (!fc_conn_is_closed(c)) {
        fc_conn_answer(c, ch->ticket);
        answer_change(c, ch);
    }
    fc_change_clear(ch);
    free(ch);
    fc_conn_release(c);
}

static fc_change *change_new(fc_conn *c, fc_change_kind kind)
{
    fc_change *ch = calloc(1, sizeof *ch);
    if (!ch) {
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
        return NULL;
    }
    ch->kind = kind;
    ch->done = change_done;
    ch->data = c;
    return ch;
}

static void submit(fc_conn *c, fc_change *ch)
{
    ch->ticket = fc_conn_defer(c);
    fc_store_submit(fc_server_store(fc_conn_server(c)), ch);
}

/* A new change of kind for the request on path, with its Idempotency-Key;
 * NULL when it was answered (out of memory, malformed key). */
static fc_change *change_for(fc_conn *c, const fc_http_req *req, const char *path,
                             fc_change_kind kind)
{
    fc_change *ch = change_new(c, kind);
    if (ch && fc__idem_take(c, req, path, ch) != 0) {
        free(ch);
        return NULL;
    }
    return ch;
}

static void create_workflow(fc_conn *c, const fc_http_req *req, const fc_auth_grant *g)
{
    if (fc_conn_take_write(c) != 0 || !json_body(c, req)) return;
    fc_change *ch = change_for(c, req, "/api/workflows", FC_CHANGE_CREATE);
    if (!ch) return;
    char err[256];
    if (fc_json_parse_create(req->body ? req->body : "", req->body_len, &ch->wf, err, sizeof err)) {
        fc_conn_respond_error(c, 400, NULL, "bad_request", "%s", err);
        free(ch);
        return;
    }
    if (!fc__access_need(c, g, FC_AUTH_WRITE, ch->wf.id)) {
        fc_change_clear(ch);
        free(ch);
        return;
    }
    submit(c, ch);
}

static void update_workflow(fc_conn *c, const fc_http_req *req, const char *id)
{
    if (fc_conn_take_write(c) != 0 || !json_body(c, req)) return;
    char path[FC_ID_MAX + 32];
    snprintf(path, sizeof path, "/api/workflows/%s", id);
    fc_change *ch = change_for(c, req, path, FC_CHANGE_UPDATE);
    if (!ch) return;
    char err[256];
    if (fc_json_parse_patch(req->body ? req->body : "", req->body_len, &ch->patch, err,
                            sizeof err)) {
        fc_conn_respond_error(c, 400, NULL, "bad_request", "%s", err);
        free(ch);
        return;
    }
    snprintf(ch->wf.id, sizeof ch->wf.id, "%s", id);
    submit(c, ch);
}

static void delete_workflow(fc_conn *c, const fc_http_req *req, const char *id)
{
    if (fc_conn_take_write(c) != 0) return;
    char path[FC_ID_MAX + 32];
    snprintf(path, sizeof path, "/api/workflows/%s", id);
    fc_change *ch = change_for(c, req, path, FC_CHANGE_DELETE);
    if (!ch) return;
    snprintf(ch->wf.id, sizeof ch->wf.id, "%s", id);
    submit(c, ch);
}

/* --- reads -------------------------------------------------------------- */

static void get_workflow(fc_conn *c, const char *id)
{
    fc_workflow w = {0};
    if (fc__stream_get_or_answer(c, id, &w) != 0) return;
    size_t len = 0;
    char *json = fc_wire_workflow(&w, &len);
    respond_json(c, 200, NULL, json, len);
    fc_workflow_clear(&w);
}

typedef struct list_out {
    char *(*encode)(const fc_workflow *w, size_t *len);
    char *buf;
    size_t len, cap;
    int count;
    int oom;
    const fc_auth_grant *grant; /* the list: rows the credential may not read are left out */
} list_out;

static void list_append(list_out *o, const char *s, size_t n)
{
    if (o->oom) return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4096;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->oom = 1;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

/* Appends one row, encoded by o->encode, as an element of a JSON array. */
static int append_row(const fc_workflow *w, void *ud)
{
    list_out *o = ud;
    if (o->grant && !fc_auth_allows(o->grant, FC_AUTH_READ, w->id)) return 0;
    size_t n;
    char *json = o->encode(w, &n);
    if (!json) {
        o->oom = 1;
        return 1;
    }
    if (o->count++) list_append(o, ",", 1);
    list_append(o, json, n);
    free(json);
    return 0;
}

/* Reads an optional non-negative integer query parameter (def when absent);
 * -1 when malformed, out of range or above max. */
static int64_t query_int(const fc_http_req *req, const char *name, int64_t def, int64_t max)
{
    char v[32];
    int r = fc_http_query(req, name, v, sizeof v);
    if (r == 0) return def;
    int64_t n = r == 1 ? fc__stream_parse_since(v) : -1;
    return n > max ? -1 : n;
}

static int parse_list_query(fc_conn *c, const fc_http_req *req, fc_list_query *q, char *cursor,
                            size_t cursor_len)
{
    char v[64];
    q->limit = 100;
    if (fc_http_query(req, "status", v, sizeof v) == 1) {
        if (fc_status_parse(v, &q->status) != 0) {
            fc_conn_respond_error(c, 400, NULL, "bad_request",
                                  "unknown status \"%s\": must be one of pending, running, "
                                  "paused, completed, failed, cancelled",
                                  v);
            return -1;
        }
        q->has_status = 1;
    }
    int64_t limit = query_int(req, "limit", 100, 1000);
    if (limit < 1) {
        fc_conn_respond_error(c, 400, NULL, "bad_request", "limit must be an integer in 1..1000");
        return -1;
    }
    q->limit = (int)limit;
    int r = fc_http_query(req, "cursor", cursor, cursor_len);
    if (r < 0) {
        fc_conn_respond_error(c, 400, NULL, "bad_request", "invalid cursor");
        return -1;
    }
    q->cursor = r == 1 && *cursor ? cursor : NULL;
    return 0;
}

static void list_workflows(fc_conn *c, const fc_http_req *req, const fc_auth_grant *g)
{
    fc_list_query q = {0};
    char cursor[64], next[64] = "";
    if (parse_list_query(c, req, &q, cursor, sizeof cursor)) return;
    list_out o = {.encode = fc_wire_workflow, .grant = g};
    list_append(&o, "{\"workflows\":[", 14);
    int r =
        fc_store_list(fc_server_store(fc_conn_server(c)), &q, append_row, &o, next, sizeof next);
    if (r != 0) {
        free(o.buf);
        respond_store_error(c, NULL, r,
                            r == FC_EINVAL         ? "invalid cursor"
                            : r == FC_EUNAVAILABLE ? "the database is unreachable"
                                                   : "storage error");
        return;
    }
    char tail[96];
    int n = *next ? snprintf(tail, sizeof tail, "],\"next_cursor\":\"%s\"}", next)
                  : snprintf(tail, sizeof tail, "],\"next_cursor\":null}");
    list_append(&o, tail, (size_t)n);
    if (o.oom) {
        free(o.buf);
        o.buf = NULL;
    }
    respond_json(c, 200, NULL, o.buf, o.len);
}

static char *encode_event(const fc_workflow *w, size_t *len)
{
    return fc_wire_update(w, 0, len);
}

/* The history's rows, all of one incarnation. */
typedef struct history_out {
    list_out o;
    int64_t epoch;
    int other; /* a row of another incarnation: re-created between the two reads */
} history_out;

static int history_row(const fc_workflow *w, void *ud)
{
    history_out *h = ud;
    if (w->epoch != h->epoch) return h->other = 1;
    return append_row(w, &h->o);
}

/* Reads since (N or epoch:N, default 0) and epoch; answers 400 when malformed. */
static int history_args(fc_conn *c, fc_http_req *req, fc__stream_pos *pos, int64_t *limit)
{
    char v[32];
    int q = fc_http_query(req, "since", v, sizeof v);
    *pos = (fc__stream_pos){.seq = 0};
    *limit = query_int(req, "limit", 100, 1000);
    int bad = (q != 0 && (q < 0 || fc__stream_parse_pos(v, strlen(v), pos) != 0)) || *limit < 1;
    int e = bad ? 0 : fc_http_query(req, "epoch", v, sizeof v);
    if (e != 0) {
        int64_t epoch = e == 1 ? fc__stream_parse_epoch(v) : -1;
        bad = epoch < 0 || (pos->epoch != 0 && pos->epoch != epoch);
        pos->epoch = epoch;
    }
    if (bad)
        fc_conn_respond_error(c, 400, NULL, "bad_request",
                              "since must be a non-negative integer (or epoch:seq), epoch an "
                              "integer in 1..9007199254740991 and limit an integer in 1..1000");
    return bad ? -1 : 0;
}

/* GET /api/workflows/{id}/history?since=N&epoch=E&limit=M: logged changes,
 * oldest first. A position of another incarnation (or a bare seq of a
 * workflow deleted here before) is answered with the current incarnation's
 * log from its start and "resync":true. */
static void history(fc_conn *c, fc_http_req *req, const char *id)
{
    fc__stream_pos pos;
    int64_t limit;
    if (history_args(c, req, &pos, &limit) != 0) return;
    /* Two reads (the state, then the log) race a delete and re-create of
     * the id in between only by microseconds: reading again settles it. */
    for (int attempt = 0; attempt < 3; attempt++) {
        fc__stream_resume res;
        int r = fc__stream_resume_read(c, id, pos, &res);
        if (r == 0 && !res.exists) r = FC_ENOTFOUND; /* history of a deleted workflow */
        if (r != 0) {
            if (r != FC_ENOTFOUND) fc__stream_resume_clear(&res);
            fc__stream_answer_read_error(c, r, id);
            return;
        }
        /* A client ahead of the log holds a position this database never had. */
        int resync = res.mode == FC__RESUME_RESYNC || pos.seq > res.w.seq;
        if (resync && attempt == 0) FC_METRIC_ADD(resyncs, 1);
        history_out h = {.o = {.encode = encode_event}, .epoch = res.w.epoch};
        char head[160];
        list_append(&h.o, head,
                    (size_t)snprintf(head, sizeof head,
                                     "{\"workflow_id\":\"%s\",\"epoch\":%lld,%s"
                                     "\"events\":[",
                                     id, (long long)h.epoch, resync ? "\"resync\":true," : ""));
        fc__stream_resume_clear(&res);
        int64_t oldest = 0;
        r = fc_store_events_since(fc_server_store(fc_conn_server(c)), id, resync ? 0 : pos.seq,
                                  (int)limit, history_row, &h, &oldest);
        if (r == 0 && h.other) {
            free(h.o.buf);
            continue;
        }
        if (r != 0) {
            free(h.o.buf);
            fc__stream_answer_read_error(c, r, id);
            return;
        }
        char tail[96];
        int n = snprintf(tail, sizeof tail, "],\"oldest_seq\":%lld}", (long long)oldest);
        list_append(&h.o, tail, (size_t)n);
        if (h.o.oom) {
            free(h.o.buf);
            h.o.buf = NULL;
        }
        respond_json(c, 200, NULL, h.o.buf, h.o.len);
        return;
    }
    fc_conn_respond_error(c, 503, NULL, "unavailable",
                          "workflow \"%s\" is being deleted and re-created; retry", id);
}

static void metrics(fc_conn *c)
{
    fc_server_update_gauges(fc_conn_server(c));
    size_t len;
    char *text = fc_metrics_render(&len);
    if (!text) {
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
        return;
    }
    fc_conn_respond(c, 200, NULL, "text/plain; version=0.0.4", text, len);
    free(text);
}

/* --- routing ------------------------------------------------------------ */

/* HEAD is a GET whose answer keeps its status and headers and drops the body
 * (RFC 9110 §9.3.2; fc_conn_respond drops it), so every read route takes it. */
static int is_read(int method)
{
    return method == HTTP_GET || method == HTTP_HEAD;
}

/* Every request, before routing: a Host header as RFC 9112 §3.2 wants it
 * (else 400), naming a host this server may serve (else 421: a page on a
 * name rebound to this address must not reach the API). */
static int host_ok(fc_conn *c, const fc_http_req *req)
{
    const char *why = fc_http_host_problem(req);
    if (why) {
        fc_conn_respond_error(c, 400, NULL, "bad_request", "%s", why);
        return 0;
    }
    const fc_config *cfg = fc_server_config(fc_conn_server(c));
    const char *host = fc_http_header(req, FC_H_HOST);
    if (host &&
        !fc_http_host_allowed(host, cfg->listen_host, cfg->allow_hosts, cfg->n_allow_hosts)) {
        fc_conn_respond_error(c, 421, NULL, "host_not_allowed",
                              "Host \"%.100s\" is not served here; start the server with "
                              "--allow-host NAME to allow it",
                              host);
        return 0;
    }
    return 1;
}

/* The methods of the route at path that a page may call cross-origin (the
 * WebSocket routes are not among them: a browser never preflights an
 * upgrade), or NULL. */
static const char *cors_methods(const char *path)
{
    if (strcmp(path, "/api/workflows") == 0) return "GET, HEAD, POST";
    if (strcmp(path, "/api/events") == 0 || strcmp(path, "/healthz") == 0 ||
        strcmp(path, "/readyz") == 0 || strcmp(path, "/metrics") == 0 || fc_assets_find(path))
        return "GET, HEAD";
    if (strncmp(path, "/api/workflows/", 15) != 0) return NULL;
    char id[FC_ID_MAX + 1];
    size_t n = strcspn(path + 15, "/");
    const char *sub = path + 15 + n;
    if (n == 0 || n > FC_ID_MAX) return NULL;
    memcpy(id, path + 15, n);
    id[n] = '\0';
    if (!fc_id_valid(id)) return NULL;
    if (*sub == '\0') return "GET, HEAD, PATCH, DELETE";
    if (strcmp(sub, "/events") == 0 || strcmp(sub, "/history") == 0) return "GET, HEAD";
    return NULL;
}

/* OPTIONS on a route a page may call: 204 with Allow, and for an allowed
 * Origin the CORS preflight answer (fc_conn_respond adds the
 * Access-Control-Allow-Origin). Another origin gets no CORS header, so its
 * browser refuses the request it asked about. */
static void preflight(fc_conn *c, const fc_http_req *req, const char *methods)
{
    const fc_config *cfg = fc_server_config(fc_conn_server(c));
    const char *origin = fc_http_header(req, FC_H_ORIGIN);
    char hdr[512];
    int cors = origin && fc_http_origin_allowed(origin, fc_http_header(req, FC_H_HOST),
                                                cfg->allow_origins, cfg->n_allow_origins);
    if (cors)
        snprintf(hdr, sizeof hdr,
                 "Allow: %s\r\nAccess-Control-Allow-Methods: %s\r\n"
                 "Access-Control-Allow-Headers: Authorization, Content-Type, Idempotency-Key, "
                 "Last-Event-ID\r\nAccess-Control-Max-Age: %d\r\n",
                 methods, methods, FC_CORS_MAX_AGE);
    else
        snprintf(hdr, sizeof hdr, "Allow: %s\r\n", methods);
    fc_conn_respond(c, 204, hdr, NULL, NULL, 0);
}

static void workflow_routes(fc_conn *c, fc_http_req *req, const char *rest, const fc_auth_grant *g)
{
    char id[FC_ID_MAX + 1];
    size_t n = strcspn(rest, "/");
    const char *sub = rest + n;
    if (n == 0 || n > FC_ID_MAX) {
        fc_conn_respond_error(c, 404, NULL, "not_found", "no such resource");
        return;
    }
    memcpy(id, rest, n);
    id[n] = '\0';
    if (!fc_id_valid(id)) {
        fc_conn_respond_error(c, 404, NULL, "not_found", "no workflow with id \"%.64s\"", id);
        return;
    }
    int m = req->parser.method;
    int change = m == HTTP_PATCH || m == HTTP_DELETE || m == HTTP_POST || m == HTTP_PUT;
    if (!fc__access_need(c, g, change ? FC_AUTH_WRITE : FC_AUTH_READ, id)) return;
    char probe[2];
    if (*sub == '\0') {
        if (m == HTTP_GET && fc_http_query(req, "wait_since", probe, sizeof probe) != 0)
            fc_longpoll_start(c, req, id);
        else if (is_read(m)) /* HEAD never waits: it has no body to wait for */
            get_workflow(c, id);
        else if (m == HTTP_PATCH)
            update_workflow(c, req, id);
        else if (m == HTTP_DELETE)
            delete_workflow(c, req, id);
        else
            method_not_allowed(c, "GET, HEAD, PATCH, DELETE");
    } else if (strcmp(sub, "/updates") == 0) {
        fc_stream_open(c, req, FC_WS_UPDATES, id);
    } else if (strcmp(sub, "/events") == 0) {
        fc_sse_open(c, req, FC_SSE_ONE, id);
    } else if (strcmp(sub, "/history") == 0) {
        if (is_read(m))
            history(c, req, id);
        else
            method_not_allowed(c, "GET, HEAD");
    } else {
        fc_conn_respond_error(c, 404, NULL, "not_found", "no such resource");
    }
}

static void route(fc_conn *c, fc_http_req *req, const char *path, fc_auth_grant *g);

void fc_api_handle(fc_conn *c, fc_http_req *req)
{
    char path[PATH_MAX_LEN];
    if (!host_ok(c, req)) return;
    if (fc_http_path(req, path, sizeof path) != 0) {
        fc_conn_respond_error(c, 404, NULL, "not_found", "path too long");
        return;
    }
    /* A preflight never carries a credential (browsers send none): it is
     * answered before the check, and says nothing but what may be asked. */
    const char *cors = req->parser.method == HTTP_OPTIONS ? cors_methods(path) : NULL;
    if (cors) {
        preflight(c, req, cors);
        return;
    }
    int public = strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
                 fc_assets_find(path) != NULL;
    if (strcmp(path, "/api/updates") == 0 && fc__access_anonymous_upgrade(c, req)) {
        /* Browsers cannot set a header on a WebSocket: the token may come
         * as the first message instead. */
        fc_stream_open(c, req, FC_WS_MULTI, NULL);
        fc__access_await(c);
        return;
    }
    fc_auth_grant grant;
    if (!fc__access_identify(c, req, public, &grant)) return;
    int64_t exp = grant.exp; /* route may move the grant into the stream */
    /* The per-client limits count this request's streams and changes
     * against its token's subject too (server/clients.h). */
    fc_conn_set_subject(c, grant.has_sub ? grant.sub : NULL);
    route(c, req, path, &grant);
    fc_conn_set_subject(c, NULL);
    fc__access_arm(c, exp);
    fc_auth_grant_clear(&grant);
}

static void route(fc_conn *c, fc_http_req *req, const char *path, fc_auth_grant *g)
{
    const fc_asset *asset;
    fc_server *srv = fc_conn_server(c);
    int m = req->parser.method;
    if (strcmp(path, "/healthz") == 0) {
        if (!is_read(m))
            method_not_allowed(c, "GET, HEAD");
        else
            fc_conn_respond(c, 200, NULL, "application/json", "{\"status\":\"ok\"}", 15);
    } else if (strcmp(path, "/readyz") == 0) {
        if (!is_read(m))
            method_not_allowed(c, "GET, HEAD");
        else
            fc__api_readyz(c);
    } else if (strcmp(path, "/metrics") == 0) {
        if (!is_read(m))
            method_not_allowed(c, "GET, HEAD");
        else if (fc__access_need(c, g, FC_AUTH_ADMIN, NULL))
            metrics(c);
    } else if (strcmp(path, "/api/workflows") == 0) {
        if (!is_read(m) && m != HTTP_POST)
            method_not_allowed(c, "GET, HEAD, POST");
        else if (is_read(m) && fc__access_need(c, g, FC_AUTH_READ, NULL))
            list_workflows(c, req, g);
        else if (m == HTTP_POST && fc__access_need(c, g, FC_AUTH_WRITE, NULL))
            create_workflow(c, req, g);
    } else if (strncmp(path, "/api/workflows/", 15) == 0) {
        workflow_routes(c, req, path + 15, g);
    } else if (strcmp(path, "/api/events") == 0) {
        if (fc__access_need_listed(c, req, g, FC_AUTH_READ, "workflow_ids"))
            fc_sse_open(c, req, FC_SSE_MULTI, NULL);
    } else if (strcmp(path, "/api/updates") == 0) {
        if (fc__access_need(c, g, FC_AUTH_READ, NULL)) {
            fc_stream_open(c, req, FC_WS_MULTI, NULL);
            fc__access_keep(c, g);
        }
    } else if (strcmp(path, "/ws/echo") == 0 && fc_server_config(srv)->enable_echo) {
        fc_stream_open(c, req, FC_WS_ECHO, NULL);
    } else if ((asset = fc_assets_find(path)) != NULL) {
        if (!is_read(m))
            method_not_allowed(c, "GET, HEAD");
        else
            fc_conn_respond(c, 200, "Cache-Control: no-cache\r\n", asset->content_type,
                            (const char *)asset->data, asset->len);
    } else {
        fc_conn_respond_error(c, 404, NULL, "not_found", "no such resource: %s", path);
    }
}

const fc_server_handlers fc_api_handlers = {
    .request = fc_api_handle,
    .on_text = fc_stream_on_text,
    .on_close = fc_stream_on_close,
    .on_expiry = fc_stream_on_expiry,
    .deliver = fc_stream_deliver,
};
