/* Unit tests of one batch holding many changes, on SQLite and (with
 * FC_TEST_PG_DSN) PostgreSQL, whose writer splits a batch into rounds (the
 * r-th change of each workflow) and applies a round's updates in one
 * set-based statement (fc_apply_set). Whatever the backend, every
 * change must get the outcome it would get alone, in submission order:
 * seqs +1 per change, refusals with the current state and SQLite's text.
 * And PostgreSQL's group commit delay (--commit-delay): the writer waits for
 * a batch as large as its last only after a batch of several. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Holds the store's writes from outside, submits cs[0] (the writer takes it
 * and waits), then the others, then lets go: cs[1..n-1] pile up and commit
 * as one batch. Waits for every done(), in submission order. */
static void pile(fixture *f, fc_change **cs, int n)
{
    fx_exec(f, fx_is_pg() ? "BEGIN; LOCK TABLE workflows IN EXCLUSIVE MODE" : "BEGIN IMMEDIATE");
    int base = f->ndone;
    for (int i = 0; i < n; i++)
        cs[i]->data = (void *)(intptr_t)(base + i);
    fc_store_submit(f->s, cs[0]);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* this loop turn hands cs[0] to the writer */
    usleep(100 * 1000);              /* the writer takes cs[0] and waits for the lock */
    for (int i = 1; i < n; i++)
        fc_store_submit(f->s, cs[i]);
    fx_exec(f, "COMMIT");
    while (f->ndone < base + n)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->in_order);
    for (int i = 2; i < n; i++)
        assert_true(cs[i]->commit_ns == cs[1]->commit_ns); /* one batch */
}

static fc_change *mk_msg(const char *id, const char *msg)
{
    fc_change *c = mk(FC_CHANGE_UPDATE, id);
    c->patch.fields = FC_PATCH_MESSAGE;
    c->patch.message = strdup(msg);
    assert_non_null(c->patch.message);
    return c;
}

static int64_t get_seq(fixture *f, const char *id)
{
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, id, &w), 0);
    int64_t seq = w.seq;
    fc_workflow_clear(&w);
    return seq;
}

/* The log of id holds exactly seqs 1..last. */
static void assert_log(fixture *f, const char *id, int64_t last)
{
    rows r = {0};
    int64_t oldest = 0;
    assert_int_equal(fc_store_events_since(f->s, id, 0, 32, collect, &r, &oldest), 0);
    assert_int_equal(r.n, last);
    for (int i = 0; i < r.n; i++)
        assert_int_equal(r.seq[i], i + 1);
}

enum { ROUNDS = 12, PER = 3 };

/* Three workflows, twelve changes each queued without waiting (one batch,
 * interleaved): every applied change takes the next seq of its workflow in
 * submission order; an if_seq mismatch, a step > total, a terminal status
 * and an idempotency-keyed change in the middle get exactly their own
 * outcome and the state current at their turn. */
