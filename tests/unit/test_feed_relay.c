/* Tests for src/feed/relay.c and src/bus/nats.c against a real nats-server
 * (started here on a free loopback port): changes published by one node
 * reach another node's feed in order; the probe makes the bus healthy; a
 * node without a bus gets everything through the catch-up alone; with the
 * broker stopped and started again, nothing is lost and health follows.
 * Both "nodes" share one fake store with a commit log (store ops v7: each
 * change its own transaction, whose id is its place in the log plus one),
 * and the catch-up leaves out what the bus brought, yet reads again what a
 * feed dropped. */
#include "feed/relay.h"
#include "common/error.h"
#include "metrics/metrics.h"

#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

/* ---- a fake shared store: one workflow "w" at epoch 7, every change logged ---- */

#define EP 7
#define MAXLOG 256
typedef struct shared_store {
    fc_store base;
    int64_t seq;         /* current seq of "w" */
    int64_t log[MAXLOG]; /* seqs in commit order */
    int n;
    int fail_events; /* events_since calls still to fail (the store unreachable) */
    int given;       /* rows log_since gave */
} shared_store;

static fc_workflow st(int64_t seq)
{
    fc_workflow w = {.epoch = EP, .seq = seq, .total_steps = 1000, .current_step = seq};
    snprintf(w.id, sizeof w.id, "w");
    w.name = "n";
    w.message = "m";
    w.created_at_ms = 1764547200000;
    w.updated_at_ms = 1764547200000 + seq;
    return w;
}

static int s_get(fc_store *s, const char *id, fc_workflow *out)
{
    shared_store *ss = (shared_store *)s;
    if (strcmp(id, "w") != 0 || ss->seq == 0) return FC_ENOTFOUND;
    fc_workflow w = st(ss->seq);
    return fc_workflow_copy(out, &w);
}

static int s_events_since(fc_store *s, const char *id, int64_t since, int limit, fc_store_row_cb cb,
                          void *ud, int64_t *oldest)
{
    shared_store *ss = (shared_store *)s;
    if (ss->fail_events > 0) {
        ss->fail_events--;
        return FC_EUNAVAILABLE;
    }
    if (strcmp(id, "w") != 0 || ss->seq == 0) return FC_ENOTFOUND;
    *oldest = 1;
    int n = 0;
    for (int64_t q = since + 1; q <= ss->seq && (limit <= 0 || n < limit); q++, n++) {
        fc_workflow w = st(q);
        if (cb(&w, ud)) break;
    }
    return 0;
}

static int s_tombstone(fc_store *s, const char *id, fc_tombstone *out)
{
    (void)s;
    (void)id;
    (void)out;
    return FC_ENOTFOUND;
}

/* Row i of the log is transaction i + 1; a position is the transaction
 * to read from. */
static int s_log_head(fc_store *s, int64_t *pos)
{
    *pos = ((shared_store *)s)->n + 1;
    return 0;
}

static int s_log_since(fc_store *s, int64_t after, int limit, fc_store_heard_fn heard,
                       fc_store_log_fn fn, void *ud, int64_t *next)
{
    shared_store *ss = (shared_store *)s;
    int64_t i = after > 0 ? after - 1 : 0;
    for (int rows = 0; i < ss->n && rows < limit; i++, rows++) {
        if (heard && heard(ud, i + 1)) continue;
        fc_workflow w = st(ss->log[i]);
        ss->given++;
        if (fn(ud, &w, 0, i + 1) != 0) break; /* come back to this row, as the real stores do */
    }
    *next = i + 1;
    return 0;
}

static const fc_store_ops shared_ops = {
    .version = 7,
    .name = "shared-fake",
    .get = s_get,
    .events_since = s_events_since,
    .tombstone = s_tombstone,
    .log_head = s_log_head,
    .log_since = s_log_since,
};

static const fc_store_ops single_ops = {.version = 5, .name = "single-fake"};

static fc_workflow commit(shared_store *s)
{
    s->seq++;
    s->log[s->n++] = s->seq;
    return st(s->seq);
}

/* ---- a sink that records seqs ---- */

