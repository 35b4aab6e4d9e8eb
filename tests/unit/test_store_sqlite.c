/* Unit tests of the SQLite store backend (src/store/sqlite/), through fc_store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/time.h"
#include "store/sqlite/sqlite_internal.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ORDER 64

/* One test's world: a temp directory, a loop, the store, and what done() saw. */
typedef struct fixture {
    char dir[64];
    char path[96];
    uv_loop_t loop;
    fc_store *s;
    int ndone;
    int order[MAX_ORDER];
    int in_order; /* 0 once a done() arrives out of submission order */
} fixture;

static fixture *G; /* done() has no user pointer to spare: c->data carries the index */

static void on_done(fc_change *c)
{
    int idx = (int)(intptr_t)c->data;
    if (G->ndone < MAX_ORDER) G->order[G->ndone] = idx;
    if (idx != G->ndone) G->in_order = 0;
    G->ndone++;
}

static fc_store *open_store_sync(fixture *f, int retention, int sync_full)
{
    char err[256] = "";
    fc_store_config cfg = {.path = f->path, .sync_full = sync_full, .retention = retention};
    fc_store *s = fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err);
    if (!s) fprintf(stderr, "open failed: %s\n", err);
    assert_non_null(s);
    return s;
}

static fc_store *open_store(fixture *f, int retention)
{
    return open_store_sync(f, retention, 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/fc-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/flowcast.db", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->in_order = 1;
    f->s = open_store(f, 100);
    G = f;
    *state = f;
    return 0;
}

/* Closes the store, lets the loop free it, and checks nothing is left alive. */
static void close_store(fixture *f)
{
    fc_store_close(f->s);
    f->s = NULL;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

static int teardown(void **state)
{
    fixture *f = *state;
    char p[128];
    if (f->s) close_store(f);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    assert_int_equal(rmdir(f->dir), 0);
    free(f);
    G = NULL;
    return 0;
}

static fc_change *mk(fc_change_kind kind, const char *id)
{
    static int next_index;
    fc_change *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->kind = kind;
    snprintf(c->wf.id, sizeof c->wf.id, "%s", id);
    c->done = on_done;
    c->data = (void *)(intptr_t)next_index++;
    return c;
}

static fc_change *mk_create(const char *id, fc_status st, int64_t step, int64_t total)
{
    fc_change *c = mk(FC_CHANGE_CREATE, id);
    c->wf.name = strdup("build");
    c->wf.message = strdup("queued");
    c->wf.status = st;
    c->wf.current_step = step;
    c->wf.total_steps = total;
    return c;
}

static fc_change *mk_step(const char *id, int64_t step)
{
    fc_change *c = mk(FC_CHANGE_UPDATE, id);
    c->patch.fields = FC_PATCH_CURRENT_STEP;
    c->patch.current_step = step;
    return c;
}

static void free_change(fc_change *c)
{
    fc_change_clear(c);
    free(c);
}

/* Submits the changes (indexes renumbered from the fixture's count), runs the
 * loop until all their done()s ran, and checks they came in order. */
static void submit_wait(fixture *f, fc_change **cs, int n)
{
    int target = f->ndone + n;
    for (int i = 0; i < n; i++) {
        cs[i]->data = (void *)(intptr_t)(f->ndone + i);
        fc_store_submit(f->s, cs[i]);
    }
    assert_int_equal(f->ndone, target - n); /* never from inside submit */
    while (f->ndone < target)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->in_order);
}

/* Runs one change to completion and returns its result (c stays the caller's). */
static int run1(fixture *f, fc_change *c)
{
    submit_wait(f, &c, 1);
    return c->result;
}

static void do1(fixture *f, fc_change *c, int expect)
{
    int rc = run1(f, c);
    if (rc != expect) fprintf(stderr, "result %d: %s\n", rc, c->errmsg);
    assert_int_equal(rc, expect);
    free_change(c);
}

/* Rows seen by a list or events_since callback. */
typedef struct rows {
    int n;
    int stop_after; /* 0: never */
    char id[32][FC_ID_MAX + 1];
    int64_t seq[32], step[32];
    char msg[32][32];
} rows;

static int collect(const fc_workflow *w, void *ud)
{
    rows *r = ud;
    assert_true(r->n < 32);
    snprintf(r->id[r->n], sizeof r->id[0], "%s", w->id);
    snprintf(r->msg[r->n], sizeof r->msg[0], "%s", w->message);
    r->seq[r->n] = w->seq;
    r->step[r->n] = w->current_step;
    r->n++;
    return r->stop_after && r->n >= r->stop_after;
}

static void test_create_get_list(void **state)
{
    fixture *f = *state;
    const char *ids[] = {"w1", "w2", "w3", "w4", "w5"};
    fc_change *cs[5];
    int64_t before = fc_time_now_ms();
    for (int i = 0; i < 5; i++)
        cs[i] = mk_create(ids[i], i % 2 ? FC_STATUS_RUNNING : FC_STATUS_PENDING, i, 10);
    submit_wait(f, cs, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cs[i]->result, 0);
        assert_int_equal(cs[i]->wf.seq, 1);
        assert_true(cs[i]->wf.created_at_ms >= before);
        assert_int_equal(cs[i]->wf.created_at_ms, cs[i]->wf.updated_at_ms);
        assert_true(cs[i]->commit_ns > 0);
        free_change(cs[i]);
    }

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "w3", &w), 0);
    assert_string_equal(w.id, "w3");
    assert_string_equal(w.name, "build");
    assert_string_equal(w.message, "queued");
    assert_int_equal(w.status, FC_STATUS_PENDING);
    assert_int_equal(w.current_step, 2);
    assert_int_equal(w.total_steps, 10);
    assert_int_equal(w.seq, 1);
    assert_true(w.created_at_ms >= before);
    fc_workflow_clear(&w);
    assert_int_equal(fc_store_get(f->s, "nope", &w), FC_ENOTFOUND);

    /* Newest first, two per page. */
    char cur[32];
    rows r = {0};
    fc_list_query q = {.limit = 2};
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.id[0], "w5");
    assert_string_equal(r.id[1], "w4");
    assert_string_not_equal(cur, "");
    char cur2[32];
    q.cursor = cur;
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur2, sizeof cur2), 0);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.id[2], "w3");
    assert_string_equal(r.id[3], "w2");
    q.cursor = cur2;
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 5);
    assert_string_equal(r.id[4], "w1");
    assert_string_equal(cur, ""); /* no more pages */

    /* A page that ends exactly at the last row has no next page either. */
    memset(&r, 0, sizeof r);
    fc_list_query all = {.limit = 5};
    assert_int_equal(fc_store_list(f->s, &all, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 5);
    assert_string_equal(cur, "");

    /* Status filter: w2 and w4 are running. */
    memset(&r, 0, sizeof r);
    fc_list_query qs = {.has_status = 1, .status = FC_STATUS_RUNNING, .limit = 1};
    assert_int_equal(fc_store_list(f->s, &qs, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.id[0], "w4");
    qs.cursor = cur;
    assert_int_equal(fc_store_list(f->s, &qs, collect, &r, cur2, sizeof cur2), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.id[1], "w2");
    assert_string_equal(cur2, "");

    /* A callback that stops early still gets a cursor to resume from. */
    memset(&r, 0, sizeof r);
    r.stop_after = 2;
    fc_list_query big = {.limit = 100};
    assert_int_equal(fc_store_list(f->s, &big, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 2);
    assert_string_not_equal(cur, "");

    /* Bad cursors and limits. */
    const char *bad[] = {"", "abc", "-1", "0", "12x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fc_list_query qb = {.limit = 2, .cursor = bad[i]};
        assert_int_equal(fc_store_list(f->s, &qb, collect, &r, cur, sizeof cur), FC_EINVAL);
    }
    fc_list_query ql = {.limit = 0};
    assert_int_equal(fc_store_list(f->s, &ql, collect, &r, cur, sizeof cur), FC_EINVAL);
}

static void test_update(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("u", FC_STATUS_PENDING, 0, 10), 0);

    fc_change *c = mk(FC_CHANGE_UPDATE, "u");
    c->patch.fields = FC_PATCH_STATUS | FC_PATCH_CURRENT_STEP | FC_PATCH_MESSAGE;
    c->patch.status = FC_STATUS_RUNNING;
    c->patch.current_step = 3;
    c->patch.message = strdup("compiling");
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 2);
    assert_string_equal(c->wf.name, "build");
    assert_string_equal(c->wf.message, "compiling");
    assert_int_equal(c->wf.status, FC_STATUS_RUNNING);
    assert_int_equal(c->wf.current_step, 3);
    assert_int_equal(c->wf.total_steps, 10);
    assert_true(c->wf.updated_at_ms >= c->wf.created_at_ms);
    assert_true(c->wf.created_at_ms > 0);
    free_change(c);

    c = mk_step("u", 4);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 3);
    assert_string_equal(c->wf.message, "compiling");
    free_change(c);

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "u", &w), 0);
    assert_int_equal(w.seq, 3);
    assert_int_equal(w.current_step, 4);
    assert_int_equal(w.status, FC_STATUS_RUNNING);
    fc_workflow_clear(&w);

    /* The status index follows status changes. */
    rows r = {0};
    char cur[32];
    fc_list_query q = {.has_status = 1, .status = FC_STATUS_RUNNING, .limit = 10};
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 1);
    q.status = FC_STATUS_PENDING;
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 0);
}

