/* The feed's ordering: per-workflow entries (incarnation, last seq handed
 * on), gap fills from the store's event log, the end of incarnations, and
 * the bound on entries. The cross-thread queue is in queue.c. */
#include "feed/internal.h"
#include "common/error.h"
#include "common/log.h"
#include "metrics/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows one gap fill reads at most: a gap longer than this is a resync. */
#define FILL_MAX 1000

static void entry_free(fc_feed *f, fc__feed_entry *e)
{
    fc_map_remove(&f->entries, &e->node);
    fc_list_remove(&e->lru);
    free(e);
    FC_METRIC_ADD(feed_workflows, -1);
}

static fc__feed_entry *entry_get(fc_feed *f, const char *id)
{
    fc_map_node *n = fc_map_get(&f->entries, id);
    if (!n) return NULL;
    fc__feed_entry *e = fc_container_of(n, fc__feed_entry, node);
    fc_list_remove(&e->lru); /* most recently changed last */
    fc_list_insert_tail(&f->lru, &e->lru);
    return e;
}

/* A new entry at (epoch, seq); evicts the least recently changed past the
 * bound. NULL on OOM (the caller then hands the change on unordered). */
static fc__feed_entry *entry_new(fc_feed *f, const char *id, int64_t epoch, int64_t seq)
{
    if (f->entries.count >= f->cfg.max_workflows) {
        entry_free(f, fc_container_of(f->lru.next, fc__feed_entry, lru));
        FC_METRIC_ADD(feed_evictions, 1);
    }
    fc__feed_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    snprintf(e->id, sizeof e->id, "%s", id);
    e->node.key = e->id;
    e->epoch = epoch;
    e->seq = seq;
    if (fc_map_put(&f->entries, &e->node) != 0) {
        free(e);
        return NULL;
    }
    fc_list_insert_tail(&f->lru, &e->lru);
    FC_METRIC_ADD(feed_workflows, 1);
    return e;
}

/* The position a change takes: a deletion is the seq after its state's. */
static int64_t position(const fc_workflow *st, int deleted)
{
    return deleted ? st->seq + 1 : st->seq;
}

static void hand_on(fc_feed *f, fc__feed_entry *e, const fc_workflow *st, uint64_t commit_ns,
                    int deleted)
{
    if (e) {
        e->seq = position(st, deleted);
        e->deleted = (uint8_t)deleted;
    }
    f->sink.publish(f->sink.ud, st, commit_ns, deleted);
}

typedef struct fill {
    fc_feed *f;
    fc__feed_entry *e;
    uint64_t commit_ns;
    int broken; /* a row of another incarnation, or out of order */
} fill;

static int fill_row(const fc_workflow *w, void *ud)
{
    fill *fl = ud;
    if (w->epoch != fl->e->epoch || w->seq != fl->e->seq + 1) return fl->broken = 1;
    hand_on(fl->f, fl->e, w, fl->commit_ns, 0);
    return 0;
}

/* Fills e from its position up to the store's latest. 0 when the log held
 * every change after e's position, FC_EIO when the store could not be
 * read (nothing lost: a later catch-up brings the change again), -1 when
 * the log no longer reaches back (pruned, or another incarnation). */
static int fill_gap(fc_feed *f, fc__feed_entry *e, uint64_t commit_ns)
{
    fill fl = {.f = f, .e = e, .commit_ns = commit_ns};
    int64_t oldest = 0, from = e->seq;
    int rc = fc_store_events_since(f->store, e->id, e->seq, FILL_MAX, fill_row, &fl, &oldest);
    /* Unreadable (down, unreachable, timed out): not a pruned log. */
    if (rc != 0 && rc != FC_ENOTFOUND) return FC_EIO;
    if (rc == 0 && e->seq > from) FC_METRIC_ADD(feed_gaps_filled, 1);
    return rc == 0 && !fl.broken && oldest != 0 && oldest <= from + 1 ? 0 : -1;
}

