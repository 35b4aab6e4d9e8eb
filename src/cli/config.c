/* Server configuration: the one options table and the parser it drives for flags, FLOWCAST_*
 * environment variables, defaults and the --help text. */
#include "cli/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

typedef enum {
    OPT_INT,        /* int field, integer in [min, max] */
    OPT_BYTES_U64,  /* uint64_t field, integer with optional K/M (KiB/MiB) suffix */
    OPT_BYTES_SIZE, /* size_t field, same syntax as OPT_BYTES_U64 */
    OPT_SECONDS,    /* double field, plain decimal seconds in [min, max] */
    OPT_RATE,       /* double field, plain decimal per second, optionally written "R/s" */
    OPT_STRING,     /* const char * field, non-empty, points into argv/environ */
    OPT_LIST,      /* const char *[] + count: repeatable flag, comma-separated in the environment */
    OPT_BOOL,      /* int field; the bare flag means true */
    OPT_LISTEN,    /* listen_host + listen_port */
    OPT_SYNC,      /* sync_full: "normal" = 0, "full" = 1 */
    OPT_LOG_LEVEL, /* log_level, via fc_log_parse_level */
    OPT_LOG_FORMAT, /* log_format, via fc_log_parse_format */
} opt_type;

typedef struct opt {
    const char *name; /* flag without the leading "--" */
    const char *env;  /* "FLOWCAST_" + name upper-cased, '-' -> '_' */
    opt_type type;
    size_t offset, size; /* field in fc_config; size lets opt_set catch a type mismatch */
    double min, max;     /* inclusive range for numeric types; every bound is exact in a double */
    const char *def;     /* default, parsed like any other value, so it obeys the same range */
    const char *metavar; /* shown in --help; NULL for OPT_BOOL */
    const char *help;
    const char *over_max; /* OPT_BYTES_*: why a value above max cannot work (NULL: plain range) */
    bool empty_env_error; /* an empty variable is an error, not "unset" (secrets) */
    bool userinfo;        /* URLs whose user:password@ is hidden from ps once read */
    size_t count_offset;  /* OPT_LIST: the int counting the items */
    int list_max;         /* OPT_LIST: most items */
    int env_slot;         /* OPT_LIST: which env_lists buffer holds the split variable */
    const char *noun;     /* OPT_LIST: what an item is, plural, for errors ("origins") */
} opt;

#define FIELD(f) .offset = offsetof(fc_config, f), .size = sizeof(((fc_config *)0)->f)
#define LIST(f, n, max, slot, what)                                                                \
    FIELD(f), .count_offset = offsetof(fc_config, n), .list_max = (max), .env_slot = (slot),       \
              .noun = (what)
#define N_ENV_LISTS 2

