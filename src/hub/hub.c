/* Broadcast hub: topic index and fan-out of shared, encode-once frames. */
#include "hub/hub.h"
#include "metrics/metrics.h"
#include "common/error.h"
#include "common/map.h"
#include "common/time.h"
#include "wire/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fc_topic {
    fc_map_node node; /* key = id */
    fc_list subs;
    char id[FC_ID_MAX + 1];
} fc_topic;

struct fc_hub {
    fc_map topics;
    fc_list all_subs;
    size_t n_subs;
    fc_hub_deliver_fn deliver;
};

/* The hub's count and its thread's flowcast_subscriptions gauge move together. */
static void count_sub(fc_hub *hub, int linked)
{
    if (linked)
        hub->n_subs++;
    else
        hub->n_subs--;
    FC_METRIC_ADD(subscriptions, linked ? 1 : -1);
}

fc_hub *fc_hub_new(fc_hub_deliver_fn deliver)
{
    fc_hub *hub = calloc(1, sizeof *hub);
    if (!hub) return NULL;
    if (fc_map_init(&hub->topics) != 0) {
        free(hub);
        return NULL;
    }
    fc_list_init(&hub->all_subs);
    hub->deliver = deliver;
    return hub;
}

void fc_hub_free(fc_hub *hub)
{
    if (!hub) return;
    fc_map_destroy(&hub->topics);
    free(hub);
}

static fc_topic *topic_get_or_create(fc_hub *hub, const char *id)
{
    fc_map_node *n = fc_map_get(&hub->topics, id);
    if (n) return fc_container_of(n, fc_topic, node);
    fc_topic *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    snprintf(t->id, sizeof t->id, "%s", id);
    t->node.key = t->id;
    fc_list_init(&t->subs);
    fc_map_put(&hub->topics, &t->node);
    return t;
}

static void topic_release_if_empty(fc_hub *hub, fc_topic *t)
{
    if (!fc_list_empty(&t->subs)) return;
    fc_map_remove(&hub->topics, &t->node);
    free(t);
}

int fc_hub_subscribe(fc_hub *hub, fc_sub *sub, const char *workflow_id, void *owner, int64_t epoch,
                     int64_t last_seq)
{
    sub->owner = owner;
    sub->last_epoch = epoch;
    sub->last_seq = last_seq;
    sub->topic = NULL;
    sub->all = workflow_id == NULL;
    if (sub->all) {
        fc_list_insert_tail(&hub->all_subs, &sub->link);
    } else {
        fc_topic *t = topic_get_or_create(hub, workflow_id);
        if (!t) return FC_ENOMEM;
        sub->topic = t;
        fc_list_insert_tail(&t->subs, &sub->link);
    }
    count_sub(hub, 1);
    return 0;
}

void fc_hub_unsubscribe(fc_hub *hub, fc_sub *sub)
{
    if (!fc_list_linked(&sub->link)) return;
    fc_list_remove(&sub->link);
    count_sub(hub, 0);
    if (sub->topic) topic_release_if_empty(hub, sub->topic);
    sub->topic = NULL;
    sub->all = 0;
}

static int fan_out(fc_hub *hub, fc_list *subs, fc_buf *frame, int deleted)
{
    int n = 0;
    fc_list *it = subs->next;
    while (it != subs) {
        fc_list *next = it->next;
        fc_sub *sub = fc_container_of(it, fc_sub, link);
        /* (epoch, seq) filters per-workflow subscriptions only: an
         * all-subscription sees many workflows whose seqs are unrelated, and
         * every incarnation of each. A per-workflow subscription is to one
         * incarnation: another epoch can only be an older one's change that
         * this loop publishes after the subscription read the newer state
         * (a newer one comes after this one's deletion, which ends it). */
        if (sub->all ||
            (frame->epoch == sub->last_epoch && (deleted || frame->seq > sub->last_seq))) {
            if (!deleted && !sub->all) sub->last_seq = frame->seq;
            if (deleted && !sub->all) {
                /* The workflow is gone: unlink first so the owner may free sub. */
                fc_list_remove(&sub->link);
                count_sub(hub, 0);
                sub->topic = NULL;
            }
            hub->deliver(sub->owner, sub, frame, deleted);
            n++;
        }
        it = next;
    }
    return n;
}

int fc_hub_publish(fc_hub *hub, const fc_workflow *state, uint64_t commit_ns, int deleted)
{
    fc_map_node *node = fc_map_get(&hub->topics, state->id);
    if (!node && fc_list_empty(&hub->all_subs)) return 0;

    fc_buf *frame;
    if (deleted) {
        /* The deletion is the workflow's last change: it takes the next seq. */
        fc_workflow last = *state;
        last.seq++;
        frame = fc_wire_deleted_frame(&last, fc_time_now_ms());
    } else {
        frame = fc_wire_update_frame(state, 0);
    }
    if (!frame) return FC_ENOMEM;
    frame->commit_ns = commit_ns;

    int n = fan_out(hub, &hub->all_subs, frame, deleted);
    if (node) {
        fc_topic *t = fc_container_of(node, fc_topic, node);
        n += fan_out(hub, &t->subs, frame, deleted);
        topic_release_if_empty(hub, t);
    }
    fc_buf_unref(frame);
    return n;
}

int fc_hub_resync(fc_hub *hub, const fc_workflow *state, uint64_t commit_ns)
{
    fc_map_node *node = fc_map_get(&hub->topics, state->id);
    if (!node && fc_list_empty(&hub->all_subs)) return 0;
    fc_buf *frame = fc_wire_update_frame(state, 1);
    if (!frame) return FC_ENOMEM;
    frame->commit_ns = commit_ns;
    int n = fan_out(hub, &hub->all_subs, frame, 0);
    if (node) n += fan_out(hub, &fc_container_of(node, fc_topic, node)->subs, frame, 0);
    fc_buf_unref(frame);
    return n;
}

int fc_hub_floor(const fc_hub *hub, const char *id, int64_t epoch, int64_t *seq, int64_t *other)
{
    fc_map_node *node = fc_map_get(&hub->topics, id);
    int found = 0;
    *other = 0;
    if (!node) return 0;
    const fc_list *subs = &fc_container_of(node, fc_topic, node)->subs;
    for (const fc_list *it = subs->next; it != subs; it = it->next) {
        const fc_sub *sub = fc_container_of(it, fc_sub, link);
        if (sub->last_epoch != epoch) {
            *other = sub->last_epoch;
        } else if (!found || sub->last_seq < *seq) {
            *seq = sub->last_seq;
            found = 1;
        }
    }
    return found;
}

size_t fc_hub_subscriptions(const fc_hub *hub)
{
    return hub->n_subs;
}

const char *fc_hub_topic_id(const struct fc_topic *t)
{
    return t->id;
}
