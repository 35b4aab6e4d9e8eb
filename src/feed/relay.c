/* The relay between this process's feeds, the bus and the store's commit
 * log: see relay.h. The changes the home loop hears of in one turn travel
 * as one bus message (written at the turn's end, by a check handle); a
 * message is decoded once, on the bus's thread, and shared by reference
 * with every loop's feed as one queue entry; a catch-up read is one too.
 *
 * The catch-up reads only what the bus did not bring. Every change travels
 * with its transaction's id and change count; a transaction whose every
 * change was handed to every feed (or that this process committed) is
 * heard (heard.h), and the read leaves heard transactions' rows out
 * (fc_store_log_since's heard). Heard means handed on, not yet placed: a
 * feed that then drops a change for want of the store (fc_feed_missed),
 * or a feed queue that refuses a message, names its transactions, and the
 * catch-up goes back to the lowest of them and reads every row, heard or
 * not, until it is past the highest (full_until). A transaction marked
 * heard after that (a slow loop) cannot hide a dropped change: the reads
 * that cover it ignore the marks. */
#include "feed/relay.h"
#include "feed/heard.h"
#include "common/error.h"
#include "common/log.h"
#include "common/time.h"
#include "metrics/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MAX_FEEDS 64
#define PROBE_MS 500
/* The probe must have come back within this long for the bus to count as up. */
#define PROBE_STALE_NS (3000ull * 1000000)
/* A repeating alarm (malformed messages, a twin --node-id) is logged at most this often. */
#define ALARM_LOG_NS (10000ull * 1000000)

struct fc_feed_relay {
    fc_feed_relay_config cfg;
    uv_loop_t *home;
    fc_store *store;
    fc_bus *bus;
    char node[FC_BUS_NODE_MAX + 1];
    char urls_shown[512]; /* cfg.urls without credentials, for /readyz */
    char probe_subject[sizeof FC_BUS_PROBE_PREFIX + FC_BUS_NODE_MAX];
    /* What this process's probes carry: one that comes back with another
     * came from another node with this node's --node-id. */
    char probe_token[17];
    uv_mutex_t lock; /* feeds */
    fc_feed *feeds[MAX_FEEDS];
    int n_feeds;
    uv_timer_t catchup_timer, probe_timer;
    uv_async_t kick; /* the bus came back: read the log now */
    /* This turn's commits, published at its end (home loop). */
    fc_bus_writer out;
    uv_check_t flush;
    int started;
    int stopping;       /* under lock: kick is closed or closing */
    int64_t position;   /* of the commit log; -1 until log_head answered */
    int64_t full_until; /* reads from positions up to this one ignore heard */
    int catchup_failed; /* logged once per failure streak */
    /* The heard transactions, and the ones a full feed queue refused
     * (missed_lo > missed_hi: none): under heard_lock. */
    uv_mutex_t heard_lock;
    fc__heard heard;
    int64_t missed_lo, missed_hi;
    /* Written by the bus's threads, read anywhere. */
    uint64_t probe_rx_ns; /* monotonic time the last probe came back */
    uint64_t twin_rx_ns;  /* ... and another process's probe on our subject came */
    uint64_t twin_log_ns;
    int up;
    uint64_t msgs_in, changes_in, dropped;
    uint64_t malformed, malformed_logged, malformed_log_ns;
};

/* Posts m to every feed; returns how many refused it (a bus message: queue
 * full; any: out of memory). */
static int post_all(fc_feed_relay *r, fc_feed_msg *m)
{
    int refused = 0;
    uv_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_feeds; i++)
        if (fc_feed_post(r->feeds[i], m) != 0) {
            __atomic_add_fetch(&r->dropped, m->n, __ATOMIC_RELAXED);
            refused++;
        }
    uv_mutex_unlock(&r->lock);
    return refused;
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- heard transactions (any thread, under heard_lock) ---- */

static void hear(fc_feed_relay *r, const fc_bus_change *cs, size_t n)
{
    uv_mutex_lock(&r->heard_lock);
    for (size_t i = 0; i < n; i++)
        if (cs[i].txid > 0 && cs[i].txn_changes > 0)
            fc__heard_add(&r->heard, cs[i].txid, cs[i].txn_changes);
    uv_mutex_unlock(&r->heard_lock);
}

static void miss(fc_feed_relay *r, int64_t lo, int64_t hi)
{
    uv_mutex_lock(&r->heard_lock);
    if (lo < r->missed_lo) r->missed_lo = lo;
    if (hi > r->missed_hi) r->missed_hi = hi;
    uv_mutex_unlock(&r->heard_lock);
}

