/* Unit tests for src/feed: per-workflow order, duplicates, gap fills from
 * the event log, late arrivals, the end of an incarnation, resyncs when the
 * log cannot fill, the bound on entries, and the cross-thread queue. The
 * store is a small fake ops table (one incarnation's log per id). */
#include "feed/feed.h"
#include "common/error.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* ---- a fake store: per id, the current incarnation's log and a tombstone ---- */

#define LOG_MAX 64
typedef struct fake_wf {
    char id[FC_ID_MAX + 1];
    int exists;
    int64_t epoch;
    int64_t seq;    /* current */
    int64_t oldest; /* lowest seq still logged */
    fc_tombstone tomb;
    int has_tomb;
} fake_wf;

typedef struct fake_store {
    fc_store base;
    fake_wf wfs[16];
    int n;
    int fail; /* reads answer FC_EIO, or this code when negative */
    int reads;
} fake_store;

static fake_wf *fake_find(fake_store *s, const char *id)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->wfs[i].id, id) == 0) return &s->wfs[i];
    return NULL;
}

static fc_workflow state_of(const char *id, int64_t epoch, int64_t seq)
{
    fc_workflow w = {.epoch = epoch, .seq = seq, .current_step = seq, .total_steps = 1000};
    snprintf(w.id, sizeof w.id, "%s", id);
    w.name = "n";
    w.message = "m";
    return w;
}

static int fake_get(fc_store *st, const char *id, fc_workflow *out)
{
    fake_store *s = (fake_store *)st;
    s->reads++;
    if (s->fail) return s->fail < 0 ? s->fail : FC_EIO;
    fake_wf *w = fake_find(s, id);
    if (!w || !w->exists) return FC_ENOTFOUND;
    fc_workflow v = state_of(id, w->epoch, w->seq);
    return fc_workflow_copy(out, &v);
}

static int fake_events_since(fc_store *st, const char *id, int64_t since, int limit,
                             fc_store_row_cb cb, void *ud, int64_t *oldest)
{
    fake_store *s = (fake_store *)st;
    s->reads++;
    if (s->fail) return s->fail < 0 ? s->fail : FC_EIO;
    fake_wf *w = fake_find(s, id);
    if (!w || !w->exists) return FC_ENOTFOUND;
    *oldest = w->oldest;
    int n = 0;
    for (int64_t q = since + 1 < w->oldest ? w->oldest : since + 1; q <= w->seq; q++) {
        if (limit > 0 && n++ >= limit) break;
        fc_workflow v = state_of(id, w->epoch, q);
        if (cb(&v, ud)) break;
    }
    return 0;
}

static int fake_tombstone(fc_store *st, const char *id, fc_tombstone *out)
{
    fake_store *s = (fake_store *)st;
    if (s->fail) return s->fail < 0 ? s->fail : FC_EIO;
    fake_wf *w = fake_find(s, id);
    if (!w || !w->has_tomb) return FC_ENOTFOUND;
    *out = w->tomb;
    return 0;
}

static const fc_store_ops fake_ops = {
    .version = 5,
    .name = "fake",
    .get = fake_get,
    .events_since = fake_events_since,
    .tombstone = fake_tombstone,
};

/* Commits change seq of id (creating it at epoch when new). */
static void fake_commit(fake_store *s, const char *id, int64_t epoch, int64_t seq)
{
    fake_wf *w = fake_find(s, id);
    if (!w) {
        w = &s->wfs[s->n++];
        snprintf(w->id, sizeof w->id, "%s", id);
    }
    if (!w->exists || w->epoch != epoch) {
        w->exists = 1;
        w->epoch = epoch;
        w->oldest = 1;
    }
    w->seq = seq;
}

static void fake_delete(fake_store *s, const char *id)
{
    fake_wf *w = fake_find(s, id);
    w->exists = 0;
    w->has_tomb = 1;
    w->tomb = (fc_tombstone){.epoch = w->epoch, .seq = w->seq + 1, .deleted_at_ms = 1};
}

