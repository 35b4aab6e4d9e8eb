/* Per-thread counters and the commit-to-write latency histogram, summed and
 * rendered in the Prometheus text exposition format 0.0.4. */
#include "metrics/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Thread_local fc_metrics fc_metrics_g;

#define MAX_SHARDS 64
static pthread_mutex_t shards_lock = PTHREAD_MUTEX_INITIALIZER;
static fc_metrics *shards[MAX_SHARDS];

static uint64_t store_reconnects; /* atomic: fc_metrics_store_reconnect */
static int store_up = 1;          /* atomic: fc_metrics_store_up */

void fc_metrics_store_reconnect(void)
{
    __atomic_add_fetch(&store_reconnects, 1, __ATOMIC_RELAXED);
}

void fc_metrics_store_up(int up)
{
    __atomic_store_n(&store_up, up ? 1 : 0, __ATOMIC_RELAXED);
}

/* Upper bounds compared in integer nanoseconds, so an observation exactly on a bound lands in
 * that bucket ("le" is inclusive) without floating-point surprises. The labels are written
 * out rather than printed with %g so they stay stable for dashboards. */
static const struct {
    uint64_t le_ns;
    const char *label;
} latency_bounds[] = {
    {50000, "0.00005"},  {100000, "0.0001"},  {250000, "0.00025"},  {500000, "0.0005"},
    {1000000, "0.001"},  {2500000, "0.0025"}, {5000000, "0.005"},   {10000000, "0.01"},
    {25000000, "0.025"}, {50000000, "0.05"},  {100000000, "0.1"},   {250000000, "0.25"},
    {500000000, "0.5"},  {1000000000, "1"},   {2500000000u, "2.5"}, {UINT64_MAX, "+Inf"},
};

_Static_assert(sizeof latency_bounds / sizeof latency_bounds[0] ==
                   sizeof fc_metrics_g.latency.buckets / sizeof fc_metrics_g.latency.buckets[0],
               "one bound per histogram bucket");

void fc_metrics_http_status(int code)
{
    if (code >= 100 && code <= 599) FC_METRIC_ADD(http_by_code[code], 1);
}

/* Adds ns to one of this thread's histograms, with the relaxed stores of
 * FC_METRIC_ADD. */
static void observe(fc_metrics_hist *h, uint64_t ns)
{
    size_t i = 0;
    /* The last bound is UINT64_MAX, so the loop always stops inside the array. */
    while (ns > latency_bounds[i].le_ns)
        i++;
    __atomic_store_n(&h->buckets[i], h->buckets[i] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->count, h->count + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->sum_ns, h->sum_ns + ns, __ATOMIC_RELAXED);
}

void fc_metrics_observe_latency(uint64_t ns)
{
    observe(&fc_metrics_g.latency, ns);
}

void fc_metrics_observe_bus_lag(uint64_t ns)
{
    observe(&fc_metrics_g.bus_lag, ns);
}

void fc_metrics_observe_store_commit(uint64_t ns)
{
    observe(&fc_metrics_g.store_commit, ns);
}

void fc_metrics_thread_register(void)
{
    pthread_mutex_lock(&shards_lock);
    for (int i = 0; i < MAX_SHARDS; i++)
        if (!shards[i]) {
            shards[i] = &fc_metrics_g;
            break;
        }
    pthread_mutex_unlock(&shards_lock);
}

void fc_metrics_thread_unregister(void)
{
    pthread_mutex_lock(&shards_lock);
    for (int i = 0; i < MAX_SHARDS; i++)
        if (shards[i] == &fc_metrics_g) shards[i] = NULL;
    pthread_mutex_unlock(&shards_lock);
}

#define LOAD(p) __atomic_load_n(&(p), __ATOMIC_RELAXED)

static void add_hist(fc_metrics_hist *sum, const fc_metrics_hist *h)
{
    for (size_t i = 0; i < sizeof h->buckets / sizeof h->buckets[0]; i++)
        sum->buckets[i] += LOAD(h->buckets[i]);
    sum->count += LOAD(h->count);
    sum->sum_ns += LOAD(h->sum_ns);
}

