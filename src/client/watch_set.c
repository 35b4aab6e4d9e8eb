/* libflowcast live-update watch: the set of watched workflows, changed
 * before the watch starts or while it runs (subscribe and unsubscribe ops
 * on the open multi-workflow stream). */
#include "client/watch.h"

#include <stdio.h>
#include <string.h>

#include "ws/frame.h"

static int valid_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n > 0 && n <= FCC__ID_MAX &&
           strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

static void on_switch(uv_timer_t *t)
{
    fcc_watch *w = t->data;
    if (fcc__watch_stream_stale(w))
        fcc__watch_retry(w, 0, "the watched set changed: moving to the multi-workflow stream", 1);
}

void fcc__watch_switch_stream(fcc_watch *w)
{
    /* The retry timer is idle while a connection is open; a later turn, so
     * that no state callback runs inside fcc_watch_add/remove. */
    if (!w->closing) uv_timer_start(&w->retry, on_switch, 0, 0);
}

/* The open multi-workflow connection, or NULL (connecting, waiting, or a
 * single-workflow stream): the next connection sends the whole set. */
static int multi_open(fcc_watch *w)
{
    fcc__conn *c = w->conn;
    return c && c->upgraded && !c->dead && !c->single;
}

int fcc_watch_add_from(fcc_watch *w, const char *id, int64_t epoch, int64_t since)
{
    if (!w || w->closing || !valid_id(id) || epoch < 0 || epoch > FCC__EPOCH_MAX) return FCC_EINVAL;
    if (since < 0) epoch = 0; /* a position needs a seq; without one, start from the state */
    fcc__sub *old = fcc__watch_find_sub(w, id);
    if (old && !old->gone) return 0; /* a set: the first position wins */
    int64_t retired = 0;
    if (old) {
        /* Kept after its deletion to drop repeats: watching it again starts
         * afresh, and late messages of the deleted incarnation stay old. */
        retired = old->epoch;
        fcc__sub_remove(w, old);
    }
    fcc__sub *s = fcc__sub_add(w, id, epoch, since < 0 ? -1 : since);
    if (!s) return FCC_ENOMEM;
    s->retired = retired;
    if (!w->started) return 0;
    w->dynamic = 1;
    if (multi_open(w))
        fcc__watch_subscribe_one(w, s);
    else if (fcc__watch_stream_stale(w))
        fcc__watch_switch_stream(w);
    return 0;
}

int fcc_watch_add(fcc_watch *w, const char *id, int64_t since)
{
    return fcc_watch_add_from(w, id, 0, since);
}

int fcc_watch_add_all(fcc_watch *w)
{
    if (!w || w->started) return FCC_EINVAL;
    w->all = 1;
    return 0;
}

int fcc_watch_remove(fcc_watch *w, const char *id)
{
    if (!w || w->closing || !valid_id(id) || w->all) return FCC_EINVAL;
    fcc__sub *s = fcc__watch_find_sub(w, id);
    if (!s) return 0;
    int live = !s->gone;
    fcc__sub_remove(w, s);
    if (!w->started) return 0;
    w->dynamic = 1;
    if (!live) return 0;
    if (multi_open(w)) {
        char op[128];
        int n = snprintf(op, sizeof op, "{\"op\":\"unsubscribe\",\"workflow_ids\":[\"%s\"]}", id);
        fcc__watch_send(w, FC_WS_OP_TEXT, op, (size_t)n);
    } else if (fcc__watch_stream_stale(w)) {
        fcc__watch_switch_stream(w);
    }
    return 0;
}