static void test_events_since(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("e", FC_STATUS_RUNNING, 0, 10), 0);
    for (int i = 1; i <= 4; i++)
        do1(f, mk_step("e", i), 0);

    rows r = {0};
    int64_t oldest = -1;
    assert_int_equal(fc_store_events_since(f->s, "e", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(oldest, 1);
    assert_int_equal(r.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r.seq[i], i + 1);
        assert_int_equal(r.step[i], i);
        assert_string_equal(r.id[i], "e");
    }
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_events_since(f->s, "e", 3, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.seq[0], 4);
    assert_int_equal(r.seq[1], 5);
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_events_since(f->s, "e", 0, 2, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.seq[1], 2);
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_events_since(f->s, "e", 5, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(oldest, 1);
    assert_int_equal(fc_store_events_since(f->s, "x", 0, 0, collect, &r, &oldest), FC_ENOTFOUND);
    assert_int_equal(oldest, 0);
}

static void test_retention(void **state)
{
    fixture *f = *state;
    close_store(f);
    f->s = open_store(f, 3);
    do1(f, mk_create("r", FC_STATUS_RUNNING, 0, 100), 0);
    for (int i = 1; i <= 10; i++)
        do1(f, mk_step("r", i), 0);

    rows r = {0};
    int64_t oldest = 0;
    assert_int_equal(fc_store_events_since(f->s, "r", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(oldest, 9);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.seq[0], 9);
    assert_int_equal(r.seq[2], 11);
    assert_int_equal(r.step[2], 10);
}

static void test_if_seq(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("s", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *c = mk_step("s", 1);
    c->patch.fields |= FC_PATCH_IF_SEQ;
    c->patch.if_seq = 5;
    assert_int_equal(run1(f, c), FC_ESEQ);
    assert_non_null(strstr(c->errmsg, "if_seq is 5"));
    assert_non_null(strstr(c->errmsg, "seq 1"));
    free_change(c);

    c = mk_step("s", 1);
    c->patch.fields |= FC_PATCH_IF_SEQ;
    c->patch.if_seq = 1;
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 2);
    free_change(c);
}

static void test_terminal(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("t", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *c = mk(FC_CHANGE_UPDATE, "t");
    c->patch.fields = FC_PATCH_STATUS;
    c->patch.status = FC_STATUS_COMPLETED;
    do1(f, c, 0);

    c = mk_step("t", 2);
    assert_int_equal(run1(f, c), FC_ETERMINAL);
    assert_non_null(strstr(c->errmsg, "completed"));
    free_change(c);
    c = mk(FC_CHANGE_UPDATE, "t");
    c->patch.fields = FC_PATCH_STATUS;
    c->patch.status = FC_STATUS_RUNNING;
    do1(f, c, FC_ETERMINAL);

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "t", &w), 0);
    assert_int_equal(w.seq, 2);
    fc_workflow_clear(&w);
    do1(f, mk(FC_CHANGE_DELETE, "t"), 0); /* deleting a finished workflow is fine */
}

static void test_step_gt_total(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("g", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *c = mk_step("g", 11);
    c->patch.fields |= FC_PATCH_MESSAGE;
    c->patch.message = strdup("too far");
    assert_int_equal(run1(f, c), FC_EINVAL);
    assert_string_equal(c->errmsg, "current_step (11) is greater than total_steps (10)");
    free_change(c);

    c = mk(FC_CHANGE_UPDATE, "g");
    c->patch.fields = FC_PATCH_TOTAL_STEPS;
    c->patch.total_steps = -1;
    assert_int_equal(run1(f, c), FC_EINVAL);
    assert_string_equal(c->errmsg, "current_step (0) is greater than total_steps (-1)");
    free_change(c);

    do1(f, mk_create("g2", FC_STATUS_RUNNING, 5, 4), FC_EINVAL);

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "g", &w), 0);
    assert_int_equal(w.seq, 1); /* nothing written */
    assert_string_equal(w.message, "queued");
    fc_workflow_clear(&w);
    assert_int_equal(fc_store_get(f->s, "g2", &w), FC_ENOTFOUND);
}