typedef struct rec {
    int64_t seqs[MAXLOG * 2];
    int n;
} rec;

static void r_publish(void *ud, const fc_workflow *w, uint64_t commit_ns, int deleted)
{
    (void)commit_ns;
    (void)deleted;
    rec *r = ud;
    r->seqs[r->n++] = w->seq;
}

static void r_resync(void *ud, const fc_workflow *w)
{
    rec *r = ud;
    r->seqs[r->n++] = -w->seq;
}

static int r_floor(void *ud, const char *id, int64_t epoch, int64_t *seq, int64_t *other)
{
    (void)ud;
    (void)id;
    (void)epoch;
    *seq = 0; /* a watcher from the start */
    *other = 0;
    return 1;
}

static void expect_in_order(const rec *r, int n)
{
    assert_int_equal(r->n, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(r->seqs[i], i + 1);
}

/* ---- a nats-server ---- */

static pid_t nats_pid;
static int nats_port;
static char nats_url[64];

/* A free port below the kernel's ephemeral range (10000 up to it), from a
 * place given by the pid. Not bind(0): that hands out an ephemeral port,
 * which, while the broker is down between a stop and a start on the same
 * port, any connect() on the machine may take as its local port (another
 * test's, or the bus's own reconnect, a TCP self-connect), so that the
 * broker cannot come back. */
static int free_port(void)
{
    int lo = 10000, hi = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d", &hi) != 1) hi = 32768;
        fclose(f);
    }
    if (hi < lo + 2000) hi = lo + 2000;
    for (int i = 0; i < hi - lo; i++) {
        int port = lo + (int)(((unsigned)getpid() * 7919u + (unsigned)i) % (unsigned)(hi - lo));
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok) return port;
    }
    fail_msg("no free port in %d-%d", lo, hi);
    return -1;
}

static void nats_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", nats_port);
    nats_pid = fork();
    assert_true(nats_pid >= 0);
    if (nats_pid == 0) {
        int null = open("/dev/null", 1);
        dup2(null, 1);
        dup2(null, 2);
        execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port, (char *)NULL);
        execl("/usr/sbin/nats-server", "nats-server", "-a", "127.0.0.1", "-p", port, (char *)NULL);
        _exit(127);
    }
    /* Until it accepts. */
    for (int i = 0; i < 200; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)nats_port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok) return;
        usleep(50000);
    }
    fail_msg("nats-server did not start");
}

static void nats_stop(void)
{
    if (nats_pid <= 0) return;
    kill(nats_pid, SIGKILL);
    waitpid(nats_pid, NULL, 0);
    nats_pid = 0;
}

/* Runs the loop until cond(ud) or seconds pass; returns cond's last value. */
static int run_until(uv_loop_t *loop, int (*cond)(void *), void *ud, double seconds)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (cond(ud)) return 1;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 > seconds)
            return 0;
        usleep(2000);
    }
}

typedef struct node {
    fc_feed_relay *relay;
    fc_feed *feed;
    rec got;
} node;

static void node_start_q(node *n, uv_loop_t *loop, shared_store *s, const char *id, int bus,
                         double interval, size_t max_queue)
{
    fc_feed_sink sink = {.publish = r_publish, .resync = r_resync, .floor = r_floor, .ud = &n->got};
    fc_feed_config fcfg = {.max_workflows = 100, .max_queue = max_queue, .observe_lag = 1};
    n->feed = fc_feed_new(loop, &s->base, &sink, &fcfg);
    assert_non_null(n->feed);
    fc_feed_relay_config rc = {.bus = bus ? &fc_bus_nats : NULL,
                               .urls = nats_url,
                               .node_id = id,
                               .catchup_interval = interval,
                               .catchup_batch = 100};
    char err[256] = "";
    int code = 0;
    n->relay = fc_feed_relay_new(loop, &s->base, &rc, &code, err, sizeof err);
    assert_non_null(n->relay);
    assert_int_equal(fc_feed_relay_add(n->relay, n->feed), 0);
    assert_int_equal(fc_feed_relay_start(n->relay, err, sizeof err), 0);
}

