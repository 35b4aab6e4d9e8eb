/* Update streams: WebSocket handshake validation, initial state and resume
 * from the event log, multi-workflow subscribe/unsubscribe ops, delivery. */
#include "api/stream.h"
#include "api/access.h"
#include "api/api.h"
#include "cli/config.h"
#include "common/error.h"
#include "common/log.h"
#include "common/map.h"
#include "http/cors.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "wire/wire.h"
#include "ws/frame.h"
#include "ws/handshake.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- handshake ------------------------------------------------------------ */

/* A client without Origin is no browser: the check protects pages only. */
static int origin_allowed(const fc_config *cfg, const fc_http_req *req)
{
    const char *origin = fc_http_header(req, FC_H_ORIGIN);
    return !origin || fc_http_origin_allowed(origin, fc_http_header(req, FC_H_HOST),
                                             cfg->allow_origins, cfg->n_allow_origins);
}

/* Checks the RFC 6455 §4.2.1 request; answers the error and returns -1 when invalid. */
static int validate_upgrade(fc_conn *c, const fc_http_req *req, fc_stream_kind kind,
                            char accept[FC_WS_ACCEPT_LEN + 1])
{
    const char *upgrade = fc_http_header(req, FC_H_UPGRADE);
    const char *connection = fc_http_header(req, FC_H_CONNECTION);
    const char *version = fc_http_header(req, FC_H_WS_VERSION);
    const char *key = fc_http_header(req, FC_H_WS_KEY);
    /* HEAD gets what a GET without an upgrade gets (RFC 9110 §9.3.2): it can never upgrade. */
    if (req->parser.method == HTTP_HEAD) {
        fc_conn_respond_error(
            c, 400, NULL, "bad_request",
            "expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)");
        return -1;
    }
    if (req->parser.method != HTTP_GET) {
        fc_conn_respond_error(c, 405, "Allow: GET, HEAD\r\n", "method_not_allowed",
                              "a WebSocket handshake must use GET");
        return -1;
    }
    /* RFC 6455 §4.1: HTTP/1.1 or later. An HTTP/1.0 upgrade also arrives
     * without Host, so nothing proves which server it was meant for. */
    if (!fc_http_is_11(req)) {
        fc_conn_close_after_reply(c);
        fc_conn_respond_error(c, 400, NULL, "bad_request",
                              "a WebSocket handshake needs HTTP/1.1 or later");
        return -1;
    }
    if (!upgrade || !fc_header_has_token(upgrade, strlen(upgrade), "websocket") || !connection ||
        !fc_header_has_token(connection, strlen(connection), "upgrade")) {
        fc_conn_respond_error(
            c, 400, NULL, "bad_request",
            "expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)");
        return -1;
    }
    if (!version || strcmp(version, "13") != 0) {
        fc_conn_respond_error(c, 426, "Sec-WebSocket-Version: 13\r\n", "upgrade_required",
                              "unsupported WebSocket version %s; use 13",
                              version ? version : "(none)");
        return -1;
    }
    if (!key || !fc_ws_key_valid(key, strlen(key))) {
        fc_conn_respond_error(c, 400, NULL, "bad_request", "missing or invalid Sec-WebSocket-Key");
        return -1;
    }
    /* The echo endpoint exists for conformance suites, which send arbitrary origins. */
    if (kind != FC_WS_ECHO && !origin_allowed(fc_server_config(fc_conn_server(c)), req)) {
        fc_conn_respond_error(c, 403, NULL, "forbidden", "origin %s is not allowed",
                              fc_http_header(req, FC_H_ORIGIN));
        return -1;
    }
    fc_ws_accept_key(key, strlen(key), accept);
    return 0;
}

/* Parses a resume point: a non-negative integer. -1 when malformed. */
int64_t fc__stream_parse_since(const char *s)
{
    char *end;
    if (!*s || *s == '-' || *s == '+') return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return *end || v < 0 || errno == ERANGE ? -1 : (int64_t)v;
}

/* Out of memory while subscribing: a subscriber that silently misses changes
 * would be worse than one that reconnects, so the connection is failed. */
static void fail_oom(fc_conn *c)
{
    FC_ERROR("stream", "out of memory while subscribing: closing the connection");
    if (fc_stream_is_ws(fc_conn_kind(c)))
        fc_conn_ws_close(c, FC_WS_CLOSE_INTERNAL, "out of memory");
    else
        fc_conn_close_when_written(c);
}