static void test_unknown_id(void **state)
{
    fixture *f = *state;
    fc_change *c = mk_step("ghost", 1);
    assert_int_equal(run1(f, c), FC_ENOTFOUND);
    assert_string_equal(c->errmsg, "workflow 'ghost' not found");
    free_change(c);
    do1(f, mk(FC_CHANGE_DELETE, "ghost"), FC_ENOTFOUND);
}

static void test_duplicate_create(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("d", FC_STATUS_RUNNING, 0, 10), 0);
    fc_change *c = mk_create("d", FC_STATUS_PENDING, 0, 3);
    assert_int_equal(run1(f, c), FC_EEXISTS);
    assert_string_equal(c->errmsg, "workflow 'd' already exists");
    free_change(c);
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "d", &w), 0);
    assert_int_equal(w.total_steps, 10);
    fc_workflow_clear(&w);
}

static void test_delete(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("x1", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_create("x2", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_step("x1", 7), 0);
    fc_change *c = mk(FC_CHANGE_DELETE, "x1");
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 2); /* the state just before deletion */
    assert_int_equal(c->wf.current_step, 7);
    assert_string_equal(c->wf.name, "build");
    free_change(c);

    fc_workflow w = {0};
    rows r = {0};
    int64_t oldest = 0;
    char cur[32];
    assert_int_equal(fc_store_get(f->s, "x1", &w), FC_ENOTFOUND);
    assert_int_equal(fc_store_events_since(f->s, "x1", 0, 0, collect, &r, &oldest), FC_ENOTFOUND);
    fc_list_query q = {.limit = 10};
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, cur, sizeof cur), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.id[0], "x2");

    /* The id is free again, with a fresh log. */
    do1(f, mk_create("x1", FC_STATUS_PENDING, 0, 1), 0);
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_events_since(f->s, "x1", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(oldest, 1);
}

