/* The relay: a process's link to the other nodes of a cluster. It
 * publishes this node's commits on the bus, hands what the bus brings to
 * every loop's feed, reads the store's commit log at an interval (and at
 * once after the bus comes back) so that a change whose message was lost,
 * or whose node died before publishing, still reaches every feed, and
 * proves the bus end to end with a probe message to itself (/readyz).
 *
 * Without a bus it still runs the catch-up (a node on a shared store
 * without --nats delivers everything, later). On a store only one process
 * writes (no log_since), there is nothing to relay: fc_feed_relay_new
 * refuses a bus there. */
#ifndef FC_FEED_RELAY_H
#define FC_FEED_RELAY_H

#include "bus/bus.h"
#include "feed/feed.h"
#include "store/store.h"

#include <uv.h>

typedef struct fc_feed_relay fc_feed_relay;

typedef struct fc_feed_relay_config {
    const fc_bus_ops *bus;   /* NULL: catch-up only */
    const char *urls;        /* the bus's servers (may carry credentials) */
    fc_bus_secure secure;    /* how the node and they prove themselves */
    const char *node_id;     /* this node's name on the bus */
    double catchup_interval; /* seconds between reads of the commit log */
    int catchup_batch;       /* rows per read */
    int heard_max;           /* transactions remembered as heard (heard.h); 0: 65536 */
} fc_feed_relay_config;

/* A relay whose timers run on home, reading the log through home_store.
 * NULL with a reason in err (FC_EINVAL in *code when the configuration is
 * refused, e.g. a bus on a store with no commit log; FC_ENOMEM else). */
fc_feed_relay *fc_feed_relay_new(uv_loop_t *home, fc_store *home_store,
                                 const fc_feed_relay_config *cfg, int *code, char *err,
                                 size_t errlen);
/* Adds / removes a loop's feed (any thread). Remove a feed before closing it. */
int fc_feed_relay_add(fc_feed_relay *r, fc_feed *f);
void fc_feed_relay_remove(fc_feed_relay *r, fc_feed *f);
/* Connects the bus (in the background) and starts the timers. 0 or -1 with err. */
int fc_feed_relay_start(fc_feed_relay *r, char *err, size_t errlen);
/* Tells the other nodes of a change this process committed (after the
 * home loop's own feed took it). Home loop. */
void fc_feed_relay_publish(fc_feed_relay *r, const fc_workflow *state,
                           const fc_store_commit *commit, int deleted);
/* 0 when the bus proved itself end to end recently (or there is none),
 * else -1 with a reason. Any thread. */
int fc_feed_relay_health(fc_feed_relay *r, char *why, size_t whylen);
/* Stops the timers (home loop, at shutdown); the handles close on its next turns. */
void fc_feed_relay_stop(fc_feed_relay *r);
/* Closes the bus (joining its threads) and frees r, once the home loop has
 * run its close callbacks. Any thread, after every feed was removed. */
void fc_feed_relay_free(fc_feed_relay *r);

#endif
