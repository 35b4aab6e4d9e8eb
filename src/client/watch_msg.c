/* libflowcast live-update watch: frames from the server, update messages,
 * subscriptions and the per-workflow (epoch, seq) that makes resume
 * exactly-once and tells a re-created workflow from a continued one. */
#include "client/watch.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws/frame.h"

fcc__sub *fcc__sub_add(fcc_watch *w, const char *id, int64_t epoch, int64_t since)
{
    fcc__sub *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    snprintf(s->id, sizeof s->id, "%s", id);
    s->epoch = epoch;
    s->last_seq = since;
    s->node.key = s->id;
    s->node.hash = fc_map_hash(s->id);
    if (fc_map_put(&w->subs, &s->node) != 0) {
        free(s);
        return NULL;
    }
    fc_list_insert_tail(&w->sub_list, &s->link);
    return s;
}

void fcc__sub_remove(fcc_watch *w, fcc__sub *s)
{
    if (s->gone) w->gone_n--;
    fc_map_remove(&w->subs, &s->node);
    fc_list_remove(&s->link);
    free(s);
}

int fcc__sub_fresh(const fcc__sub *s, int64_t epoch, int64_t seq, int resync, int deleted)
{
    if (epoch != 0 && epoch == s->retired) return 0;
    int other = epoch != 0 && s->epoch != 0 && epoch != s->epoch;
    if (s->gone) return other && !deleted;
    return other || seq > s->last_seq || (resync && seq < s->last_seq);
}

fcc__sub *fcc__watch_find_sub(fcc_watch *w, const char *id)
{
    fc_map_node *n = fc_map_get(&w->subs, id);
    return n ? fc_container_of(n, fcc__sub, node) : NULL;
}

/* One workflow and not --all: the single-workflow stream, which also tells
 * at once (404) when the workflow does not exist. */
static fcc__sub *single(fcc_watch *w)
{
    if (w->all || fcc__watch_sub_count(w) != 1) return NULL;
    for (fc_list *l = w->sub_list.next; l != &w->sub_list; l = l->next) {
        fcc__sub *s = fc_container_of(l, fcc__sub, link);
        if (!s->gone) return s;
    }
    return NULL;
}

int fcc__watch_stream_stale(fcc_watch *w)
{
    fcc__conn *c = w->conn;
    return c && c->upgraded && !c->dead && c->single && w->dynamic;
}

int fcc__watch_path(fcc_watch *w, char *out, size_t cap)
{
    fcc__sub *s = single(w);
    /* A watch whose set changes while it runs stays on the multi stream,
     * where adding and removing a workflow is one op, not a reconnect. */
    if (w->dynamic) s = NULL;
    if (!s)
        snprintf(out, cap, "/api/updates");
    else if (s->last_seq < 0)
        snprintf(out, cap, "/api/workflows/%s/updates", s->id);
    else if (s->epoch == 0)
        snprintf(out, cap, "/api/workflows/%s/updates?since=%lld", s->id, (long long)s->last_seq);
    else
        snprintf(out, cap, "/api/workflows/%s/updates?since=%lld&epoch=%lld", s->id,
                 (long long)s->last_seq, (long long)s->epoch);
    return s != NULL;
}

/* The resume position of s for a subscribe op: {"epoch":E,"seq":N}, or the
 * bare seq while the epoch is unknown (the server then resumes only when it
 * can prove the id was never deleted). */
static json_t *position(const fcc__sub *s)
{
    if (s->epoch == 0) return json_integer(s->last_seq);
    return json_pack("{s:I, s:I}", "epoch", (json_int_t)s->epoch, "seq", (json_int_t)s->last_seq);
}

static void send_json(fcc_watch *w, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!text)
        fcc__watch_conn_fail(w, FCC_ENOMEM, "out of memory");
    else
        fcc__watch_send(w, FC_WS_OP_TEXT, text, strlen(text));
    free(text);
    json_decref(j);
}