/* ---- a fake sink: what reached the hub, and the subscribers' positions ---- */

typedef struct got {
    char id[FC_ID_MAX + 1];
    int64_t epoch, seq;
    int deleted, resync;
} got;

typedef struct sink {
    got g[512];
    int n;
    /* one subscriber per test is enough: its (epoch, seq), or epoch 0 for none */
    int64_t sub_epoch, sub_seq;
    int64_t stale[8]; /* and subscribers of other incarnations (0: none) */
} sink;

static void s_publish(void *ud, const fc_workflow *st, uint64_t commit_ns, int deleted)
{
    (void)commit_ns;
    sink *s = ud;
    got *g = &s->g[s->n++];
    snprintf(g->id, sizeof g->id, "%s", st->id);
    g->epoch = st->epoch;
    g->seq = deleted ? st->seq + 1 : st->seq;
    g->deleted = deleted;
    for (int i = 0; deleted && i < 8; i++)
        if (s->stale[i] == st->epoch) s->stale[i] = 0;
    if (s->sub_epoch == st->epoch) {
        if (deleted)
            s->sub_epoch = 0;
        else if (st->seq > s->sub_seq)
            s->sub_seq = st->seq;
    }
}

static void s_resync(void *ud, const fc_workflow *st)
{
    sink *s = ud;
    got *g = &s->g[s->n++];
    snprintf(g->id, sizeof g->id, "%s", st->id);
    g->epoch = st->epoch;
    g->seq = st->seq;
    g->resync = 1;
}

static int s_floor(void *ud, const char *id, int64_t epoch, int64_t *seq, int64_t *other)
{
    (void)id;
    sink *s = ud;
    *other = s->sub_epoch && s->sub_epoch != epoch ? s->sub_epoch : 0;
    for (int i = 0; !*other && i < 8; i++)
        if (s->stale[i] && s->stale[i] != epoch) *other = s->stale[i];
    if (s->sub_epoch != epoch) return 0;
    *seq = s->sub_seq;
    return 1;
}

typedef struct fx {
    uv_loop_t loop;
    fake_store store;
    sink sink;
    fc_feed *feed;
} fx;

static fx *fx_new_queue(size_t max_workflows, size_t max_queue)
{
    fx *x = calloc(1, sizeof *x);
    uv_loop_init(&x->loop);
    x->store.base.ops = &fake_ops;
    fc_feed_sink sk = {.publish = s_publish, .resync = s_resync, .floor = s_floor, .ud = &x->sink};
    fc_feed_config cfg = {.max_workflows = max_workflows, .max_queue = max_queue};
    x->feed = fc_feed_new(&x->loop, &x->store.base, &sk, &cfg);
    assert_non_null(x->feed);
    return x;
}

static fx *fx_new(size_t max_workflows)
{
    return fx_new_queue(max_workflows, 4);
}

static void fx_free(fx *x)
{
    fc_feed_close(x->feed);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    free(x);
}

/* A change arriving (committed in the fake store first, as in life). */
static void arrive(fx *x, const char *id, int64_t epoch, int64_t seq)
{
    fc_workflow w = state_of(id, epoch, seq);
    fc_feed_change(x->feed, &w, 0, 0, FC_FEED_BUS, 0);
}

static void arrive_deleted(fx *x, const char *id, int64_t epoch, int64_t seq_before)
{
    fc_workflow w = state_of(id, epoch, seq_before);
    fc_feed_change(x->feed, &w, 0, 1, FC_FEED_BUS, 0);
}

static void expect_seqs(fx *x, int64_t epoch, int from, int to)
{
    assert_int_equal(x->sink.n, to - from + 1);
    for (int i = 0; i < x->sink.n; i++) {
        assert_int_equal(x->sink.g[i].epoch, epoch);
        assert_int_equal(x->sink.g[i].seq, from + i);
        assert_int_equal(x->sink.g[i].deleted, 0);
        assert_int_equal(x->sink.g[i].resync, 0);
    }
}

