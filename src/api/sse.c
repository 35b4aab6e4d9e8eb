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
static fc_buf *sse_event(const char *id, const char *json, size_t len, const fc_buf *frame)
{
    size_t idlen = strlen(id);
    size_t total = 4 + idlen + 7 + len + 2;
    fc_buf *b = frame->key ? fc_buf_new_keyed(total, frame->key) : fc_buf_new(total);
    if (!b) return NULL;
    uint8_t *p = b->data;
    memcpy(p, "id: ", 4), p += 4;
    memcpy(p, id, idlen), p += idlen;
    memcpy(p, "\ndata: ", 7), p += 7;
    memcpy(p, json, len), p += len;
    memcpy(p, "\n\n", 2);
    b->seq = frame->seq;
    b->epoch = frame->epoch;
    b->commit_ns = frame->commit_ns;
    return b;
}

/* The cursor of a several-workflow stream: "id:epoch:seq,..." of every subscription. */
static void multi_cursor(fc_conn *c, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    fc_list *subs = fc_conn_multi_subs(c);
    for (fc_list *it = subs->next; it != subs; it = it->next) {
        fc_stream_sub *s = fc_container_of(it, fc_stream_sub, conn_link);
        if (!s->sub.topic) continue;
        int w = snprintf(out + n, outlen - n, "%s%s:%lld:%lld", n ? "," : "",
                         fc_hub_topic_id(s->sub.topic), (long long)s->sub.last_epoch,
                         (long long)s->sub.last_seq);
        if (w < 0 || (size_t)w >= outlen - n) break;
        n += (size_t)w;
    }
}

/* An SSE event id: "epoch:seq" on a one-workflow stream, the cursor on a
 * several-workflow one. Either way, a position that names one change of
 * one incarnation (see fc__stream_parse_pos). */
#define SSE_CURSOR_MAX (SSE_MAX_WORKFLOWS * (FC_ID_MAX + 42))

fc_buf *fc_sse_from_frame(fc_conn *c, fc_buf *frame)
{
    if (fc_conn_kind(c) == FC_SSE_ONE && frame->alt) return fc_buf_ref(frame->alt);
    fc_ws_header h;
    if (fc_ws_header_parse(frame->data, frame->len, 0, UINT32_MAX, &h) <= 0) return NULL;
    char id[SSE_CURSOR_MAX];
    if (fc_conn_kind(c) == FC_SSE_ONE)
        snprintf(id, sizeof id, "%lld:%lld", (long long)frame->epoch, (long long)frame->seq);
    else
        multi_cursor(c, id, sizeof id);
    fc_buf *b =
        sse_event(id, (const char *)frame->data + h.header_len, (size_t)h.payload_len, frame);
    if (b && fc_conn_kind(c) == FC_SSE_ONE)
        frame->alt = fc_buf_ref(b); /* shared by the next ones */
    return b;
}

static fc_buf *encode_initial(fc_conn *c, fc_buf *frame, void *ud)
{
    fc_stream_sub *sub = ud;
    if (sub) { /* the cursor includes this event */
        sub->sub.last_epoch = frame->epoch;
        sub->sub.last_seq = frame->seq;
    }
    return fc_sse_from_frame(c, frame);
}

/* Resume point of a one-workflow stream: Last-Event-ID ("epoch:seq", or a
 * legacy bare seq) wins over ?since= and ?epoch=. */
static int single_pos(fc_conn *c, fc_http_req *req, fc__stream_pos *pos)
{
    const char *h = fc_http_header(req, FC_H_LAST_EVENT_ID);
    if (!h) return fc__stream_query_pos(c, req, pos);
    if (fc__stream_parse_pos(h, strlen(h), pos) != 0) {
        fc_conn_respond_error(c, 400, NULL, "bad_request",
                              "Last-Event-ID must be an event id of this stream (epoch:seq)");
        return -1;
    }
    return 0;
}

static void open_one(fc_conn *c, fc_http_req *req, const char *id)
{
    fc__stream_pos pos, at;
    fc__stream_resume res;
    if (single_pos(c, req, &pos) != 0) return;
    int r = fc__stream_resume_read(c, id, pos, &res);
    if (r != 0) {
        fc__stream_answer_read_error(c, r, id);
        return;
    }
    r = fc_conn_start_sse(c, FC_SSE_ONE);
    if (r == 0) {
        if (fc__stream_resume_send(c, &res, encode_initial, NULL, &at) == 0)
            fc__stream_subscribe_one(c, id, at);
        else /* gone: the event stream ends with the deletion, as for a live one */
            fc_conn_close_when_written(c);
    } else if (r == FC_ENOMEM) {
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
    }
    fc__stream_resume_clear(&res);
}

/* Splits "a,b,c" into distinct ids (a repeated id is one subscription);
 * returns the count or -1 with an error answered. */
