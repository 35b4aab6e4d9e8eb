/* The feed: the one way in to a loop's subscribers for every committed
 * change, whatever brought it (this process's commits, the cluster bus, the
 * catch-up reads of the store's log). Per workflow it hands changes on
 * strictly in seq order within an incarnation: a change already handed on
 * is dropped, a gap is filled from the store's event log before anything
 * after it, and when the log cannot fill it the subscribers behind get the
 * latest state marked as a resync (never a silent skip). The end of an
 * incarnation whose deletion never arrived is told as a deletion before
 * anything of the next one.
 *
 * A feed belongs to one loop (its store handle's); fc_feed_post may be
 * called from any thread. Memory: one small entry per recently changed
 * workflow, at most max_workflows (least recently changed evicted first);
 * a workflow without an entry is re-anchored on its subscribers' positions
 * (fc_feed_sink.floor), so eviction costs a lookup, never a change. */
#ifndef FC_FEED_FEED_H
#define FC_FEED_FEED_H

#include "bus/bus.h"
#include "model/workflow.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fc_feed fc_feed;

/* Where ordered changes go (the loop's hub). All run on the feed's loop. */
typedef struct fc_feed_sink {
    /* A change, in order: the state after it, or for a deletion (deleted = 1)
     * the state just before it (the deletion is seq + 1). commit_ns is the
     * monotonic time of the commit as well as this node can tell. */
    void (*publish)(void *ud, const fc_workflow *state, uint64_t commit_ns, int deleted);
    /* The latest state of its incarnation, after changes the log no longer
     * holds: subscribers behind it must be told continuity is lost. */
    void (*resync)(void *ud, const fc_workflow *state);
    /* The lowest position (last seq handed on) of the per-workflow
     * subscribers of (id, epoch): 1 and *seq, or 0 when there are none.
     * *other gets the epoch of some subscriber of id on another incarnation,
     * or 0. */
    int (*floor)(void *ud, const char *id, int64_t epoch, int64_t *seq, int64_t *other);
    void *ud;
} fc_feed_sink;

/* Where a change came from (for the metrics and the logs). */
typedef enum { FC_FEED_LOCAL, FC_FEED_BUS, FC_FEED_CATCHUP } fc_feed_source;

/* Changes in flight between threads, in commit order (a bus message, a
 * catch-up read, one local commit): immutable once posted, shared by every
 * loop's feed through a reference count. */
typedef struct fc_feed_msg {
    int refs; /* atomic */
    fc_feed_source source;
    uint64_t sent_ns; /* CLOCK_REALTIME of the publish (bus), else 0 */
    size_t n, cap;
    fc_bus_change *changes;
    /* The states' strings live in the changes' own allocation (a decoded
     * bus message) rather than in each state. */
    int one_block;
} fc_feed_msg;

/* A message with one reference and one change, a deep copy of state, of
 * transaction txid (0: unknown). NULL on OOM. */
fc_feed_msg *fc_feed_msg_new(const fc_workflow *state, int deleted, int64_t txid,
                             fc_feed_source source, uint64_t sent_ns);
/* Appends a deep copy of state to a message not yet posted: 0 or FC_ENOMEM. */
int fc_feed_msg_add(fc_feed_msg *m, const fc_workflow *state, int deleted, int64_t txid);
/* A message with one reference taking the changes of a decoded bus
 * message (b->changes is NULL after). NULL on OOM (b untouched). */
fc_feed_msg *fc_feed_msg_bus(fc_bus_batch *b);
fc_feed_msg *fc_feed_msg_ref(fc_feed_msg *m);
void fc_feed_msg_unref(fc_feed_msg *m);

typedef struct fc_feed_config {
    size_t max_workflows; /* entries kept (>= 1) */
    /* Changes waiting for the loop; a message that would take them past it
     * is dropped whole (>= 1). */
    size_t max_queue;
    int observe_lag; /* this feed records the bus lag histogram (one loop per process) */
} fc_feed_config;

/* A feed on store's loop, handing changes to sink. NULL on failure. */
fc_feed *fc_feed_new(uv_loop_t *loop, fc_store *store, const fc_feed_sink *sink,
                     const fc_feed_config *cfg);
/* Closes the feed's wake-up handle and frees it on a later turn of its loop
 * (messages still queued are dropped). Loop thread. */
void fc_feed_close(fc_feed *f);

/* Takes one change of transaction txid (0: unknown) in, on the feed's loop
 * (a local commit, or a message the loop drained). 0, or FC_EIO when
 * placing it needed the store and the store could not be read: the change
 * is dropped, and its transaction id kept for fc_feed_missed, so that the
 * catch-up reads it again. */
int fc_feed_change(fc_feed *f, const fc_workflow *state, uint64_t commit_ns, int deleted,
                   fc_feed_source source, int64_t txid);

/* Queues m for the feed's loop (taking a reference) and wakes it: one
 * entry and one wake-up whatever m's count of changes. Any thread. Returns
 * 0, or -1 when the queue is full (m dropped, its changes counted) or out
 * of memory. A catch-up message is taken past the bound. */
int fc_feed_post(fc_feed *f, fc_feed_msg *m);

/* Entries held (for tests and the gauge). */
size_t fc_feed_workflows(const fc_feed *f);
/* Whether max_queue changes or more are waiting: the catch-up, whose
 * messages are taken past the bound, reads no more until it clears. Any
 * thread. */
int fc_feed_full(fc_feed *f);
/* Changes refused because the queue was full (any thread). */
uint64_t fc_feed_dropped(const fc_feed *f);
/* The lowest and highest transaction ids of the changes dropped by FC_EIO
 * since the last call: 1, or 0 when none was (any thread). The catch-up
 * reads every row from *lo up to past *hi again. */
int fc_feed_missed(fc_feed *f, int64_t *lo, int64_t *hi);

#endif