#define E1 11
#define E2 22

static void test_in_order_and_duplicates(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    for (int s = 1; s <= 5; s++) {
        fake_commit(&x->store, "a", E1, s);
        arrive(x, "a", E1, s);
        arrive(x, "a", E1, s); /* the catch-up brings it again */
    }
    arrive(x, "a", E1, 3); /* late */
    expect_seqs(x, E1, 1, 5);
    /* The first, for a workflow without an entry, is checked against the
     * store (anyone may publish on the bus); in order after it, no read. */
    assert_int_equal(x->store.reads, 1);
    fx_free(x);
}

static void test_gap_filled_before_later_change(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 1);
    arrive(x, "a", E1, 1);
    fake_commit(&x->store, "a", E1, 4); /* 2, 3 and 4 committed elsewhere */
    arrive(x, "a", E1, 4);              /* 2 and 3 lost on the way */
    arrive(x, "a", E1, 2);              /* late arrivals after the fill */
    arrive(x, "a", E1, 3);
    expect_seqs(x, E1, 1, 4);
    fx_free(x);
}

static void test_fresh_workflow_anchored_on_subscriber(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    /* A subscriber read seq 2 from the store; the bus brings 5 first. */
    x->sink.sub_epoch = E1;
    x->sink.sub_seq = 2;
    fake_commit(&x->store, "a", E1, 5);
    arrive(x, "a", E1, 5);
    expect_seqs(x, E1, 3, 5);
    fx_free(x);
}

static void test_fresh_workflow_without_subscribers(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 7);
    arrive(x, "a", E1, 7);
    arrive(x, "a", E1, 6); /* older than what was handed on */
    expect_seqs(x, E1, 7, 7);
    assert_int_equal(x->store.reads, 1); /* the new entry's check */
    fx_free(x);
}

static void test_pruned_log_gives_resync(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 1);
    arrive(x, "a", E1, 1);
    fake_commit(&x->store, "a", E1, 9);
    x->store.wfs[0].oldest = 6; /* retention dropped 2..5 */
    arrive(x, "a", E1, 9);
    assert_int_equal(x->sink.n, 2);
    assert_int_equal(x->sink.g[1].seq, 9);
    assert_int_equal(x->sink.g[1].resync, 1);
    arrive(x, "a", E1, 8); /* late: dropped */
    fake_commit(&x->store, "a", E1, 10);
    arrive(x, "a", E1, 10);
    assert_int_equal(x->sink.n, 3);
    assert_int_equal(x->sink.g[2].seq, 10);
    assert_int_equal(x->sink.g[2].resync, 0);
    fx_free(x);
}

static void test_store_down_defers(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 1);
    arrive(x, "a", E1, 1);
    fake_commit(&x->store, "a", E1, 3);
    x->store.fail = 1;
    arrive(x, "a", E1, 3); /* cannot fill: left to the catch-up, nothing skipped */
    assert_int_equal(x->sink.n, 1);
    x->store.fail = 0;
    arrive(x, "a", E1, 3); /* the catch-up brings it again */
    expect_seqs(x, E1, 1, 3);
    fx_free(x);
}

/* PostgreSQL unreachable answers FC_EUNAVAILABLE: the gap waits for the
 * catch-up like any unreadable store, never a resync the log does not call for. */
static void test_store_unavailable_defers(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 1);
    arrive(x, "a", E1, 1);
    fake_commit(&x->store, "a", E1, 3);
    x->store.fail = FC_EUNAVAILABLE;
    fc_workflow w = state_of("a", E1, 3);
    fc_feed_change(x->feed, &w, 0, 0, FC_FEED_LOCAL, 0);
    assert_int_equal(x->sink.n, 1);
    x->store.fail = 0;
    fc_feed_change(x->feed, &w, 0, 0, FC_FEED_CATCHUP, 0);
    expect_seqs(x, E1, 1, 3);
    fx_free(x);
}

