/* The feed's life and its queue from other threads: messages (each the
 * changes of one bus message or one catch-up read) are shared by reference
 * between every loop's feed, queued under a lock, and taken whole on the
 * loop's next turn by one wake-up (fc_wake: many posts, one wake-up), then
 * their changes handed on a bounded number per turn. */
#include "feed/internal.h"
#include "common/error.h"
#include "common/time.h"
#include "metrics/metrics.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

fc_feed_msg *fc_feed_msg_new(const fc_workflow *state, int deleted, int64_t txid,
                             fc_feed_source source, uint64_t sent_ns)
{
    fc_feed_msg *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->refs = 1;
    m->source = source;
    m->sent_ns = sent_ns;
    if (fc_feed_msg_add(m, state, deleted, txid) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

int fc_feed_msg_add(fc_feed_msg *m, const fc_workflow *state, int deleted, int64_t txid)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1;
        fc_bus_change *c = realloc(m->changes, cap * sizeof *c);
        if (!c) return FC_ENOMEM;
        m->changes = c;
        m->cap = cap;
    }
    fc_bus_change *c = &m->changes[m->n];
    if (fc_workflow_copy(&c->state, state) != 0) return FC_ENOMEM;
    c->deleted = deleted;
    c->txid = txid;
    c->txn_changes = 0;
    m->n++;
    return 0;
}

fc_feed_msg *fc_feed_msg_bus(fc_bus_batch *b)
{
    fc_feed_msg *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->refs = 1;
    m->source = FC_FEED_BUS;
    m->sent_ns = b->sent_ns;
    m->n = m->cap = b->n;
    m->changes = b->changes;
    m->one_block = 1;
    b->changes = NULL;
    return m;
}