/* The single source of truth: parsing, defaults and usage are all generated from this. */
static const opt options[] = {
    {.name = "listen",
     .env = "FLOWCAST_LISTEN",
     .type = OPT_LISTEN,
     FIELD(listen_host),
     .def = "127.0.0.1:8001",
     .metavar = "ADDR:PORT",
     .help = "Address to listen on: IPv4, localhost or [IPv6]; port 0..65535."},
    {.name = "db",
     .env = "FLOWCAST_DB",
     .type = OPT_STRING,
     FIELD(db_path),
     .def = "./flowcast.db",
     .metavar = "PATH|URL",
     .help = "SQLite database file, or a PostgreSQL URL (postgres://user@host:port/dbname or "
             "postgresql://...) to share one database between several nodes."},
    {.name = "db-timeout",
     .env = "FLOWCAST_DB_TIMEOUT",
     .type = OPT_SECONDS,
     FIELD(db_timeout),
     .min = 0.1,
     .max = 60,
     .def = "2",
     .metavar = "S",
     .help = "PostgreSQL: time a connect, a read or a commit may take before the database "
             "counts as unreachable (writes then answer 503 store_unavailable); SQLite "
             "ignores it."},
    {.name = "commit-delay",
     .env = "FLOWCAST_COMMIT_DELAY",
     .type = OPT_INT,
     FIELD(commit_delay),
     .min = 0,
     .max = 100000,
     .def = "500",
     .metavar = "US",
     .help = "PostgreSQL: after a commit of several changes (the writer is busy), wait up to "
             "this many microseconds for as many changes again before the next commit: "
             "fewer, larger transactions under load; a lone change never waits. 0: never "
             "wait. SQLite ignores it."},
    {.name = "api-token",
     .env = "FLOWCAST_API_TOKEN",
     .type = OPT_STRING,
     FIELD(api_token),
     .metavar = "TOKEN",
     .empty_env_error = true,
     .help = "Full-access bearer token: once set, every request but /healthz and the "
             "dashboard's files must carry it (or, with --jwt-key, a valid JWT): reads "
             "(GET, HEAD, list, history, WebSocket, SSE, long-poll, /metrics) and changes "
             "alike. Unset (and no --jwt-key) = no auth; empty is an error."},
    {.name = "jwt-key",
     .env = "FLOWCAST_JWT_KEY",
     .type = OPT_STRING,
     FIELD(jwt_key),
     .metavar = "FILE",
     .help = "Verify JWT access tokens with this key: an HMAC secret (HS256/384/512, at least 32 "
             "bytes) or a PEM RSA/EC public key (RS*/ES*). Then every endpoint but /healthz and "
             "the dashboard's assets needs a credential."},
    {.name = "jwt-leeway",
     .env = "FLOWCAST_JWT_LEEWAY",
     .type = OPT_INT,
     FIELD(jwt_leeway),
     .min = 0,
     .max = 600,
     .def = "30",
     .metavar = "S",
     .help = "Clock skew in seconds allowed when checking a JWT's nbf and iat (exp is exact)."},
    {.name = "jwt-audience",
     .env = "FLOWCAST_JWT_AUDIENCE",
     .type = OPT_STRING,
     FIELD(jwt_audience),
     .metavar = "AUD",
     .help = "A JWT must name this audience in aud. Unset = not checked."},
    {.name = "jwt-issuer",
     .env = "FLOWCAST_JWT_ISSUER",
     .type = OPT_STRING,
     FIELD(jwt_issuer),
     .metavar = "ISS",
     .help = "A JWT's iss must be exactly this. Unset = not checked."},
    {.name = "jwt-cache",
     .env = "FLOWCAST_JWT_CACHE",
     .type = OPT_INT,
     FIELD(jwt_cache),
     .min = 0,
     .max = 1000000,
     .def = "4096",
     .metavar = "N",
     .help = "Remember up to N verified JWTs (by SHA-256 of the token) so one presented again "
             "skips the signature check; exp, nbf and iat are checked again every time. "
             "0 = off."},
    {.name = "tls-cert",
     .env = "FLOWCAST_TLS_CERT",
     .type = OPT_STRING,
     FIELD(tls_cert),
     .metavar = "FILE",
     .help = "Serve HTTPS and WSS on the listen port with this PEM certificate (chain allowed, "
             "leaf first); needs --tls-key. Reloaded with the key on SIGHUP."},
    {.name = "tls-key",
     .env = "FLOWCAST_TLS_KEY",
     .type = OPT_STRING,
     FIELD(tls_key),
     .metavar = "FILE",
     .help = "The PEM private key (not encrypted) of --tls-cert; both or neither."},
    {.name = "allow-origin",
     .env = "FLOWCAST_ALLOW_ORIGIN",
     .type = OPT_LIST,
     LIST(allow_origins, n_allow_origins, FC_MAX_ORIGINS, 0, "origins"),
     .metavar = "ORIGIN",
     .help = "Allowed WebSocket/CORS origin, \"*\" = any; repeatable (env: comma-separated)."},
    {.name = "allow-host",
     .env = "FLOWCAST_ALLOW_HOST",
     .type = OPT_LIST,
     LIST(allow_hosts, n_allow_hosts, FC_MAX_HOSTS, 1, "hosts"),
     .metavar = "NAME",
     .help = "Host name clients may use besides the listen address and the loopback names "
             "(against DNS rebinding); \"*\" = any; repeatable (env: comma-separated)."},
    {.name = "max-connections",
     .env = "FLOWCAST_MAX_CONNECTIONS",
     .type = OPT_INT,
     FIELD(max_connections),
     .min = 0,
     .max = 10000000,
     .def = "0",
     .metavar = "N",
     .help = "Limit of open WebSocket and SSE streams; 0 derives it from the fd limit."},
    {.name = "max-streams-per-client",
     .env = "FLOWCAST_MAX_STREAMS_PER_CLIENT",
     .type = OPT_INT,
     FIELD(max_streams_per_client),
     .min = 0,
     .max = 10000000,
     .def = "0",
     .metavar = "N",
     .help = "Limit of open WebSocket, SSE and held long-poll streams per client IP address "
             "and per token subject (JWT \"sub\"); over it: 503 too_many_streams; 0 = none."},
    {.name = "write-rate",
     .env = "FLOWCAST_WRITE_RATE",
     .type = OPT_RATE,
     FIELD(write_rate),
     .min = 0,
     .max = 1000000,
     .def = "0",
     .metavar = "R[/s]",
     .help = "Changes (POST, PATCH, DELETE) per second per token subject (JWT \"sub\"), or "
             "per client IP address for requests without one, a token bucket; over it: 429 "
             "with Retry-After; 0 = no limit."},
    {.name = "write-burst",
     .env = "FLOWCAST_WRITE_BURST",
     .type = OPT_INT,
     FIELD(write_burst),
     .min = 0,
     .max = 1000000,
     .def = "0",
     .metavar = "N",
     .help = "Changes a client may make at once above --write-rate; 0 = the rate rounded up "
             "(at least 1)."},
    {.name = "max-message",
     .env = "FLOWCAST_MAX_MESSAGE",
     .type = OPT_BYTES_U64,
     FIELD(max_message),
     .min = 125,
     .max = 256.0 * 1024 * 1024,
     .def = "65536",
     .metavar = "BYTES",
     .help = "Largest WebSocket message accepted (K/M suffixes allowed)."},
    {.name = "backlog",
     .env = "FLOWCAST_BACKLOG",
     .type = OPT_INT,
     FIELD(backlog),
     .min = 1,
     .max = 1000000,
     .def = "100",
     .metavar = "N",
     .help = "Unsent messages per subscriber before older states of a workflow are coalesced."},
    {.name = "ping-interval",
     .env = "FLOWCAST_PING_INTERVAL",
     .type = OPT_SECONDS,
     FIELD(ping_interval),
     .min = 0.05,
     .max = 86400,
     .def = "20",
     .metavar = "S",
     .help = "Seconds between WebSocket pings."},
    {.name = "io-threads",
     .env = "FLOWCAST_IO_THREADS",
     .type = OPT_INT,
     FIELD(io_threads),
     .min = 0,
     .max = 64,
     .def = "0",
     .metavar = "N",
     .help = "Event-loop threads serving connections; 0 = one per core the process may use."},
    {.name = "sync",
     .env = "FLOWCAST_SYNC",
     .type = OPT_SYNC,
     FIELD(sync_full),
     .def = "normal",
     .metavar = "normal|full",
     .help = "SQLite synchronous mode; full survives power loss, normal only crashes."},
    {.name = "enable-echo",
     .env = "FLOWCAST_ENABLE_ECHO",
     .type = OPT_BOOL,
     FIELD(enable_echo),
     .def = "false",
     .help = "Enable the echo endpoint (env: 1/true/yes)."},
    {.name = "no-websocket",
     .env = "FLOWCAST_NO_WEBSOCKET",
     .type = OPT_BOOL,
     FIELD(no_websocket),
     .def = "false",
     .help = "Refuse WebSocket upgrades, so clients fall back to SSE or long-poll."},
    {.name = "log-level",
     .env = "FLOWCAST_LOG_LEVEL",
     .type = OPT_LOG_LEVEL,
     FIELD(log_level),
     .def = "info",
     .metavar = "LEVEL",
     .help = "debug, info, warn, error or off."},
    {.name = "log-format",
     .env = "FLOWCAST_LOG_FORMAT",
     .type = OPT_LOG_FORMAT,
     FIELD(log_format),
     .def = "text",
     .metavar = "text|json",
     .help = "Log lines on stderr: text, or json (one object per line: time, level, subsystem, "
             "message and the event's fields)."},
    {.name = "retention",
     .env = "FLOWCAST_RETENTION",
     .type = OPT_INT,
     FIELD(retention),
     .min = 1,
     .max = 10000000,
     .def = "1000",
     .metavar = "N",
     .help = "Change events kept so reconnecting subscribers can resume."},
    {.name = "max-body",
     .env = "FLOWCAST_MAX_BODY",
     .type = OPT_BYTES_SIZE,
     FIELD(max_body),
     .min = 16,
     .max = 64.0 * 1024 * 1024,
     .def = "65536",
     .metavar = "BYTES",
     .help = "Largest HTTP request body (K/M suffixes allowed)."},
    {.name = "max-header",
     .env = "FLOWCAST_MAX_HEADER",
     .type = OPT_BYTES_SIZE,
     FIELD(max_header),
     .min = 256,
     .max = FC_MAX_HEADER_LIMIT,
     .def = "8192",
     .metavar = "BYTES",
     .over_max = "is above 81920 (80K), the most libhttp-parser reads of a request head",
     .help = "Largest HTTP request head (K/M suffixes allowed); libhttp-parser caps it at 80K."},
    {.name = "slow-timeout",
     .env = "FLOWCAST_SLOW_TIMEOUT",
     .type = OPT_SECONDS,
     FIELD(slow_timeout),
     .min = 0.1,
     .max = 86400,
     .def = "30",
     .metavar = "S",
     .help = "Grace period before a consumer over its output limit is closed."},
    {.name = "startup-check",
     .env = "FLOWCAST_STARTUP_CHECK",
     .type = OPT_SECONDS,
     FIELD(startup_check),
     .min = 0,
     .max = 86400,
     .def = "5",
     .metavar = "S",
     .help = "Time allowed for the database integrity check (quick_check) at start; when it "
             "runs out the rest is skipped with a warning; 0 = no check."},
    {.name = "max-output",
     .env = "FLOWCAST_MAX_OUTPUT",
     .type = OPT_BYTES_SIZE,
     FIELD(max_output),
     .min = 4096,
     .max = 1024.0 * 1024 * 1024,
     .def = "1M",
     .metavar = "BYTES",
     .help = "Unsent output per connection past which its input pauses (K/M suffixes allowed)."},
    {.name = "request-timeout",
     .env = "FLOWCAST_REQUEST_TIMEOUT",
     .type = OPT_SECONDS,
     FIELD(request_timeout),
     .min = 0.1,
     .max = 86400,
     .def = "10",
     .metavar = "S",
     .help = "Time for an HTTP request (head and body) to arrive once begun or connected."},
    {.name = "idle-timeout",
     .env = "FLOWCAST_IDLE_TIMEOUT",
     .type = OPT_SECONDS,
     FIELD(idle_timeout),
     .min = 0.1,
     .max = 86400,
     .def = "60",
     .metavar = "S",
     .help = "Time a keep-alive HTTP connection may wait for its next request."},
    {.name = "tcp-keepalive",
     .env = "FLOWCAST_TCP_KEEPALIVE",
     .type = OPT_INT,
     FIELD(tcp_keepalive),
     .min = 0,
     .max = 86400,
     .def = "60",
     .metavar = "S",
     .help = "Idle seconds before TCP keepalive probes reap a half-open socket; 0 = off."},
    {.name = "idempotency-window",
     .env = "FLOWCAST_IDEMPOTENCY_WINDOW",
     .type = OPT_SECONDS,
     FIELD(idem_window),
     .min = 1,
     .max = 7 * 86400,
     .def = "86400",
     .metavar = "S",
     .help = "Seconds an Idempotency-Key is remembered: a retry within it gets the first answer."},
    {.name = "nats",
     .env = "FLOWCAST_NATS",
     .type = OPT_STRING,
     FIELD(nats_urls),
     .metavar = "URL[,URL...]",
     .userinfo = true,
     .help = "The cluster bus: NATS servers (nats://host:port or tls://host:port, "
             "comma-separated) on which nodes tell each other of every committed change. "
             "Credentials go in the URL (nats://user:password@host:port, nats://token@host:port); "
             "give them in FLOWCAST_NATS rather than on the command line, and see "
             "docs/cluster.md, \"Securing the bus\". Needs a shared store (--db "
             "postgres://...); refused with SQLite. Unset = changes from other nodes arrive "
             "through the catch-up alone."},
    {.name = "nats-ca",
     .env = "FLOWCAST_NATS_CA",
     .type = OPT_STRING,
     FIELD(nats_ca),
     .metavar = "FILE",
     .help = "PEM CA certificate(s) the NATS servers' certificates must chain to: the bus "
             "then uses TLS (a server without it is refused) and checks each server's name "
             "against its URL. Unset = plain TCP, unless a URL says tls:// (then the "
             "system's CAs)."},
    {.name = "nats-cert",
     .env = "FLOWCAST_NATS_CERT",
     .type = OPT_STRING,
     FIELD(nats_cert),
     .metavar = "FILE",
     .help = "PEM client certificate chain this node shows NATS servers that verify "
             "clients (with --nats-key)."},
    {.name = "nats-key",
     .env = "FLOWCAST_NATS_KEY",
     .type = OPT_STRING,
     FIELD(nats_key),
     .metavar = "FILE",
     .help = "The PEM private key of --nats-cert."},
    {.name = "nats-nkey",
     .env = "FLOWCAST_NATS_NKEY",
     .type = OPT_STRING,
     FIELD(nats_nkey),
     .metavar = "FILE",
     .help = "A NATS user nkey seed file (SU..., as `nk -gen user` writes it): the node signs "
             "each server's challenge with it instead of sending a password. Keep it "
             "readable by the server's user only."},
    {.name = "node-id",
     .env = "FLOWCAST_NODE_ID",
     .type = OPT_STRING,
     FIELD(node_id),
     .metavar = "ID",
     .help = "This node's name on the bus ([A-Za-z0-9._:-], at most 128). Unset = "
             "hostname:port-<random>."},
    {.name = "catchup-interval",
     .env = "FLOWCAST_CATCHUP_INTERVAL",
     .type = OPT_SECONDS,
     FIELD(catchup_interval),
     .min = 0.01,
     .max = 3600,
     .def = "1",
     .metavar = "S",
     .help = "On a shared store, how often the node reads the store's commit log for changes "
             "the bus did not bring (lost messages, a node that died before publishing); also "
             "read at once when the bus comes back."},
    {.name = "feed-workflows",
     .env = "FLOWCAST_FEED_WORKFLOWS",
     .type = OPT_INT,
     FIELD(feed_workflows),
     .min = 1,
     .max = 100000000,
     .def = "65536",
     .metavar = "N",
     .help = "Workflows whose last delivered seq each I/O thread remembers to order, "
             "deduplicate and gap-fill changes (about 150 bytes each); the least recently "
             "changed are forgotten first and re-anchored on their subscribers' positions."},
    {.name = "bus-queue",
     .env = "FLOWCAST_BUS_QUEUE",
     .type = OPT_INT,
     FIELD(bus_queue),
     .min = 1,
     .max = 100000000,
     .def = "65536",
     .metavar = "N",
     .help = "Changes from the bus and the catch-up waiting for one I/O thread; past it bus "
             "messages are dropped and counted (the next catch-up read brings them) and the "
             "catch-up waits for room."},
    {.name = "bus-heard",
     .env = "FLOWCAST_BUS_HEARD",
     .type = OPT_INT,
     FIELD(bus_heard),
     .min = 1,
     .max = 100000000,
     .def = "65536",
     .metavar = "N",
     .help = "Transactions the bus brought whole that the node remembers until its next "
             "catch-up read, which then leaves their rows out (24 bytes each, at most twice "
             "over while it grows); past it their rows are read again."},
};

