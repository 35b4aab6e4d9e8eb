/* Unit tests of the store's writer side, on SQLite (src/store/sqlite/writer.c,
 * wcache.c, checkpoint.c: its cache of current states and checkpoints) and
 * both backends: retention trimming, and handing commits back to several
 * handles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_fixture.h"

#include "common/error.h"
#include "store/sqlite/sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The writer caches the states it committed; a change committed by someone
 * else (another process on the same file) must not be overwritten from a
 * stale cache. */
static void test_external_commit_seen(void **state)
{
    fixture *f = *state;
    SQLITE_ONLY(); /* PostgreSQL's writer keeps no cache */
    do1(f, mk_create("x", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_step("x", 1), 0); /* seq 2, cached */
    sqlite3 *db = external(f);
    exec_ok(db, "INSERT INTO events VALUES ('x', 3, 'running', 7, 10, 'outside', 0)");
    sqlite3_close(db);
    fc_change *c = mk_step("x", 8);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 4);
    assert_string_equal(c->wf.message, "outside");
    free_change(c);
}

static off_t db_file_size(fixture *f)
{
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    return st.st_size;
}

/* A few changes stay in the WAL (a checkpoint that catches up makes the next
 * commit restart the WAL, with an fsync): the database file is not written
 * for them. Many changes are copied into it by the checkpoint thread. */
static void test_checkpoints_follow_the_wal(void **state)
{
    fixture *f = *state;
    SQLITE_ONLY();
    off_t start = db_file_size(f);
    do1(f, mk_create("c", FC_STATUS_RUNNING, 0, 100000), 0);
    for (int i = 1; i <= 20; i++)
        do1(f, mk_step("c", i), 0);
    usleep(1000 * 1000); /* four checkpoint periods */
    assert_int_equal(db_file_size(f), start);

    /* One commit per change, each dirtying the workflow's newest events page
     * and more as the log grows: well past the threshold of new frames. */
    for (int i = 21; i <= 1500; i++)
        do1(f, mk_step("c", i), 0);
    int waited = 0;
    while (db_file_size(f) == start && waited++ < 40)
        usleep(50 * 1000);
    assert_true(db_file_size(f) > start);
}

/* The writer's cache stays within its byte budget, dropping the least
 * recently used states, and hands out copies of the newest state. */
static void test_wcache_budget(void **state)
{
    (void)state;
    fc__wcache wc;
    assert_int_equal(fc__wcache_init(&wc, 2000), 0);
    char msg[600];
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    fc_workflow w = {.name = "n", .message = msg, .seq = 1};
    for (int i = 0; i < 8; i++) {
        snprintf(w.id, sizeof w.id, "w%d", i);
        assert_int_equal(fc__wcache_put(&wc, i + 1, &w), 0);
        assert_true(wc.bytes <= 2000);
    }
    fc_workflow out = {0};
    int64_t pk = 0;
    assert_int_equal(fc__wcache_get(&wc, "w0", &pk, &out), FC_ENOTFOUND);
    assert_int_equal(fc__wcache_get(&wc, "w7", &pk, &out), 0);
    assert_int_equal(pk, 8);
    assert_string_equal(out.message, msg);
    assert_true(out.message != msg);

    /* A newer state replaces the older one; one too big for the budget
     * drops it rather than leave it stale. */
    w.seq = 2;
    w.message = "short";
    assert_int_equal(fc__wcache_put(&wc, 8, &w), 0);
    assert_int_equal(fc__wcache_get(&wc, "w7", &pk, &out), 0);
    assert_int_equal(out.seq, 2);
    assert_string_equal(out.message, "short");
    char big[2100];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    w.message = big;
    assert_int_equal(fc__wcache_put(&wc, 8, &w), 0);
    assert_int_equal(fc__wcache_get(&wc, "w7", &pk, &out), FC_ENOTFOUND);
    fc_workflow_clear(&out);
    fc__wcache_destroy(&wc);
}

/* The log is trimmed in steps, but readers only ever see the last
 * `retention` changes, and the table never holds more than a step more. */
static void test_retention_trims_in_steps(void **state)
{
    fixture *f = *state;
    close_store(f);
    f->s = open_store(f, 3);
    do1(f, mk_create("t", FC_STATUS_RUNNING, 0, 1000), 0);
    for (int i = 1; i <= 3 * FC__SQLITE_TRIM_EVERY + 5; i++) {
        do1(f, mk_step("t", i), 0);
        int64_t seq = i + 1, oldest = 0;
        rows r = {0};
        assert_int_equal(fc_store_events_since(f->s, "t", 0, 0, collect, &r, &oldest), 0);
        assert_int_equal(r.n, seq < 3 ? seq : 3);
        assert_int_equal(r.seq[r.n - 1], seq);
        assert_int_equal(oldest, seq < 3 ? 1 : seq - 2);
        /* since older than the window: only the window comes back */
        memset(&r, 0, sizeof r);
        assert_int_equal(fc_store_events_since(f->s, "t", 1, 0, collect, &r, NULL), 0);
        assert_int_equal(r.n, seq - 1 < 3 ? seq - 1 : 3);
    }
    int64_t n = fx_scalar(f, "SELECT COUNT(*) FROM events");
    assert_true(n >= 3 && n <= 3 + FC__SQLITE_TRIM_EVERY); /* PostgreSQL trims every 64 too */
}