/* Another process's connection, used to hold the write lock or inject faults. */
static sqlite3 *external(fixture *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    return db;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

/* Changes submitted during one loop turn reach the writer together and are
 * committed in one transaction (one commit time), however fast the writer is. */
static void test_one_turn_one_commit(void **state)
{
    fixture *f = *state;
    enum { N = 10 };
    fc_change *cs[N];
    char id[16];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "t%d", i);
        cs[i] = mk_create(id, FC_STATUS_RUNNING, 0, 10);
        cs[i]->data = (void *)(intptr_t)(f->ndone + i);
    }
    int base = f->ndone;
    for (int i = 0; i < N; i++) {
        fc_store_submit(f->s, cs[i]);
        usleep(2000); /* a writer woken per change would have taken the first ones */
    }
    while (f->ndone < base + N)
        uv_run(&f->loop, UV_RUN_ONCE);
    for (int i = 0; i < N; i++) {
        assert_int_equal(cs[i]->result, 0);
        assert_true(cs[i]->commit_ns == cs[0]->commit_ns);
    }
    for (int i = 0; i < N; i++)
        free_change(cs[i]);
}

/* Holding the write lock from outside parks the writer on a first change, so
 * the next ones pile up and must commit as one batch. */
static void test_done_order(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("o", FC_STATUS_RUNNING, 0, 100), 0);
    sqlite3 *db = external(f);
    exec_ok(db, "BEGIN IMMEDIATE");

    fc_change *cs[8];
    int base = f->ndone;
    cs[0] = mk_step("o", 1);
    cs[0]->data = (void *)(intptr_t)base;
    fc_store_submit(f->s, cs[0]);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* this loop turn hands cs[0] to the writer */
    usleep(100 * 1000);              /* the writer takes cs[0] and waits for the lock */
    cs[1] = mk_step("o", 2);
    cs[2] = mk_step("ghost", 1); /* fails, the others go on */
    cs[3] = mk_step("o", 3);
    cs[4] = mk_create("o", FC_STATUS_RUNNING, 0, 1); /* EEXISTS */
    cs[5] = mk_create("o2", FC_STATUS_RUNNING, 0, 1);
    cs[6] = mk(FC_CHANGE_DELETE, "o2");
    cs[7] = mk_step("o", 4);
    for (int i = 1; i < 8; i++) {
        cs[i]->data = (void *)(intptr_t)(base + i);
        fc_store_submit(f->s, cs[i]);
    }
    exec_ok(db, "COMMIT");
    sqlite3_close(db);
    while (f->ndone < base + 8)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->in_order);

    int expect[8] = {0, 0, FC_ENOTFOUND, 0, FC_EEXISTS, 0, 0, 0};
    int64_t seqs[8] = {2, 3, 0, 4, 0, 1, 1, 5};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(cs[i]->result, expect[i]);
        if (expect[i] == 0) assert_int_equal(cs[i]->wf.seq, seqs[i]);
    }
    /* One commit for the whole pile (the first change normally committed alone
     * before it, unless the writer was too slow to take it during the sleep). */
    assert_true(cs[0]->commit_ns <= cs[1]->commit_ns);
    for (int i = 2; i < 8; i++)
        assert_true(cs[i]->commit_ns == cs[1]->commit_ns);
    assert_int_equal(cs[1]->wf.updated_at_ms, cs[7]->wf.updated_at_ms);
    for (int i = 0; i < 8; i++)
        free_change(cs[i]);
}

