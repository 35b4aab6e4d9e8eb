/* The NATS backend of the bus (nats.c, Debian libnats): one connection
 * per process, reconnecting for ever with capped exponential backoff and
 * jitter, its subscriptions delivered on nats.c's own threads. The libuv
 * adapter is not used: see docs/architecture.md, "The cluster bus". */
#include "bus/bus.h"
#include "bus/internal.h"
#include "common/log.h"

#include <nats/nats.h>
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SERVERS FC_BUS_URLS_MAX
#define MAX_SUBJECTS 4
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* A server that stops answering (a cut network, not a closed socket) is
 * given up after PING_MS * (MAX_PINGS + 1). */
#define PING_MS 1000
#define MAX_PINGS 2
/* A publish is written on the loop thread (SetSendAsap below): with a
 * blocking socket, a link that stops moving bytes (a silent partition)
 * once the socket's buffer is full blocked the loop in send() for good,
 * holding nats.c's connection lock, so the pings that would give the
 * server up could not run either. A write that makes no progress for this
 * long fails instead, and nats.c treats the connection as broken. */
#define WRITE_DEADLINE_MS PING_MS
#define PERMISSION_LOG_NS (10000ull * 1000000)

typedef struct nats_bus {
    fc_bus base;
    natsConnection *nc;
    natsSubscription *subs[MAX_SUBJECTS];
    size_t n_subs;
    fc_bus_handlers h;
    char urls[512]; /* masked: for logs and errors */
    /* Close waits until nats.c has called its last handler: each
     * subscription's on-complete and the connection's closed callback,
     * which may come before close when nats.c gives up on its own. */
    uv_mutex_t lock;
    uv_cond_t cond;
    int done;    /* of those callbacks, how many came */
    int closing; /* our own close: the closed callback is no news */
    /* Refused publishes come one per message: logged once per
     * PERMISSION_LOG_NS with their count (nats.c's one callback thread). */
    uint64_t refused, refused_log_ns;
    /* Atomic, set by the connection callbacks: whether a server link is up,
     * and its max_payload. While the link is down a publish fails at once
     * and the catch-up carries the change: calling into nats.c then could
     * wait for the connection lock, which its reconnect thread holds through
     * each connect attempt (up to --nats's 2 s timeout), on the loop. */
    int linked;
    int64_t max_payload;
} nats_bus;

static void one_done(nats_bus *b)
{
    uv_mutex_lock(&b->lock);
    b->done++;
    uv_cond_signal(&b->cond);
    uv_mutex_unlock(&b->lock);
}

static void on_sub_complete(void *closure)
{
    one_done(closure);
}

/* nats.c's last error on nc, without its "(file.c:123): " prefix. */
static const char *last_error(natsConnection *nc)
{
    const char *txt = NULL;
    natsStatus s = natsConnection_GetLastError(nc, &txt);
    if (!txt || !*txt) return natsStatus_GetText(s);
    const char *p = strstr(txt, "): ");
    return txt[0] == '(' && p ? p + 3 : txt;
}

/* nats.c closes a connection for good when a server refuses its
 * credentials twice in a row or every server refuses its TLS: nothing
 * comes back from that but a restart with a fixed configuration. */