/* Makes room for n more ids awaiting a subscribe answer; 0 or FCC_ENOMEM. */
static int pending_room(fcc_watch *w, size_t n)
{
    if (w->pending_head > 0 && w->pending_n > 0)
        memmove(w->pending, w->pending + w->pending_head, w->pending_n * sizeof *w->pending);
    w->pending_head = 0;
    if (w->pending_n + n <= w->pending_cap) return 0;
    size_t cap = (w->pending_n + n) * 2;
    void *p = realloc(w->pending, cap * sizeof *w->pending);
    if (!p) return FCC_ENOMEM;
    w->pending = p;
    w->pending_cap = cap;
    return 0;
}

/* Sends the subscribe op of s; the caller made room in pending. */
static void subscribe(fcc_watch *w, fcc__sub *s)
{
    json_t *j = json_pack("{s:s, s:[s]}", "op", "subscribe", "workflow_ids", s->id);
    if (j && s->last_seq >= 0)
        json_object_set_new(j, "since", json_pack("{s:o}", s->id, position(s)));
    memcpy(w->pending[w->pending_head + w->pending_n++], s->id, sizeof s->id);
    send_json(w, j);
}

void fcc__watch_subscribe_one(fcc_watch *w, fcc__sub *s)
{
    if (pending_room(w, 1) != 0)
        fcc__watch_conn_fail(w, FCC_ENOMEM, "out of memory");
    else
        subscribe(w, s);
}

/* One subscribe op per workflow, so that a "not_found" answer (a workflow
 * deleted while we were away) names exactly one id and spares the others.
 * Resumed ids go first: subscribe_all then only adds live changes behind
 * their history, and duplicates are dropped by seq. */
void fcc__watch_subscribe(fcc_watch *w)
{
    if (w->conn && w->conn->single) {
        /* Opened on one workflow's stream, while the set changed. */
        if (fcc__watch_stream_stale(w)) fcc__watch_switch_stream(w);
        return;
    }
    if (pending_room(w, fcc__watch_sub_count(w)) != 0) {
        fcc__watch_conn_fail(w, FCC_ENOMEM, "out of memory");
        return;
    }
    for (fc_list *l = w->sub_list.next; l != &w->sub_list && w->conn; l = l->next) {
        fcc__sub *s = fc_container_of(l, fcc__sub, link);
        if (!s->gone) subscribe(w, s);
    }
    if (w->all) send_json(w, json_pack("{s:s}", "op", "subscribe_all"));
}

/* An incarnation we knew is gone: tell the application once. A watch of
 * given ids keeps the sub, marked gone, for a new incarnation that may
 * follow on the same stream; a watch of all forgets it (a new incarnation
 * arrives as a creation), so its memory follows the live workflows. */
static void deliver_deleted(fcc_watch *w, fcc__sub *s, int64_t epoch, int64_t seq, const char *ts,
                            const char *json)
{
    char fallback[160], ep[40] = "";
    if (epoch == 0) epoch = s->epoch;
    if (!json) {
        if (epoch) snprintf(ep, sizeof ep, "\"epoch\":%lld,", (long long)epoch);
        snprintf(fallback, sizeof fallback, "{\"workflow_id\":\"%s\",%s\"deleted\":true,\"seq\":0}",
                 s->id, ep);
        json = fallback;
    }
    char id[FCC__ID_MAX + 1];
    memcpy(id, s->id, sizeof id);
    if (w->all) {
        fcc__sub_remove(w, s);
    } else {
        if (!s->gone) w->gone_n++;
        s->gone = 1;
        if (s->epoch != 0 && epoch != s->epoch) s->retired = s->epoch;
        s->epoch = epoch;
        if (seq > 0) s->last_seq = seq;
    }
    fcc_update u = {.workflow_id = id,
                    .message = "",
                    .timestamp = ts,
                    .seq = seq,
                    .deleted = 1,
                    .json = json,
                    .epoch = epoch,
                    .name = ""};
    w->o.on_update(w, &u, w->o.data);
}

void fcc__watch_not_found(fcc_watch *w, const char *message)
{
    fcc__sub *s = single(w);
    if (s && s->seen) {
        deliver_deleted(w, s, 0, 0, NULL, NULL);
        fcc__watch_conn_fail(w, 0, "workflow deleted");
    } else {
        fcc__watch_finish(w, FCC_ENOTFOUND, message);
    }
}

/* Errors about the token rather than one op: the server ends the stream
 * at exp (token_expired, then close 4401), refuses every op of a stream
 * without a valid token (unauthorized), or, after a refresh narrowed the
 * scope, ends a subscription (forbidden, naming the workflow). 1 when
 * handled. */
