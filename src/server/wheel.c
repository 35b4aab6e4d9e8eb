/* Timer wheels for periodic per-connection work and deadlines (WebSocket
 * pings, SSE heartbeats, token expiry in expiry.c): each tick visits one
 * slot, never every connection at once. */
#include "server/internal.h"

#include <stddef.h>

static fc_conn *conn_of(const fc_wheel *w, fc_list *link)
{
    return (fc_conn *)(void *)((char *)link - w->link_off);
}

void fc__wheel_visit_slot(fc_wheel *w, unsigned i)
{
    fc_list *slot = &w->slots[i];
    fc_list *it = slot->next;
    while (it != slot) {
        fc_list *next = it->next; /* visit may close (unlink) the connection */
        w->visit(conn_of(w, it));
        it = next;
    }
}

static void on_tick(uv_timer_t *t)
{
    fc_wheel *w = t->data;
    unsigned i = w->pos;
    w->pos = (w->pos + 1) % FC_WHEEL_SLOTS;
    fc__wheel_visit_slot(w, i);
}

void fc__wheel_setup(fc_server *srv, fc_wheel *w, uint64_t tick, size_t link_off,
                     void (*visit)(fc_conn *c), uv_timer_cb turn)
{
    for (int i = 0; i < FC_WHEEL_SLOTS; i++)
        fc_list_init(&w->slots[i]);
    w->pos = 0;
    w->visit = visit;
    w->link_off = link_off;
    w->tick_ms = tick ? tick : 1;
    uv_timer_init(srv->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, turn ? turn : on_tick, w->tick_ms, w->tick_ms);
}

void fc__wheel_init(fc_server *srv, fc_wheel *w, double period_s, void (*visit)(fc_conn *c))
{
    fc__wheel_setup(srv, w, (uint64_t)(period_s * 1000.0 / FC_WHEEL_SLOTS),
                    offsetof(fc_conn, wheel_link), visit, NULL);
}

void fc__wheel_add(fc_wheel *w, fc_conn *c)
{
    /* The slot just visited comes round again after a full period. */
    unsigned slot = (w->pos + FC_WHEEL_SLOTS - 1) % FC_WHEEL_SLOTS;
    fc_list_remove(&c->wheel_link); /* out of an HTTP deadline list, on upgrade */
    c->http_timer = FC__TIMER_NONE;
    fc_list_insert_tail(&w->slots[slot], &c->wheel_link);
}

static void heartbeat_visit(fc_conn *c)
{
    fc_conn_send(c, fc_buf_ref(FC_SRV(c)->heartbeat));
}

void fc__heartbeat_init(fc_server *srv)
{
    fc__wheel_init(srv, &srv->heartbeat_wheel, srv->cfg->sse_heartbeat, heartbeat_visit);
}

void fc__heartbeat_add(fc_conn *c)
{
    fc__wheel_add(&FC_SRV(c)->heartbeat_wheel, c);
}
