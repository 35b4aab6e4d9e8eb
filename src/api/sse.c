/* Server-Sent Events streams: GET /api/workflows/{id}/events and
 * GET /api/events?workflow_ids=a,b, with resume by Last-Event-ID or ?since=.
 * A one-workflow event is encoded once per change and shared (cached on the
 * hub frame); a several-workflow event carries a per-subscriber cursor. */
#include "api/api.h"
#include "api/stream.h"
#include "common/error.h"
#include "store/store.h"
#include "ws/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SSE_MAX_WORKFLOWS 100

/* "id: <id>\ndata: <json>\n\n" — our JSON never holds a raw newline. */
static fc_buf *sse_event(const char *id, const char *json, size_t len, const char *key, int64_t seq)
{
    size_t idlen = strlen(id);
    size_t total = 4 + idlen + 7 + len + 2;
    fc_buf *b = key ? fc_buf_new_keyed(total, key) : fc_buf_new(total);
    if (!b) return NULL;
    uint8_t *p = b->data;
    memcpy(p, "id: ", 4), p += 4;
    memcpy(p, id, idlen), p += idlen;
    memcpy(p, "\ndata: ", 7), p += 7;
    memcpy(p, json, len), p += len;
    memcpy(p, "\n\n", 2);
    b->seq = seq;
    return b;
}

/* The cursor of a several-workflow stream: "id:seq,id:seq" of every subscription. */
static void multi_cursor(fc_conn *c, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    fc_list *subs = fc_conn_multi_subs(c);
    for (fc_list *it = subs->next; it != subs; it = it->next) {
        fc_stream_sub *s = fc_container_of(it, fc_stream_sub, conn_link);
        if (!s->sub.topic) continue;
        int w = snprintf(out + n, outlen - n, "%s%s:%lld", n ? "," : "",
                         fc_hub_topic_id(s->sub.topic), (long long)s->sub.last_seq);
        if (w < 0 || (size_t)w >= outlen - n) break;
        n += (size_t)w;
    }
}

static fc_buf *encode_sse(fc_conn *c, const char *json, size_t len, const char *key, int64_t seq)
{
    char id[SSE_MAX_WORKFLOWS * (FC_ID_MAX + 22)];
    if (fc_conn_kind(c) == FC_SSE_ONE)
        snprintf(id, sizeof id, "%lld", (long long)seq);
    else
        multi_cursor(c, id, sizeof id);
    return sse_event(id, json, len, key, seq);
}

fc_buf *fc_sse_from_frame(fc_conn *c, fc_buf *frame)
{
    if (fc_conn_kind(c) == FC_SSE_ONE && frame->alt) return fc_buf_ref(frame->alt);
    fc_ws_header h;
    if (fc_ws_header_parse(frame->data, frame->len, 0, UINT32_MAX, &h) <= 0) return NULL;
    fc_buf *b = encode_sse(c, (const char *)frame->data + h.header_len, (size_t)h.payload_len,
                           frame->key, frame->seq);
    if (!b) return NULL;
    b->commit_ns = frame->commit_ns;
    if (fc_conn_kind(c) == FC_SSE_ONE) frame->alt = fc_buf_ref(b); /* shared by the next ones */
    return b;
}

static fc_buf *encode_initial(fc_conn *c, const fc_workflow *w, int resync, void *ud)
{
    fc_stream_sub *sub = ud;
    if (sub) sub->sub.last_seq = w->seq; /* the cursor includes this event */
    fc_buf *frame = fc_hub_encode_update(w, resync);
    if (!frame) return NULL;
    fc_buf *b = fc_sse_from_frame(c, frame);
    fc_buf_unref(frame);
    return b;
}

/* Resume point of a one-workflow stream: Last-Event-ID wins over ?since=. */
static int single_since(fc_conn *c, fc_http_req *req, int64_t *since)
{
    char v[32];
    const char *h = fc_http_header(req, FC_H_LAST_EVENT_ID);
    int q = h ? (snprintf(v, sizeof v, "%s", h) < (int)sizeof v ? 1 : -1)
              : fc_http_query(req, "since", v, sizeof v);
    *since = -1;
    if (q == 0) return 0;
    if (q < 0 || (*since = fc__stream_parse_since(v)) < 0) {
        fc_conn_respond_error(c, 400, NULL, "bad_request",
                              "Last-Event-ID or since must be a non-negative integer");
        return -1;
    }
    return 0;
}

static void open_one(fc_conn *c, fc_http_req *req, const char *id)
{
    int64_t since;
    if (single_since(c, req, &since) != 0) return;
    fc_workflow w = {0};
    if (fc__stream_get_or_answer(c, id, &w) != 0) return;
    int r = fc_conn_start_sse(c, FC_SSE_ONE);
    if (r == 0) {
        int64_t at = fc__stream_send_initial(c, &w, since, encode_initial, NULL);
        fc__stream_subscribe_one(c, id, at);
    } else if (r == FC_ENOMEM) {
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
    }
    fc_workflow_clear(&w);
}

