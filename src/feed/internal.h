/* What the feed's files share: the feed itself and its per-workflow entry. */
#ifndef FC_FEED_INTERNAL_H
#define FC_FEED_INTERNAL_H

#include "feed/feed.h"
#include "common/list.h"
#include "common/map.h"
#include "common/wake.h"

/* One workflow's place: the incarnation and the last position handed on
 * (a deletion's own seq once deleted). */
typedef struct fc__feed_entry {
    fc_map_node node; /* key = id */
    fc_list lru;      /* least recently changed first */
    int64_t epoch;
    int64_t seq;
    uint8_t deleted;
    char id[FC_ID_MAX + 1];
} fc__feed_entry;

struct fc_feed {
    fc_store *store;
    fc_feed_sink sink;
    fc_feed_config cfg;
    fc_map entries;
    fc_list lru;
    /* Messages from other threads: swapped out whole under the lock into
     * taken (loop thread only), then handed on a bounded batch per turn. */
    fc_wake wake;
    uv_mutex_t lock;
    fc_feed_msg **queue;
    size_t queue_len, queue_cap;
    size_t waiting; /* under the lock: changes queued plus taken and not yet handed on */
    fc_feed_msg **taken;
    size_t taken_len, taken_pos;
    size_t taken_item; /* the next change of taken[taken_pos] */
    uint64_t dropped;  /* atomic: changes refused by max_queue */
    /* Under the lock: the transactions of changes dropped for want of the
     * store (fc_feed_missed); lo > hi when none. */
    int64_t missed_lo, missed_hi;
};

/* Keeps txid for fc_feed_missed (a change of it was dropped). Any thread. */
void fc__feed_note_missed(fc_feed *f, int64_t txid);

#endif
