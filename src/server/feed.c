/* Between each loop's store handle and its hub: the loop's feed (every
 * change, from whichever source, in order per workflow) and, on loop 0,
 * the relay to the other nodes of a cluster (the bus, the catch-up reads of
 * a shared store's commit log, the /readyz probe). On SQLite without --nats
 * the feed sees only this process's commits, already in order, and the
 * relay does nothing. */
#include "server/internal.h"
#include "bus/bus.h"
#include "common/error.h"
#include "common/log.h"
#include "feed/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void sink_publish(void *ud, const fc_workflow *state, uint64_t commit_ns, int deleted)
{
    fc_server *srv = ud;
    if (fc_hub_publish(srv->hub, state, commit_ns, deleted) < 0)
        FC_ERROR("hub", "out of memory: change %lld of %s was stored but not broadcast",
                 (long long)state->seq, state->id);
}

static void sink_resync(void *ud, const fc_workflow *state)
{
    fc_server *srv = ud;
    if (fc_hub_resync(srv->hub, state, uv_hrtime()) < 0)
        FC_ERROR("hub", "out of memory: the resync of %s was not broadcast", state->id);
}

static int sink_floor(void *ud, const char *id, int64_t epoch, int64_t *seq, int64_t *other)
{
    fc_server *srv = ud;
    return fc_hub_floor(srv->hub, id, epoch, seq, other);
}

/* --node-id, or hostname:port-<4 random hex digits> (two nodes on one host
 * and port, one restarted, must not share a name while the old one lingers). */
static void node_id(const fc_config *cfg, char *out, size_t len)
{
    if (cfg->node_id) {
        snprintf(out, len, "%s", cfg->node_id);
        return;
    }
    char host[64] = "node";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++) /* a subject token may not hold '.', ' ', '*' or '>' */
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-", *p))
            *p = '-';
    unsigned r = (unsigned)uv_hrtime() ^ (unsigned)getpid() * 2654435761u;
    snprintf(out, len, "%s:%d-%04x", host, cfg->listen_port, r & 0xffff);
}

int fc__server_feed_open(fc_server *srv)
{
    const fc_config *cfg = srv->cfg;
    fc_cluster *cl = srv->cl;
    if (srv->index == 0) {
        node_id(cfg, cl->node_id, sizeof cl->node_id);
        fc_feed_relay_config rc = {.bus = cfg->nats_urls ? &fc_bus_nats : NULL,
                                   .urls = cfg->nats_urls,
                                   .secure = {.ca_file = cfg->nats_ca,
                                              .cert_file = cfg->nats_cert,
                                              .key_file = cfg->nats_key,
                                              .nkey_file = cfg->nats_nkey},
                                   .node_id = cl->node_id,
                                   .catchup_interval = cfg->catchup_interval,
                                   .catchup_batch = 1000,
                                   .heard_max = cfg->bus_heard};
        char err[256] = "";
        int code = 0;
        cl->relay = fc_feed_relay_new(srv->loop, srv->store, &rc, &code, err, sizeof err);
        if (!cl->relay) {
            FC_ERROR("server", "%s", err);
            if (code == FC_EINVAL) cl->exit_code = 2; /* a configuration refused, like a bad flag */
            return -1;
        }
    }
    fc_feed_sink sink = {
        .publish = sink_publish, .resync = sink_resync, .floor = sink_floor, .ud = srv};
    fc_feed_config fcfg = {.max_workflows = (size_t)cfg->feed_workflows,
                           .max_queue = (size_t)cfg->bus_queue,
                           .observe_lag = srv->index == 0};
    srv->feed = fc_feed_new(srv->loop, srv->store, &sink, &fcfg);
    if (!srv->feed || fc_feed_relay_add(cl->relay, srv->feed) != 0) return -1;
    return 0;
}

int fc__server_feed_start(fc_cluster *cl)
{
    char err[256] = "";
    if (fc_feed_relay_start(cl->relay, err, sizeof err) == 0) {
        if (cl->cfg->nats_urls) {
            char shown[512];
            fc_bus_urls_mask(cl->cfg->nats_urls, shown, sizeof shown);
            FC_INFO("bus", "node %s on %s", cl->node_id, shown);
        }
        return 0;
    }
    FC_ERROR("bus", "%s", err);
    cl->exit_code = 2;
    return -1;
}

void fc__server_feed_commit(fc_server *srv, const fc_workflow *state,
                            const fc_store_commit *commit, int deleted)
{
    fc_feed_change(srv->feed, state, commit->commit_ns, deleted, FC_FEED_LOCAL, commit->txid);
    /* Loop 0 hears every commit of this process: it alone tells the others. */
    if (srv->index == 0) fc_feed_relay_publish(srv->cl->relay, state, commit, deleted);
}

void fc__server_feed_close(fc_server *srv)
{
    if (srv->feed) {
        fc_feed_relay_remove(srv->cl->relay, srv->feed);
        fc_feed_close(srv->feed);
        srv->feed = NULL;
    }
    if (srv->index == 0 && srv->cl->relay) fc_feed_relay_stop(srv->cl->relay);
}

void fc__server_feed_free(fc_cluster *cl)
{
    fc_feed_relay_free(cl->relay);
    cl->relay = NULL;
}

int fc_server_bus_health(const fc_server *srv, char *why, size_t whylen)
{
    return fc_feed_relay_health(srv->cl->relay, why, whylen);
}