/* Tells the subscribers of incarnation epoch of id that it ended: the
 * deletion with its real seq when the tombstone is that incarnation's,
 * else the seq after the last one known (last). */
static void tell_ended(fc_feed *f, const char *id, int64_t epoch, int64_t last)
{
    fc_tombstone t;
    fc_workflow st = {.epoch = epoch, .seq = last, .name = "", .message = ""};
    snprintf(st.id, sizeof st.id, "%s", id);
    if (fc_store_tombstone(f->store, id, &t) == 0 && t.epoch == epoch && t.seq > 0)
        st.seq = t.seq - 1;
    FC_METRIC_ADD(feed_ends_told, 1);
    f->sink.publish(f->sink.ud, &st, 0, 1);
}

/* The epoch of id's current incarnation (0: none), or FC_EIO. */
static int64_t current_epoch(fc_feed *f, const char *id)
{
    fc_workflow cur = {0};
    int rc = fc_store_get(f->store, id, &cur);
    int64_t epoch = rc == 0 ? cur.epoch : rc == FC_ENOTFOUND ? 0 : FC_EIO;
    fc_workflow_clear(&cur);
    return epoch;
}

/* Delivers st to an entry at its own incarnation: in order, a duplicate,
 * or after a gap. 0, or FC_EIO (deferred). */
static int deliver_ordered(fc_feed *f, fc__feed_entry *e, const fc_workflow *st,
                           uint64_t commit_ns, int deleted)
{
    int64_t pos = position(st, deleted);
    if (e->deleted || pos <= e->seq) {
        FC_METRIC_ADD(feed_duplicates, 1);
        return 0;
    }
    if (pos > e->seq + 1) {
        int rc = fill_gap(f, e, commit_ns);
        if (rc == FC_EIO) {
            FC_METRIC_ADD(feed_deferred, 1);
            return FC_EIO; /* the store is down: the catch-up brings it again */
        }
        if (pos <= e->seq) return 0; /* the fill brought it */
        if (pos > e->seq + 1 && !deleted) {
            /* The log no longer holds the changes between: say so. */
            e->seq = pos;
            FC_METRIC_ADD(feed_resyncs, 1);
            f->sink.resync(f->sink.ud, st);
            return 0;
        }
        /* A deletion ends the incarnation whatever came before it. */
    }
    hand_on(f, e, st, commit_ns, deleted);
    return 0;
}

/* An epoch of id's subscribers other than a and b (b: 0 or another), or 0.
 * floor names one epoch other than the one it is asked about. */
static int64_t other_than(fc_feed *f, const char *id, int64_t a, int64_t b)
{
    int64_t unused, other = 0;
    f->sink.floor(f->sink.ud, id, a, &unused, &other);
    if (other && other == b) f->sink.floor(f->sink.ud, id, b, &unused, &other);
    return other == a || other == b ? 0 : other;
}

/* A change of a workflow without an entry: anchored on its subscribers. */
static int deliver_fresh(fc_feed *f, const fc_workflow *st, uint64_t commit_ns, int deleted)
{
    int64_t low = 0, other = 0;
    int has = f->sink.floor(f->sink.ud, st->id, st->epoch, &low, &other);
    /* Subscribers still on other incarnations: tell each one that is over
     * (all of them: with the bus down the catch-up sees only an id's last
     * tombstone, so no later change may come to tell the rest). Each end
     * told unsubscribes its incarnation's subscribers, so the next look
     * names another until none is left; one named again was not told (out
     * of memory): stop there rather than spin. */
    int64_t cur = other ? current_epoch(f, st->id) : 0;
    for (int64_t told = 0; other && cur != FC_EIO; told = other) {
        other = other_than(f, st->id, st->epoch, cur);
        if (!other || other == told) break;
        tell_ended(f, st->id, other, 0);
    }
    int64_t pos = position(st, deleted);
    fc__feed_entry *e = entry_new(f, st->id, st->epoch, has ? low : pos - 1);
    if (!e) {
        f->sink.publish(f->sink.ud, st, commit_ns, deleted);
        return 0;
    }
    return deliver_ordered(f, e, st, commit_ns, deleted);
}

