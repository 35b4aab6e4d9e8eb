/* Process-wide counters and a latency histogram, rendered in the
 * Prometheus text format. Updated only from the event-loop thread. */
#ifndef FC_METRICS_METRICS_H
#define FC_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct fc_metrics {
    int64_t ws_connections;         /* gauge: open WebSocket connections */
    uint64_t ws_connections_opened; /* counter */
    int64_t http_connections;       /* gauge: open TCP connections of any kind */
    int64_t subscriptions;          /* gauge */
    uint64_t messages_written;      /* counter: update messages handed to the kernel */
    uint64_t messages_coalesced;    /* counter: pending messages replaced by a later state */
    uint64_t slow_consumers_closed; /* counter */
    uint64_t changes_committed;     /* counter */
    uint64_t http_by_code[600];     /* requests by exact status code */
    /* commit-to-write latency histogram, seconds */
    uint64_t latency_buckets[16];
    uint64_t latency_count;
    double latency_sum;
} fc_metrics;

extern fc_metrics fc_metrics_g;

/* Counts one HTTP response with this status code. */
void fc_metrics_http_status(int code);
/* Records one commit-to-write latency in nanoseconds. */
void fc_metrics_observe_latency(uint64_t ns);

/* Renders all metrics; backlog_max/backlog_total come from the connections.
 * Returns a malloc'ed string (caller frees) with its length in *len, or NULL. */
char *fc_metrics_render(uint64_t backlog_max, uint64_t backlog_total, size_t *len);

#endif
