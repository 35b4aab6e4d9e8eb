/* Counters, gauges and a latency histogram, rendered in the Prometheus text
 * format. Each event-loop thread counts into its own shard (fc_metrics_g is
 * thread-local), so counting takes no lock and no atomic read-modify-write;
 * a scrape sums the shards of every registered thread. */
#ifndef FC_METRICS_METRICS_H
#define FC_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* A latency histogram: observations per bucket (not cumulative; the
 * bounds are metrics.c's, 50 us to 2.5 s and +Inf), their count and their
 * sum in nanoseconds. */
typedef struct fc_metrics_hist {
    uint64_t buckets[16];
    uint64_t count;
    uint64_t sum_ns;
} fc_metrics_hist;

typedef struct fc_metrics {
    int64_t ws_connections;         /* gauge: open WebSocket connections */
    uint64_t ws_connections_opened; /* counter */
    int64_t http_connections;       /* gauge: open TCP connections of any kind */
    int64_t subscriptions;          /* gauge: moved by the loop's hub */
    uint64_t backlog_max;           /* gauge: set by the loop from its connections */
    uint64_t backlog_total;         /* gauge: same */
    uint64_t messages_written;      /* counter: update messages handed to the kernel */
    uint64_t messages_coalesced;    /* counter: pending messages replaced by a later state */
    uint64_t slow_consumers_closed; /* counter */
    uint64_t output_bytes;          /* gauge: unsent bytes of all connections, set like backlog */
    uint64_t output_bytes_max;      /* gauge: the largest of one connection */
    uint64_t output_limit_reached;  /* counter: a connection's unsent output passed --max-output */
    uint64_t output_limit_closed;   /* counter: closed for staying over it past --slow-timeout */
    uint64_t http_request_timeouts; /* counter: --request-timeout expired */
    uint64_t http_idle_closed;      /* counter: --idle-timeout expired */
    uint64_t memory_trims;          /* counter: malloc_trim after large frees */
    uint64_t changes_committed;     /* counter */
    uint64_t resyncs;               /* counter: resumes answered with "resync":true */
    uint64_t deletions_told;        /* counter: deletions sent in-band to a resume */
    uint64_t idempotent_replays;    /* counter: retries answered from their idempotency key */
    uint64_t refused_streams_per_client;  /* counter: --max-streams-per-client, by address */
    uint64_t refused_streams_per_subject; /* counter: the same, by token subject */
    uint64_t refused_write_rate;          /* counter: --write-rate, by address */
    uint64_t refused_write_rate_subject;  /* counter: the same, by token subject */
    uint64_t refused_client_table;        /* counter: the per-client table was full */
    /* The per-client table is shared by the loops: each sets these to its
     * figures, and a scrape takes the largest (all the same, up to 250 ms old). */
    uint64_t clients_tracked;       /* gauge: entries in the per-client table */
    uint64_t clients_evicted;       /* counter: entries evicted to make room */
    /* The JWT cache is shared too: each loop copies its figures, a scrape
     * takes the newest copy (the one with the most lookups). */
    uint64_t jwt_cache_hits;    /* counter: tokens found in the cache of verified tokens */
    uint64_t jwt_cache_misses;  /* counter: tokens not found (verified by libjwt) */
    uint64_t jwt_cache_entries; /* gauge: tokens it holds */
    uint64_t auth_refused_401;      /* counter: requests without a valid credential */
    uint64_t auth_refused_403;      /* counter: valid credentials without the right */
    uint64_t auth_expired_ws;       /* counter: WebSocket streams ended at their token's exp */
    uint64_t auth_expired_sse;      /* counter: SSE streams ended so */
    uint64_t auth_expired_longpoll; /* counter: long-polls answered 401 so */
    uint64_t auth_timeouts;         /* counter: multi WebSockets never authenticated */
    uint64_t auth_refresh_ok;       /* counter: {"op":"auth"} accepted */
    uint64_t auth_refresh_refused;  /* counter: {"op":"auth"} refused (old token kept) */
    uint64_t tls_handshakes;        /* counter: TLS handshakes completed */
    uint64_t tls_fail_not_tls;      /* counter: plain bytes to the TLS port (answered 400) */
    uint64_t tls_fail_timeout;      /* counter: handshake not done within --request-timeout */
    uint64_t tls_fail_version;      /* counter: no protocol version in common */
    uint64_t tls_fail_protocol;     /* counter: any other handshake failure */
    uint64_t tls_fail_closed;       /* counter: the peer left during the handshake */
    /* The cluster bus and the feed. The bus's figures are process-wide and
     * set by the home loop (up to one probe interval old); the feed's count
     * per I/O thread (each loop orders every change for its subscribers). */
    uint64_t bus_messages_in;  /* counter: change messages received (each a batch) */
    uint64_t bus_messages_out; /* counter: change messages published */
    uint64_t bus_changes_in;   /* counter: changes in the messages received */
    uint64_t bus_changes_out;  /* counter: changes in the messages published */
    uint64_t bus_unsent;       /* counter: committed changes no message could carry */
    uint64_t bus_malformed;    /* counter: messages received that do not decode */
    uint64_t bus_dropped;      /* counter: changes refused by a full feed queue */
    int64_t bus_up;            /* gauge: 1 while connected to a NATS server */
    uint64_t catchup_reads;    /* counter: reads of the store's commit log */
    uint64_t catchup_past_queue; /* counter: catch-up reads a feed's queue took past its bound */
    uint64_t catchup_changes;  /* counter: changes the catch-up read from the store */
    uint64_t catchup_heard;    /* counter: transactions it left out, heard on the bus */
    int64_t bus_heard;         /* gauge: transactions remembered as heard */
    uint64_t bus_heard_full;   /* counter: changes not remembered: --bus-heard was reached */
    uint64_t feed_duplicates;  /* counter: changes already handed on, dropped */
    uint64_t feed_gaps_filled; /* counter: gaps filled from the event log */
    uint64_t feed_resyncs;     /* counter: gaps the log could not fill (resync sent) */
    uint64_t feed_ends_told;   /* counter: incarnations whose deletion was told late */
    uint64_t feed_deferred;    /* counter: changes left to the catch-up (store unreadable) */
    uint64_t feed_rejected;    /* counter: bus messages the store does not hold, dropped */
    int64_t feed_workflows;    /* gauge: per-workflow entries held */
    uint64_t feed_evictions;   /* counter: entries evicted by --feed-workflows */
    fc_metrics_hist bus_lag; /* publish to receipt */
    uint64_t http_by_code[600];     /* requests by exact status code */
    fc_metrics_hist latency;      /* commit to write */
    fc_metrics_hist store_commit; /* a change's submission to the store to its commit */
} fc_metrics;

