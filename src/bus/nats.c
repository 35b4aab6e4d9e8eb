/* The NATS backend of the bus (nats.c, Debian libnats): one connection
 * per process, reconnecting for ever with capped exponential backoff and
 * jitter, its subscriptions delivered on nats.c's own threads. The libuv
 * adapter is not used: see docs/architecture.md, "The cluster bus". */
#include "bus/bus.h"
#include "common/log.h"

#include <nats/nats.h>
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERVERS 16
#define MAX_SUBJECTS 4
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
/* A server that stops answering (a cut network, not a closed socket) is
 * given up after PING_MS * (MAX_PINGS + 1). */
#define PING_MS 1000
#define MAX_PINGS 2

typedef struct nats_bus {
    fc_bus base;
    natsConnection *nc;
    natsSubscription *subs[MAX_SUBJECTS];
    size_t n_subs;
    fc_bus_handlers h;
    /* Close waits until nats.c has called its last handler: each
     * subscription's on-complete and the connection's closed callback. */
    uv_mutex_t lock;
    uv_cond_t cond;
    int pending; /* callbacks still to come after close */
} nats_bus;

static void one_done(nats_bus *b)
{
    uv_mutex_lock(&b->lock);
    if (--b->pending == 0) uv_cond_signal(&b->cond);
    uv_mutex_unlock(&b->lock);
}

static void on_sub_complete(void *closure)
{
    one_done(closure);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    one_done(closure);
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
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof url);
    FC_INFO("bus", "connected to %s", url);
    b->h.state(b->h.ud, 1);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    nats_bus *b = closure;
    if (natsConnection_IsClosed(nc)) return; /* our own close */
    FC_WARN("bus", "lost the NATS server; reconnecting (changes still arrive through the "
                   "store's catch-up)");
    b->h.state(b->h.ud, 0);
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    /* A slow consumer loses messages, not changes: the catch-up has them. */
    FC_WARN("bus", "%s", natsStatus_GetText(err));
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
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, servers, n);
    if (s == NATS_OK) s = natsOptions_SetName(o, cfg->node_id);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetCustomReconnectDelay(o, reconnect_delay, b);
    if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, b);
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
    free(buf);
    if (s != NATS_OK) {
        snprintf(err, errlen, "--nats: %s", natsStatus_GetText(s));
        natsOptions_Destroy(o);
        return NULL;
    }
    return o;
}

static void nats_close(fc_bus *base)
{
    nats_bus *b = (nats_bus *)base;
    uv_mutex_lock(&b->lock);
    b->pending = (int)b->n_subs + 1;
    uv_mutex_unlock(&b->lock);
    for (size_t i = 0; i < b->n_subs; i++)
        natsSubscription_Unsubscribe(b->subs[i]);
    natsConnection_Close(b->nc);
    /* No handler may run once close returns: b is freed below. */
    uv_mutex_lock(&b->lock);
    while (b->pending > 0)
        uv_cond_wait(&b->cond, &b->lock);
    uv_mutex_unlock(&b->lock);
    for (size_t i = 0; i < b->n_subs; i++)
        natsSubscription_Destroy(b->subs[i]);
    natsConnection_Destroy(b->nc);
    uv_cond_destroy(&b->cond);
    uv_mutex_destroy(&b->lock);
    free(b);
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
    uv_mutex_init(&b->lock);
    uv_cond_init(&b->cond);
    natsOptions *o = make_options(cfg, b, err, errlen);
    if (!o) {
        uv_cond_destroy(&b->cond);
        uv_mutex_destroy(&b->lock);
        free(b);
        return NULL;
    }
    natsStatus s = natsConnection_Connect(&b->nc, o);
    natsOptions_Destroy(o);
    int connected = s == NATS_OK; /* else connectedCb tells of it later */
    if (s == NATS_NOT_YET_CONNECTED) {
        FC_WARN("bus", "no NATS server answers yet at %s; retrying in the background", cfg->urls);
        s = NATS_OK;
    }
    for (size_t i = 0; s == NATS_OK && i < cfg->n_subjects; i++) {
        natsSubscription *sub = NULL;
        s = natsConnection_Subscribe(&sub, b->nc, cfg->subjects[i], on_msg, b);
        if (s == NATS_OK) s = natsSubscription_SetOnCompleteCB(sub, on_sub_complete, b);
        if (s == NATS_OK) {
            b->subs[b->n_subs++] = sub;
        } else if (sub) {
            natsSubscription_Unsubscribe(sub);
            natsSubscription_Destroy(sub);
        }
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "--nats %s: %s", cfg->urls, natsStatus_GetText(s));
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
    return natsConnection_Publish(b->nc, subject, data, (int)len) == NATS_OK ? 0 : -1;
}

const fc_bus_ops fc_bus_nats = {
    .version = 1,
    .name = "nats",
    .open = nats_open,
    .publish = nats_publish,
    .close = nats_close,
};