static void node_start(node *n, uv_loop_t *loop, shared_store *s, const char *id, int bus,
                       double interval)
{
    node_start_q(n, loop, s, id, bus, interval, 10000);
}

static void node_stop(node *n, uv_loop_t *loop)
{
    fc_feed_relay_remove(n->relay, n->feed);
    fc_feed_close(n->feed);
    fc_feed_relay_stop(n->relay);
    uv_run(loop, UV_RUN_NOWAIT);
    fc_feed_relay_free(n->relay);
}

static int healthy(void *ud)
{
    char why[256];
    return fc_feed_relay_health(ud, why, sizeof why) == 0;
}

static int unhealthy(void *ud)
{
    return !healthy(ud);
}

typedef struct want {
    rec *r;
    int n;
} want;

static int has_n(void *ud)
{
    want *w = ud;
    return w->r->n >= w->n;
}

/* Runs the loop until r holds n changes, and checks they are seqs 1..n. */
static void expect_delivered(uv_loop_t *loop, rec *r, int n)
{
    want w = {r, n};
    assert_true(run_until(loop, has_n, &w, 10));
    expect_in_order(r, n);
}

/* A local commit on node a: its own feed, then the bus. */
static void commit_on(node *a, shared_store *s)
{
    fc_workflow w = commit(s);
    fc_store_commit c = {.txid = s->n, .txn_changes = 1};
    fc_feed_change(a->feed, &w, 0, 0, FC_FEED_LOCAL, c.txid);
    fc_feed_relay_publish(a->relay, &w, &c, 0);
}

/* One test's world: a loop, the shared store, and the nodes started on them. */
typedef struct world {
    uv_loop_t loop;
    shared_store s;
    node a, b;
} world;

static void world_init(world *w)
{
    memset(w, 0, sizeof *w);
    assert_int_equal(uv_loop_init(&w->loop), 0);
    w->s.base.ops = &shared_ops;
}

/* Nodes a and b on the bus, their catch-up far away (what one gets from the
 * other in time came over the bus); returns once both buses are healthy. */
static void world_two_nodes(world *w)
{
    world_init(w);
    node_start(&w->a, &w->loop, &w->s, "node-a", 1, 1000);
    node_start(&w->b, &w->loop, &w->s, "node-b", 1, 1000);
    assert_true(run_until(&w->loop, healthy, w->a.relay, 10));
    assert_true(run_until(&w->loop, healthy, w->b.relay, 10));
}

/* Stops the nodes and checks the loop ends empty. */
static void world_end(world *w)
{
    if (w->a.relay) node_stop(&w->a, &w->loop);
    if (w->b.relay) node_stop(&w->b, &w->loop);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&w->loop), 0);
}

static void test_bus_carries_changes_in_order(void **state)
{
    (void)state;
    world w;
    world_two_nodes(&w);
    for (int i = 0; i < 50; i++)
        commit_on(&w.a, &w.s);
    expect_delivered(&w.loop, &w.b.got, 50);
    expect_in_order(&w.a.got, 50); /* its own messages are not fed twice */
    world_end(&w);
}

/* The commits one loop turn hears of travel as one bus message (its
 * changes in commit order); past the servers' max_payload (1 MB by
 * default) a turn's commits are split over several messages, each of which
 * nats-server takes. */