static void add_shard(fc_metrics *sum, fc_metrics *m)
{
    sum->ws_connections += LOAD(m->ws_connections);
    sum->ws_connections_opened += LOAD(m->ws_connections_opened);
    sum->http_connections += LOAD(m->http_connections);
    sum->subscriptions += LOAD(m->subscriptions);
    uint64_t bmax = LOAD(m->backlog_max);
    if (bmax > sum->backlog_max) sum->backlog_max = bmax;
    sum->backlog_total += LOAD(m->backlog_total);
    sum->messages_written += LOAD(m->messages_written);
    sum->messages_coalesced += LOAD(m->messages_coalesced);
    sum->slow_consumers_closed += LOAD(m->slow_consumers_closed);
    sum->output_bytes += LOAD(m->output_bytes);
    uint64_t omax = LOAD(m->output_bytes_max);
    if (omax > sum->output_bytes_max) sum->output_bytes_max = omax;
    sum->output_limit_reached += LOAD(m->output_limit_reached);
    sum->output_limit_closed += LOAD(m->output_limit_closed);
    sum->http_request_timeouts += LOAD(m->http_request_timeouts);
    sum->http_idle_closed += LOAD(m->http_idle_closed);
    sum->memory_trims += LOAD(m->memory_trims);
    sum->changes_committed += LOAD(m->changes_committed);
    sum->resyncs += LOAD(m->resyncs);
    sum->deletions_told += LOAD(m->deletions_told);
    sum->idempotent_replays += LOAD(m->idempotent_replays);
    sum->refused_streams_per_client += LOAD(m->refused_streams_per_client);
    sum->refused_streams_per_subject += LOAD(m->refused_streams_per_subject);
    sum->refused_write_rate += LOAD(m->refused_write_rate);
    sum->refused_write_rate_subject += LOAD(m->refused_write_rate_subject);
    uint64_t tracked = LOAD(m->clients_tracked), evicted = LOAD(m->clients_evicted);
    if (tracked > sum->clients_tracked) sum->clients_tracked = tracked;
    if (evicted > sum->clients_evicted) sum->clients_evicted = evicted;
    /* The newest copy of the JWT cache's figures is the one with the most
     * lookups (entries, a gauge, can fall: the largest would be stale). */
    uint64_t hits = LOAD(m->jwt_cache_hits), misses = LOAD(m->jwt_cache_misses);
    if (hits + misses > sum->jwt_cache_hits + sum->jwt_cache_misses) {
        sum->jwt_cache_hits = hits;
        sum->jwt_cache_misses = misses;
        sum->jwt_cache_entries = LOAD(m->jwt_cache_entries);
    }
    sum->refused_client_table += LOAD(m->refused_client_table);
    sum->auth_refused_401 += LOAD(m->auth_refused_401);
    sum->auth_refused_403 += LOAD(m->auth_refused_403);
    sum->auth_expired_ws += LOAD(m->auth_expired_ws);
    sum->auth_expired_sse += LOAD(m->auth_expired_sse);
    sum->auth_expired_longpoll += LOAD(m->auth_expired_longpoll);
    sum->auth_timeouts += LOAD(m->auth_timeouts);
    sum->auth_refresh_ok += LOAD(m->auth_refresh_ok);
    sum->auth_refresh_refused += LOAD(m->auth_refresh_refused);
    sum->tls_handshakes += LOAD(m->tls_handshakes);
    sum->tls_fail_not_tls += LOAD(m->tls_fail_not_tls);
    sum->tls_fail_timeout += LOAD(m->tls_fail_timeout);
    sum->tls_fail_version += LOAD(m->tls_fail_version);
    sum->tls_fail_protocol += LOAD(m->tls_fail_protocol);
    sum->tls_fail_closed += LOAD(m->tls_fail_closed);
    sum->bus_messages_in += LOAD(m->bus_messages_in);
    sum->bus_messages_out += LOAD(m->bus_messages_out);
    sum->bus_changes_in += LOAD(m->bus_changes_in);
    sum->bus_changes_out += LOAD(m->bus_changes_out);
    sum->bus_unsent += LOAD(m->bus_unsent);
    sum->bus_malformed += LOAD(m->bus_malformed);
    sum->bus_dropped += LOAD(m->bus_dropped);
    sum->bus_up += LOAD(m->bus_up);
    sum->catchup_reads += LOAD(m->catchup_reads);
    sum->catchup_past_queue += LOAD(m->catchup_past_queue);
    sum->catchup_changes += LOAD(m->catchup_changes);
    sum->catchup_heard += LOAD(m->catchup_heard);
    sum->bus_heard += LOAD(m->bus_heard);
    sum->bus_heard_full += LOAD(m->bus_heard_full);
    sum->feed_duplicates += LOAD(m->feed_duplicates);
    sum->feed_gaps_filled += LOAD(m->feed_gaps_filled);
    sum->feed_resyncs += LOAD(m->feed_resyncs);
    sum->feed_ends_told += LOAD(m->feed_ends_told);
    sum->feed_deferred += LOAD(m->feed_deferred);
    sum->feed_rejected += LOAD(m->feed_rejected);
    sum->feed_workflows += LOAD(m->feed_workflows);
    sum->feed_evictions += LOAD(m->feed_evictions);
    add_hist(&sum->bus_lag, &m->bus_lag);
    for (int i = 100; i <= 599; i++)
        sum->http_by_code[i] += LOAD(m->http_by_code[i]);
    add_hist(&sum->latency, &m->latency);
    add_hist(&sum->store_commit, &m->store_commit);
}

