/* Timer wheels for per-connection deadlines and periodic work (WebSocket
 * pings, SSE heartbeats, token expiry): each tick visits one slot, never
 * every connection at once. */
#include "server/internal.h"
#include "api/api.h"
#include "common/time.h"

#include <stddef.h>

static fc_conn *conn_of(const fc_wheel *w, fc_list *link)
{
    return (fc_conn *)(void *)((char *)link - w->link_off);
}

static void on_tick(uv_timer_t *t)
{
    fc_wheel *w = t->data;
    fc_list *slot = &w->slots[w->pos];
    w->pos = (w->pos + 1) % FC_WHEEL_SLOTS;
    fc_list *it = slot->next;
    while (it != slot) {
        fc_list *next = it->next; /* visit may close (unlink) the connection */
        w->visit(conn_of(w, it));
        it = next;
    }
}

static void wheel_setup(fc_server *srv, fc_wheel *w, uint64_t tick, size_t link_off,
                        void (*visit)(fc_conn *c))
{
    for (int i = 0; i < FC_WHEEL_SLOTS; i++)
        fc_list_init(&w->slots[i]);
    w->pos = 0;
    w->visit = visit;
    w->link_off = link_off;
    w->tick_ms = tick ? tick : 1;
    uv_timer_init(srv->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_tick, w->tick_ms, w->tick_ms);
}

void fc__wheel_init(fc_server *srv, fc_wheel *w, double period_s, void (*visit)(fc_conn *c))
{
    wheel_setup(srv, w, (uint64_t)(period_s * 1000.0 / FC_WHEEL_SLOTS),
                offsetof(fc_conn, wheel_link), visit);
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
    fc__wheel_init(srv, &srv->heartbeat_wheel, FC_SSE_HEARTBEAT_S, heartbeat_visit);
}

void fc__heartbeat_add(fc_conn *c)
{
    fc__wheel_add(&FC_SRV(c)->heartbeat_wheel, c);
}

/* --- token expiry --------------------------------------------------------- */

/* A deadline of any length sits in the slot of the tick that first comes at
 * or after it; the visits of earlier rounds find it not due and pass on. So
 * a stream costs one link, four bytes and one comparison per round. The
 * deadline is kept in ticks of loop time, rounded down: the visit of its own
 * slot comes at or after the deadline, so rounding never makes it wait a
 * round; a visit of an earlier round (a loop late by nearly a round) may end
 * it at most one tick early. */
static uint64_t loop_tick(const fc_conn *c)
{
    return uv_now(FC_SRV(c)->loop) / FC_EXPIRY_TICK_MS;
}

static void expiry_visit(fc_conn *c)
{
    if (loop_tick(c) < c->exp_tick) return;
    fc_list_remove(&c->exp_link);
    fc_stream_on_expiry(c);
}

void fc__expiry_init(fc_server *srv)
{
    wheel_setup(srv, &srv->expiry_wheel, FC_EXPIRY_TICK_MS, offsetof(fc_conn, exp_link),
                expiry_visit);
}

void fc_conn_set_expiry(fc_conn *c, int64_t at_ms)
{
    fc_wheel *w = &FC_SRV(c)->expiry_wheel;
    fc_list_remove(&c->exp_link);
    if (at_ms <= 0 || c->closing || !w->visit) return;
    int64_t wall = fc_time_now_ms();
    uint64_t now = uv_now(FC_SRV(c)->loop);
    uint64_t delay = at_ms > wall ? (uint64_t)(at_ms - wall) : 0;
    /* Ticks never come early (libuv restarts a repeating timer from the
     * loop time it ran at): the k-th next one, in slot pos + k, is at least
     * k ticks from now. */
    uint64_t k = (delay + w->tick_ms - 1) / w->tick_ms;
    c->exp_tick = (uint32_t)((now + delay) / FC_EXPIRY_TICK_MS); /* 34 years of uptime */
    fc_list_insert_tail(&w->slots[(w->pos + k) % FC_WHEEL_SLOTS], &c->exp_link);
}