static void on_closed(natsConnection *nc, void *closure)
{
    nats_bus *b = closure;
    uv_mutex_lock(&b->lock);
    int ours = b->closing;
    uv_mutex_unlock(&b->lock);
    if (!ours) {
        char why[256];
        fc_bus_urls_mask(last_error(nc), why, sizeof why);
        FC_ERROR("bus",
                 "the NATS connection to %s is closed for good (%s): the bus is down "
                 "until the node restarts with credentials and TLS files NATS accepts",
                 b->urls, why);
        b->h.state(b->h.ud, 0);
    }
    __atomic_store_n(&b->linked, 0, __ATOMIC_RELEASE);
    one_done(b);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    nats_bus *b = closure;
    b->h.message(b->h.ud, natsMsg_GetSubject(msg), natsMsg_GetData(msg),
                 (size_t)natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

/* nats.c calls each of these once per transition, so each logs once. */
static void on_connected(natsConnection *nc, void *closure)
{
    nats_bus *b = closure;
    char url[256] = "", shown[256];
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    fc_bus_urls_mask(url, shown, sizeof shown);
    FC_INFO("bus", "connected to %s", shown);
    __atomic_store_n(&b->max_payload, natsConnection_GetMaxPayload(nc), __ATOMIC_RELAXED);
    __atomic_store_n(&b->linked, 1, __ATOMIC_RELEASE);
    b->h.state(b->h.ud, 1);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    nats_bus *b = closure;
    __atomic_store_n(&b->linked, 0, __ATOMIC_RELEASE);
    if (natsConnection_IsClosed(nc)) return; /* our own close */
    FC_WARN("bus", "lost the NATS server; reconnecting (changes still arrive through the "
                   "store's catch-up)");
    b->h.state(b->h.ud, 0);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)sub;
    nats_bus *b = closure;
    /* A slow consumer loses messages, not changes: the catch-up has them. */
    if (err != NATS_NOT_PERMITTED) {
        FC_WARN("bus", "%s", natsStatus_GetText(err));
        return;
    }
    /* The server's subject permissions refuse a publish or a subscription
     * of this node's user: its changes do not travel, or none arrive. */
    b->refused++;
    uint64_t now = uv_hrtime();
    if (b->refused_log_ns && now - b->refused_log_ns < PERMISSION_LOG_NS) return;
    b->refused_log_ns = now;
    char why[256];
    fc_bus_urls_mask(last_error(nc), why, sizeof why);
    FC_ERROR("bus",
             "NATS at %s: %s (%llu refused so far; the node's user needs publish and "
             "subscribe on flowcast.changes and flowcast.probe.>)",
             b->urls, why, (unsigned long long)b->refused);
}

/* Capped exponential backoff with jitter, after each full round of servers. */
static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    (void)nc;
    (void)closure;
    int64_t d = BACKOFF_MIN_MS;
    for (int i = 1; i < attempts && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS) d = BACKOFF_MAX_MS;
    return d / 2 + rand() % (d / 2 + 1);
}