int fc__stream_subscribe_one(fc_conn *c, const char *id, fc__stream_pos at)
{
    int r =
        fc_hub_subscribe(fc_server_hub(fc_conn_server(c)), fc_conn_sub(c), id, c, at.epoch, at.seq);
    if (r != 0) fail_oom(c);
    return r;
}

fc_stream_sub *fc__stream_add_sub(fc_conn *c, const char *id, fc__stream_pos at)
{
    fc_stream_sub *sub = calloc(1, sizeof *sub);
    fc_map *index = id ? fc_conn_multi_index(c) : NULL;
    if (!sub || (id && !index) ||
        fc_hub_subscribe(fc_server_hub(fc_conn_server(c)), &sub->sub, id, c, at.epoch, at.seq)) {
        free(sub);
        fail_oom(c);
        return NULL;
    }
    fc_list_insert_tail(fc_conn_multi_subs(c), &sub->conn_link);
    /* Indexed by the topic's id, which lives as long as the subscription;
     * only the first of a repeated id is (the callers pass sets). */
    if (id && !fc_map_get(index, id)) {
        sub->by_id.key = fc_hub_topic_id(sub->sub.topic);
        fc_map_put(index, &sub->by_id);
    }
    return sub;
}

int fc__stream_refuse_over_limit(fc_conn *c)
{
    if (!fc_server_over_limit(fc_conn_server(c))) return 0;
    fc_conn_refuse_stream(c);
    return 1;
}

void fc__stream_answer_read_error(fc_conn *c, int err, const char *id)
{
    if (err == FC_ENOTFOUND)
        fc_conn_respond_error(c, 404, NULL, "not_found", "no workflow with id \"%s\"", id);
    else if (err == FC_EUNAVAILABLE)
        fc_conn_respond_error(c, 503, "Retry-After: 1\r\n", "store_unavailable",
                              "the database is unreachable reading \"%s\"", id);
    else
        fc_conn_respond_error(c, 500, NULL, "internal", "storage error reading \"%s\"", id);
}

int fc__stream_get_or_answer(fc_conn *c, const char *id, fc_workflow *w)
{
    int r = fc_store_get(fc_server_store(fc_conn_server(c)), id, w);
    if (r != 0) fc__stream_answer_read_error(c, r, id);
    return r;
}

/* --- single-workflow stream --------------------------------------------- */

int fc__stream_query_pos(fc_conn *c, fc_http_req *req, fc__stream_pos *pos)
{
    char v[32];
    pos->seq = -1;
    pos->epoch = 0;
    int q = fc_http_query(req, "since", v, sizeof v);
    if (q != 0 && (q < 0 || fc__stream_parse_pos(v, strlen(v), pos) != 0)) {
        fc_conn_respond_error(c, 400, NULL, "bad_request",
                              "since must be a non-negative integer (or epoch:seq)");
        return -1;
    }
    int e = fc_http_query(req, "epoch", v, sizeof v);
    if (e == 0) return 0;
    int64_t epoch = e == 1 ? fc__stream_parse_epoch(v) : -1;
    if (epoch < 0 || q == 0 || (pos->epoch != 0 && pos->epoch != epoch)) {
        fc_conn_respond_error(c, 400, NULL, "bad_request",
                              q == 0 ? "epoch is only meaningful with since"
                                     : "epoch must be an integer in 1..9007199254740991 "
                                       "(and agree with since)");
        return -1;
    }
    pos->epoch = epoch;
    return 0;
}

static void open_updates(fc_conn *c, fc_http_req *req, const char *id, const char *accept)
{
    fc__stream_pos pos, at;
    fc__stream_resume res;
    if (fc__stream_query_pos(c, req, &pos) != 0) return;
    int r = fc__stream_resume_read(c, id, pos, &res);
    if (r != 0) {
        fc__stream_answer_read_error(c, r, id);
        return;
    }
    r = fc_conn_upgrade(c, accept, FC_WS_UPDATES);
    if (r == 0) {
        if (fc__stream_resume_send(c, &res, fc__stream_encode_ws, NULL, &at) == 0)
            fc__stream_subscribe_one(c, id, at);
        else /* gone: the deletion was the last message, as for a live one */
            fc_conn_ws_close(c, FC_WS_CLOSE_NORMAL, "workflow deleted");
    } else if (r == FC_ENOMEM) {
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
    }
    fc__stream_resume_clear(&res);
}

