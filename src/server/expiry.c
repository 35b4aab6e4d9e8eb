/* Token expiry: the wheel that ends each stream at its token's exp (and an
 * unauthenticated multi WebSocket at --request-timeout). Apart from
 * wheel.c because it calls up into the API layer, which the session-level
 * fuzz driver replaces piecemeal.
 *
 * Slots are kept by absolute tick of loop time (FC_EXPIRY_TICK_MS each,
 * starting on wall-clock seconds): a deadline goes in the slot of the first
 * tick at or after it, and each turn of the timer, set for the next tick's
 * start, visits every tick that has come since the last turn. A repeating
 * libuv timer drifts later each round (it restarts from the loop time it ran
 * at), so counting turns would end a stream later the longer its token
 * lives; counting loop time, a stream ends at most one tick (plus the loop's own lateness)
 * after its deadline, and for a whole-second exp within milliseconds of it.
 * A deadline of any length costs one link, four bytes (which fill padding in
 * fc_conn) and one comparison each round (5 s) while it waits; arming,
 * moving (a refresh) and dropping it are O(1). */
#include "server/internal.h"
#include "common/time.h"

#include <stddef.h>
#include <stdint.h>

#define CLOCK_SLACK_MS 3
#define NEVER_TICKS (UINT32_C(1) << 30) /* 8.5 years: half the range tick_reached can tell */

/* Ticks count loop time shifted so that they start on wall-clock seconds:
 * exp is a whole second, so a stream ends right at it rather than up to a
 * tick later. (A later step of the wall clock only costs that precision.) */
static uint32_t tick_of(const fc_wheel *w, uint64_t loop_ms)
{
    return (uint32_t)((loop_ms + w->shift_ms) / FC_EXPIRY_TICK_MS); /* wraps after 34 years */
}

static uint32_t loop_tick(const fc_server *srv)
{
    return tick_of(&srv->expiry_wheel, uv_now(srv->loop));
}

/* Whether tick a is at or after tick b, across the wrap. */
static int tick_reached(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) >= 0;
}

static void expiry_visit(fc_conn *c)
{
    if (!tick_reached(loop_tick(FC_SRV(c)), c->exp_tick)) return; /* a later round */
    fc_list_remove(&c->exp_link);
    FC_SRV(c)->handlers->on_expiry(c); /* what it queues goes out this turn */
}

static void on_turn(uv_timer_t *t)
{
    fc_wheel *w = t->data;
    uint32_t now = tick_of(w, uv_now(t->loop));
    /* After a stall longer than a round, one visit of each slot covers all. */
    for (int n = 0; n < FC_WHEEL_SLOTS && tick_reached(now, w->pos); n++, w->pos++)
        fc__wheel_visit_slot(w, w->pos % FC_WHEEL_SLOTS);
    if (tick_reached(now, w->pos)) w->pos = now + 1;
    uint64_t next = (uint64_t)w->pos * FC_EXPIRY_TICK_MS, at = uv_now(t->loop) + w->shift_ms;
    uv_timer_start(t, on_turn, next > at ? next - at : 1, 0);
}

void fc__expiry_init(fc_server *srv)
{
    fc_wheel *w = &srv->expiry_wheel;
    fc__wheel_setup(srv, w, FC_EXPIRY_TICK_MS, offsetof(fc_conn, exp_link), expiry_visit, on_turn);
    uint64_t mono = uv_hrtime() / 1000000;
    uint64_t wall = (uint64_t)fc_time_now_ms();
    w->shift_ms = (wall % FC_EXPIRY_TICK_MS + FC_EXPIRY_TICK_MS - mono % FC_EXPIRY_TICK_MS) %
                  FC_EXPIRY_TICK_MS;
    w->pos = loop_tick(srv);
}

void fc_conn_set_expiry(fc_conn *c, int64_t at_ms)
{
    fc_server *srv = FC_SRV(c);
    fc_wheel *w = &srv->expiry_wheel;
    fc_list_remove(&c->exp_link);
    if (at_ms <= 0 || c->closing || !w->visit) return;
    int64_t wall = fc_time_now_ms();
    uint64_t delay = at_ms > wall ? (uint64_t)(at_ms - wall) : 0;
    /* Ticks are compared across the wrap, so a deadline over 2^31 ticks
     * (17 years) away would look past and end the stream at once: one
     * beyond NEVER_TICKS (a token minted to "never" expire, exp 9999999999)
     * is not armed, as no loop runs that long. */
    if (delay / FC_EXPIRY_TICK_MS >= NEVER_TICKS) return;
    /* The clock of loop time, read now: the loop's cached time may be a
     * whole turn of work behind, which would end the stream that early. */
    uint64_t due = uv_hrtime() / 1000000 + delay;
    /* The first tick at or after due; the two clocks read a millisecond or
     * two apart, so a deadline that close past a tick counts as on it
     * rather than waiting for the next. */
    uint32_t tick = tick_of(w, due + FC_EXPIRY_TICK_MS - 1 - CLOCK_SLACK_MS);
    if (!tick_reached(tick, w->pos)) tick = w->pos; /* that tick is done: the next one */
    c->exp_tick = tick;
    fc_list_insert_tail(&w->slots[tick % FC_WHEEL_SLOTS], &c->exp_link);
}