static void test_reopen(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("p", FC_STATUS_RUNNING, 0, 10), 0);
    do1(f, mk_step("p", 1), 0);
    do1(f, mk_step("p", 2), 0);
    close_store(f);
    f->s = open_store_sync(f, 100, 1); /* the power-loss-safe mode reads the same file */

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "p", &w), 0);
    assert_int_equal(w.seq, 3);
    assert_int_equal(w.current_step, 2);
    fc_workflow_clear(&w);
    fc_change *c = mk_step("p", 3);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 4);
    free_change(c);
    rows r = {0};
    int64_t oldest = 0;
    assert_int_equal(fc_store_events_since(f->s, "p", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(oldest, 1);
}

static int count_versions(fixture *f, int *max)
{
    sqlite3 *db = external(f);
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT COUNT(*), MAX(version) FROM schema_version", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    *max = sqlite3_column_int(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_migration_idempotent(void **state)
{
    fixture *f = *state;
    int max = 0;
    int latest = fc__sqlite_schema_latest();
    assert_true(latest >= 1);
    assert_int_equal(count_versions(f, &max), latest);
    assert_int_equal(max, latest);
    close_store(f);
    f->s = open_store(f, 100);
    close_store(f);
    f->s = open_store(f, 100);
    assert_int_equal(count_versions(f, &max), latest);
    assert_int_equal(max, latest);

    /* A database from a newer server is refused, not misread. */
    close_store(f);
    sqlite3 *db = external(f);
    exec_ok(db, "INSERT INTO schema_version VALUES (999, 0)");
    sqlite3_close(db);
    char err[256] = "";
    fc_store_config cfg = {.path = f->path, .retention = 10};
    assert_null(fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "newer"));
    cfg.retention = 0;
    assert_null(fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err));
}