static void test_deletion_then_new_incarnation(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    x->sink.sub_epoch = E1;
    fake_commit(&x->store, "a", E1, 1);
    arrive(x, "a", E1, 1);
    fake_commit(&x->store, "a", E1, 2);
    fake_delete(&x->store, "a");
    arrive_deleted(x, "a", E1, 2); /* the deletion overtakes change 2 */
    fake_commit(&x->store, "a", E2, 1);
    arrive(x, "a", E2, 1);
    arrive(x, "a", E1, 2); /* late: its incarnation is over */
    assert_int_equal(x->sink.n, 3);
    assert_int_equal(x->sink.g[1].deleted, 1);
    assert_int_equal(x->sink.g[1].epoch, E1);
    assert_int_equal(x->sink.g[1].seq, 3);
    assert_int_equal(x->sink.g[2].epoch, E2);
    assert_int_equal(x->sink.g[2].seq, 1);
    fx_free(x);
}

/* Changes of an incarnation that arrive in order but are taken in only
 * after it was deleted (a slow loop, a delete-recreate storm): its
 * subscribers still get them, vouched for by the tombstone, then the end. */
static void test_changes_of_an_incarnation_deleted_since(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 1);
    arrive(x, "a", E1, 1);
    fake_delete(&x->store, "a");
    arrive_deleted(x, "a", E1, 1);
    fake_commit(&x->store, "a", E2, 3);
    fake_delete(&x->store, "a"); /* E2 ended at seq 4 before its changes came */
    x->sink.sub_epoch = E2;
    x->sink.sub_seq = 1;
    int before = x->sink.n;
    arrive(x, "a", E2, 2);
    arrive(x, "a", E2, 3);
    arrive_deleted(x, "a", E2, 3);
    assert_int_equal(x->sink.n, before + 3);
    assert_int_equal(x->sink.g[before].epoch, E2);
    assert_int_equal(x->sink.g[before].seq, 2);
    assert_int_equal(x->sink.g[before + 1].seq, 3);
    assert_int_equal(x->sink.g[before + 2].deleted, 1);
    arrive(x, "a", E2, 2); /* late again: dropped */
    assert_int_equal(x->sink.n, before + 3);
    fx_free(x);
}

static void test_missed_deletion_told_before_next_incarnation(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 1);
    arrive(x, "a", E1, 1);
    fake_commit(&x->store, "a", E1, 4);
    fake_delete(&x->store, "a");
    fake_commit(&x->store, "a", E2, 2); /* re-created and changed once */
    arrive(x, "a", E2, 2);              /* the deletion and E2's seq 1 were lost */
    assert_int_equal(x->sink.n, 3);
    assert_int_equal(x->sink.g[1].deleted, 1);
    assert_int_equal(x->sink.g[1].epoch, E1);
    assert_int_equal(x->sink.g[1].seq, 5); /* the tombstone's seq */
    /* Nobody watches E2 from before seq 2 here: nothing to fill. */
    assert_int_equal(x->sink.g[2].epoch, E2);
    assert_int_equal(x->sink.g[2].seq, 2);
    fx_free(x);
}

/* The tombstone belongs to a later incarnation (deleted twice meanwhile):
 * the end is told one past the last seq handed on. */
static void test_missed_deletion_without_its_tombstone(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 3);
    arrive(x, "a", E1, 3);
    fake_delete(&x->store, "a");
    x->store.wfs[0].tomb = (fc_tombstone){.epoch = 33, .seq = 2, .deleted_at_ms = 1};
    fake_commit(&x->store, "a", E2, 1);
    arrive(x, "a", E2, 1);
    assert_int_equal(x->sink.n, 3);
    assert_int_equal(x->sink.g[1].deleted, 1);
    assert_int_equal(x->sink.g[1].epoch, E1);
    assert_int_equal(x->sink.g[1].seq, 4);
    assert_int_equal(x->sink.g[2].epoch, E2);
    fx_free(x);
}