static void test_many_changes_of_one_workflow(void **state)
{
    fixture *f = *state;
    const char *ids[PER] = {"a", "b", "c"};
    for (int w = 0; w < PER; w++)
        do1(f, mk_create(ids[w], FC_STATUS_RUNNING, 0, 100), 0);
    fc_change *cs[1 + ROUNDS * PER];
    int expect[1 + ROUNDS * PER];
    int64_t seq[PER] = {1, 1, 1};
    int terminal[PER] = {0};
    cs[0] = mk_step("a", 1);
    expect[0] = 0;
    seq[0] = 2;
    for (int r = 0; r < ROUNDS; r++) {
        for (int w = 0; w < PER; w++) {
            int i = 1 + r * PER + w;
            fc_change *c = mk_step(ids[w], r + 2);
            expect[i] = terminal[w] ? FC_ETERMINAL : 0;
            if (w == 0 && r == 4) { /* a stale if_seq */
                c->patch.fields |= FC_PATCH_IF_SEQ;
                c->patch.if_seq = seq[0] - 1;
                expect[i] = FC_ESEQ;
            } else if (w == 0 && r == 6) { /* a matching one */
                c->patch.fields |= FC_PATCH_IF_SEQ;
                c->patch.if_seq = seq[0];
            } else if (w == 1 && r == 3) {
                c->patch.current_step = 500;
                expect[i] = FC_EINVAL;
            } else if (w == 1 && r == 5) {
                snprintf(c->idem_key, sizeof c->idem_key, "k-b-5");
                c->idem_fp[0] = 7;
            } else if (w == 2 && r == 7) {
                c->patch.fields |= FC_PATCH_STATUS;
                c->patch.status = FC_STATUS_COMPLETED;
                terminal[w] = 1;
            }
            if (expect[i] == 0) seq[w]++;
            c->wf.seq = seq[w]; /* the expected seq, checked below */
            cs[i] = c;
        }
    }
    int n = 1 + ROUNDS * PER;
    int64_t want[1 + ROUNDS * PER];
    for (int i = 0; i < n; i++)
        want[i] = cs[i]->wf.seq;
    pile(f, cs, n);
    for (int i = 0; i < n; i++) {
        fc_change *c = cs[i];
        assert_int_equal(c->result, expect[i]);
        assert_int_equal(c->wf.seq, i == 0 ? 2 : want[i]); /* a refusal: the current seq */
        if (expect[i] == FC_ESEQ) {
            char msg[128];
            snprintf(msg, sizeof msg,
                     "seq mismatch: if_seq is %lld but workflow 'a' is at seq %lld",
                     (long long)(want[i] - 1), (long long)want[i]);
            assert_string_equal(c->errmsg, msg);
        } else if (expect[i] == FC_EINVAL) {
            assert_string_equal(c->errmsg, "current_step (500) is greater than total_steps (100)");
            assert_int_equal(c->wf.current_step, 4); /* b's step before it */
        } else if (expect[i] == FC_ETERMINAL) {
            assert_string_equal(c->errmsg, "workflow 'c' is completed and can no longer change");
            assert_int_equal(c->wf.status, FC_STATUS_COMPLETED);
            assert_int_equal(c->wf.current_step, 9);
        } else {
            assert_string_equal(c->errmsg, "");
        }
    }
    for (int w = 0; w < PER; w++) {
        assert_int_equal(get_seq(f, ids[w]), seq[w]);
        assert_log(f, ids[w], seq[w]);
    }
    for (int i = 0; i < n; i++)
        free_change(cs[i]);
}

/* Ids and messages with what an array literal treats specially (quotes,
 * backslashes, commas, braces, white space, NULL, unicode, 4 KB) are
 * stored exactly as given when one batch updates them together. */