/* Finds id's seq in a cursor "a:5,b:7"; -1 when absent. */
static int64_t cursor_seq(const char *cursor, const char *id)
{
    size_t idlen = strlen(id);
    for (const char *p = cursor; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (strncmp(p, id, idlen) == 0 && p[idlen] == ':') {
            char num[24];
            size_t n = strcspn(p + idlen + 1, ",");
            if (n == 0 || n >= sizeof num) return -1;
            memcpy(num, p + idlen + 1, n);
            num[n] = '\0';
            return fc__stream_parse_since(num);
        }
    }
    return -1;
}

/* True when cursor is "" or "id:seq[,id:seq]..." as multi_cursor writes it. */
static int cursor_valid(const char *cursor)
{
    for (const char *p = cursor; *p;) {
        size_t item = strcspn(p, ",");
        const char *colon = memchr(p, ':', item);
        if (!colon || colon == p || (size_t)(colon - p) > FC_ID_MAX || colon + 1 == p + item)
            return 0;
        for (const char *q = p; q < colon; q++)
            if (!(*q == '-' || *q == '_' || (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'z') ||
                  (*q >= 'A' && *q <= 'Z')))
                return 0;
        for (const char *q = colon + 1; q < p + item; q++)
            if (*q < '0' || *q > '9') return 0;
        p += item;
        if (*p == ',') p++;
    }
    return 1;
}

/* Splits "a,b,c" into ids; returns the count or -1 with an error answered. */
static int parse_ids(fc_conn *c, char *list, char *ids[SSE_MAX_WORKFLOWS])
{
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (n == SSE_MAX_WORKFLOWS || !fc_id_valid(tok)) {
            fc_conn_respond_error(c, 400, NULL, "bad_request",
                                  n == SSE_MAX_WORKFLOWS ? "at most 100 workflow_ids"
                                                         : "workflow_ids holds an invalid id");
            return -1;
        }
        ids[n++] = tok;
    }
    if (n == 0)
        fc_conn_respond_error(c, 400, NULL, "bad_request", "workflow_ids=a,b,... is required");
    return n ? n : -1;
}

static void open_multi(fc_conn *c, fc_http_req *req)
{
    char list[SSE_MAX_WORKFLOWS * (FC_ID_MAX + 1)], cursor[sizeof list + 2200] = "";
    char *ids[SSE_MAX_WORKFLOWS];
    if (fc_http_query(req, "workflow_ids", list, sizeof list) != 1) list[0] = '\0';
    int n = parse_ids(c, list, ids);
    if (n < 0) return;
    const char *h = fc_http_header(req, FC_H_LAST_EVENT_ID);
    int q = h ? (snprintf(cursor, sizeof cursor, "%s", h) < (int)sizeof cursor ? 1 : -1)
              : fc_http_query(req, "since", cursor, sizeof cursor);
    if (q < 0 || !cursor_valid(q ? cursor : "")) {
        fc_conn_respond_error(
            c, 400, NULL, "bad_request",
            "Last-Event-ID or since must be a cursor from this stream (id:seq,...)");
        return;
    }
    if (q == 0) cursor[0] = '\0';

    fc_server *srv = fc_conn_server(c);
    fc_workflow *ws = calloc((size_t)n, sizeof *ws);
    if (!ws) {
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
        return;
    }
    int got = 0;
    for (; got < n; got++) {
        if (fc_store_get(fc_server_store(srv), ids[got], &ws[got]) != 0) {
            fc_conn_respond_error(c, 404, NULL, "not_found", "no workflow with id \"%s\"",
                                  ids[got]);
            break;
        }
    }
    int r = got == n ? fc_conn_start_sse(c, FC_SSE_MULTI) : FC_ENOTFOUND;
    if (r == FC_ENOMEM) fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
    if (r == 0) {
        for (int i = 0; i < n; i++) {
            /* Linked first, so the cursor of each initial event includes it. */
            fc_stream_sub *sub = fc__stream_add_sub(c, ws[i].id, INT64_MAX);
            if (!sub) break;
            int64_t since = cursor_seq(cursor, ws[i].id);
            sub->sub.last_seq = since >= 0 ? since : 0;
            int64_t at = fc__stream_send_initial(c, &ws[i], since, encode_initial, sub);
            sub->sub.last_seq = at;
        }
    }
    for (int i = 0; i < n; i++)
        fc_workflow_clear(&ws[i]);
    free(ws);
}

void fc_sse_open(fc_conn *c, fc_http_req *req, fc_stream_kind kind, const char *workflow_id)
{
    if (req->parser.method != HTTP_GET && req->parser.method != HTTP_HEAD) {
        fc_conn_respond_error(c, 405, "Allow: GET, HEAD\r\n", "method_not_allowed", "use GET");
        return;
    }
    if (fc__stream_refuse_over_limit(c)) return;
    if (kind == FC_SSE_ONE)
        open_one(c, req, workflow_id);
    else
        open_multi(c, req);
}
