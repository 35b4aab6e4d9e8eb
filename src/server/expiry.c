/* Token expiry: the wheel that ends each stream at its token's exp (and an
 * unauthenticated multi WebSocket at --request-timeout). Apart from
 * wheel.c because it calls up into the API layer, which the session-level
 * fuzz driver replaces piecemeal. */
#include "server/internal.h"
#include "api/api.h"
#include "common/time.h"

#include <stddef.h>

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
    fc__wheel_setup(srv, &srv->expiry_wheel, FC_EXPIRY_TICK_MS, offsetof(fc_conn, exp_link),
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