/* Splits "a,b,c" into servers (pointers into buf). The count, or -1. */
static int split_urls(char *buf, const char **servers)
{
    int n = 0;
    for (char *save = NULL, *u = strtok_r(buf, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        while (*u == ' ')
            u++;
        if (!*u) continue;
        if (n == MAX_SERVERS) return -1;
        servers[n++] = u;
    }
    return n;
}

/* nats.c's last error on this thread, without its "(file.c:123): " prefix. */
static const char *thread_error(natsStatus s)
{
    const char *txt = nats_GetLastError(NULL);
    if (!txt || !*txt) return natsStatus_GetText(s);
    const char *p = strstr(txt, "): ");
    return txt[0] == '(' && p ? p + 3 : txt;
}

/* TLS when a URL says tls:// or a CA is given: nats.c then refuses a
 * server that offers none rather than falling back to plain TCP. It checks
 * each server's name (or IP address) in its certificate itself. */
static natsStatus set_tls(natsOptions *o, const fc_bus_config *cfg, const char **servers, int n,
                          const char **what)
{
    int secure = cfg->secure.ca_file != NULL;
    for (int i = 0; i < n; i++)
        if (strncasecmp(servers[i], "tls://", 6) == 0) secure = 1;
    natsStatus s = NATS_OK;
    if (secure) s = natsOptions_SetSecure(o, true);
    *what = "--nats-ca";
    if (s == NATS_OK && cfg->secure.ca_file)
        s = natsOptions_LoadCATrustedCertificates(o, cfg->secure.ca_file);
    if (s != NATS_OK) return s;
    *what = "--nats-cert/--nats-key";
    if (cfg->secure.cert_file)
        s = natsOptions_LoadCertificatesChain(o, cfg->secure.cert_file, cfg->secure.key_file);
    return s;
}

static natsOptions *make_options(const fc_bus_config *cfg, nats_bus *b, char *err, size_t errlen)
{
    char *buf = strdup(cfg->urls);
    const char *servers[MAX_SERVERS];
    int n = buf ? split_urls(buf, servers) : -1;
    natsOptions *o = NULL;
    if (n < 1) {
        snprintf(err, errlen, "--nats: give 1 to %d URLs separated by commas", MAX_SERVERS);
        free(buf);
        return NULL;
    }
    const char *what = "--nats";
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, servers, n);
    if (s == NATS_OK) s = set_tls(o, cfg, servers, n, &what);
    if (s == NATS_OK) what = "--nats-nkey";
    if (s == NATS_OK && cfg->secure.nkey_file) {
        char pub[FC__BUS_NKEY_LEN + 1], why[128];
        if (fc__bus_nkey_public(cfg->secure.nkey_file, pub, why, sizeof why) != 0) {
            snprintf(err, errlen, "--nats-nkey %s: %s", cfg->secure.nkey_file, why);
            free(buf);
            natsOptions_Destroy(o);
            return NULL;
        }
        s = natsOptions_SetNKeyFromSeed(o, pub, cfg->secure.nkey_file);
    }
    if (s == NATS_OK) what = "--nats";
    if (s == NATS_OK) s = natsOptions_SetName(o, cfg->node_id);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetCustomReconnectDelay(o, reconnect_delay, b);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, on_connected, b);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, on_disconnected, b);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, on_error, b);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(o, on_closed, b);
    if (s == NATS_OK) s = natsOptions_SetPingInterval(o, PING_MS);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(o, MAX_PINGS);
    if (s == NATS_OK) s = natsOptions_SetTimeout(o, 2000);
    /* Latency first: each publish is written at once rather than by the
     * flusher thread a moment later (see docs/architecture.md). */
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, true);
    if (s == NATS_OK) s = natsOptions_SetWriteDeadline(o, WRITE_DEADLINE_MS);
    free(buf);
    if (s != NATS_OK) {
        char why[256];
        fc_bus_urls_mask(thread_error(s), why, sizeof why);
        snprintf(err, errlen, "%s: %s", what, why);
        natsOptions_Destroy(o);
        return NULL;
    }
    return o;
}

static void nats_close(fc_bus *base)
{
    nats_bus *b = (nats_bus *)base;
    uv_mutex_lock(&b->lock);
    b->closing = 1;
    uv_mutex_unlock(&b->lock);
    for (size_t i = 0; i < b->n_subs; i++)
        natsSubscription_Unsubscribe(b->subs[i]);
    natsConnection_Close(b->nc);
    /* No handler may run once close returns: b is freed below. */
    uv_mutex_lock(&b->lock);
    while (b->done < (int)b->n_subs + 1)
        uv_cond_wait(&b->cond, &b->lock);
    uv_mutex_unlock(&b->lock);
    for (size_t i = 0; i < b->n_subs; i++)
        natsSubscription_Destroy(b->subs[i]);
    natsConnection_Destroy(b->nc);
    uv_cond_destroy(&b->cond);
    uv_mutex_destroy(&b->lock);
    free(b);
}

/* Whether a failed first connect was a server that answered and refused
 * this node, or that this node refused (credentials, permissions, TLS):
 * a configuration error, unlike a server that is down, unreachable or
 * behind a TCP proxy that drops the connection (retried). A TLS 1.3 server
 * refuses a client certificate after the handshake, so a read or write
 * error on an established TLS session counts as a refusal too. */
static int refused(natsStatus s, const char *why)
{
    return s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED || s == NATS_SSL_ERROR ||
           s == NATS_SECURE_CONNECTION_WANTED || s == NATS_ERR || s == NATS_PROTOCOL_ERROR ||
           (s == NATS_IO_ERROR && strncmp(why, "SSL_", 4) == 0);
}

/* A refusal of the credentials is believed once it repeats this many
 * times: with libnats 3.4 the server now and then refuses a good nkey seed
 * (4 of 1,300 first connects with fresh keys, which then connected 5
 * times of 5; nats.c alone against nats-server 2.9). */
#define AUTH_ATTEMPTS 3