static int auth_error(fcc_watch *w, const char *code, const char *id, const char *msg)
{
    char why[400];
    if (strcmp(code, "token_expired") == 0) {
        if (w->conn) w->conn->expired = 1; /* the close follows: reconnect then */
        return 1;
    }
    if (strcmp(code, "unauthorized") == 0) {
        fcc__watch_auth_expired(w, msg ? msg : "the server refused the token");
        return 1;
    }
    if (strcmp(code, "forbidden") != 0 || !id) return 0;
    /* The answer to a subscribe of id, or the end of its subscription. */
    if (w->pending_n && strcmp(w->pending[w->pending_head], id) == 0)
        w->pending_head++, w->pending_n--;
    snprintf(why, sizeof why, "the token does not allow reading workflow %.64s", id);
    fcc__watch_finish(w, FCC_EAUTH, why);
    return 1;
}

static void on_op(fcc_watch *w, json_t *j, const char *op)
{
    if (strcmp(op, "subscribed") == 0 && json_object_get(j, "workflow_ids")) {
        if (w->pending_n) w->pending_head++, w->pending_n--;
        return;
    }
    const char *code = json_string_value(json_object_get(j, "code"));
    const char *id = json_string_value(json_object_get(j, "workflow_id"));
    json_t *exp = json_object_get(j, "exp");
    if (fcc__watch_auth_answer(w, op, code, id, json_integer_value(exp), json_is_integer(exp)))
        return;
    if (strcmp(op, "error") != 0) return;
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (code && auth_error(w, code, id, msg)) return;
    fcc__sub *s = NULL;
    if (w->pending_n) {
        s = fcc__watch_find_sub(w, w->pending[w->pending_head]);
        w->pending_head++, w->pending_n--;
        /* Removed (fcc_watch_remove) before the answer came: nothing to do. */
        if (!s) return;
    }
    if (s && code && strcmp(code, "not_found") == 0) {
        if (!s->seen && !s->gone) {
            fcc__watch_finish(w, FCC_ENOTFOUND, msg ? msg : "unknown workflow");
            return;
        }
        /* Seen before: deleted while we were away. Gone already: the server
         * sent the deletion in-band before refusing the resume. */
        if (!s->gone) deliver_deleted(w, s, 0, 0, NULL, NULL);
        if (!w->all && !w->dynamic && fcc__watch_sub_count(w) == 0)
            fcc__watch_finish(w, 0, "every watched workflow was deleted");
        return;
    }
    fcc__watch_finish(w, FCC_EPROTO, msg ? msg : "the server refused a subscription");
}

void fcc__watch_message(fcc_watch *w, const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    const char *op = json_string_value(json_object_get(j, "op"));
    const char *id = json_string_value(json_object_get(j, "workflow_id"));
    if (op) on_op(w, j, op);
    if (op || !id) {
        json_decref(j);
        return;
    }
    json_t *jseq = json_object_get(j, "seq");
    json_int_t seq = json_integer_value(jseq);
    json_int_t epoch = json_integer_value(json_object_get(j, "epoch"));
    int resync = json_is_true(json_object_get(j, "resync"));
    int deleted = json_is_true(json_object_get(j, "deleted"));
    const char *ts = json_string_value(json_object_get(j, "timestamp"));
    fcc__sub *s = NULL;
    if (json_is_integer(jseq) && seq >= 0 && epoch >= 0) {
        s = fcc__watch_find_sub(w, id);
        /* A watch of all learns ids as they come; a deletion of one it
         * never saw (or already forgot) is not news. */
        if (!s && w->all && !deleted && strlen(id) <= FCC__ID_MAX) s = fcc__sub_add(w, id, 0, -1);
    }
    if (!s || !fcc__sub_fresh(s, epoch, seq, resync, deleted)) {
        json_decref(j);
        return;
    }
    if (deleted) {
        deliver_deleted(w, s, epoch, seq, ts, text);
        json_decref(j);
        return;
    }
    const char *msg = json_string_value(json_object_get(j, "message"));
    const char *name = json_string_value(json_object_get(j, "name"));
    if (s->gone) w->gone_n--;
    s->gone = 0;
    if (epoch != 0 && s->epoch != 0 && epoch != s->epoch) s->retired = s->epoch;
    if (epoch != 0) s->epoch = epoch;
    fcc_update u = {
        .workflow_id = s->id,
        .status = json_string_value(json_object_get(j, "status")),
        .current_step = json_integer_value(json_object_get(j, "current_step")),
        .total_steps = json_integer_value(json_object_get(j, "total_steps")),
        .message = msg ? msg : "",
        .timestamp = ts,
        .seq = seq,
        .resync = resync,
        .json = text,
        .epoch = epoch,
        .name = name ? name : "",
    };
    s->last_seq = seq;
    s->seen = 1;
    w->o.on_update(w, &u, w->o.data);
    json_decref(j);
}