fc_feed_msg *fc_feed_msg_ref(fc_feed_msg *m)
{
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void fc_feed_msg_unref(fc_feed_msg *m)
{
    if (!m || __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (size_t i = 0; !m->one_block && i < m->n; i++)
        fc_workflow_clear(&m->changes[i].state);
    free(m->changes);
    free(m);
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The monotonic time of a remote commit, from its publish time: the lag it
 * took to get here, taken off now (clocks of different nodes differ, so a
 * negative lag counts as none). */
static uint64_t commit_time(const fc_feed *f, const fc_feed_msg *m, uint64_t now_mono,
                            uint64_t now_real)
{
    if (!m->sent_ns) return now_mono;
    uint64_t lag = now_real > m->sent_ns ? now_real - m->sent_ns : 0;
    if (f->cfg.observe_lag) fc_metrics_observe_bus_lag(lag);
    return lag < now_mono ? now_mono - lag : now_mono;
}

/* Changes handed on per loop turn at most, and the time they may take:
 * a change the feed must check costs synchronous store reads (a forged or
 * out-of-order one, a gap fill), and a whole --bus-queue of them in one
 * turn held the loop for seconds (a flood on the bus: no /healthz, no
 * answers, no SIGTERM meanwhile). The rest waits for the next turn, where
 * a message's changes go on from the one after the last handed on. */
#define TURN_MAX 256
#define TURN_NS (10 * 1000 * 1000)

void fc__feed_note_missed(fc_feed *f, int64_t txid)
{
    if (txid <= 0) return; /* unknown: never heard, so the catch-up reads it anyway */
    uv_mutex_lock(&f->lock);
    if (txid < f->missed_lo) f->missed_lo = txid;
    if (txid > f->missed_hi) f->missed_hi = txid;
    uv_mutex_unlock(&f->lock);
}

int fc_feed_missed(fc_feed *f, int64_t *lo, int64_t *hi)
{
    uv_mutex_lock(&f->lock);
    int any = f->missed_lo <= f->missed_hi;
    *lo = f->missed_lo;
    *hi = f->missed_hi;
    f->missed_lo = INT64_MAX;
    f->missed_hi = INT64_MIN;
    uv_mutex_unlock(&f->lock);
    return any;
}

static void on_wake(fc_wake *w)
{
    fc_feed *f = w->data;
    if (f->taken_pos == f->taken_len) {
        free(f->taken);
        uv_mutex_lock(&f->lock);
        f->taken = f->queue;
        f->taken_len = f->queue_len;
        f->queue = NULL;
        f->queue_len = f->queue_cap = 0;
        uv_mutex_unlock(&f->lock);
        f->taken_pos = f->taken_item = 0;
    }
    uint64_t now_mono = uv_hrtime(), now_real = realtime_ns();
    size_t done = 0;
    while (f->taken_pos < f->taken_len && done < TURN_MAX) {
        fc_feed_msg *m = f->taken[f->taken_pos];
        if (f->taken_item < m->n) {
            const fc_bus_change *c = &m->changes[f->taken_item++];
            fc_feed_change(f, &c->state, commit_time(f, m, now_mono, now_real), c->deleted,
                           m->source, c->txid);
            done++;
        }
        if (f->taken_item == m->n) {
            fc_feed_msg_unref(m);
            f->taken_pos++;
            f->taken_item = 0;
        }
        if (uv_hrtime() - now_mono > TURN_NS) break;
    }
    uv_mutex_lock(&f->lock);
    f->waiting -= done;
    /* Posts made while this turn's batch was still being handed on had
     * their wake-up merged into one already spent, so the turn that
     * finishes taken must look at the queue itself: otherwise the last
     * messages of a burst wait for the next post, which may never come. */
    int more = f->taken_pos < f->taken_len || f->queue_len > 0;
    uv_mutex_unlock(&f->lock);
    if (more) fc_wake_send(&f->wake); /* the rest on the next turn */
}

int fc_feed_post(fc_feed *f, fc_feed_msg *m)
{
    int rc = 0;
    uv_mutex_lock(&f->lock);
    /* Counted in changes: a message is taken or refused whole. A catch-up
     * read is always taken: refused, it would be read again from the start
     * of its last transaction, and one larger than the queue would be
     * refused at every read, the catch-up stopped for good. The relay reads
     * only while no queue is full (fc_feed_full). */
    if (f->waiting + m->n > f->cfg.max_queue && m->source != FC_FEED_CATCHUP) {
        rc = -1;
    } else if (f->queue_len == f->queue_cap) {
        size_t cap = f->queue_cap ? f->queue_cap * 2 : 64;
        fc_feed_msg **q = realloc(f->queue, cap * sizeof *q);
        if (q) {
            f->queue = q;
            f->queue_cap = cap;
        } else {
            rc = -1;
        }
    }
    int past = 0;
    if (rc == 0) {
        f->queue[f->queue_len++] = fc_feed_msg_ref(m);
        f->waiting += m->n;
        past = f->waiting > f->cfg.max_queue;
    }
    uv_mutex_unlock(&f->lock);
    if (past) FC_METRIC_ADD(catchup_past_queue, 1);
    if (rc == 0)
        fc_wake_send(&f->wake);
    else
        __atomic_add_fetch(&f->dropped, m->n, __ATOMIC_RELAXED);
    return rc;
}

fc_feed *fc_feed_new(uv_loop_t *loop, fc_store *store, const fc_feed_sink *sink,
                     const fc_feed_config *cfg)
{
    fc_feed *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->store = store;
    f->sink = *sink;
    f->cfg = *cfg;
    f->missed_lo = INT64_MAX;
    f->missed_hi = INT64_MIN;
    if (f->cfg.max_workflows < 1) f->cfg.max_workflows = 1;
    if (f->cfg.max_queue < 1) f->cfg.max_queue = 1;
    fc_list_init(&f->lru);
    if (fc_map_init(&f->entries) != 0) {
        free(f);
        return NULL;
    }
    if (fc_wake_init(loop, &f->wake, on_wake) != 0) {
        fc_map_destroy(&f->entries);
        free(f);
        return NULL;
    }
    uv_mutex_init(&f->lock);
    f->wake.data = f;
    return f;
}

static void on_closed(uv_handle_t *h)
{
    fc_feed *f = ((fc_wake *)h)->data;
    for (size_t i = 0; i < f->queue_len; i++)
        fc_feed_msg_unref(f->queue[i]);
    free(f->queue);
    for (size_t i = f->taken_pos; i < f->taken_len; i++)
        fc_feed_msg_unref(f->taken[i]);
    free(f->taken);
    while (!fc_list_empty(&f->lru)) {
        fc__feed_entry *e = fc_container_of(f->lru.next, fc__feed_entry, lru);
        fc_list_remove(&e->lru);
        free(e);
        FC_METRIC_ADD(feed_workflows, -1);
    }
    fc_map_destroy(&f->entries);
    uv_mutex_destroy(&f->lock);
    free(f);
}

void fc_feed_close(fc_feed *f)
{
    if (f) fc_wake_close(&f->wake, on_closed);
}

int fc_feed_full(fc_feed *f)
{
    uv_mutex_lock(&f->lock);
    int full = f->waiting >= f->cfg.max_queue;
    uv_mutex_unlock(&f->lock);
    return full;
}

uint64_t fc_feed_dropped(const fc_feed *f)
{
    return __atomic_load_n(&f->dropped, __ATOMIC_RELAXED);
}