/* What one handle's commit callback heard. */
typedef struct heard {
    int n;
    int64_t seq[64];
    int deleted[64];
    int own_done; /* done() calls of this handle's own changes */
    int closing;  /* the handle is in its close: done() comes unheard */
} heard;

static void on_heard(void *ud, const fc_workflow *w, const fc_store_commit *commit,
                         int deleted)
{
    heard *h = ud;
    assert_true(h->n < 64);
    assert_string_equal(w->id, "sh");
    assert_true(commit->commit_ns > 0);
    h->seq[h->n] = w->seq;
    h->deleted[h->n] = deleted;
    h->n++;
}

static void count_done(fc_change *c)
{
    heard *h = c->data;
    h->own_done++;
    /* The handle heard of its own change before done(), but for one its
     * close finishes (close never calls the commit callback). */
    int heard_it = c->result != 0 || h->closing;
    for (int i = h->n - 1; i >= 0 && !heard_it; i--)
        heard_it = h->seq[i] == c->wf.seq;
    assert_true(heard_it);
    free_change(c);
}

static fc_change *mk_step_on(heard *h, int64_t step)
{
    fc_change *c = mk_step("sh", step);
    c->done = count_done;
    c->data = h;
    return c;
}

/* Runs both loops until the handles heard n1 and n2 changes. */
static void run_both(fixture *f, uv_loop_t *loop2, heard *h1, heard *h2, int n1, int n2)
{
    while (h1->n < n1 || h2->n < n2) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        uv_run(loop2, UV_RUN_NOWAIT);
        usleep(200);
    }
}

/* Two loops share one store: changes to one workflow submitted on both
 * handles reach both commit callbacks once each in commit (= seq) order,
 * and done() runs only on the handle that submitted. A handle closed with
 * changes in flight finishes them inside close; the other carries on. */
static void test_shared_handles_hear_commit_order(void **state)
{
    fixture *f = *state;
    heard h1 = {0}, h2 = {0};
    fc_store_on_commit(f->s, on_heard, &h1);
    fc_change *c = mk_create("sh", FC_STATUS_RUNNING, 0, 100);
    c->done = count_done;
    c->data = &h1;
    fc_store_submit(f->s, c);
    while (h1.own_done < 1)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(h1.n, 1); /* one handle: heard before its done() */

    uv_loop_t loop2;
    char err[256] = "";
    assert_int_equal(uv_loop_init(&loop2), 0);
    fc_store *s2 = fc_store_attach(f->s, &loop2, err, sizeof err);
    assert_non_null(s2);
    fc_store_on_commit(s2, on_heard, &h2);

    /* 40 steps, both handles submitting in every turn of both loops. */
    for (int i = 1; i <= 40; i += 4) {
        fc_store_submit(f->s, mk_step_on(&h1, i));
        fc_store_submit(s2, mk_step_on(&h2, i + 1));
        fc_store_submit(s2, mk_step_on(&h2, i + 2));
        fc_store_submit(f->s, mk_step_on(&h1, i + 3));
        uv_run(&f->loop, UV_RUN_NOWAIT);
        uv_run(&loop2, UV_RUN_NOWAIT);
    }
    run_both(f, &loop2, &h1, &h2, 41, 40);
    assert_int_equal(h1.own_done, 1 + 20);
    assert_int_equal(h2.own_done, 20);
    /* h2 was attached after the create: it hears seq 2.. */
    for (int i = 0; i < 40; i++) {
        assert_int_equal(h1.seq[i + 1], i + 2);
        assert_int_equal(h2.seq[i], i + 2);
        assert_int_equal(h2.deleted[i], 0);
    }

    /* A deletion through handle 2 reaches both as a deletion. */
    c = mk(FC_CHANGE_DELETE, "sh");
    c->done = count_done;
    c->data = &h2;
    fc_store_submit(s2, c);
    run_both(f, &loop2, &h1, &h2, 42, 41);
    assert_int_equal(h1.deleted[41], 1);
    assert_int_equal(h2.deleted[40], 1);
    assert_int_equal(h1.seq[41], 41);

    /* Handle 2 closes with a change in flight: its done() runs inside close
     * (unheard there), handle 1 still hears it, and the store stays open for
     * handle 1. */
    c = mk_create("sh", FC_STATUS_RUNNING, 0, 5);
    c->done = count_done;
    c->data = &h2;
    fc_store_submit(s2, c);
    h2.closing = 1;
    fc_store_close(s2);
    assert_int_equal(h2.own_done, 22);
    assert_int_equal(h2.n, 41);
    assert_int_equal(uv_run(&loop2, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop2), 0);
    while (h1.n < 43)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(h1.seq[42], 1);
    assert_int_equal(h1.deleted[42], 0);
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "sh", &w), 0);
    assert_int_equal(w.total_steps, 5);
    fc_workflow_clear(&w);
}

int main(void)
{
    alarm(120); /* a lost done() would otherwise hang the run forever */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_external_commit_seen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints_follow_the_wal, setup, teardown),
        cmocka_unit_test(test_wcache_budget),
        cmocka_unit_test_setup_teardown(test_retention_trims_in_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_handles_hear_commit_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