static void test_stale_subscriber_told_after_eviction(void **state)
{
    (void)state;
    fx *x = fx_new(1);
    x->sink.sub_epoch = E1; /* subscribed to E1 at seq 0, entry evicted */
    fake_commit(&x->store, "a", E1, 1);
    fake_delete(&x->store, "a");
    fake_commit(&x->store, "a", E2, 1);
    arrive(x, "a", E2, 1);
    assert_int_equal(x->sink.n, 2);
    assert_int_equal(x->sink.g[0].deleted, 1);
    assert_int_equal(x->sink.g[0].epoch, E1);
    assert_int_equal(x->sink.g[0].seq, 2);
    assert_int_equal(x->sink.g[1].epoch, E2);
    fx_free(x);
}

/* Watchers of six incarnations, each created and deleted while this node
 * heard nothing (the bus down: the catch-up finds only the last tombstone
 * of the id): the next change of the id tells every one of them it ended.
 * Four were told per change, so the others waited for changes that might
 * never come, their workflow long gone. */
static void test_every_stale_incarnation_told(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    for (int i = 0; i < 6; i++)
        x->sink.stale[i] = 101 + i;
    fake_commit(&x->store, "a", 107, 2);
    fake_delete(&x->store, "a");
    arrive_deleted(x, "a", 107, 2);
    assert_int_equal(x->sink.n, 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(x->sink.g[i].deleted, 1);
    for (int i = 0; i < 6; i++)
        assert_int_equal(x->sink.stale[i], 0);
    assert_int_equal(x->sink.g[6].epoch, 107);
    fx_free(x);
}

/* The same behind watchers of the live incarnation, which stay. */
static void test_stale_incarnations_told_past_the_live_one(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    x->sink.sub_epoch = E2; /* the live incarnation's watcher */
    x->sink.sub_seq = 1;
    x->sink.stale[0] = 101;
    x->sink.stale[1] = 102;
    fake_commit(&x->store, "a", E2, 1);
    arrive_deleted(x, "a", 103, 1); /* an incarnation before E2, unwatched */
    assert_int_equal(x->sink.n, 3);
    assert_true(x->sink.g[0].deleted && x->sink.g[1].deleted && x->sink.g[2].deleted);
    assert_int_equal(x->sink.stale[0] + x->sink.stale[1], 0);
    assert_int_equal(x->sink.g[2].epoch, 103);
    assert_int_equal(x->sink.sub_epoch, E2);
    fx_free(x);
}

static void test_entries_bounded(void **state)
{
    (void)state;
    fx *x = fx_new(3);
    char id[16];
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "w%d", i);
        fake_commit(&x->store, id, E1, 1);
        arrive(x, id, E1, 1);
        assert_true(fc_feed_workflows(x->feed) <= 3);
    }
    assert_int_equal(fc_feed_workflows(x->feed), 3);
    /* An evicted workflow's next change: re-anchored on its subscribers. */
    x->sink.sub_epoch = E1;
    x->sink.sub_seq = 1;
    fake_commit(&x->store, "w0", E1, 2);
    int before = x->sink.n;
    arrive(x, "w0", E1, 2);
    arrive(x, "w0", E1, 2);
    assert_int_equal(x->sink.n, before + 1);
    fx_free(x);
}

/* What the store does not hold, from the bus: neither handed on nor taken
 * as the entry's position (the real changes after it still arrive). */