/* The first connect is tried in the foreground, so that refused
 * credentials or TLS fail the start with nats.c's reason (in the
 * background nats.c would give up on them with a bare "no server"); only
 * when no server answers does nats.c go on trying in the background. */
static natsStatus connect_first(nats_bus *b, natsOptions *o, char *err, size_t errlen)
{
    natsStatus s = natsConnection_Connect(&b->nc, o);
    for (int i = 1; s == NATS_CONNECTION_AUTH_FAILED && i < AUTH_ATTEMPTS; i++)
        s = natsConnection_Connect(&b->nc, o);
    if (s == NATS_OK) return s;
    char why[256];
    fc_bus_urls_mask(thread_error(s), why, sizeof why);
    if (refused(s, why)) {
        snprintf(err, errlen, "--nats %s: cannot connect: %s%s", b->urls, why,
                 s == NATS_IO_ERROR ? " (the server closed the TLS session: does it trust "
                                      "--nats-cert?)"
                                    : "");
        return s;
    }
    FC_WARN("bus", "no NATS server answers yet at %s (%s); retrying in the background", b->urls,
            why);
    s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, b);
    if (s == NATS_OK) s = natsConnection_Connect(&b->nc, o);
    if (s == NATS_NOT_YET_CONNECTED) return NATS_NOT_YET_CONNECTED;
    if (s != NATS_OK) snprintf(err, errlen, "--nats %s: %s", b->urls, natsStatus_GetText(s));
    return s;
}

static fc_bus *nats_open(const fc_bus_config *cfg, const fc_bus_handlers *h, char *err,
                         size_t errlen)
{
    if (cfg->n_subjects > MAX_SUBJECTS) {
        snprintf(err, errlen, "too many bus subjects");
        return NULL;
    }
    nats_bus *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->base.ops = &fc_bus_nats;
    b->h = *h;
    fc_bus_urls_mask(cfg->urls, b->urls, sizeof b->urls);
    uv_mutex_init(&b->lock);
    uv_cond_init(&b->cond);
    natsOptions *o = make_options(cfg, b, err, errlen);
    natsStatus s = o ? connect_first(b, o, err, errlen) : NATS_ERR;
    natsOptions_Destroy(o);
    int connected = s == NATS_OK; /* else connectedCb tells of it later */
    if (s == NATS_NOT_YET_CONNECTED) s = NATS_OK;
    for (size_t i = 0; s == NATS_OK && i < cfg->n_subjects; i++) {
        natsSubscription *sub = NULL;
        s = natsConnection_Subscribe(&sub, b->nc, cfg->subjects[i], on_msg, b);
        if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(sub, on_sub_complete, b);
        if (s == NATS_OK) {
            b->subs[b->n_subs++] = sub;
        } else {
            snprintf(err, errlen, "--nats %s: %s", b->urls, natsStatus_GetText(s));
            if (sub) {
                natsSubscription_Unsubscribe(sub);
                natsSubscription_Destroy(sub);
            }
        }
    }
    if (s != NATS_OK) {
        if (b->nc) {
            nats_close(&b->base);
        } else {
            uv_cond_destroy(&b->cond);
            uv_mutex_destroy(&b->lock);
            free(b);
        }
        return NULL;
    }
    if (connected) on_connected(b->nc, b);
    return &b->base;
}

static int nats_publish(fc_bus *base, const char *subject, const void *data, size_t len)
{
    nats_bus *b = (nats_bus *)base;
    if (!__atomic_load_n(&b->linked, __ATOMIC_ACQUIRE)) return -1;
    return natsConnection_Publish(b->nc, subject, data, (int)len) == NATS_OK ? 0 : -1;
}

static size_t nats_max_payload(fc_bus *base)
{
    int64_t n = __atomic_load_n(&((nats_bus *)base)->max_payload, __ATOMIC_RELAXED);
    return n > 0 ? (size_t)n : 0;
}

const fc_bus_ops fc_bus_nats = {
    .version = 2,
    .name = "nats",
    .open = nats_open,
    .publish = nats_publish,
    .max_payload = nats_max_payload,
    .close = nats_close,
};