/* The sum of every registered shard, and of this thread's. */
static void sum_shards(fc_metrics *sum)
{
    int mine = 0;
    memset(sum, 0, sizeof *sum);
    pthread_mutex_lock(&shards_lock);
    for (int i = 0; i < MAX_SHARDS; i++) {
        if (!shards[i]) continue;
        mine |= shards[i] == &fc_metrics_g;
        add_shard(sum, shards[i]);
    }
    pthread_mutex_unlock(&shards_lock);
    if (!mine) add_shard(sum, &fc_metrics_g);
}

typedef struct out {
    char *p;
    size_t len, cap;
    bool failed; /* sticky, so callers check once at the end */
} out;

static void outf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void outf(out *o, const char *fmt, ...)
{
    if (o->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2;
        while (cap - o->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (p == NULL) {
            o->failed = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
}

static void header(out *o, const char *name, const char *type, const char *help)
{
    outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(out *o, const char *name, const char *help, int64_t v)
{
    header(o, name, "gauge", help);
    outf(o, "%s %" PRId64 "\n", name, v);
}

static void counter(out *o, const char *name, const char *help, uint64_t v)
{
    header(o, name, "counter", help);
    outf(o, "%s %" PRIu64 "\n", name, v);
}

/* One sample of a family with one label: name{label="value"} v. */
static void labelled(out *o, const char *name, const char *label, const char *value, uint64_t v)
{
    outf(o, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, value, v);
}

/* A histogram over latency_bounds, stored per interval, written cumulative. */
static void histogram(out *o, const char *name, const char *help, const fc_metrics_hist *h)
{
    header(o, name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < sizeof latency_bounds / sizeof latency_bounds[0]; i++) {
        cumulative += h->buckets[i];
        outf(o, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, latency_bounds[i].label, cumulative);
    }
    outf(o, "%s_sum %.9f\n", name, (double)h->sum_ns / 1e9);
    outf(o, "%s_count %" PRIu64 "\n", name, h->count);
}

/* The cluster bus (--nats) and the feed that orders every change. */
static void render_cluster(out *o, const fc_metrics *m)
{
    header(o, "flowcast_bus_messages_total", "counter",
           "Change messages on the cluster bus (each the changes of one batch), by direction.");
    labelled(o, "flowcast_bus_messages_total", "direction", "in", m->bus_messages_in);
    labelled(o, "flowcast_bus_messages_total", "direction", "out", m->bus_messages_out);
    header(o, "flowcast_bus_changes_total", "counter",
           "Changes in the change messages on the cluster bus, by direction.");
    labelled(o, "flowcast_bus_changes_total", "direction", "in", m->bus_changes_in);
    labelled(o, "flowcast_bus_changes_total", "direction", "out", m->bus_changes_out);
    counter(o, "flowcast_bus_unsent_total",
            "Committed changes longer than the NATS servers' max_payload (or met with out of "
            "memory), left to the other nodes' catch-up.",
            m->bus_unsent);
    counter(o, "flowcast_bus_malformed_total",
            "Messages on the bus's change subject that do not decode (dropped whole).",
            m->bus_malformed);
    counter(o, "flowcast_bus_dropped_total",
            "Bus and catch-up changes dropped because an I/O thread's queue was full "
            "(--bus-queue); the catch-up delivers them.",
            m->bus_dropped);
    gauge(o, "flowcast_bus_up", "1 while connected to a NATS server.", m->bus_up);
    counter(o, "flowcast_catchup_reads_total", "Reads of the store's commit log.",
            m->catchup_reads);
    counter(o, "flowcast_catchup_past_queue_total",
            "Catch-up reads an I/O thread's queue took past --bus-queue (the catch-up then "
            "waits for it to drain).",
            m->catchup_past_queue);
    counter(o, "flowcast_catchup_changes_total",
            "Changes the catch-up read from the store's commit log (the bus did not bring "
            "them whole, or a read covered a miss).",
            m->catchup_changes);
    counter(o, "flowcast_catchup_heard_total",
            "Transactions the catch-up left out of its reads: every change of them had come "
            "over the bus (or this node committed them).",
            m->catchup_heard);
    gauge(o, "flowcast_bus_heard_transactions",
          "Transactions remembered as heard until the catch-up reads past them (--bus-heard).",
          m->bus_heard);
    counter(o, "flowcast_bus_heard_full_total",
            "Changes not remembered as heard because --bus-heard transactions were (the "
            "catch-up reads their rows).",
            m->bus_heard_full);
    counter(o, "flowcast_feed_duplicates_total",
            "Changes dropped as already handed on (per I/O thread).", m->feed_duplicates);
    counter(o, "flowcast_feed_gaps_filled_total",
            "Gaps in a workflow's seqs filled from the event log (per I/O thread).",
            m->feed_gaps_filled);
    counter(o, "flowcast_feed_resyncs_total",
            "Gaps the event log could no longer fill, sent as resync:true (per I/O thread).",
            m->feed_resyncs);
    counter(o, "flowcast_feed_ends_told_total",
            "Incarnations whose deletion was told before their next one (per I/O thread).",
            m->feed_ends_told);
    counter(o, "flowcast_feed_deferred_total",
            "Changes left to the catch-up because the store could not be read.",
            m->feed_deferred);
    counter(o, "flowcast_feed_rejected_total",
            "Bus messages dropped because the store does not hold their change (forged or stale).",
            m->feed_rejected);
    gauge(o, "flowcast_feed_workflows", "Per-workflow ordering entries held (all I/O threads).",
          m->feed_workflows);
    counter(o, "flowcast_feed_evictions_total",
            "Ordering entries evicted by --feed-workflows (least recently changed first).",
            m->feed_evictions);
    histogram(o, "flowcast_bus_lag_seconds",
              "Time from a change's publish on one node to its receipt on this one.",
              &m->bus_lag);
}

char *fc_metrics_render(size_t *len)
{
    fc_metrics sum;
    const fc_metrics *m = &sum;
    sum_shards(&sum);
    out o = {.cap = 4096};
    o.p = malloc(o.cap);
    if (o.p == NULL) return NULL;

    gauge(&o, "flowcast_ws_connections", "Open WebSocket connections.", m->ws_connections);
    counter(&o, "flowcast_ws_connections_opened_total", "WebSocket connections accepted.",
            m->ws_connections_opened);
    gauge(&o, "flowcast_connections", "Open TCP connections of any kind.", m->http_connections);
    gauge(&o, "flowcast_subscriptions", "Active workflow subscriptions.", m->subscriptions);
    counter(&o, "flowcast_messages_written_total", "Update messages handed to the kernel.",
            m->messages_written);
    counter(&o, "flowcast_messages_coalesced_total",
            "Pending messages replaced by a later state before being written.",
            m->messages_coalesced);
    counter(&o, "flowcast_slow_consumers_closed_total",
            "Subscribers closed for making no write progress for --slow-timeout.",
            m->slow_consumers_closed);
    counter(&o, "flowcast_output_limit_reached_total",
            "Times a connection's unsent output passed --max-output (its input pauses).",
            m->output_limit_reached);
    counter(&o, "flowcast_output_limit_closed_total",
            "Connections closed for staying over --max-output for --slow-timeout.",
            m->output_limit_closed);
    counter(&o, "flowcast_http_request_timeouts_total",
            "HTTP connections closed for not completing a request within --request-timeout.",
            m->http_request_timeouts);
    counter(&o, "flowcast_http_idle_closed_total",
            "Keep-alive HTTP connections closed after --idle-timeout without a request.",
            m->http_idle_closed);
    counter(&o, "flowcast_memory_trims_total",
            "Times freed memory was returned to the system after large frees.", m->memory_trims);
    counter(&o, "flowcast_changes_committed_total", "Workflow changes committed to the store.",
            m->changes_committed);
    counter(&o, "flowcast_store_reconnects_total",
            "Connections to the store's server (PostgreSQL) made again after one was lost.",
            __atomic_load_n(&store_reconnects, __ATOMIC_RELAXED));
    gauge(&o, "flowcast_store_up",
          "1 while the store's server answers, 0 while it is unreachable (PostgreSQL).",
          __atomic_load_n(&store_up, __ATOMIC_RELAXED));
    counter(&o, "flowcast_resyncs_total",
            "Resumes answered with the current state and resync:true instead of a replay.",
            m->resyncs);
    counter(&o, "flowcast_resume_deletions_total",
            "Deletions of an incarnation told in-band to a client resuming it.", m->deletions_told);
    counter(&o, "flowcast_idempotent_replays_total",
            "Retried changes answered from their Idempotency-Key, not applied again.",
            m->idempotent_replays);
    counter(&o, "flowcast_auth_unauthorized_total",
            "Requests refused 401: no credential, or an invalid or expired one.",
            m->auth_refused_401);
    counter(&o, "flowcast_auth_forbidden_total",
            "Requests refused 403: a valid credential without the right.", m->auth_refused_403);
    counter(&o, "flowcast_auth_timeouts_total",
            "Multi WebSockets opened without a credential and closed 4401 for not "
            "authenticating within --request-timeout.",
            m->auth_timeouts);
    header(&o, "flowcast_auth_expired_streams_total", "counter",
           "Streams ended at their token's exp (not refreshed), by transport.");
    labelled(&o, "flowcast_auth_expired_streams_total", "transport", "websocket",
             m->auth_expired_ws);
    labelled(&o, "flowcast_auth_expired_streams_total", "transport", "sse", m->auth_expired_sse);
    labelled(&o, "flowcast_auth_expired_streams_total", "transport", "longpoll",
             m->auth_expired_longpoll);
    header(&o, "flowcast_auth_refreshes_total", "counter",
           "{\"op\":\"auth\"} messages on the multi WebSocket, by result.");
    labelled(&o, "flowcast_auth_refreshes_total", "result", "ok", m->auth_refresh_ok);
    labelled(&o, "flowcast_auth_refreshes_total", "result", "refused", m->auth_refresh_refused);

    header(&o, "flowcast_refused_total", "counter",
           "Requests refused by a per-client limit, by reason.");
    labelled(&o, "flowcast_refused_total", "reason", "streams_per_client",
             m->refused_streams_per_client);
    labelled(&o, "flowcast_refused_total", "reason", "streams_per_subject",
             m->refused_streams_per_subject);
    labelled(&o, "flowcast_refused_total", "reason", "write_rate", m->refused_write_rate);
    labelled(&o, "flowcast_refused_total", "reason", "write_rate_subject",
             m->refused_write_rate_subject);
    labelled(&o, "flowcast_refused_total", "reason", "client_table_full", m->refused_client_table);

    counter(&o, "flowcast_tls_handshakes_total", "TLS handshakes completed.", m->tls_handshakes);
    header(&o, "flowcast_tls_handshake_errors_total", "counter",
           "TLS connections that ended before their handshake completed, by reason.");
    labelled(&o, "flowcast_tls_handshake_errors_total", "reason", "not_tls", m->tls_fail_not_tls);
    labelled(&o, "flowcast_tls_handshake_errors_total", "reason", "timeout", m->tls_fail_timeout);
    labelled(&o, "flowcast_tls_handshake_errors_total", "reason", "version", m->tls_fail_version);
    labelled(&o, "flowcast_tls_handshake_errors_total", "reason", "protocol", m->tls_fail_protocol);
    labelled(&o, "flowcast_tls_handshake_errors_total", "reason", "closed", m->tls_fail_closed);
    gauge(&o, "flowcast_clients_tracked",
          "Entries (client addresses and token subjects) in the per-client limits table.",
          (int64_t)m->clients_tracked);
    counter(&o, "flowcast_clients_evicted_total",
            "Per-client table entries evicted to make room (the table was full).",
            m->clients_evicted);
    header(&o, "flowcast_jwt_cache_lookups_total", "counter",
           "JWTs looked up in the cache of verified tokens (--jwt-cache), by result.");
    labelled(&o, "flowcast_jwt_cache_lookups_total", "result", "hit", m->jwt_cache_hits);
    labelled(&o, "flowcast_jwt_cache_lookups_total", "result", "miss", m->jwt_cache_misses);
    gauge(&o, "flowcast_jwt_cache_entries", "Verified JWTs held by the cache (--jwt-cache).",
          (int64_t)m->jwt_cache_entries);

    /* The backlog gauges are uint64; Prometheus values are floats anyway. */
    header(&o, "flowcast_backlog_max", "gauge",
           "Largest number of unsent messages queued for one subscriber.");
    outf(&o, "flowcast_backlog_max %" PRIu64 "\n", m->backlog_max);
    header(&o, "flowcast_backlog_total", "gauge", "Unsent messages queued for all subscribers.");
    outf(&o, "flowcast_backlog_total %" PRIu64 "\n", m->backlog_total);
    header(&o, "flowcast_output_bytes", "gauge", "Unsent bytes queued for all connections.");
    outf(&o, "flowcast_output_bytes %" PRIu64 "\n", m->output_bytes);
    header(&o, "flowcast_output_bytes_max", "gauge", "Largest unsent output of one connection.");
    outf(&o, "flowcast_output_bytes_max %" PRIu64 "\n", m->output_bytes_max);

    header(&o, "flowcast_http_requests_total", "counter", "HTTP responses by status code.");
    for (int code = 100; code <= 599; code++)
        if (m->http_by_code[code] != 0)
            outf(&o, "flowcast_http_requests_total{code=\"%d\"} %" PRIu64 "\n", code,
                 m->http_by_code[code]);

    histogram(&o, "flowcast_commit_to_write_seconds",
              "Time from a change being committed to its message reaching the kernel.",
              &m->latency);
    histogram(&o, "flowcast_store_commit_seconds",
              "Time from a change's submission to the store's writer to its commit "
              "(queue, group commit and transaction, flush to disk included).",
              &m->store_commit);

    render_cluster(&o, m);

    if (o.failed) {
        free(o.p);
        return NULL;
    }
    if (len != NULL) *len = o.len;
    return o.p;
}