static void test_forged_bus_changes_rejected(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 1);
    arrive(x, "a", E1, 1);
    arrive(x, "a", E1, 1000000000); /* a far-future seq */
    arrive_deleted(x, "a", E1, 1);  /* a deletion of the live incarnation */
    arrive(x, "a", E2, 1);          /* a re-creation nobody made */
    arrive(x, "ghost", E1, 5);      /* a workflow nobody created */
    fake_commit(&x->store, "a", E1, 2);
    arrive(x, "a", E1, 2);
    expect_seqs(x, E1, 1, 2);
    fx_free(x);
}

/* Without an entry (evicted, or never seen) a forged message must not become its anchor. */
static void test_forged_bus_change_is_no_anchor(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fake_commit(&x->store, "a", E1, 1);
    arrive(x, "a", E1, 1000000000);
    assert_int_equal(fc_feed_workflows(x->feed), 0);
    fake_commit(&x->store, "a", E1, 2);
    arrive(x, "a", E1, 2);
    expect_seqs(x, E1, 2, 2);
    fx_free(x);
}

static int drained;
static void on_idle_stop(uv_idle_t *h)
{
    if (++drained > 3) uv_stop(h->loop);
}

static void test_queue_posts_in_order_and_bounded(void **state)
{
    (void)state;
    fx *x = fx_new(100);
    fc_feed_msg *m[6];
    for (int s = 1; s <= 6; s++) {
        fc_workflow w = state_of("q", E1, s);
        fake_commit(&x->store, "q", E1, s);
        m[s - 1] = fc_feed_msg_new(&w, 0, 0, FC_FEED_BUS, 0);
        int rc = fc_feed_post(x->feed, m[s - 1]);
        assert_int_equal(rc, s <= 4 ? 0 : -1); /* max_queue 4 */
        fc_feed_msg_unref(m[s - 1]);
    }
    assert_int_equal(fc_feed_dropped(x->feed), 2);
    assert_true(fc_feed_full(x->feed));
    /* A catch-up read is taken past the bound: refused, it would be read
     * again from its last transaction's start, and one larger than the
     * queue never taken; the relay waits for full to clear instead. */
    fc_workflow w5 = state_of("q", E1, 5), w6 = state_of("q", E1, 6);
    fc_feed_msg *c = fc_feed_msg_new(&w5, 0, 0, FC_FEED_CATCHUP, 0);
    assert_int_equal(fc_feed_msg_add(c, &w6, 0, 0), 0);
    assert_int_equal(fc_feed_post(x->feed, c), 0);
    fc_feed_msg_unref(c);
    assert_int_equal(fc_feed_dropped(x->feed), 2);
    uv_idle_t idle;
    uv_idle_init(&x->loop, &idle);
    drained = 0;
    uv_idle_start(&idle, on_idle_stop);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&idle, NULL);
    expect_seqs(x, E1, 1, 6);
    assert_false(fc_feed_full(x->feed));
    fx_free(x);
}

static void post_seq(fx *x, int64_t seq)
{
    fc_workflow w = state_of("b", E1, seq);
    fake_commit(&x->store, "b", E1, seq);
    fc_feed_msg *m = fc_feed_msg_new(&w, 0, 0, FC_FEED_BUS, 0);
    assert_int_equal(fc_feed_post(x->feed, m), 0);
    fc_feed_msg_unref(m);
}

/* A post made while a burst larger than one turn is still being handed on
 * merges its wake-up into the one the feed sent itself; the turn that
 * finishes the burst must still take it (stop 15's CI: the catch-up's last
 * three changes sat in the queue until a next post that never came). */
static void test_post_during_a_long_burst_is_not_stranded(void **state)
{
    (void)state;
    fx *x = fx_new_queue(100, 1000);
    for (int s = 1; s <= 300; s++)
        post_seq(x, s);
    uv_run(&x->loop, UV_RUN_ONCE); /* one turn: the first part of the burst */
    assert_true(x->sink.n > 0 && x->sink.n < 300);
    post_seq(x, 301);
    uv_idle_t idle;
    uv_idle_init(&x->loop, &idle);
    drained = 0;
    uv_idle_start(&idle, on_idle_stop);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&idle, NULL);
    expect_seqs(x, E1, 1, 301);
    fx_free(x);
}