/* A message some feed's queue refused: its transactions are read again. */
static void queue_refused(fc_feed_relay *r, const fc_bus_change *cs, size_t n)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (size_t i = 0; i < n; i++)
        if (cs[i].txid > 0) {
            if (cs[i].txid < lo) lo = cs[i].txid;
            if (cs[i].txid > hi) hi = cs[i].txid;
        }
    if (lo <= hi) miss(r, lo, hi);
}

/* ---- the bus's side (its threads) ---- */

/* Logs malformed messages at most once per ALARM_LOG_NS with the count
 * since: anyone on NATS can flood the subject, and a line per message
 * would turn the flood into one of the log. */
static void malformed(fc_feed_relay *r, const char *subject, size_t len)
{
    uint64_t n = __atomic_add_fetch(&r->malformed, 1, __ATOMIC_RELAXED);
    uint64_t now = fc_time_mono_ns(),
             last = __atomic_load_n(&r->malformed_log_ns, __ATOMIC_RELAXED);
    if (last != 0 && now - last < ALARM_LOG_NS) return;
    if (!__atomic_compare_exchange_n(&r->malformed_log_ns, &last, now, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;
    uint64_t since = n - __atomic_exchange_n(&r->malformed_logged, n, __ATOMIC_RELAXED);
    FC_WARN("bus", "dropped %llu malformed message(s); the last on %s (%zu bytes)",
            (unsigned long long)since, subject, len);
}

/* A probe on this node's subject that it did not send: another node runs
 * with the same --node-id, and each skips the other's changes as its own
 * (they come only through the catch-up). Told in /readyz while it lasts,
 * and in the log at most once per ALARM_LOG_NS. Any thread. */
static void twin_probe(fc_feed_relay *r, uint64_t now)
{
    __atomic_store_n(&r->twin_rx_ns, now, __ATOMIC_RELAXED);
    uint64_t last = __atomic_load_n(&r->twin_log_ns, __ATOMIC_RELAXED);
    if (last != 0 && now - last < ALARM_LOG_NS) return;
    if (!__atomic_compare_exchange_n(&r->twin_log_ns, &last, now, 0, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;
    FC_ERROR("bus",
             "another node uses --node-id %s: each skips the other's changes as its "
             "own; give every node its own id",
             r->node);
}

static void on_bus_message(void *ud, const char *subject, const char *data, size_t len)
{
    fc_feed_relay *r = ud;
    if (strcmp(subject, r->probe_subject) == 0) {
        uint64_t now = fc_time_mono_ns();
        if (len == 16 && memcmp(data, r->probe_token, 16) == 0)
            __atomic_store_n(&r->probe_rx_ns, now, __ATOMIC_RELAXED);
        else
            twin_probe(r, now);
        return;
    }
    if (fc_bus_from(data, len, r->node)) return; /* ours: already fed locally */
    fc_bus_batch b;
    if (fc_bus_decode(data, len, &b) != 0) {
        malformed(r, subject, len);
        return;
    }
    __atomic_add_fetch(&r->msgs_in, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&r->changes_in, b.n, __ATOMIC_RELAXED);
    fc_feed_msg *m = fc_feed_msg_bus(&b);
    if (!m) {
        free(b.changes);
        return; /* out of memory: the catch-up brings them */
    }
    /* Heard before it is posted: a feed may drop a change of it (and name
     * its transaction) before post_all returns, and the miss must come
     * after the mark to undo it. */
    hear(r, m->changes, m->n);
    if (post_all(r, m) > 0) queue_refused(r, m->changes, m->n);
    fc_feed_msg_unref(m);
}

static void on_bus_state(void *ud, int up)
{
    fc_feed_relay *r = ud;
    __atomic_store_n(&r->up, up, __ATOMIC_RELAXED);
    if (!up) return;
    uv_mutex_lock(&r->lock);
    if (!r->stopping) uv_async_send(&r->kick); /* what was missed meanwhile: read the log now */
    uv_mutex_unlock(&r->lock);
}

/* ---- the home loop's side ---- */

/* The rows of one read, posted together as one message once it is done. */
typedef struct catchup {
    fc_feed_relay *r;
    fc_feed_msg *m;
    int rows;
} catchup;

static int catchup_row(void *ud, const fc_workflow *state, int deleted, int64_t txid)
{
    catchup *c = ud;
    c->rows++;
    FC_METRIC_ADD(catchup_changes, 1);
    if (!c->m) {
        c->m = fc_feed_msg_new(state, deleted, txid, FC_FEED_CATCHUP, 0);
        return c->m ? 0 : -1;
    }
    return fc_feed_msg_add(c->m, state, deleted, txid) == 0 ? 0 : -1;
}

/* log_since's heard (its ud is the read's, as fn's). */
static int heard_whole(void *ud, int64_t txid)
{
    fc_feed_relay *r = ((catchup *)ud)->r;
    uv_mutex_lock(&r->heard_lock);
    int whole = fc__heard_whole(&r->heard, txid);
    uv_mutex_unlock(&r->heard_lock);
    FC_METRIC_ADD(catchup_heard, whole);
    return whole;
}

/* Where the next read starts, after the misses since the last one: back at
 * the lowest transaction missed, reading whole up to the highest. */
static void take_misses(fc_feed_relay *r)
{
    int64_t lo, hi;
    uv_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_feeds; i++)
        if (fc_feed_missed(r->feeds[i], &lo, &hi)) miss(r, lo, hi);
    uv_mutex_unlock(&r->lock);
    uv_mutex_lock(&r->heard_lock);
    lo = r->missed_lo;
    hi = r->missed_hi;
    r->missed_lo = INT64_MAX;
    r->missed_hi = INT64_MIN;
    uv_mutex_unlock(&r->heard_lock);
    if (lo > hi) return;
    if (lo < r->position) r->position = lo;
    if (hi > r->full_until) r->full_until = hi;
}

/* The read moved the position: what lies below it is never asked again. */
static void forget_heard(fc_feed_relay *r)
{
    uv_mutex_lock(&r->heard_lock);
    fc__heard_forget_below(&r->heard, r->position);
    FC_METRIC_SET(bus_heard, (int64_t)r->heard.count);
    FC_METRIC_SET(bus_heard_full, r->heard.full);
    uv_mutex_unlock(&r->heard_lock);
}

/* Whether some feed's queue is full (--bus-queue). */
static int any_full(fc_feed_relay *r)
{
    int full = 0;
    uv_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_feeds && !full; i++)
        full = fc_feed_full(r->feeds[i]);
    uv_mutex_unlock(&r->lock);
    return full;
}

/* One read of the commit log; returns the ms until the next: none after a
 * full batch, FULL_MS while a feed's queue is full or after a read a feed
 * refused (a feed hands on a bounded batch a turn), else the interval. The
 * feeds take a read past --bus-queue, so the catch-up reads only while
 * every queue has room: a queue holds at most --bus-queue plus one read. */
#define FULL_MS 10
static uint64_t catchup_once(fc_feed_relay *r)
{
    uint64_t ms = (uint64_t)(r->cfg.catchup_interval * 1000);
    if (!ms) ms = 1;
    uint64_t soon = ms < FULL_MS ? ms : FULL_MS;
    if (any_full(r)) return soon;
    if (r->position < 0) {
        int64_t head = 0;
        if (fc_store_log_head(r->store, &head) != 0) return ms;
        r->position = head; /* what came before is in the store for readers */
        return ms;
    }
    take_misses(r);
    catchup c = {.r = r};
    int64_t next = r->position;
    FC_METRIC_ADD(catchup_reads, 1);
    fc_store_heard_fn heard = r->position <= r->full_until ? NULL : heard_whole;
    int rc = fc_store_log_since(r->store, r->position, r->cfg.catchup_batch, heard, catchup_row,
                                &c, &next);
    /* What was read goes on even when the read failed half-way: the
     * feed drops what it had already. A read a feed refused (out of
     * memory) does not move the position: the next read gives its rows
     * again (the feeds that took them drop the repeats); past the
     * position nothing would ever bring them back. */
    int refused = c.m && post_all(r, c.m) > 0;
    fc_feed_msg_unref(c.m);
    if (rc != 0) {
        if (!r->catchup_failed) FC_WARN("feed", "cannot read the store's commit log; retrying");
        r->catchup_failed = 1;
        return ms;
    }
    if (r->catchup_failed) FC_INFO("feed", "reading the store's commit log again");
    r->catchup_failed = 0;
    if (refused) return soon;
    r->position = next;
    forget_heard(r);
    return c.rows >= r->cfg.catchup_batch ? 0 : ms;
}

static void on_catchup(uv_timer_t *t)
{
    fc_feed_relay *r = t->data;
    uv_timer_start(&r->catchup_timer, on_catchup, catchup_once(r), 0);
}

static void on_kick(uv_async_t *h)
{
    fc_feed_relay *r = h->data;
    if (r->started) uv_timer_start(&r->catchup_timer, on_catchup, 0, 0);
}

static void on_probe(uv_timer_t *t)
{
    fc_feed_relay *r = t->data;
    r->bus->ops->publish(r->bus, r->probe_subject, r->probe_token, 16);
    /* The bus's process-wide figures, into this loop's metrics shard. */
    FC_METRIC_SET(bus_messages_in, __atomic_load_n(&r->msgs_in, __ATOMIC_RELAXED));
    FC_METRIC_SET(bus_changes_in, __atomic_load_n(&r->changes_in, __ATOMIC_RELAXED));
    FC_METRIC_SET(bus_malformed, __atomic_load_n(&r->malformed, __ATOMIC_RELAXED));
    FC_METRIC_SET(bus_dropped, __atomic_load_n(&r->dropped, __ATOMIC_RELAXED));
    FC_METRIC_SET(bus_up, __atomic_load_n(&r->up, __ATOMIC_RELAXED));
}

fc_feed_relay *fc_feed_relay_new(uv_loop_t *home, fc_store *home_store,
                                 const fc_feed_relay_config *cfg, int *code, char *err,
                                 size_t errlen)
{
    *code = FC_EINVAL;
    if (cfg->bus && !fc_store_has_log(home_store)) {
        snprintf(err, errlen,
                 "--nats needs a store that several nodes share (--db postgres://...); "
                 "the %s store belongs to one process",
                 home_store->ops->name);
        return NULL;
    }
    if (cfg->node_id && strlen(cfg->node_id) > FC_BUS_NODE_MAX) {
        snprintf(err, errlen, "--node-id: at most %d characters", FC_BUS_NODE_MAX);
        return NULL;
    }
    *code = FC_ENOMEM;
    fc_feed_relay *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    if (r->cfg.catchup_batch < 1) r->cfg.catchup_batch = 1000;
    r->home = home;
    r->store = home_store;
    r->position = -1;
    r->full_until = -1;
    r->missed_lo = INT64_MAX;
    r->missed_hi = INT64_MIN;
    if (fc__heard_init(&r->heard, (size_t)(cfg->heard_max > 0 ? cfg->heard_max : 65536)) != 0) {
        snprintf(err, errlen, "out of memory");
        free(r);
        return NULL;
    }
    snprintf(r->node, sizeof r->node, "%s", cfg->node_id ? cfg->node_id : "");
    if (cfg->urls) fc_bus_urls_mask(cfg->urls, r->urls_shown, sizeof r->urls_shown);
    snprintf(r->probe_subject, sizeof r->probe_subject, "%s%s", FC_BUS_PROBE_PREFIX, r->node);
    uint64_t token;
    if (getrandom(&token, sizeof token, 0) != (ssize_t)sizeof token)
        token = fc_time_mono_ns() ^ ((uint64_t)getpid() << 32);
    snprintf(r->probe_token, sizeof r->probe_token, "%016llx", (unsigned long long)token);
    if (fc_bus_writer_init(&r->out, r->node) != 0) {
        snprintf(err, errlen, "out of memory");
        fc__heard_free(&r->heard);
        free(r);
        return NULL;
    }
    uv_mutex_init(&r->lock);
    uv_mutex_init(&r->heard_lock);
    uv_timer_init(home, &r->catchup_timer);
    uv_timer_init(home, &r->probe_timer);
    uv_async_init(home, &r->kick, on_kick);
    uv_check_init(home, &r->flush);
    r->catchup_timer.data = r->probe_timer.data = r->kick.data = r->flush.data = r;
    return r;
}

int fc_feed_relay_add(fc_feed_relay *r, fc_feed *f)
{
    int rc = 0;
    uv_mutex_lock(&r->lock);
    if (r->n_feeds == MAX_FEEDS)
        rc = FC_ENOMEM;
    else
        r->feeds[r->n_feeds++] = f;
    uv_mutex_unlock(&r->lock);
    return rc;
}

void fc_feed_relay_remove(fc_feed_relay *r, fc_feed *f)
{
    uv_mutex_lock(&r->lock);
    for (int i = 0; i < r->n_feeds; i++)
        if (r->feeds[i] == f) {
            r->feeds[i] = r->feeds[--r->n_feeds];
            break;
        }
    uv_mutex_unlock(&r->lock);
}

int fc_feed_relay_start(fc_feed_relay *r, char *err, size_t errlen)
{
    if (!fc_store_has_log(r->store)) return 0; /* one process: nothing to relay */
    if (r->cfg.bus) {
        const char *subjects[] = {FC_BUS_SUBJECT, r->probe_subject};
        fc_bus_config bc = {.urls = r->cfg.urls,
                            .node_id = r->node,
                            .secure = r->cfg.secure,
                            .subjects = subjects,
                            .n_subjects = 2};
        fc_bus_handlers h = {.message = on_bus_message, .state = on_bus_state, .ud = r};
        r->bus = r->cfg.bus->open(&bc, &h, err, errlen);
        if (!r->bus) return -1;
        uv_timer_start(&r->probe_timer, on_probe, 0, PROBE_MS);
    }
    r->started = 1;
    uv_timer_start(&r->catchup_timer, on_catchup, 0, 0);
    return 0;
}

/* Publishes the message being written, if any. Home loop. */
static void flush_out(fc_feed_relay *r)
{
    if (r->out.n == 0) return;
    size_t len = 0;
    const char *msg = fc_bus_writer_finish(&r->out, realtime_ns(), &len);
    /* A refused or lost message costs latency, not the changes: the catch-up. */
    if (r->bus->ops->publish(r->bus, FC_BUS_SUBJECT, msg, len) == 0) {
        FC_METRIC_ADD(bus_messages_out, 1);
        FC_METRIC_ADD(bus_changes_out, r->out.n);
    }
    fc_bus_writer_reset(&r->out);
}

/* The end of a turn of the home loop (after its I/O callbacks, where the
 * store tells it of commits): what it heard of goes out as one message. */
static void on_flush(uv_check_t *h)
{
    fc_feed_relay *r = h->data;
    flush_out(r);
    uv_check_stop(h);
}

/* The message's cap: the servers' max_payload, FC_BUS_MESSAGE_MAX until
 * one said. */
static size_t message_max(fc_feed_relay *r)
{
    size_t max = r->bus->ops->max_payload(r->bus);
    return max ? max : FC_BUS_MESSAGE_MAX;
}

void fc_feed_relay_publish(fc_feed_relay *r, const fc_workflow *state,
                           const fc_store_commit *commit, int deleted)
{
    /* Ours: the catch-up need not read it back (bus or none). */
    if (commit->txid > 0) {
        fc_bus_change own = {.txid = commit->txid, .txn_changes = commit->txn_changes};
        hear(r, &own, 1);
    }
    if (!r->bus) return;
    size_t max = message_max(r);
    int rc = fc_bus_writer_add(&r->out, state, deleted, commit->txid, commit->txn_changes, max);
    if (rc == 1 && r->out.n > 0) { /* full: this one starts the next message */
        flush_out(r);
        rc = fc_bus_writer_add(&r->out, state, deleted, commit->txid, commit->txn_changes, max);
    }
    if (rc != 0) {
        /* Longer than any message may be, or out of memory: other nodes
         * get it from the catch-up. */
        FC_METRIC_ADD(bus_unsent, 1);
        return;
    }
    if (!r->started) { /* stopping: no turn end to wait for */
        flush_out(r);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&r->flush)) uv_check_start(&r->flush, on_flush);
}

int fc_feed_relay_health(fc_feed_relay *r, char *why, size_t whylen)
{
    if (!r || !r->bus) return 0;
    if (!__atomic_load_n(&r->up, __ATOMIC_RELAXED)) {
        snprintf(why, whylen, "not connected to any NATS server of %s", r->urls_shown);
        return -1;
    }
    uint64_t rx = __atomic_load_n(&r->probe_rx_ns, __ATOMIC_RELAXED);
    if (rx == 0 || fc_time_mono_ns() - rx > PROBE_STALE_NS) {
        snprintf(why, whylen, "this node's probe message has not come back through the bus");
        return -1;
    }
    uint64_t twin = __atomic_load_n(&r->twin_rx_ns, __ATOMIC_RELAXED);
    if (twin != 0 && fc_time_mono_ns() - twin <= PROBE_STALE_NS) {
        snprintf(why, whylen,
                 "another node uses --node-id %s: each skips the other's changes as its own",
                 r->node);
        return -1;
    }
    return 0;
}

void fc_feed_relay_stop(fc_feed_relay *r)
{
    if (r->bus) flush_out(r);
    r->started = 0;
    uv_mutex_lock(&r->lock);
    r->stopping = 1;
    uv_mutex_unlock(&r->lock);
    uv_close((uv_handle_t *)&r->catchup_timer, NULL);
    uv_close((uv_handle_t *)&r->probe_timer, NULL);
    uv_close((uv_handle_t *)&r->kick, NULL);
    uv_close((uv_handle_t *)&r->flush, NULL);
}

void fc_feed_relay_free(fc_feed_relay *r)
{
    if (!r) return;
    if (r->bus) r->bus->ops->close(r->bus);
    fc_bus_writer_free(&r->out);
    fc__heard_free(&r->heard);
    uv_mutex_destroy(&r->heard_lock);
    uv_mutex_destroy(&r->lock);
    free(r);
}