/* Handles one complete data message (text); the text is NUL-terminated copy. */
static void data_message(fcc_watch *w, const uint8_t *p, size_t len)
{
    char *text = malloc(len + 1);
    if (!text) {
        fcc__watch_conn_fail(w, FCC_ENOMEM, "out of memory");
        return;
    }
    memcpy(text, p, len);
    text[len] = '\0';
    fcc__watch_message(w, text, len);
    free(text);
}

static void control(fcc_watch *w, fcc__conn *c, uint8_t op, const uint8_t *p, size_t len)
{
    if (op == FC_WS_OP_PING) {
        fcc__watch_send(w, FC_WS_OP_PONG, p, len);
    } else if (op == FC_WS_OP_CLOSE && !c->got_close) {
        uint16_t code = FC_WS_CLOSE_NO_STATUS;
        if (fc_ws_close_parse(p, len, &code) != 0) code = FC_WS_CLOSE_PROTOCOL;
        c->got_close = code;
        /* Echo the code, then wait for the server to close TCP (on_read sees EOF). */
        uint8_t reply[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        fcc__watch_send(w, FC_WS_OP_CLOSE, reply, code == FC_WS_CLOSE_NO_STATUS ? 0 : 2);
    }
}

/* Appends a data frame's payload to the message being reassembled. */
static int append_fragment(fcc__conn *c, const uint8_t *p, size_t len)
{
    if (c->msg_len + len > FCC__MAX_MESSAGE) return FCC_EPROTO;
    uint8_t *m = realloc(c->msg, c->msg_len + len + 1);
    if (!m) return FCC_ENOMEM;
    memcpy(m + c->msg_len, p, len);
    c->msg = m;
    c->msg_len += len;
    return 0;
}

void fcc__watch_frames(fcc_watch *w, fcc__conn *c)
{
    size_t off = 0;
    while (w->conn == c && !c->dead) {
        fc_ws_header h;
        uint8_t *buf = (uint8_t *)c->rbuf + off;
        size_t avail = c->rlen - off;
        int r = fc_ws_header_parse(buf, avail, 0, FCC__MAX_MESSAGE, &h);
        if (r == 0 || (r > 0 && avail - (size_t)r < h.payload_len)) break;
        if (r < 0) {
            fcc__watch_conn_fail(w, FCC_EPROTO, "invalid frame from the server");
            return;
        }
        uint8_t *p = buf + h.header_len;
        size_t len = (size_t)h.payload_len;
        off += h.header_len + len;
        if (h.masked) fc_ws_unmask(p, len, h.mask, 0);
        if (h.opcode & 0x08) {
            control(w, c, h.opcode, p, len);
            continue;
        }
        if (h.opcode != FC_WS_OP_CONT) c->msg_len = 0, c->msg_active = 1;
        if (h.fin && h.opcode != FC_WS_OP_CONT) {
            if (h.opcode == FC_WS_OP_TEXT) data_message(w, p, len);
            c->msg_active = 0;
            continue;
        }
        int e = c->msg_active ? append_fragment(c, p, len) : FCC_EPROTO;
        if (e != 0) {
            fcc__watch_conn_fail(w, e, "invalid fragmented message from the server");
            return;
        }
        if (h.fin) {
            c->msg_active = 0;
            data_message(w, c->msg, c->msg_len);
        }
    }
    if (w->conn == c && !c->dead) {
        c->rlen -= off;
        memmove(c->rbuf, c->rbuf + off, c->rlen);
    }
}