#define N_OPTIONS (sizeof options / sizeof options[0])

/* FLOWCAST_ALLOW_ORIGIN and FLOWCAST_ALLOW_HOST are split in place, and environ must not be
 * modified, so the items point into these copies (one per list option, see env_slot). They are
 * overwritten by the next fc_config_parse call. */
static char env_lists[N_ENV_LISTS][4096];

/* The --nats value, kept here while its credentials in argv are starred
 * out: ps reads argv from the process's memory. */
static char userinfo_copy[4096];

/* Overwrites each URL's user:password@ or token@ in s with '*'. */
static void star_userinfo(char *s)
{
    for (char *item = s; *item;) {
        size_t n = strcspn(item, ",");
        char *host = item;
        for (char *q = item; q + 3 <= item + n; q++)
            if (memcmp(q, "://", 3) == 0) {
                host = q + 3;
                break;
            }
        char *at = NULL; /* the last '@', as nats.c reads a URL */
        for (char *q = host; q < item + n; q++)
            if (*q == '@') at = q;
        if (at) memset(host, '*', (size_t)(at - host));
        item += n;
        item += strspn(item, ",");
    }
}

/* Accepts an optional '-' and decimal digits only: strtoll alone would also take leading
 * spaces, '+' and trailing garbage. */
static bool parse_int(const char *s, long long *out)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    if (!isdigit((unsigned char)d[0])) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = v;
    return true;
}

