/* The cluster bus: how one node tells the others of the changes it
 * committed. A backend is a const fc_bus_ops table (NATS, nats.c); what
 * travels is one JSON message per committed change on FC_BUS_SUBJECT, and
 * each node's readiness probe on FC_BUS_PROBE_PREFIX<node id>.
 *
 * Threading: open and close on any one thread; publish from any thread
 * (the backend is thread-safe); the handlers run on the backend's own
 * threads, so they must only hand the bytes on (copy, queue, wake a loop).
 * At-most-once: a message may be lost while a server is away; the feed's
 * catch-up from the store makes up for it. */
#ifndef FC_BUS_BUS_H
#define FC_BUS_BUS_H

#include "model/workflow.h"

#include <stddef.h>
#include <stdint.h>

/* Every node subscribes to every change (see docs/cluster.md, "Bus"). */
#define FC_BUS_SUBJECT "flowcast.changes"
#define FC_BUS_PROBE_PREFIX "flowcast.probe."
#define FC_BUS_NODE_MAX 128

typedef struct fc_bus fc_bus;

typedef struct fc_bus_handlers {
    /* A message on one of the subjects; data is only valid during the call. */
    void (*message)(void *ud, const char *subject, const char *data, size_t len);
    /* The connection came up (1: first connect or a reconnect) or went away (0). */
    void (*state)(void *ud, int up);
    void *ud;
} fc_bus_handlers;

/* How a node proves itself to the bus and checks the bus's servers
 * (docs/cluster.md, "Securing the bus"). Every field may be NULL. */
typedef struct fc_bus_secure {
    const char *ca_file;   /* PEM CAs the servers' certificates must chain to; TLS required */
    const char *cert_file; /* PEM client certificate chain ... */
    const char *key_file;  /* ... and its key (both or neither) */
    const char *nkey_file; /* a user nkey seed (SU...) to sign the server's nonce with */
} fc_bus_secure;

typedef struct fc_bus_config {
    /* "nats://h:p[,tls://user:pass@h:p,nats://token@h:p...]": the URLs
     * may carry credentials, so they are printed only through
     * fc_bus_urls_mask. */
    const char *urls;
    const char *node_id; /* the connection's name, for the server's logs */
    fc_bus_secure secure;
    const char *const *subjects;
    size_t n_subjects;
} fc_bus_config;

typedef struct fc_bus_ops {
    int version; /* 1 */
    const char *name;
    /* Starts connecting and subscribes to cfg's subjects. A server down
     * at start is retried for ever in the background, with backoff; one
     * that answers but refuses this node (credentials, permissions, TLS)
     * makes open fail. NULL with a reason in err (never a credential)
     * when the configuration is unusable or refused. */
    fc_bus *(*open)(const fc_bus_config *cfg, const fc_bus_handlers *h, char *err, size_t errlen);
    /* Queues one message; 0, or -1 when the backend refused it (its
     * reconnect buffer is full, or it is closed). Any thread. */
    int (*publish)(fc_bus *b, const char *subject, const void *data, size_t len);
    /* Stops every backend thread (no handler runs after it returns) and frees b. */
    void (*close)(fc_bus *b);
} fc_bus_ops;

/* Every backend's handle starts with this. */
struct fc_bus {
    const fc_bus_ops *ops;
};

extern const fc_bus_ops fc_bus_nats;

/* Copies urls into out (truncated to len) with each URL's credentials
 * (the user:password@ or token@ after "://") replaced by "***", so that a
 * URL may be logged, shown in /readyz or put into an error message. */
void fc_bus_urls_mask(const char *urls, char *out, size_t len);

/* One change as it travels. */
typedef struct fc_bus_change {
    char node[FC_BUS_NODE_MAX + 1];
    uint64_t sent_ns; /* CLOCK_REALTIME at publish */
    int deleted;
    int64_t deleted_at_ms; /* 0 when not deleted */
    fc_workflow state;     /* after the change; before it for a deletion */
} fc_bus_change;

/* Encodes {"v":1,"node":..,"sent_ns":..,"deleted":..,"deleted_at":ms|null,
 * "workflow":{the REST workflow object}}. Returns a malloc'ed string (its
 * length in *len), or NULL on OOM. */
char *fc_bus_encode(const char *node, uint64_t sent_ns, const fc_workflow *state, int deleted,
                    int64_t deleted_at_ms, size_t *len);
/* Decodes a message into out (out->state then owns its strings: clear it
 * with fc_workflow_clear). 0, or -1 when it is malformed (out untouched);
 * a node id fc_bus_node_valid refuses is malformed: fc_bus_encode could not
 * write it back. */
int fc_bus_decode(const char *data, size_t len, fc_bus_change *out);
/* Whether node is a usable node id: 1 to FC_BUS_NODE_MAX of [A-Za-z0-9._:-]
 * (it travels unescaped at the head of every message, see fc_bus_from). */
int fc_bus_node_valid(const char *node);
/* Whether data was published by node (a cheap look at its prefix). */
int fc_bus_from(const char *data, size_t len, const char *node);

#endif