void fc_stream_open(fc_conn *c, fc_http_req *req, fc_stream_kind kind, const char *workflow_id)
{
    char accept[FC_WS_ACCEPT_LEN + 1];
    if (validate_upgrade(c, req, kind, accept) != 0 || fc__stream_refuse_over_limit(c)) return;
    if (fc_server_config(fc_conn_server(c))->no_websocket && kind != FC_WS_ECHO) {
        fc_conn_respond_error(c, 404, NULL, "not_found",
                              "WebSocket transport is disabled on this server (--no-websocket)");
        return;
    }
    if (kind == FC_WS_UPDATES) {
        open_updates(c, req, workflow_id, accept);
        return;
    }
    if (fc_conn_upgrade(c, accept, kind) == FC_ENOMEM)
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
}

/* --- multi-workflow stream ops -------------------------------------------- */

void fc__stream_send_text(fc_conn *c, const char *s)
{
    fc_buf *b = fc_wire_text_frame(s, strlen(s));
    if (b) fc_conn_send(c, b);
}

void fc__stream_op_error(fc_conn *c, const char *workflow_id, const char *code, const char *fmt,
                         ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s,s:s,s:s}", "op", "error", "code", code, "message", msg);
    if (o && workflow_id) json_object_set_new(o, "workflow_id", json_string(workflow_id));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s) fc__stream_send_text(c, s);
    free(s);
    json_decref(o);
}

static void send_op_reply(fc_conn *c, const char *op, json_t *ids)
{
    json_t *o = json_pack("{s:s,s:O}", "op", op, "workflow_ids", ids);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s) fc__stream_send_text(c, s);
    free(s);
    json_decref(o);
}

/* The connection's subscription to id: a hash lookup, whatever the count. */
static fc_stream_sub *find_sub(fc_conn *c, const char *id)
{
    fc_map *index = fc_conn_multi_index(c);
    fc_map_node *n = index ? fc_map_get(index, id) : NULL;
    return n ? fc_container_of(n, fc_stream_sub, by_id) : NULL;
}

void fc__stream_drop_sub(fc_conn *c, fc_stream_sub *s)
{
    /* Out of the index first: removal reads only the node, never its key,
     * whose topic the hub may free below. */
    if (s->by_id.key) fc_map_remove(fc_conn_multi_index(c), &s->by_id);
    fc_hub_unsubscribe(fc_server_hub(fc_conn_server(c)), &s->sub);
    fc_list_remove(&s->conn_link);
    if (s->sub.all) fc_conn_set_all(c, 0);
    free(s);
}

/* Validates workflow_ids: a non-empty array of valid ids. */
static int check_ids(fc_conn *c, json_t *ids)
{
    if (!json_is_array(ids) || json_array_size(ids) == 0) {
        fc__stream_op_error(c, NULL, "bad_request",
                            "\"workflow_ids\" must be a non-empty array of ids");
        return -1;
    }
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        if (!json_is_string(v) || !fc_id_valid(json_string_value(v))) {
            fc__stream_op_error(c, NULL, "bad_request", "workflow_ids[%zu] is not a valid id", i);
            return -1;
        }
    }
    return 0;
}

/* Reads since[id] into pos: a bare seq (legacy) or {"epoch":E,"seq":N}. */
static int since_of(fc_conn *c, json_t *since, const char *id, fc__stream_pos *pos)
{
    pos->seq = -1;
    pos->epoch = 0;
    json_t *v = since ? json_object_get(since, id) : NULL;
    if (!v) return 0;
    json_t *e = json_object_get(v, "epoch"), *n = json_object_get(v, "seq");
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        pos->seq = json_integer_value(v);
        return 0;
    }
    if (json_is_object(v) && json_object_size(v) == 2 && json_is_integer(e) &&
        json_integer_value(e) >= 1 && json_integer_value(e) <= FC_EPOCH_MAX && json_is_integer(n) &&
        json_integer_value(n) >= 0) {
        pos->epoch = json_integer_value(e);
        pos->seq = json_integer_value(n);
        return 0;
    }
    fc__stream_op_error(c, id, "bad_request",
                        "since.%s must be {\"epoch\":1..2^53-1,\"seq\":N} or a non-negative "
                        "integer",
                        id);
    return -1;
}

/* One distinct id of an op and, for subscribe, what resuming it needs. */
typedef struct sub_req {
    fc_map_node node; /* key = the id, inside the op's JSON */
    fc__stream_resume res;
} sub_req;

/* An op's workflow_ids as a set, in first-seen order: a repeated id is one
 * (un)subscription, gets its initial messages once and is listed once in
 * the reply. */
typedef struct id_set {
    sub_req *reqs;
    size_t n;
    fc_map seen;  /* the ids, for since_in_set */
    json_t *list; /* the distinct ids, for the reply */
} id_set;