/* Decimal digits with an optional K or M suffix meaning KiB or MiB. */
static bool parse_bytes(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0])) return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0) return false;
    uint64_t mult = 1;
    if (*end == 'K' || *end == 'k') {
        mult = 1024;
        end++;
    } else if (*end == 'M' || *end == 'm') {
        mult = 1024 * 1024;
        end++;
    }
    if (*end != '\0' || v > UINT64_MAX / mult) return false;
    *out = (uint64_t)v * mult;
    return true;
}

/* Plain decimals only ("20", "0.5", ".5"): strtod would also accept hex, "inf" and "nan". */
static bool parse_seconds(const char *s, double *out)
{
    const char *p = s;
    size_t digits = 0;
    for (; isdigit((unsigned char)*p); p++)
        digits++;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            digits++;
    if (*p != '\0' || digits == 0) return false;
    *out = strtod(s, NULL);
    return true;
}

/* Accepts "A.B.C.D:PORT", "localhost:PORT" and "[IPv6]:PORT". The host is stored without
 * brackets, and localhost as 127.0.0.1, so the server can hand it straight to
 * uv_ip4_addr/uv_ip6_addr (an IPv6 host is the one containing ':'). */
static bool parse_listen(fc_config *cfg, const char *s)
{
    char host[sizeof cfg->listen_host];
    const char *port;
    int family;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') return false;
        hlen = (size_t)(close - s - 1);
        port = close + 2;
        s++;
        family = AF_INET6;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) return false;
        hlen = (size_t)(colon - s);
        port = colon + 1;
        family = AF_INET;
    }
    if (hlen == 0 || hlen >= sizeof host) return false;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (family == AF_INET && strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    unsigned char addr[16];
    if (inet_pton(family, host, addr) != 1) return false;

    long long p;
    if (!isdigit((unsigned char)port[0]) || !parse_int(port, &p) || p > 65535) return false;
    memcpy(cfg->listen_host, host, strlen(host) + 1);
    cfg->listen_port = (int)p;
    return true;
}

