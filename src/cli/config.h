/* Server configuration: one options table drives flags, FLOWCAST_* environment
 * variables, --help and defaults. */
#ifndef FC_CLI_CONFIG_H
#define FC_CLI_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#define FC_MAX_ORIGINS 32
#define FC_MAX_HOSTS 32
/* libhttp-parser's own cap on a request head (HTTP_MAX_HEADER_SIZE, 80 KiB):
 * a larger --max-header could never take effect. */
#define FC_MAX_HEADER_LIMIT (80 * 1024)

typedef struct fc_config {
    char listen_host[64]; /* --listen ADDR:PORT, default 127.0.0.1:8001 */
    int listen_port;
    const char *db_path;      /* --db, default ./flowcast.db */
    const char *api_token;    /* --api-token, NULL = no auth */
    const char *jwt_key;      /* --jwt-key FILE: HMAC secret or PEM public key, NULL = off */
    int jwt_leeway;           /* --jwt-leeway S, default 30 */
    const char *jwt_audience; /* --jwt-audience, NULL = not checked */
    const char *jwt_issuer;   /* --jwt-issuer, NULL = not checked */
    int jwt_cache;            /* --jwt-cache N verified tokens remembered, default 4096, 0 = off */
    const char *tls_cert;     /* --tls-cert FILE: PEM certificate chain, NULL = plain TCP */
    const char *tls_key;      /* --tls-key FILE: its PEM private key (both or neither) */
    const char *allow_origins[FC_MAX_ORIGINS]; /* --allow-origin, repeatable; "*" = any */
    int n_allow_origins;
    const char *allow_hosts[FC_MAX_HOSTS]; /* --allow-host, repeatable; "*" = any Host */
    int n_allow_hosts;
    int max_connections;  /* --max-connections, 0 = derived from the fd limit */
    uint64_t max_message; /* --max-message BYTES, default 65536 */
    int backlog;          /* --backlog N, default 100 */
    double ping_interval; /* --ping-interval S, default 20 */
    double sse_heartbeat; /* --sse-heartbeat S, default 15 */
    int sync_full;        /* --sync normal|full */
    int enable_echo;      /* --enable-echo */
    int no_websocket;     /* --no-websocket: SSE and long-poll only */
    int log_level;        /* --log-level, fc_log_level */
    int log_format;       /* --log-format text|json, fc_log_format */
    int retention;        /* --retention N, default 1000 */
    size_t max_body;      /* --max-body BYTES, default 65536 */
    size_t max_header;    /* --max-header BYTES, default 8192 */
    double slow_timeout;  /* --slow-timeout S, default 30 */
    double db_timeout;    /* --db-timeout S, default 2 (PostgreSQL) */
    int commit_delay;     /* --commit-delay US, default 500 (PostgreSQL) */
    double startup_check; /* --startup-check S, default 5; 0 = no integrity check */
    int io_threads;       /* --io-threads N, 0 = one per available core */

    /* What one connection may cost (docs/protocol.md, Limits). */
    size_t max_output;      /* --max-output BYTES, default 1 MiB */
    double request_timeout; /* --request-timeout S, default 10 */
    double idle_timeout;    /* --idle-timeout S, default 60 */
    int tcp_keepalive;      /* --tcp-keepalive S, default 60, 0 = off */

    double idem_window; /* --idempotency-window S, default 86400 (24 h) */

    /* Per client IP address (docs/protocol.md, Limits); 0 = off. */
    int max_streams_per_client; /* --max-streams-per-client N */
    double write_rate;          /* --write-rate R[/s], changes per second */
    int write_burst;            /* --write-burst N, 0 = ceil(write_rate) */

    /* The cluster (docs/cluster.md). */
    const char *nats_urls;   /* --nats URL[,URL...], NULL = no bus; may carry credentials */
    const char *nats_ca;     /* --nats-ca FILE: CAs the NATS servers must chain to; TLS on */
    const char *nats_cert;   /* --nats-cert FILE: client certificate for NATS ... */
    const char *nats_key;    /* --nats-key FILE: ... and its key (both or neither) */
    const char *nats_nkey;   /* --nats-nkey FILE: a user nkey seed, NULL = none */
    const char *node_id;     /* --node-id, NULL = hostname:port-random */
    double catchup_interval; /* --catchup-interval S, default 1 */
    int feed_workflows;      /* --feed-workflows N, default 65536 */
    int bus_queue;           /* --bus-queue N, default 65536 */
    int bus_heard;           /* --bus-heard N, default 65536 */
} fc_config;

/* Fills cfg with defaults, then FLOWCAST_* environment variables, then
 * argv (flags after the subcommand). Returns 0, or 2 after printing a
 * one-line error to stderr (the caller exits 2), or 1 when --help was
 * printed (the caller exits 0). Strings point into argv/environ. */
int fc_config_parse(fc_config *cfg, int argc, char **argv);

/* Prints the serve usage text generated from the options table. */
void fc_config_usage(FILE *out);

/* One row of the options table, for renderings other than --help (the man
 * page, config_man.c). Strings are static; metavar and def may be NULL. */
typedef struct fc_config_option {
    const char *name, *env, *metavar, *def, *help;
    char range[64]; /* " Range 1..100." or "" */
} fc_config_option;
/* Fills out with option i (table order): 0, or -1 past the last. */
int fc_config_option_at(size_t i, fc_config_option *out);

/* Writes the flowcast(1) man page (roff): the serve options from the table,
 * then usage, the text of `flowcast --help` (config_man.c). */
void fc_config_man(FILE *out, const char *version, const char *usage);

#endif