/* Changes first..last of "b" as one message. */
static fc_feed_msg *batch(fx *x, int64_t first, int64_t last)
{
    fc_feed_msg *m = NULL;
    for (int64_t seq = first; seq <= last; seq++) {
        fc_workflow w = state_of("b", E1, seq);
        fake_commit(&x->store, "b", E1, seq);
        if (!m)
            m = fc_feed_msg_new(&w, 0, 0, FC_FEED_BUS, 0);
        else
            assert_int_equal(fc_feed_msg_add(m, &w, 0, 0), 0);
        assert_non_null(m);
    }
    return m;
}

static void drain(fx *x)
{
    uv_idle_t idle;
    uv_idle_init(&x->loop, &idle);
    drained = 0;
    uv_idle_start(&idle, on_idle_stop);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&idle, NULL);
    uv_run(&x->loop, UV_RUN_NOWAIT); /* the close, before idle's stack frame goes */
}

/* A message of many changes is one queue entry counted as its changes
 * against --bus-queue (taken or refused whole, even by an empty queue when
 * it is longer than the bound), and a message longer than a turn's share
 * goes on, in order, from where the last turn left it. */
static void test_batches_count_changes_and_resume_mid_message(void **state)
{
    (void)state;
    fx *x = fx_new_queue(100, 400);
    fc_feed_msg *a = batch(x, 1, 300), *b = batch(x, 301, 399), *c = batch(x, 400, 401);
    assert_int_equal(fc_feed_post(x->feed, a), 0);
    assert_int_equal(fc_feed_post(x->feed, b), 0);
    assert_int_equal(fc_feed_post(x->feed, c), -1); /* 399 + 2 > 400 */
    assert_int_equal(fc_feed_dropped(x->feed), 2);
    fc_feed_msg_unref(a);
    fc_feed_msg_unref(b);
    fc_feed_msg_unref(c);
    uv_run(&x->loop, UV_RUN_ONCE); /* one turn: part of the first message */
    assert_true(x->sink.n > 0 && x->sink.n < 300);
    drain(x);
    expect_seqs(x, E1, 1, 399);
    fc_feed_msg *d = batch(x, 400, 800);
    assert_int_equal(fc_feed_post(x->feed, d), -1); /* 401 > 400, the queue empty */
    assert_int_equal(fc_feed_dropped(x->feed), 2 + 401);
    fc_feed_msg_unref(d);
    fx_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_duplicates),
        cmocka_unit_test(test_gap_filled_before_later_change),
        cmocka_unit_test(test_fresh_workflow_anchored_on_subscriber),
        cmocka_unit_test(test_fresh_workflow_without_subscribers),
        cmocka_unit_test(test_pruned_log_gives_resync),
        cmocka_unit_test(test_store_down_defers),
        cmocka_unit_test(test_store_unavailable_defers),
        cmocka_unit_test(test_deletion_then_new_incarnation),
        cmocka_unit_test(test_missed_deletion_told_before_next_incarnation),
        cmocka_unit_test(test_changes_of_an_incarnation_deleted_since),
        cmocka_unit_test(test_missed_deletion_without_its_tombstone),
        cmocka_unit_test(test_stale_subscriber_told_after_eviction),
        cmocka_unit_test(test_every_stale_incarnation_told),
        cmocka_unit_test(test_stale_incarnations_told_past_the_live_one),
        cmocka_unit_test(test_entries_bounded),
        cmocka_unit_test(test_forged_bus_changes_rejected),
        cmocka_unit_test(test_forged_bus_change_is_no_anchor),
        cmocka_unit_test(test_queue_posts_in_order_and_bounded),
        cmocka_unit_test(test_post_during_a_long_burst_is_not_stranded),
        cmocka_unit_test(test_batches_count_changes_and_resume_mid_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
