/* The cluster bus: how one node tells the others of the changes it
 * committed. A backend is a const fc_bus_ops table (NATS, nats.c); what
 * travels is one message per batch of committed changes on FC_BUS_SUBJECT, and
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
    int version; /* 2: max_payload */
    const char *name;
    /* Starts connecting and subscribes to cfg's subjects. A server down
     * at start is retried for ever in the background, with backoff; one
     * that answers but refuses this node (credentials, permissions, TLS)
     * makes open fail. NULL with a reason in err (never a credential)
     * when the configuration is unusable or refused. */
    fc_bus *(*open)(const fc_bus_config *cfg, const fc_bus_handlers *h, char *err, size_t errlen);
    /* Queues one message; 0, or -1 when the backend refused it: no
     * server link is up (refused at once, without waiting on the
     * backend's reconnect), or the backend is closed. Any thread. */
    int (*publish)(fc_bus *b, const char *subject, const void *data, size_t len);
    /* The longest message the servers take (bytes), as the one connected
     * last said; 0 before any said. Any thread. */
    size_t (*max_payload)(fc_bus *b);
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

/* The most URLs --nats takes. */
#define FC_BUS_URLS_MAX 16

/* 0 when every URL of urls ("URL[,URL...]", as --nats takes them) names a
 * server nats.c can reach: scheme nats:// or tls:// (or none), a host, an
 * optional port from 1 to 65535 and nothing after it. Else -1 and why
 * (truncated to len), which names the URL without its credentials. */
int fc_bus_urls_check(const char *urls, char *why, size_t len);

/* The bus message (docs/cluster.md, "The bus message"): the changes one
 * node committed together, in commit order, in a compact binary form
 * decoded once per message by each receiving process. Version 3 (2 is
 * still decoded, without transaction ids); the JSON message of version 1
 * was never in a release and is refused as malformed. */
#define FC_BUS_VERSION 3
/* A message no backend caps lower: NATS's default max_payload. */
#define FC_BUS_MESSAGE_MAX (1024 * 1024)

/* One change as it travels: the state after it, or for a deletion the
 * state just before it. */
typedef struct fc_bus_change {
    int deleted;
    fc_workflow state;
    /* Its transaction in the store's commit log and how many changes that
     * transaction committed (fc_store_commit); 0 and 0 when unknown. */
    int64_t txid;
    uint32_t txn_changes;
} fc_bus_change;

/* A message being written: fc_bus_writer_init, fc_bus_writer_add per
 * change, fc_bus_writer_finish, then fc_bus_writer_reset for the next one;
 * fc_bus_writer_free at the end. One thread. */
typedef struct fc_bus_writer {
    char *buf;
    size_t len, cap;
    size_t head; /* the header's length: where the first change starts */
    uint32_t n;  /* changes written */
} fc_bus_writer;

/* Starts an empty message from node (fc_bus_node_valid). 0, or -1 on OOM. */
int fc_bus_writer_init(fc_bus_writer *w, const char *node);
/* Appends one change (of transaction txid, which committed txn_changes
 * changes; 0 and 0 when unknown) unless the message would then be longer than max
 * bytes: 0; 1 when it would (nothing appended: finish the message and add
 * the change to the next; a change alone longer than max cannot travel);
 * -1 on OOM (nothing appended). */
int fc_bus_writer_add(fc_bus_writer *w, const fc_workflow *state, int deleted, int64_t txid,
                      uint32_t txn_changes, size_t max);
/* The message with its publish time and count stamped in (valid until the
 * next call on w): *len bytes, never NUL-terminated. Only when w->n > 0. */
const char *fc_bus_writer_finish(fc_bus_writer *w, uint64_t sent_ns, size_t *len);
/* Empties the message, keeping its node and its buffer. */
void fc_bus_writer_reset(fc_bus_writer *w);
void fc_bus_writer_free(fc_bus_writer *w);

/* A decoded message. */
typedef struct fc_bus_batch {
    char node[FC_BUS_NODE_MAX + 1];
    uint64_t sent_ns; /* CLOCK_REALTIME at publish */
    size_t n;         /* >= 1 */
    /* One allocation holding the n changes and the strings their states
     * point into: free(changes) frees all; never fc_workflow_clear them. */
    fc_bus_change *changes;
} fc_bus_batch;

/* Decodes a message into out. 0, or -1 when it is malformed (out
 * untouched): truncated, trailing bytes, another version, a node id
 * fc_bus_node_valid refuses, an id fc_id_valid refuses, an epoch outside
 * [1, FC_EPOCH_MAX], a seq < 1, an unknown status, a number past INT64_MAX,
 * or a name or message that is not UTF-8 or holds a NUL; also -1 on OOM. */
int fc_bus_decode(const char *data, size_t len, fc_bus_batch *out);
/* Whether node is a usable node id: 1 to FC_BUS_NODE_MAX of [A-Za-z0-9._:-]. */
int fc_bus_node_valid(const char *node);
/* Whether data was published by node (a cheap look at its header). */
int fc_bus_from(const char *data, size_t len, const char *node);

#endif