static bool parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) return (*out = 1), true;
        if (strcasecmp(s, no[i]) == 0) return (*out = 0), true;
    }
    return false;
}

static int *list_count(fc_config *cfg, const opt *o)
{
    return (int *)(void *)((char *)cfg + o->count_offset);
}

static bool list_add(fc_config *cfg, const opt *o, const char *item)
{
    int *n = list_count(cfg, o);
    if (o->size != (size_t)o->list_max * sizeof(const char *)) abort(); /* table mismatch */
    if (*n >= o->list_max) return false;
    ((const char **)(void *)((char *)cfg + o->offset))[(*n)++] = item;
    return true;
}

/* Splits a comma-separated environment value into the option's env_lists buffer, trimming
 * blanks and skipping empty items so "a, b," means two items. */
static int set_list_from_env(fc_config *cfg, const opt *o, const char *val, char *why,
                             size_t whylen)
{
    char *buf = env_lists[o->env_slot];
    if (strlen(val) >= sizeof env_lists[0]) {
        snprintf(why, whylen, "is longer than %zu bytes", sizeof env_lists[0] - 1);
        return -1;
    }
    strcpy(buf, val);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*tok == '\0') continue;
        if (!list_add(cfg, o, tok)) {
            snprintf(why, whylen, "has more than %d %s", o->list_max, o->noun);
            return -1;
        }
    }
    return 0;
}