/* This thread's shard. */
extern _Thread_local fc_metrics fc_metrics_g;

/* Changes a field of this thread's shard. Only this thread writes it, but a
 * scrape on another thread may read it at the same time: the store is a
 * relaxed atomic (a plain mov on x86), which makes that read well-defined. */
#define FC_METRIC_ADD(field, n)                                                                    \
    __atomic_store_n(&fc_metrics_g.field, fc_metrics_g.field + (n), __ATOMIC_RELAXED)
#define FC_METRIC_SET(field, v) __atomic_store_n(&fc_metrics_g.field, (v), __ATOMIC_RELAXED)

/* Registers this thread's shard for scrapes (each loop thread, at start);
 * unregister before the thread exits. At most 64 threads. */
void fc_metrics_thread_register(void);
void fc_metrics_thread_unregister(void);

/* Counts one HTTP response with this status code. */
void fc_metrics_http_status(int code);
/* Records one commit-to-write latency in nanoseconds. */
void fc_metrics_observe_latency(uint64_t ns);
/* Records the time one bus message took from its publish to its receipt. */
void fc_metrics_observe_bus_lag(uint64_t ns);
/* Records the time one change took from its submission to the store's
 * writer to its commit (the queue, the group commit's wait and the
 * transaction with its flush to disk). */
void fc_metrics_observe_store_commit(uint64_t ns);

/* Process-wide store figures, set from any thread (the store's writer and
 * loops): a reconnect after the store's server was lost, and whether it is
 * reachable now (1 until a backend says otherwise). */
void fc_metrics_store_reconnect(void);
void fc_metrics_store_up(int up);

/* Renders the sum of the registered shards (and of the calling thread's,
 * registered or not): gauges and counters add up, backlog_max is the
 * largest. Returns a malloc'ed string (caller frees) with its length in
 * *len, or NULL. */
char *fc_metrics_render(size_t *len);

#endif