/* The writer caches the states it committed; a change committed by someone
 * else (another process on the same file) must not be overwritten from a
 * stale cache. */
static void test_external_commit_seen(void **state)
{
    fixture *f = *state;
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

/* Removes the database files, so the next open starts from nothing. */
static void remove_db(fixture *f)
{
    char p[128];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
}

/* A version 2 database (each change rewrote the workflow row) opens as
 * version 3 (the current state is the newest event) with every state kept,
 * including a row whose newest state had not reached the log. */
static void test_migration_from_v2(void **state)
{
    fixture *f = *state;
    close_store(f);
    remove_db(f);
    sqlite3 *db = external(f);
    exec_ok(db,
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
            " applied_at INTEGER NOT NULL);"
            "INSERT INTO schema_version VALUES (1, 0), (2, 0);"
            "CREATE TABLE workflows (pk INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
            " name TEXT NOT NULL, status TEXT NOT NULL, current_step INTEGER NOT NULL,"
            " total_steps INTEGER NOT NULL, message TEXT NOT NULL, seq INTEGER NOT NULL,"
            " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
            "CREATE TABLE events (workflow_id TEXT NOT NULL, seq INTEGER NOT NULL,"
            " status TEXT NOT NULL, current_step INTEGER NOT NULL,"
            " total_steps INTEGER NOT NULL, message TEXT NOT NULL, ts INTEGER NOT NULL,"
            " PRIMARY KEY (workflow_id, seq)) WITHOUT ROWID;"
            "CREATE INDEX workflows_status ON workflows(status);"
            "INSERT INTO workflows VALUES (1, 'old', 'deploy', 'running', 2, 9, 'two', 3,"
            " 1000, 3000), (2, 'gap', 'etl', 'completed', 5, 5, 'done', 5, 1000, 5000);"
            "INSERT INTO events VALUES ('old', 1, 'pending', 0, 9, 'q', 1000),"
            " ('old', 2, 'running', 1, 9, 'one', 2000), ('old', 3, 'running', 2, 9, 'two', 3000),"
            " ('gap', 2, 'running', 4, 5, 'four', 4000);");
    sqlite3_close(db);
    f->s = open_store(f, 100);
    int max = 0;
    assert_int_equal(count_versions(f, &max), fc__sqlite_schema_latest());

    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "old", &w), 0);
    assert_string_equal(w.name, "deploy");
    assert_string_equal(w.message, "two");
    assert_int_equal(w.status, FC_STATUS_RUNNING);
    assert_int_equal(w.seq, 3);
    assert_int_equal(w.current_step, 2);
    assert_int_equal(w.created_at_ms, 1000);
    assert_int_equal(w.updated_at_ms, 3000);
    fc_workflow_clear(&w);
    assert_int_equal(fc_store_get(f->s, "gap", &w), 0);
    assert_int_equal(w.seq, 5);
    assert_int_equal(w.status, FC_STATUS_COMPLETED);
    assert_int_equal(w.updated_at_ms, 5000);
    fc_workflow_clear(&w);

    rows r = {0};
    int64_t oldest = 0;
    assert_int_equal(fc_store_events_since(f->s, "gap", 0, 0, collect, &r, &oldest), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.seq[1], 5);
    assert_int_equal(oldest, 2);

    fc_list_query q = {.limit = 10, .has_status = 1, .status = FC_STATUS_COMPLETED};
    char next[32];
    memset(&r, 0, sizeof r);
    assert_int_equal(fc_store_list(f->s, &q, collect, &r, next, sizeof next), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.id[0], "gap");

    /* Changes continue from the migrated state. */
    fc_change *c = mk_step("old", 3);
    assert_int_equal(run1(f, c), 0);
    assert_int_equal(c->wf.seq, 4);
    assert_string_equal(c->wf.name, "deploy");
    free_change(c);
    assert_int_equal(fc_store_get(f->s, "old", &w), 0);
    assert_int_equal(w.seq, 4);
    assert_int_equal(w.current_step, 3);
    fc_workflow_clear(&w);
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
    sqlite3 *db = external(f);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM events", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    assert_true(n >= 3 && n <= 3 + FC__SQLITE_TRIM_EVERY);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_submit_before_close(void **state)
{
    fixture *f = *state;
    fc_change *c = mk_create("late", FC_STATUS_RUNNING, 0, 10);
    c->data = (void *)(intptr_t)f->ndone;
    fc_store_submit(f->s, c);
    fc_store_close(f->s); /* runs the remaining done() before returning */
    f->s = NULL;
    assert_int_equal(f->ndone, 1);
    assert_int_equal(c->result, 0);
    free_change(c);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

    f->s = open_store(f, 100);
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "late", &w), 0);
    assert_int_equal(w.seq, 1);
    fc_workflow_clear(&w);
}