static void test_a_turn_is_one_message(void **state)
{
    (void)state;
    world w;
    world_two_nodes(&w);
    uint64_t msgs = fc_metrics_g.bus_messages_out, changes = fc_metrics_g.bus_changes_out;
    for (int i = 0; i < 50; i++)
        commit_on(&w.a, &w.s);
    uv_run(&w.loop, UV_RUN_NOWAIT);
    assert_int_equal(fc_metrics_g.bus_messages_out - msgs, 1);
    assert_int_equal(fc_metrics_g.bus_changes_out - changes, 50);
    expect_delivered(&w.loop, &w.b.got, 50);
    static char big[60000];
    memset(big, 'x', sizeof big - 1);
    msgs = fc_metrics_g.bus_messages_out;
    for (int i = 0; i < 40; i++) { /* 2.4 MB in one turn */
        fc_workflow c = commit(&w.s);
        c.message = big;
        fc_store_commit at = {.txid = w.s.n, .txn_changes = 1};
        fc_feed_change(w.a.feed, &c, 0, 0, FC_FEED_LOCAL, at.txid);
        fc_feed_relay_publish(w.a.relay, &c, &at, 0);
    }
    uv_run(&w.loop, UV_RUN_NOWAIT);
    assert_true(fc_metrics_g.bus_messages_out - msgs >= 3);
    assert_int_equal(fc_metrics_g.bus_changes_out - changes, 90);
    assert_int_equal(fc_metrics_g.bus_unsent, 0);
    expect_delivered(&w.loop, &w.b.got, 90);
    world_end(&w);
}

static void test_catchup_alone_delivers_everything(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    node_start(&w.a, &w.loop, &w.s, "node-c", 0, 0.05);
    char why[64];
    assert_int_equal(fc_feed_relay_health(w.a.relay, why, sizeof why), 0); /* no bus to prove */
    uv_run(&w.loop, UV_RUN_NOWAIT); /* the first read takes the log's head */
    for (int i = 0; i < 30; i++) {
        commit(&w.s); /* committed by some other node that never published */
        if (i % 7 == 0) uv_run(&w.loop, UV_RUN_NOWAIT);
    }
    expect_delivered(&w.loop, &w.a.got, 30);
    world_end(&w);
}

/* More rows in one read of the log than the feed's queue takes (--bus-queue):
 * the rows it refused were once dropped while the read's position moved past
 * them, so the last changes of the burst never came. A catch-up read is now
 * always taken (a queue holds at most its bound plus one read) and the relay
 * reads only while no queue is full: every change comes, nothing dropped. */
static void test_catchup_longer_than_the_queue_delivers_everything(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    node_start_q(&w.a, &w.loop, &w.s, "node-q", 0, 0.02, 8);
    uv_run(&w.loop, UV_RUN_NOWAIT); /* the first read takes the log's head */
    for (int i = 0; i < 30; i++)
        commit(&w.s); /* committed elsewhere, one read's worth */
    expect_delivered(&w.loop, &w.a.got, 30);
    assert_int_equal(fc_feed_dropped(w.a.feed), 0);
    world_end(&w);
}

/* The log gives a workflow's seqs out of order when two nodes wrote it (a
 * transaction's id is taken at its first write, not at its commit): 5
 * before 4. The feed needs the store to fill the gap before 5; when it
 * cannot be read at that moment, 5 is dropped ("the catch-up brings it
 * again"), but the read had already moved past it: 4 came, 5 never did.
 * The feed tells the relay, whose next read starts where that one did. */
static void test_catchup_deferred_for_want_of_the_store_is_read_again(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    node_start(&w.a, &w.loop, &w.s, "node-d", 0, 0.02);
    uv_run(&w.loop, UV_RUN_NOWAIT); /* the first read takes the log's head */
    for (int i = 0; i < 3; i++)
        commit(&w.s);
    expect_delivered(&w.loop, &w.a.got, 3);
    w.s.fail_events = 1;
    w.s.seq = 5;
    w.s.log[w.s.n++] = 5;
    w.s.log[w.s.n++] = 4;
    expect_delivered(&w.loop, &w.a.got, 5);
    world_end(&w);
}

/* What the bus brought whole (and what a node committed itself) is not
 * read from the store again: the catch-up reads run, and give nothing. */
static void test_heard_transactions_are_not_read_again(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    node_start(&w.a, &w.loop, &w.s, "node-h1", 1, 0.02);
    node_start(&w.b, &w.loop, &w.s, "node-h2", 1, 0.02);
    assert_true(run_until(&w.loop, healthy, w.a.relay, 10));
    assert_true(run_until(&w.loop, healthy, w.b.relay, 10));
    uint64_t reads = fc_metrics_g.catchup_reads, heard = fc_metrics_g.catchup_heard;
    for (int i = 0; i < 40; i++)
        commit_on(&w.a, &w.s);
    expect_delivered(&w.loop, &w.b.got, 40);
    want more = {&w.b.got, 41}; /* never: just let the catch-up run a while */
    run_until(&w.loop, has_n, &more, 0.3);
    assert_true(fc_metrics_g.catchup_reads - reads >= 4);
    assert_int_equal(w.s.given, 0);
    assert_true(fc_metrics_g.catchup_heard - heard >= 40);
    expect_in_order(&w.a.got, 40);
    world_end(&w);
}

