/* The broadcast hub: subscribers indexed by workflow id (plus an
 * all-workflows set). fc_hub_publish is the one entry point for changes,
 * whether they come from the local store or, later, from a broker: it
 * encodes the change once into a shared WebSocket frame and hands a
 * reference to each subscriber of that workflow, so its cost is
 * proportional to that workflow's subscribers, not to all connections.
 * A hub belongs to one loop thread; it keeps that thread's
 * flowcast_subscriptions gauge. */
#ifndef FC_HUB_HUB_H
#define FC_HUB_HUB_H

#include "common/buf.h"
#include "common/list.h"
#include "model/workflow.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fc_hub fc_hub;
struct fc_topic;

/* One subscriber's interest in one workflow (or in all). Embedded in or
 * allocated by its owner; the hub only links it. */
typedef struct fc_sub {
    fc_list link;           /* in the topic's (or the all-set's) list */
    struct fc_topic *topic; /* NULL when unsubscribed or an all-subscription */
    void *owner;
    /* A per-workflow subscription is to one incarnation: it gets only changes
     * of epoch last_epoch with seq > last_seq (the resume race), and its
     * workflow's deletion ends it. An all-subscription has no filter. */
    int64_t last_epoch;
    int64_t last_seq;
    uint8_t all; /* subscribed to every workflow */
} fc_sub;

/* Called once per subscriber per change, synchronously from
 * fc_hub_publish. It must only queue the frame (taking its own reference
 * with fc_buf_ref); it must not subscribe or unsubscribe anything, except
 * that when deleted is set the hub has already unlinked sub and the owner
 * may free it. */
typedef void (*fc_hub_deliver_fn)(void *owner, fc_sub *sub, fc_buf *frame, int deleted);

fc_hub *fc_hub_new(fc_hub_deliver_fn deliver);
/* Frees the hub; all subscriptions must be gone. */
void fc_hub_free(fc_hub *hub);

/* Links sub to workflow_id (or to every workflow when workflow_id is NULL),
 * at change (epoch, last_seq) of it. Returns 0 or FC_ENOMEM. */
int fc_hub_subscribe(fc_hub *hub, fc_sub *sub, const char *workflow_id, void *owner, int64_t epoch,
                     int64_t last_seq);
/* Unlinks sub; safe to call on an unlinked sub. */
void fc_hub_unsubscribe(fc_hub *hub, fc_sub *sub);

/* Publishes a committed change (the state after it), or a deletion.
 * Returns the number of subscribers it was handed to, or FC_ENOMEM. */
int fc_hub_publish(fc_hub *hub, const fc_workflow *state, uint64_t commit_ns, int deleted);

/* Hands state, the latest of its incarnation after changes the event log no
 * longer holds, marked "resync":true, to the per-workflow subscribers of
 * that incarnation still behind it, and to every all-subscription.
 * Returns the number of subscribers or FC_ENOMEM. */
int fc_hub_resync(fc_hub *hub, const fc_workflow *state, uint64_t commit_ns);

/* The lowest position (last_seq) of the per-workflow subscribers of
 * (id, epoch): 1 with *seq, or 0 when there are none. *other gets the epoch
 * of some subscriber of id on another incarnation, or 0. Costs one pass over
 * the workflow's subscribers. */
int fc_hub_floor(const fc_hub *hub, const char *id, int64_t epoch, int64_t *seq, int64_t *other);

/* The workflow id a topic stands for. */
const char *fc_hub_topic_id(const struct fc_topic *t);

/* Number of subscriptions of all kinds. */
size_t fc_hub_subscriptions(const fc_hub *hub);

#endif