static void test_special_strings_in_one_batch(void **state)
{
    fixture *f = *state;
    static char big[4097];
    memset(big, 'x', sizeof big - 1);
    big[100] = '"';
    big[200] = '\\';
    big[300] = ',';
    const char *ids[] = {"q\"uote",
                         "back\\slash",
                         "com,ma",
                         "{brace}",
                         "NULL",
                         " sp ace ",
                         "\xc3\xa9t\xc3\xa9-\xe2\x9c\x93",
                         "plain"};
    const char *msgs[] = {"say \"hi\"", "C:\\dir\\", "a,b,c", "{1,2}", "NULL", "  ", big, ""};
    enum { N = sizeof ids / sizeof *ids };
    for (int i = 0; i < N; i++)
        do1(f, mk_create(ids[i], FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *cs[1 + N];
    cs[0] = mk_msg("plain", "first");
    for (int i = 0; i < N; i++)
        cs[1 + i] = mk_msg(ids[i], msgs[i]);
    pile(f, cs, 1 + N);
    for (int i = 0; i < N; i++) {
        fc_change *c = cs[1 + i];
        assert_int_equal(c->result, 0);
        assert_string_equal(c->wf.id, ids[i]);
        assert_string_equal(c->wf.message, msgs[i]);
        assert_string_equal(c->wf.name, "build");
        fc_workflow w = {0};
        assert_int_equal(fc_store_get(f->s, ids[i], &w), 0);
        assert_string_equal(w.message, msgs[i]);
        assert_int_equal(w.seq, i == N - 1 ? 3 : 2);
        fc_workflow_clear(&w);
    }
    for (int i = 0; i <= N; i++)
        free_change(cs[i]);
}

/* Creates, updates and deletes of the same ids mixed in one batch: each
 * sees the state its predecessors in submission order left. */
static void test_mixed_kinds_of_one_id_in_one_batch(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("n", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_create("o", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *cs[] = {
        mk_step("n", 1),
        mk_create("m", FC_STATUS_RUNNING, 0, 10), /* m: seq 1 */
        mk_step("m", 1),                          /* 2 */
        mk_step("n", 2),
        mk_step("o", 1),
        mk(FC_CHANGE_DELETE, "m"),
        mk_step("m", 2), /* not found */
        mk_step("o", 2),
        mk_create("m", FC_STATUS_RUNNING, 0, 10), /* a new incarnation: seq 1 */
        mk_create("o", FC_STATUS_RUNNING, 0, 10), /* exists */
        mk_step("m", 3),                          /* 2 */
        mk(FC_CHANGE_DELETE, "n"),
        mk_step("n", 4), /* not found */
        mk_step("o", 3),
        mk_step("m", 11), /* invalid */
    };
    enum { N = sizeof cs / sizeof *cs };
    int expect[N] = {0, 0,        0, 0, 0, 0, FC_ENOTFOUND, 0, 0, FC_EEXISTS, 0, 0, FC_ENOTFOUND,
                     0, FC_EINVAL};
    int64_t seqs[N] = {2, 1, 2, 3, 2, 2, 0, 3, 1, -1, 2, 3, 0, 4, 2}; /* -1: not checked */
    pile(f, cs, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(cs[i]->result, expect[i]);
        if (seqs[i] >= 0) assert_int_equal(cs[i]->wf.seq, seqs[i]);
    }
    assert_string_equal(cs[6]->errmsg, "workflow 'm' not found");
    assert_string_equal(cs[9]->errmsg, "workflow 'o' already exists");
    assert_string_equal(cs[14]->errmsg, "current_step (11) is greater than total_steps (10)");
    assert_true(cs[8]->wf.epoch != cs[1]->wf.epoch);
    assert_int_equal(cs[10]->wf.epoch, cs[8]->wf.epoch);
    assert_int_equal(get_seq(f, "m"), 2);
    assert_int_equal(get_seq(f, "o"), 4);
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "n", &w), FC_ENOTFOUND);
    assert_log(f, "m", 2);
    assert_log(f, "o", 4);
    for (int i = 0; i < N; i++)
        free_change(cs[i]);
}

/* Seconds one change takes to commit (submitted alone). */
static double commit_seconds(fixture *f, fc_change *c)
{
    uint64_t t0 = uv_hrtime();
    do1(f, c, 0);
    return (double)(uv_hrtime() - t0) / 1e9;
}

/* Two changes submitted in one turn: one batch. Seconds until both committed. */
static double pair_seconds(fixture *f, fc_change *a, fc_change *b)
{
    fc_change *cs[2] = {a, b};
    uint64_t t0 = uv_hrtime();
    submit_wait(f, cs, 2);
    double s = (double)(uv_hrtime() - t0) / 1e9;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cs[i]->result, 0);
        free_change(cs[i]);
    }
    return s;
}

/* With a delay of 1 s: a change after a lone change commits at once; after
 * a batch of two, a lone change waits the whole delay for a second one (the
 * lower bound is exact: it cannot be early), and two together do not. */
static void test_commit_delay_follows_the_last_batch(void **state)
{
    fixture *f = *state;
    if (!fx_is_pg()) skip(); /* SQLite has no delay */
    close_store(f);
    char err[256] = "";
    fc_store_config cfg = {.path = f->path, .retention = 100, .commit_delay_us = 1000000};
    f->s = fc_store_open(&f->loop, &cfg, err, sizeof err);
    assert_non_null(f->s);
    assert_true(commit_seconds(f, mk_create("a", FC_STATUS_RUNNING, 0, 10)) < 0.9);
    assert_true(commit_seconds(f, mk_step("a", 1)) < 0.9);
    pair_seconds(f, mk_create("b", FC_STATUS_RUNNING, 0, 10),
                 mk_create("c", FC_STATUS_RUNNING, 0, 10));
    assert_true(commit_seconds(f, mk_step("a", 2)) >= 0.95);
    assert_true(commit_seconds(f, mk_step("a", 3)) < 0.9); /* the last batch was one */
    pair_seconds(f, mk_step("b", 1), mk_step("c", 1));
    assert_true(pair_seconds(f, mk_step("b", 2), mk_step("c", 2)) < 0.9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_changes_of_one_workflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_special_strings_in_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed_kinds_of_one_id_in_one_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_delay_follows_the_last_batch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
