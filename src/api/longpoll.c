/* Long-poll: GET /api/workflows/{id}?wait_since=N&epoch=E&timeout=S answers
 * at once when the workflow's seq is past N, else at its next change, else
 * after S seconds (at most 60) with the unchanged state. When N cannot be
 * proven to be of the current incarnation (another epoch, or no epoch for a
 * workflow that was deleted here before), it answers at once with
 * "resync":true. */
#include "api/access.h"
#include "api/api.h"
#include "api/stream.h"
#include "common/error.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "wire/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LONGPOLL_MAX_S 60.0
#define LONGPOLL_DEFAULT_S 30.0

typedef struct waiter {
    uv_timer_t timer; /* the timeout, or 0 ms once a change woke the waiter */
    fc_conn *c;       /* NULL once cancelled */
    char id[FC_ID_MAX + 1];
    int64_t epoch; /* the incarnation waited on */
} waiter;

/* Answers with the workflow object w, plus "resync":true when resync. */
static void answer_state(fc_conn *c, const fc_workflow *w, int resync)
{
    size_t len = 0;
    char *json = fc_wire_workflow(w, &len);
    if (resync) FC_METRIC_ADD(resyncs, 1);
    if (json && resync) {
        /* {..."updated_at":"..."} becomes {...,"resync":true} */
        char *more = realloc(json, len + sizeof ",\"resync\":true");
        if (more) {
            json = more;
            len += (size_t)sprintf(json + len - 1, ",\"resync\":true}") - 1;
        } else {
            free(json);
            json = NULL;
        }
    }
    if (json)
        fc_conn_respond(c, 200, NULL, "application/json", json, len);
    else
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
    free(json);
}

/* Answers with the current state (404 if the workflow is gone), with
 * "resync":true when it is no longer the incarnation waited on. */
static void answer(fc_conn *c, const char *id, int64_t epoch)
{
    fc_workflow w = {0};
    if (fc__stream_get_or_answer(c, id, &w) != 0) return;
    answer_state(c, &w, w.epoch != epoch);
    fc_workflow_clear(&w);
}

static void free_waiter(uv_handle_t *h)
{
    free(h->data);
}

/* Ends the wait: unsubscribe, back to plain HTTP (the token's expiry no
 * longer concerns the connection), answer, let go of c. */
static void finish(waiter *wt, int expired)
{
    fc_conn *c = wt->c;
    wt->c = NULL;
    fc_hub_unsubscribe(fc_server_hub(fc_conn_server(c)), fc_conn_sub(c));
    fc_conn_set_kind(c, FC_STREAM_NONE);
    fc_conn_set_ext(c, NULL);
    fc_conn_set_expiry(c, 0);
    fc_conn_release_client_slot(c);
    if (!fc_conn_is_closed(c) && expired)
        fc__access_expired(c);
    else if (!fc_conn_is_closed(c))
        answer(c, wt->id, wt->epoch);
    uv_close((uv_handle_t *)&wt->timer, free_waiter);
    fc_conn_release(c);
}

static void on_timer(uv_timer_t *t)
{
    waiter *wt = t->data;
    if (wt->c) finish(wt, 0);
}

void fc_longpoll_expire(fc_conn *c)
{
    waiter *wt = fc_conn_ext(c);
    if (wt && wt->c) finish(wt, 1);
}

void fc_longpoll_wake(fc_conn *c)
{
    /* Called from inside a hub fan-out, which must not be changed under it:
     * the answer goes out on the next loop turn. */
    waiter *wt = fc_conn_ext(c);
    if (wt) uv_timer_start(&wt->timer, on_timer, 0, 0);
}

void fc_longpoll_cancel(fc_conn *c)
{
    waiter *wt = fc_conn_ext(c);
    if (wt && wt->c) finish(wt, 0);
}

/* Parses wait_since, epoch and timeout; answers 400 and returns -1 when malformed. */
static int parse_args(fc_conn *c, fc_http_req *req, fc__stream_pos *pos, double *timeout)
{
    char v[32];
    if (fc_http_query(req, "wait_since", v, sizeof v) != 1 ||
        fc__stream_parse_pos(v, strlen(v), pos) != 0) {
        fc_conn_respond_error(c, 400, NULL, "bad_request",
                              "wait_since must be a non-negative integer (or epoch:seq)");
        return -1;
    }
    int e = fc_http_query(req, "epoch", v, sizeof v);
    if (e != 0) {
        int64_t epoch = e == 1 ? fc__stream_parse_epoch(v) : -1;
        if (epoch < 0 || (pos->epoch != 0 && pos->epoch != epoch)) {
            fc_conn_respond_error(c, 400, NULL, "bad_request",
                                  "epoch must be an integer in 1..9007199254740991 "
                                  "(and agree with wait_since)");
            return -1;
        }
        pos->epoch = epoch;
    }
    *timeout = LONGPOLL_DEFAULT_S;
    int r = fc_http_query(req, "timeout", v, sizeof v);
    if (r != 0) {
        char *end;
        *timeout = r == 1 ? strtod(v, &end) : -1;
        if (r < 0 || !*v || *end || !(*timeout >= 0 && *timeout <= LONGPOLL_MAX_S)) {
            fc_conn_respond_error(c, 400, NULL, "bad_request",
                                  "timeout must be a number of seconds in 0..60");
            return -1;
        }
    }
    return 0;
}

void fc_longpoll_start(fc_conn *c, fc_http_req *req, const char *workflow_id)
{
    fc__stream_pos pos;
    fc__stream_resume res;
    double timeout;
    if (parse_args(c, req, &pos, &timeout) != 0) return;
    fc_server *srv = fc_conn_server(c);
    int r = fc__stream_resume_read(c, workflow_id, pos, &res);
    if (r != 0 || !res.exists) { /* gone: 404, as a plain GET */
        if (r == 0) fc__stream_resume_clear(&res);
        fc__stream_answer_read_error(c, r == 0 ? FC_ENOTFOUND : r, workflow_id);
        return;
    }
    int64_t epoch = res.w.epoch, seq = res.w.seq;
    int resync = res.mode == FC__RESUME_RESYNC || pos.seq > seq;
    if (resync || seq > pos.seq || timeout == 0) {
        answer_state(c, &res.w, resync);
        fc__stream_resume_clear(&res);
        return;
    }
    fc__stream_resume_clear(&res);
    /* A held long-poll is a stream for --max-streams-per-client. */
    if (fc_conn_take_client_slot(c) != 0) return;
    waiter *wt = calloc(1, sizeof *wt);
    if (!wt) {
        fc_conn_release_client_slot(c);
        fc_conn_respond_error(c, 500, NULL, "internal", "out of memory");
        return;
    }
    wt->c = c;
    wt->epoch = epoch;
    snprintf(wt->id, sizeof wt->id, "%s", workflow_id);
    uv_timer_init(fc_server_loop(srv), &wt->timer);
    wt->timer.data = wt;
    uv_timer_start(&wt->timer, on_timer, (uint64_t)(timeout * 1000.0), 0);
    fc_conn_hold(c);
    fc_conn_set_kind(c, FC_LONGPOLL);
    fc_conn_set_ext(c, wt);
    /* Without the subscription (out of memory) it answers at once instead. */
    if (fc_hub_subscribe(fc_server_hub(srv), fc_conn_sub(c), workflow_id, c, epoch, seq) != 0)
        uv_timer_start(&wt->timer, on_timer, 0, 0);
}