static int parse_ids(fc_conn *c, char *list, char *ids[SSE_MAX_WORKFLOWS])
{
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) /* at most 100: a scan is cheap */
            dup = strcmp(ids[i], tok) == 0;
        if (dup) continue;
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

/* Parses a cursor "id:epoch:seq,..." (or legacy "id:seq" items) into one
 * position per id of the stream (seq -1 for ids it does not name). A cursor
 * is only ever one this stream wrote: an id outside the stream, a repeated
 * id or a malformed item is an error. */
static int parse_cursor(char *cursor, char *ids[], int n, fc__stream_pos pos[])
{
    for (int i = 0; i < n; i++)
        pos[i] = (fc__stream_pos){.seq = -1};
    for (char *save = NULL, *item = strtok_r(cursor, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(item, ':');
        if (!colon) return -1;
        *colon = '\0';
        int i = 0;
        while (i < n && strcmp(ids[i], item) != 0)
            i++;
        if (i == n || pos[i].seq >= 0) return -1;
        if (fc__stream_parse_pos(colon + 1, strlen(colon + 1), &pos[i]) != 0) return -1;
    }
    return 0;
}

/* The multi stream's resume point: Last-Event-ID wins over ?since=.
 * Returns 1 when there is one (a resume), 0 when not, -1 after a 400. */
static int multi_pos(fc_conn *c, fc_http_req *req, char *ids[], int n, fc__stream_pos pos[])
{
    char cursor[SSE_CURSOR_MAX + 1] = "";
    const char *h = fc_http_header(req, FC_H_LAST_EVENT_ID);
    int q = h ? (snprintf(cursor, sizeof cursor, "%s", h) < (int)sizeof cursor ? 1 : -1)
              : fc_http_query(req, "since", cursor, sizeof cursor);
    if (q == 0) cursor[0] = '\0';
    if (q < 0 || parse_cursor(cursor, ids, n, pos) != 0) {
        fc_conn_respond_error(c, 400, NULL, "bad_request",
                              "Last-Event-ID or since must be a cursor of this stream "
                              "(id:epoch:seq,... naming only its workflow_ids, each once)");
        return -1;
    }
    return cursor[0] != '\0';
}

/* On a resume, an id of the stream that the cursor no longer names was
 * deleted while the client watched (its deletion event was the last to
 * carry it): when it is gone and was deleted here, it is skipped rather
 * than failing the whole stream, so EventSource's reconnect to the same
 * URL keeps the other workflows. */
static int deleted_meanwhile(fc_conn *c, const char *id)
{
    fc_tombstone t;
    return fc_store_tombstone(fc_server_store(fc_conn_server(c)), id, &t) == 0;
}

static void open_multi(fc_conn *c, fc_http_req *req)
{
    char list[SSE_MAX_WORKFLOWS * (FC_ID_MAX + 1)];
    char *ids[SSE_MAX_WORKFLOWS];
    fc__stream_pos pos[SSE_MAX_WORKFLOWS];
    if (fc_http_query(req, "workflow_ids", list, sizeof list) != 1) list[0] = '\0';
    int n = parse_ids(c, list, ids), resuming;
    if (n < 0 || (resuming = multi_pos(c, req, ids, n, pos)) < 0) return;

    fc__stream_resume *res = calloc((size_t)n, sizeof *res);
    if (!res) {
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
        return;
    }
    int got = 0, r = 0;
    for (; got < n; got++) {
        r = fc__stream_resume_read(c, ids[got], pos[got], &res[got]);
        if (r == FC_ENOTFOUND && resuming && pos[got].seq < 0 && deleted_meanwhile(c, ids[got]))
            r = 0; /* res[got] is zero: not subscribed, nothing sent */
        if (r != 0) {
            fc__stream_answer_read_error(c, r, ids[got]);
            break;
        }
    }
    r = got == n ? fc_conn_start_sse(c, FC_SSE_MULTI) : FC_ENOTFOUND;
    if (r == FC_ENOMEM) fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
    for (int i = 0; r == 0 && i < n; i++) {
        fc__stream_pos at;
        if (!res[i].exists) { /* gone since the cursor: its deletion, no subscription */
            fc__stream_resume_send(c, &res[i], encode_initial, NULL, &at);
            continue;
        }
        /* Linked first, so the cursor of each initial event includes it (each
         * event moves it: encode_initial). Nothing is published to it before
         * this returns: publications run on a later loop turn. */
        fc_stream_sub *sub = fc__stream_add_sub(c, ids[i], (fc__stream_pos){.seq = 0});
        if (!sub) break;
        fc__stream_resume_send(c, &res[i], encode_initial, sub, &at);
        sub->sub.last_epoch = at.epoch;
        sub->sub.last_seq = at.seq;
    }
    for (int i = 0; i < got; i++)
        fc__stream_resume_clear(&res[i]);
    free(res);
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