/* A change the bus brought (so heard) that a feed then dropped for want of
 * the store, to fill the gap before it: the catch-up must read it although
 * it was heard. Seq 4 is committed by a node that never published; 5 comes
 * over the bus, its gap fill fails, and the read that brings 4 would leave
 * 5 out as heard: b stopped at 4. */
static void test_heard_but_dropped_is_read_again(void **state)
{
    (void)state;
    world w;
    world_init(&w);
    node_start(&w.a, &w.loop, &w.s, "node-m1", 1, 1000);
    node_start(&w.b, &w.loop, &w.s, "node-m2", 1, 0.3);
    assert_true(run_until(&w.loop, healthy, w.a.relay, 10));
    assert_true(run_until(&w.loop, healthy, w.b.relay, 10));
    for (int i = 0; i < 3; i++)
        commit_on(&w.a, &w.s);
    expect_delivered(&w.loop, &w.b.got, 3);
    commit(&w.s); /* 4: its node died before publishing */
    fc_workflow five = commit(&w.s);
    fc_store_commit at = {.txid = w.s.n, .txn_changes = 1};
    fc_feed_change(w.a.feed, &five, 0, 0, FC_FEED_LOCAL, at.txid); /* a fills 4 itself */
    w.s.fail_events = 1; /* b's fill before 5 */
    fc_feed_relay_publish(w.a.relay, &five, &at, 0);
    expect_delivered(&w.loop, &w.b.got, 5);
    assert_int_equal(w.s.fail_events, 0);
    world_end(&w);
}

static void test_broker_restart_loses_nothing(void **state)
{
    (void)state;
    world w;
    world_two_nodes(&w);
    for (int i = 0; i < 10; i++)
        commit_on(&w.a, &w.s);
    nats_stop();
    assert_true(run_until(&w.loop, unhealthy, w.b.relay, 10));
    for (int i = 0; i < 10; i++)
        commit_on(&w.a, &w.s); /* published into the void (or a reconnect buffer) */
    nats_start();
    assert_true(run_until(&w.loop, healthy, w.b.relay, 20));
    /* The reconnect triggers a read of the log: all 20 in order. */
    expect_delivered(&w.loop, &w.b.got, 20);
    world_end(&w);
}

static void test_bus_refused_on_single_process_store(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    fc_store single = {.ops = &single_ops};
    fc_feed_relay_config rc = {.bus = &fc_bus_nats, .urls = nats_url, .node_id = "x"};
    char err[256] = "";
    int code = 0;
    assert_null(fc_feed_relay_new(&loop, &single, &rc, &code, err, sizeof err));
    assert_int_equal(code, FC_EINVAL);
    assert_non_null(strstr(err, "--nats"));
    assert_false(fc_store_has_log(&single));
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    nats_port = free_port();
    snprintf(nats_url, sizeof nats_url, "nats://127.0.0.1:%d", nats_port);
    nats_start();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nats_stop();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_carries_changes_in_order),
        cmocka_unit_test(test_a_turn_is_one_message),
        cmocka_unit_test(test_catchup_alone_delivers_everything),
        cmocka_unit_test(test_catchup_longer_than_the_queue_delivers_everything),
        cmocka_unit_test(test_catchup_deferred_for_want_of_the_store_is_read_again),
        cmocka_unit_test(test_heard_transactions_are_not_read_again),
        cmocka_unit_test(test_heard_but_dropped_is_read_again),
        cmocka_unit_test(test_broker_restart_loses_nothing),
        cmocka_unit_test(test_bus_refused_on_single_process_store),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