static void id_set_free(id_set *set)
{
    fc_map_destroy(&set->seen);
    json_decref(set->list);
    free(set->reqs);
}

/* Fills set from ids (validated by check_ids); out of memory answers the op
 * error and returns -1 (set is then freed). */
static int id_set_make(fc_conn *c, json_t *ids, id_set *set)
{
    memset(set, 0, sizeof *set);
    int ok = fc_map_init(&set->seen) == 0;
    set->reqs = ok ? calloc(json_array_size(ids), sizeof *set->reqs) : NULL;
    set->list = json_array();
    ok = set->reqs && set->list;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        if (!ok || fc_map_get(&set->seen, id)) continue;
        set->reqs[set->n].node.key = id;
        ok = fc_map_put(&set->seen, &set->reqs[set->n].node) == 0 &&
             json_array_append(set->list, v) == 0;
        set->n++;
    }
    if (ok) return 0;
    id_set_free(set);
    fc__stream_op_error(c, NULL, "internal", "out of memory");
    return -1;
}

/* since may only name ids the op subscribes. */
static int since_in_set(fc_conn *c, json_t *since, const fc_map *seen)
{
    const char *key;
    json_t *v;
    json_object_foreach(since, key, v)
    {
        if (!fc_map_get(seen, key)) {
            fc__stream_op_error(c, NULL, "bad_request",
                                "since names \"%.64s\", which is not in workflow_ids", key);
            return -1;
        }
    }
    return 0;
}

/* Reads every id's resume point; on the first failure answers the op error.
 * *got counts the points read (to clear). */
static int read_all(fc_conn *c, json_t *since, sub_req *reqs, size_t n, size_t *got)
{
    for (*got = 0; *got < n; (*got)++) {
        const char *id = reqs[*got].node.key;
        fc__stream_pos pos;
        if (since_of(c, since, id, &pos) != 0) return -1;
        int r = fc__stream_resume_read(c, id, pos, &reqs[*got].res);
        if (r != 0) {
            if (r == FC_ENOTFOUND)
                fc__stream_op_error(c, id, "not_found", "no workflow with id \"%s\"", id);
            else if (r == FC_EUNAVAILABLE)
                fc__stream_op_error(c, id, "store_unavailable",
                                    "the database is unreachable reading \"%s\"", id);
            else
                fc__stream_op_error(c, id, "internal", "storage error reading \"%s\"", id);
            return -1;
        }
    }
    return 0;
}

/* The ids of a subscribe the stream's grant allows (a new reference, NULL
 * when none is); each other id gets its own "forbidden" error. */
static json_t *allowed_ids(fc_conn *c, json_t *ids)
{
    const fc_auth_grant *g = fc__access_grant(c);
    if (!g) return json_incref(ids);
    json_t *ok = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        if (fc_auth_allows(g, FC_AUTH_READ, id))
            json_array_append(ok, v);
        else
            fc__stream_op_error(c, id, "forbidden", "the credential does not allow reading it");
    }
    if (ok && json_array_size(ok) == 0) {
        json_decref(ok);
        return NULL;
    }
    if (!ok) fail_oom(c);
    return ok;
}

static void op_subscribe(fc_conn *c, json_t *msg)
{
    json_t *since = json_object_get(msg, "since");
    id_set set;
    size_t got = 0;
    if (check_ids(c, json_object_get(msg, "workflow_ids")) != 0) return;
    if (since && !json_is_object(since)) {
        fc__stream_op_error(c, NULL, "bad_request",
                            "\"since\" must be an object of id to position");
        return;
    }
    json_t *ids = allowed_ids(c, json_object_get(msg, "workflow_ids"));
    if (!ids) return;
    if (id_set_make(c, ids, &set) != 0) {
        json_decref(ids);
        return;
    }
    if ((!since || since_in_set(c, since, &set.seen) == 0) &&
        read_all(c, since, set.reqs, set.n, &got) == 0) {
        send_op_reply(c, "subscribed", set.list);
        for (size_t i = 0; i < set.n; i++) {
            const char *id = set.reqs[i].node.key;
            fc__stream_pos at;
            fc_stream_sub *old = find_sub(c, id);
            if (old) fc__stream_drop_sub(c, old);
            /* A workflow gone since the position gets its deletion and no subscription. */
            if (fc__stream_resume_send(c, &set.reqs[i].res, fc__stream_encode_ws, NULL, &at) == 0 &&
                !fc__stream_add_sub(c, id, at))
                break;
        }
    }
    for (size_t i = 0; i < got; i++)
        fc__stream_resume_clear(&set.reqs[i].res);
    id_set_free(&set);
    json_decref(ids);
}