/* Copies a parsed value into its field; a size mismatch means the table names a field of
 * another type, which would silently corrupt the struct, so it is fatal. */
static void store(void *field, const opt *o, const void *v, size_t size)
{
    if (o->size != size) abort();
    memcpy(field, v, size);
}

/* Parses val for o and stores it in cfg. On failure fills why with the end of the sentence
 * that starts with the quoted value, e.g. "is not an integer in 1..100", and returns -1. */
static int opt_set(fc_config *cfg, const opt *o, const char *val, bool from_env, char *why,
                   size_t whylen)
{
    void *field = (char *)cfg + o->offset;
    switch (o->type) {
    case OPT_INT: {
        long long v;
        if (!parse_int(val, &v) || v < o->min || v > o->max) {
            snprintf(why, whylen, "is not an integer in %.0f..%.0f", o->min, o->max);
            return -1;
        }
        int iv = (int)v;
        store(field, o, &iv, sizeof iv);
        return 0;
    }
    case OPT_BYTES_U64:
    case OPT_BYTES_SIZE: {
        uint64_t v;
        if (parse_bytes(val, &v) && (double)v > o->max && o->over_max) {
            snprintf(why, whylen, "%s", o->over_max);
            return -1;
        }
        if (!parse_bytes(val, &v) || (double)v < o->min || (double)v > o->max) {
            snprintf(why, whylen, "is not a byte count in %.0f..%.0f (K and M suffixes allowed)",
                     o->min, o->max);
            return -1;
        }
        if (o->type == OPT_BYTES_U64) {
            store(field, o, &v, sizeof v);
        } else {
            size_t sv = (size_t)v;
            store(field, o, &sv, sizeof sv);
        }
        return 0;
    }
    case OPT_SECONDS: {
        double v;
        if (!parse_seconds(val, &v) || v < o->min || v > o->max) {
            snprintf(why, whylen, "is not a number of seconds in %g..%g", o->min, o->max);
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case OPT_RATE: {
        char num[32];
        size_t n = strlen(val);
        if (n >= 2 && strcmp(val + n - 2, "/s") == 0) n -= 2;
        double v;
        if (n >= sizeof num) n = sizeof num - 1; /* too long to be a valid number anyway */
        memcpy(num, val, n);
        num[n] = '\0';
        if (!parse_seconds(num, &v) || v < o->min || v > o->max) {
            snprintf(why, whylen, "is not a rate per second in %g..%g", o->min, o->max);
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case OPT_STRING:
        if (val[0] == '\0') {
            snprintf(why, whylen, "is empty");
            return -1;
        }
        store(field, o, &val, sizeof val);
        return 0;
    case OPT_LIST:
        if (from_env) return set_list_from_env(cfg, o, val, why, whylen);
        if (val[0] == '\0') {
            snprintf(why, whylen, "is empty");
            return -1;
        }
        if (!list_add(cfg, o, val)) {
            snprintf(why, whylen, "is past the limit of %d %s", o->list_max, o->noun);
            return -1;
        }
        return 0;
    case OPT_BOOL: {
        int v;
        if (!parse_bool(val, &v)) {
            snprintf(why, whylen, "is not a boolean (1/true/yes or 0/false/no)");
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case OPT_LISTEN:
        if (!parse_listen(cfg, val)) {
            snprintf(why, whylen, "is not ADDR:PORT (IPv4, localhost or [IPv6]; port 0..65535)");
            return -1;
        }
        return 0;
    case OPT_SYNC: {
        int v = strcmp(val, "full") == 0 ? 1 : strcmp(val, "normal") == 0 ? 0 : -1;
        if (v < 0) {
            snprintf(why, whylen, "is not one of normal|full");
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case OPT_LOG_LEVEL: {
        int v = fc_log_parse_level(val);
        if (v < 0) {
            snprintf(why, whylen, "is not one of debug|info|warn|error|off");
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    case OPT_LOG_FORMAT: {
        int v = fc_log_parse_format(val);
        if (v < 0) {
            snprintf(why, whylen, "is not one of text|json");
            return -1;
        }
        store(field, o, &v, sizeof v);
        return 0;
    }
    }
    snprintf(why, whylen, "has an unknown option type");
    return -1;
}

/* Prints the one-line error; long values are cut so the line stays readable in a terminal. */
static void report(const char *prefix, const char *label, const char *val, const char *why)
{
    int max = 80;
    fprintf(stderr, "flowcast: %s%s: \"%.*s%s\" %s\n", prefix, label, max, val,
            strlen(val) > (size_t)max ? "..." : "", why);
}

static const opt *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].name) == len && memcmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

int fc_config_parse(fc_config *cfg, int argc, char **argv)
{
    char why[128];
    memset(cfg, 0, sizeof *cfg);

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt *o = &options[i];
        /* A default that fails its own range is a bug in the table, not a user error. */
        if (o->def != NULL && opt_set(cfg, o, o->def, false, why, sizeof why) != 0) abort();
    }

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt *o = &options[i];
        const char *val = getenv(o->env);
        /* An empty variable counts as unset, so `FLOWCAST_X= flowcast` is harmless; but an
         * empty token would silently turn authentication off, so that one is an error. */
        if (val == NULL || (val[0] == '\0' && !o->empty_env_error)) continue;
        if (opt_set(cfg, o, val, true, why, sizeof why) != 0) {
            report("", o->env, val, why);
            return 2;
        }
    }

    /* Like getopt, argv[0] is the program (or subcommand) name and is skipped. */
    bool list_from_flags[N_OPTIONS] = {false};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fc_config_usage(stdout);
            return 1;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            fprintf(stderr, "flowcast: unexpected argument \"%s\" (see flowcast --help)\n", arg);
            return 2;
        }
        const char *name = arg[1] == '-' ? arg + 2 : arg + 1;
        const char *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const opt *o = arg[1] == '-' ? find_option(name, nlen) : NULL;
        if (o == NULL) {
            fprintf(stderr, "flowcast: unknown option \"%.*s\" (see flowcast --help)\n",
                    (int)(name - arg + (ptrdiff_t)nlen), arg);
            return 2;
        }

        const char *val;
        char *in_argv = NULL; /* val, when it is argv's own memory */
        if (eq != NULL) {
            val = in_argv = argv[i] + (eq + 1 - arg);
        } else if (o->type == OPT_BOOL) {
            val = "true";
        } else if (i + 1 < argc) {
            val = in_argv = argv[++i];
        } else {
            fprintf(stderr, "flowcast: --%s: missing value (see flowcast --help)\n", o->name);
            return 2;
        }

        /* Flags replace the environment's list rather than extending it. */
        if (o->type == OPT_LIST && !list_from_flags[o - options]) {
            *list_count(cfg, o) = 0;
            list_from_flags[o - options] = true;
        }
        if (o->userinfo) {
            if (strlen(val) >= sizeof userinfo_copy) {
                fprintf(stderr, "flowcast: --%s: longer than %zu bytes\n", o->name,
                        sizeof userinfo_copy - 1);
                return 2;
            }
            snprintf(userinfo_copy, sizeof userinfo_copy, "%s", val);
            star_userinfo(in_argv);
            val = userinfo_copy;
        }
        if (opt_set(cfg, o, val, false, why, sizeof why) != 0) {
            report("--", o->name, val, why);
            return 2;
        }
    }
    if ((cfg->nats_cert == NULL) != (cfg->nats_key == NULL)) {
        fprintf(stderr, "flowcast: --nats-cert and --nats-key go together: give both or neither\n");
        return 2;
    }
    if (!cfg->nats_urls && (cfg->nats_ca || cfg->nats_cert || cfg->nats_nkey)) {
        fprintf(stderr, "flowcast: --nats-ca, --nats-cert, --nats-key and --nats-nkey need "
                        "--nats\n");
        return 2;
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        fprintf(stderr, "flowcast: --tls-cert and --tls-key go together: give both or neither\n");
        return 2;
    }
    /* The node id travels unescaped at the head of every bus message. */
    if (cfg->node_id && (strlen(cfg->node_id) > 128 ||
                         strspn(cfg->node_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                              "0123456789._:-") != strlen(cfg->node_id))) {
        fprintf(stderr, "flowcast: --node-id: 1 to 128 of [A-Za-z0-9._:-]\n");
        return 2;
    }
    return 0;
}

/* The range sentence --help and the man page add after an option's help, or "". */
static void range_text(const opt *o, char *buf, size_t len)
{
    buf[0] = '\0';
    switch (o->type) {
    case OPT_INT:
    case OPT_BYTES_U64:
    case OPT_BYTES_SIZE:
        snprintf(buf, len, " Range %.0f..%.0f.", o->min, o->max);
        break;
    case OPT_SECONDS:
    case OPT_RATE:
        snprintf(buf, len, " Range %g..%g.", o->min, o->max);
        break;
    case OPT_LIST:
        snprintf(buf, len, " At most %d.", o->list_max);
        break;
    case OPT_STRING:
    case OPT_BOOL:
    case OPT_LISTEN:
    case OPT_SYNC:
    case OPT_LOG_LEVEL:
    case OPT_LOG_FORMAT:
        break;
    }
}

int fc_config_option_at(size_t i, fc_config_option *out)
{
    if (i >= N_OPTIONS) return -1;
    const opt *o = &options[i];
    *out = (fc_config_option){
        .name = o->name, .env = o->env, .metavar = o->metavar, .def = o->def, .help = o->help};
    range_text(o, out->range, sizeof out->range);
    return 0;
}

void fc_config_usage(FILE *out)
{
    fprintf(out, "Usage: flowcast serve [options]\n\n"
                 "Every option can also be set with its environment variable.\n"
                 "Precedence: defaults < environment < flags. Use --flag VALUE or "
                 "--flag=VALUE.\n\n");
    fprintf(out, "  %-30s %-26s %s\n", "OPTION", "ENVIRONMENT", "DEFAULT");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt *o = &options[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        fprintf(out, "  %-30s %-26s %s\n", flag, o->env, o->def ? o->def : "(none)");
        char range[64];
        range_text(o, range, sizeof range);
        fprintf(out, "      %s%s\n", o->help, range);
    }
    fprintf(out, "  -h, --help\n      Print this help and exit.\n");
}
