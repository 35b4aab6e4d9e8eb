/* flowcast-bench internals: options, run state and results shared by
 * main.c (command line, report) and loop.c (sockets and the event loop). */
#ifndef FCB_BENCH_H
#define FCB_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "hist.h"
#include "proc.h"

#define FCB_MAX_PUB 64
#define FCB_MAX_PIDS 8
#define FCB_MAX_PORTS 16 /* --sub-ports + --failover-ports, --pub-ports */
#define FCB_TOKEN_MAX 8192 /* longest --token accepted (flowcast's own limit) */

enum fcb_target { FCB_FLOWCAST, FCB_WS, FCB_NCHAN };
/* How far each --churn connection goes before it closes. */
enum fcb_stage { FCB_STAGE_TLS, FCB_STAGE_WS };

typedef struct fcb_opts {
    enum fcb_target target;
    char host[64];
    int port;
    /* A cluster (bench/scenarios/cluster.sh): subscriber i opens on
     * sub_ports[i % nsub_spread] and, after each drop, moves to the next of
     * sub_ports (the spread ones, then the --failover-ports); publisher k
     * uses pub_ports[k % npub_ports]. Empty: everything goes to port. */
    int sub_ports[FCB_MAX_PORTS];
    int nsub_ports, nsub_spread;
    int pub_ports[FCB_MAX_PORTS];
    int npub_ports;
    uint32_t subscribers;
    uint32_t workflows;
    uint32_t publishers;
    uint32_t pipeline; /* requests in flight per publisher connection */
    double rate;       /* changes/s over all publishers; 0 = as fast as acked */
    int publish;       /* 0: idle run (capacity) */
    uint32_t window;   /* flow control, in changes per workflow; 0 = off */
    double duration;   /* seconds of publishing (or idling) */
    double drain;      /* most seconds to wait for deliveries after */
    double settle;     /* seconds between connected and publishing */
    uint32_t connect_conc;
    uint32_t src_addrs; /* source addresses 127.0.0.1 .. 127.0.0.N */
    int pids[FCB_MAX_PIDS];
    int npids;
    int reconnect;        /* reconnect dropped subscribers (flowcast: ?since=) */
    int create;           /* flowcast: create the workflows first */
    int tls;              /* every connection speaks TLS (wss://, https://) */
    const char *token;    /* --token / --token-file: a bearer on every request */
    uint32_t churn;       /* > 0: connect churn, this many connections in all */
    enum fcb_stage stage; /* --churn: close after the TLS handshake or the upgrade */
    int json;
    int quiet;
    char prefix[48]; /* workflow / channel id prefix */
    char label[64];
} fcb_opts;

typedef struct fcb_result {
    /* connect phase */
    uint32_t connected;
    uint32_t connect_failed;
    double connect_s; /* first connect() to last ready */
    fcb_hist connect_hist;
    /* publish phase */
    double run_s;        /* publish (or idle) window */
    double span_s;       /* first publish to last delivery */
    double cpu_window_s; /* start of publishing to the end of the drain: what CPU is sampled over */
    uint64_t pub_sent, pub_acked, pub_errors, pub_unknown;
    fcb_hist ack_hist;
    /* deliveries */
    uint64_t deliveries, lost, duplicates, out_of_order, resyncs, unparsed;
    uint64_t expected;
    fcb_hist lat_hist;
    /* The same per --sub-ports entry (a cluster: the watchers of each node),
     * by the port the subscriber was on when the change reached it. */
    fcb_hist lat_port_hist[FCB_MAX_PORTS];
    uint64_t disconnects; /* subscriber connections dropped during the run */
    /* storm */
    double storm_reconnected_s; /* first drop to every subscriber open again */
    double storm_resumed_s;     /* ... and holding every change acked before the drop */
    /* resources */
    /* srv_before is sampled once the first `warm` subscribers are connected, so
     * one-time costs of a server's first connection (its read buffer, its
     * store's first read) are not charged to every connection. */
    uint32_t warm;
    fcb_proc_sample srv_before, srv_connected, srv_start, srv_end;
    double self_cpu_s;
    /* TLS: what the first connection negotiated, and session tickets the
     * server sent (the tool never uses them) */
    char tls_info[96];
    uint64_t tickets;
    /* churn: connections that went through their stage and closed */
    uint64_t churn_done, churn_failed;
    double churn_s;
    long fd_limit;
    long max_conns;
} fcb_result;

/* Runs one benchmark with o; fills r. Returns 0, or -1 when the run could
 * not be done (message already printed). */
int fcb_run(const fcb_opts *o, fcb_result *r);

uint64_t fcb_now_ns(void);

#endif