/* A failure in the middle of a batch (here a trigger raising an error on the
 * third change's event row) must roll back the whole batch and report FC_EIO
 * for every change in it. */
static void test_storage_error_rolls_back(void **state)
{
    fixture *f = *state;
    do1(f, mk_create("k", FC_STATUS_RUNNING, 0, 10), 0);
    sqlite3 *db = external(f);
    exec_ok(db, "BEGIN IMMEDIATE");
    exec_ok(db, "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.message = 'boom'"
                " BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
    fc_change *cs[4];
    int base = f->ndone;
    cs[0] = mk_step("k", 1);
    cs[0]->data = (void *)(intptr_t)base;
    fc_store_submit(f->s, cs[0]);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* hands cs[0] to the writer on its own */
    usleep(100 * 1000);
    cs[1] = mk_create("k2", FC_STATUS_RUNNING, 0, 10);
    cs[2] = mk_step("k", 2);
    cs[2]->patch.fields |= FC_PATCH_MESSAGE;
    cs[2]->patch.message = strdup("boom");
    cs[3] = mk_create("k3", FC_STATUS_RUNNING, 0, 10);
    for (int i = 1; i < 4; i++) {
        cs[i]->data = (void *)(intptr_t)(base + i);
        fc_store_submit(f->s, cs[i]);
    }
    exec_ok(db, "COMMIT");
    while (f->ndone < base + 4)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->in_order);

    int first_alone = cs[0]->commit_ns != cs[1]->commit_ns;
    assert_int_equal(cs[0]->result, first_alone ? 0 : FC_EIO);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(cs[i]->result, FC_EIO);
        assert_non_null(strstr(cs[i]->errmsg, "injected failure"));
    }
    fc_workflow w = {0};
    assert_int_equal(fc_store_get(f->s, "k2", &w), FC_ENOTFOUND);
    assert_int_equal(fc_store_get(f->s, "k", &w), 0);
    assert_int_equal(w.seq, first_alone ? 2 : 1);
    fc_workflow_clear(&w);
    for (int i = 0; i < 4; i++)
        free_change(cs[i]);

    /* The writer recovers once the fault is gone. */
    exec_ok(db, "DROP TRIGGER boom");
    sqlite3_close(db);
    do1(f, mk_create("k2", FC_STATUS_RUNNING, 0, 10), 0);
}