static void op_unsubscribe(fc_conn *c, json_t *msg)
{
    json_t *ids = json_object_get(msg, "workflow_ids");
    id_set set;
    if (check_ids(c, ids) != 0 || id_set_make(c, ids, &set) != 0) return;
    for (size_t i = 0; i < set.n; i++) {
        fc_stream_sub *s = find_sub(c, set.reqs[i].node.key);
        if (s) fc__stream_drop_sub(c, s);
    }
    send_op_reply(c, "unsubscribed", set.list);
    id_set_free(&set);
}

static void op_subscribe_all(fc_conn *c)
{
    if (!fc_conn_has_all(c)) {
        if (!fc__stream_add_sub(c, NULL, (fc__stream_pos){.seq = 0})) return;
        fc_conn_set_all(c, 1);
    }
    fc__stream_send_text(c, "{\"op\":\"subscribed\",\"all\":true}");
}

void fc_stream_on_text(fc_conn *c, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!msg || !json_is_object(msg)) {
        if (msg)
            fc__stream_op_error(c, NULL, "bad_request", "message must be a JSON object");
        else
            fc__stream_op_error(c, NULL, "bad_request", "invalid JSON at line %d, column %d: %s",
                                jerr.line, jerr.column, jerr.text);
        json_decref(msg);
        return;
    }
    const char *op = json_string_value(json_object_get(msg, "op"));
    if (!op)
        fc__stream_op_error(c, NULL, "bad_request", "missing \"op\"");
    else if (strcmp(op, "auth") == 0)
        fc__stream_op_auth(c, msg);
    else if (fc_conn_unauthenticated(c))
        fc__stream_op_error(c, NULL, "unauthorized",
                            "authenticate first: {\"op\":\"auth\",\"token\":...}");
    else if (strcmp(op, "subscribe") == 0)
        op_subscribe(c, msg);
    else if (strcmp(op, "unsubscribe") == 0)
        op_unsubscribe(c, msg);
    else if (strcmp(op, "subscribe_all") == 0)
        op_subscribe_all(c);
    else
        fc__stream_op_error(c, NULL, "bad_request",
                            "unknown op \"%.40s\": use auth, subscribe, unsubscribe or "
                            "subscribe_all",
                            op);
    json_decref(msg);
}

void fc_stream_on_close(fc_conn *c)
{
    if (fc_conn_kind(c) == FC_LONGPOLL) {
        fc_longpoll_cancel(c);
        return;
    }
    fc__access_release(c);
    fc__stream_unsubscribe(c);
}

void fc__stream_unsubscribe(fc_conn *c)
{
    fc_hub_unsubscribe(fc_server_hub(fc_conn_server(c)), fc_conn_sub(c));
    fc_list *subs = fc_conn_multi_subs(c);
    while (!fc_list_empty(subs))
        fc__stream_drop_sub(c, fc_container_of(subs->next, fc_stream_sub, conn_link));
}

void fc_stream_deliver(void *owner, fc_sub *sub, fc_buf *frame, int deleted)
{
    fc_conn *c = owner;
    fc_stream_kind kind = fc_conn_kind(c);
    if (kind == FC_LONGPOLL) {
        fc_longpoll_wake(c);
        return;
    }
    /* An all-subscription already carries this workflow's changes. */
    int duplicate =
        (kind == FC_WS_MULTI || kind == FC_SSE_MULTI) && !sub->all && fc_conn_has_all(c);
    /* A scoped token's subscribe_all sees only the workflows it may read. */
    const fc_auth_grant *g = sub->all ? fc__access_grant(c) : NULL;
    if (g && !(frame->key && fc_auth_allows(g, FC_AUTH_READ, frame->key))) return;
    if (!duplicate) {
        fc_buf *out = fc_stream_is_sse(kind) ? fc_sse_from_frame(c, frame) : fc_buf_ref(frame);
        uint32_t limit = (uint32_t)fc_server_config(fc_conn_server(c))->backlog;
        if (out) FC_METRIC_ADD(messages_coalesced, (uint64_t)fc_conn_send_coalesce(c, out, limit));
    }
    if (!deleted || sub->all) return;
    if (kind == FC_WS_UPDATES)
        fc_conn_ws_close(c, FC_WS_CLOSE_NORMAL, "workflow deleted");
    else if (kind == FC_SSE_ONE)
        fc_conn_close_when_written(c); /* the event stream ends once the deletion is written */
    else
        fc__stream_drop_sub(c, fc_container_of(sub, fc_stream_sub, sub));
}