/* Whether a bus message is one the store holds. Anything on NATS can
 * publish to the subject, so a message that would move an entry other
 * than by its next seq (a deletion, a gap, a new entry, another
 * incarnation) is checked first: a forged far-future seq handed on would
 * make every real change after it a "duplicate". The next seq of a known
 * entry is taken as it comes (a store read per message would cost the
 * cluster its throughput); the bus itself must be access-controlled. */
static int bus_plausible(fc_feed *f, const fc__feed_entry *e, const fc_workflow *st, int deleted)
{
    /* 1: plausible; 0: not; FC_EIO: the store could not tell. */
    if (e && e->epoch == st->epoch && !e->deleted && !deleted && st->seq <= e->seq + 1) return 1;
    fc_workflow cur = {0};
    fc_tombstone t;
    int rc = fc_store_get(f->store, st->id, &cur);
    int ok = deleted ? rc == FC_ENOTFOUND || (rc == 0 && cur.epoch != st->epoch)
                     : rc == 0 && cur.epoch == st->epoch && cur.seq >= st->seq;
    /* A change of an incarnation deleted since: its tombstone vouches for it. */
    if (!deleted && !ok && (rc == FC_ENOTFOUND || rc == 0) &&
        fc_store_tombstone(f->store, st->id, &t) == 0)
        ok = t.epoch == st->epoch && st->seq < t.seq;
    fc_workflow_clear(&cur);
    /* Store down: nothing is handed on unchecked; the catch-up brings it. */
    if (rc != 0 && rc != FC_ENOTFOUND) {
        FC_METRIC_ADD(feed_deferred, 1);
        return FC_EIO;
    }
    return ok;
}

/* Whether subscribers of st's incarnation have not had st yet: a change of
 * an incarnation over by now still goes to them (then its deletion). */
static int behind(fc_feed *f, const fc_workflow *st)
{
    int64_t low = 0, other = 0;
    return f->sink.floor(f->sink.ud, st->id, st->epoch, &low, &other) && low < st->seq;
}

static int place(fc_feed *f, const fc_workflow *st, uint64_t commit_ns, int deleted,
                 fc_feed_source source)
{
    fc__feed_entry *e = entry_get(f, st->id);
    int plausible = source == FC_FEED_BUS ? bus_plausible(f, e, st, deleted) : 1;
    if (plausible == FC_EIO) return FC_EIO; /* the catch-up, behind the bus, brings it */
    if (!plausible) {
        FC_METRIC_ADD(feed_rejected, 1);
        return 0;
    }
    if (e && e->epoch != st->epoch) {
        /* A create after the deletion this feed handed on: the next one. */
        int next = e->deleted && !deleted && st->seq == 1;
        int64_t cur = next ? st->epoch : current_epoch(f, st->id);
        if (cur == FC_EIO) {
            FC_METRIC_ADD(feed_deferred, 1);
            return FC_EIO;
        }
        if (cur == e->epoch) {
            FC_METRIC_ADD(feed_duplicates, 1); /* a late change of an older incarnation */
            return 0;
        }
        if (!e->deleted) tell_ended(f, e->id, e->epoch, e->seq);
        entry_free(f, e);
        e = NULL;
        if (cur != st->epoch && !deleted && !behind(f, st)) {
            FC_METRIC_ADD(feed_duplicates, 1); /* an incarnation already over */
            return 0;
        }
    }
    return e ? deliver_ordered(f, e, st, commit_ns, deleted)
             : deliver_fresh(f, st, commit_ns, deleted);
}

int fc_feed_change(fc_feed *f, const fc_workflow *st, uint64_t commit_ns, int deleted,
                   fc_feed_source source, int64_t txid)
{
    int rc = place(f, st, commit_ns, deleted, source);
    if (rc == FC_EIO) fc__feed_note_missed(f, txid);
    return rc;
}

size_t fc_feed_workflows(const fc_feed *f)
{
    return f->entries.count;
}