/* What one handle's commit callback heard. */
typedef struct heard {
    int n;
    int64_t seq[64];
    int deleted[64];
    int own_done; /* done() calls of this handle's own changes */
} heard;

static void on_heard(void *ud, const fc_workflow *w, uint64_t commit_ns, int deleted)
{
    heard *h = ud;
    assert_true(h->n < 64);
    assert_string_equal(w->id, "sh");
    assert_true(commit_ns > 0);
    h->seq[h->n] = w->seq;
    h->deleted[h->n] = deleted;
    h->n++;
}

static void count_done(fc_change *c)
{
    heard *h = c->data;
    h->own_done++;
    /* The handle heard of its own change before done(). */
    int heard_it = c->result != 0;
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

    /* Handle 2 closes with a change in flight: its done() runs inside close,
     * handle 1 still hears it, and the store stays open for handle 1. */
    c = mk_create("sh", FC_STATUS_RUNNING, 0, 5);
    c->done = count_done;
    c->data = &h2;
    fc_store_submit(s2, c);
    fc_store_close(s2);
    assert_int_equal(h2.own_done, 22);
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
    fc_store_on_commit(f->s, NULL, NULL);
}

/* Not a pass/fail test: prints the group-commit throughput for the record. */
static void test_throughput(void **state)
{
    enum { NWF = 100, NUPD = 20000 };
    fixture *f = *state;
    fc_change *creates[NWF];
    char id[16];
    for (int i = 0; i < NWF; i++) {
        snprintf(id, sizeof id, "b%d", i);
        creates[i] = mk_create(id, FC_STATUS_RUNNING, 0, NUPD);
    }
    submit_wait(f, creates, NWF);
    for (int i = 0; i < NWF; i++)
        free_change(creates[i]);

    fc_change *cs = calloc(NUPD, sizeof *cs);
    assert_non_null(cs);
    int base = f->ndone;
    uint64_t t0 = fc_time_mono_ns();
    for (int i = 0; i < NUPD; i++) {
        fc_change *c = &cs[i];
        c->kind = FC_CHANGE_UPDATE;
        snprintf(c->wf.id, sizeof c->wf.id, "b%d", i % NWF);
        c->patch.fields = FC_PATCH_CURRENT_STEP;
        c->patch.current_step = i / NWF + 1;
        c->done = on_done;
        c->data = (void *)(intptr_t)(base + i);
        fc_store_submit(f->s, c);
    }
    while (f->ndone < base + NUPD)
        uv_run(&f->loop, UV_RUN_ONCE);
    uint64_t t1 = fc_time_mono_ns();
    assert_true(f->in_order);
    for (int i = 0; i < NUPD; i++) {
        assert_int_equal(cs[i].result, 0);
        fc_change_clear(&cs[i]);
    }
    free(cs);
    printf("store.sqlite: %d updates over %d workflows in %.1f ms = %.0f changes/s\n", NUPD, NWF,
           (double)(t1 - t0) / 1e6, NUPD / ((double)(t1 - t0) / 1e9));
}

int main(void)
{
    alarm(120); /* a lost done() would otherwise hang the run forever */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_get_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_if_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_terminal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_gt_total, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_turn_one_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_external_commit_seen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints_follow_the_wal, setup, teardown),
        cmocka_unit_test(test_wcache_budget),
        cmocka_unit_test_setup_teardown(test_retention_trims_in_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_before_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_handles_hear_commit_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_error_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throughput, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
