/* Unit tests for libflowcast's update messages (src/client/watch_msg.c): the
 * (epoch, seq) bookkeeping that delivers each change once and tells a
 * re-created workflow from a continued one, without a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/watch.h"

/* What the application saw, one short line per update: "w 7:4 d" (deleted),
 * "w 9:3 r" (resync), "w 9:4". */
typedef struct seen {
    char lines[32][64];
    int n;
} seen;

static void on_update(fcc_watch *w, const fcc_update *u, void *data)
{
    seen *s = data;
    (void)w;
    assert_true(s->n < 32);
    snprintf(s->lines[s->n++], sizeof s->lines[0], "%s %lld:%lld%s%s", u->workflow_id,
             (long long)u->epoch, (long long)u->seq, u->deleted ? " d" : "", u->resync ? " r" : "");
}

static fcc_watch *watch_new(seen *s)
{
    fcc_watch_options o = {.on_update = on_update, .data = s};
    int err = 0;
    fcc_watch *w = fcc_watch_new(NULL, "http://127.0.0.1:1", &o, &err);
    assert_non_null(w);
    return w;
}

/* Frees a watch that never started (its private loop closes the timers). */
static void watch_free(fcc_watch *w)
{
    fcc_watch_close(w);
    assert_int_equal(fcc_watch_run(w), 0);
}

static void msg(fcc_watch *w, const char *text)
{
    fcc__watch_message(w, text, strlen(text));
}

static void expect(const seen *s, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    assert_int_equal(s->n, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(s->lines[i], va_arg(ap, const char *));
    va_end(ap);
}

#define UPD(id, e, q)                                                                              \
    "{\"workflow_id\":\"" id "\",\"epoch\":" #e ",\"status\":\"running\",\"seq\":" #q "}"
#define RESYNC(id, e, q)                                                                           \
    "{\"workflow_id\":\"" id "\",\"epoch\":" #e ",\"status\":\"running\",\"seq\":" #q              \
    ",\"resync\":true}"
#define DEL(id, e, q)                                                                              \
    "{\"workflow_id\":\"" id "\",\"epoch\":" #e ",\"deleted\":true,\"seq\":" #q "}"

/* Issue 8 item 1: held (7, 3); w was deleted at seq 4 and created again
 * (epoch 9) with seq 1..3. The deletion, then the new incarnation's state
 * (seq 3, not above the old 3, and still not dropped), then its changes. */
static void test_resume_across_recreate(void **state)
{
    (void)state;
    seen s = {0};
    fcc_watch *w = watch_new(&s);
    assert_int_equal(fcc_watch_add_from(w, "w", 7, 3), 0);
    char path[256];
    fcc__watch_path(w, path, sizeof path);
    assert_string_equal(path, "/api/workflows/w/updates?since=3&epoch=7");
    msg(w, DEL("w", 7, 4));
    assert_int_equal(fcc__watch_sub_count(w), 0);
    msg(w, RESYNC("w", 9, 3));
    assert_int_equal(fcc__watch_sub_count(w), 1);
    msg(w, UPD("w", 9, 3)); /* a repeat */
    msg(w, UPD("w", 7, 5)); /* a late message of the replaced incarnation */
    msg(w, UPD("w", 9, 4));
    expect(&s, 3, "w 7:4 d", "w 9:3 r", "w 9:4");
    fcc__watch_path(w, path, sizeof path);
    assert_string_equal(path, "/api/workflows/w/updates?since=4&epoch=9");
    watch_free(w);
}

/* A new incarnation whose seq is below the tracked one is never dropped as old,
 * even from a server that sent no deletion and no resync. */
static void test_other_epoch_is_new_not_old(void **state)
{
    (void)state;
    seen s = {0};
    fcc_watch *w = watch_new(&s);
    assert_int_equal(fcc_watch_add(w, "w", -1), 0);
    msg(w, UPD("w", 7, 5));
    msg(w, UPD("w", 9, 1));
    msg(w, UPD("w", 9, 2));
    msg(w, UPD("w", 9, 2));
    expect(&s, 3, "w 7:5", "w 9:1", "w 9:2");
    watch_free(w);
}

/* Replays after a reconnect are dropped; a resync of the same epoch below the
 * last seq (a restored database) is delivered, one at the last seq is not. */
static void test_dedupe_by_epoch_and_seq(void **state)
{
    (void)state;
    seen s = {0};
    fcc_watch *w = watch_new(&s);
    assert_int_equal(fcc_watch_add(w, "a", -1), 0);
    assert_int_equal(fcc_watch_add(w, "b", -1), 0);
    msg(w, UPD("a", 7, 1));
    msg(w, UPD("a", 7, 2));
    msg(w, UPD("b", 8, 1));
    msg(w, UPD("a", 7, 2));
    msg(w, UPD("a", 7, 1));
    msg(w, UPD("a", 7, 3));
    msg(w, UPD("c", 5, 1));    /* not watched */
    msg(w, RESYNC("a", 7, 3)); /* the state it has: a repeat */
    msg(w, RESYNC("a", 7, 2));
    expect(&s, 5, "a 7:1", "a 7:2", "b 8:1", "a 7:3", "a 7:2 r");
    watch_free(w);
}

/* Issue 8 item 3: an id added twice is one subscription; each change once. */
static void test_duplicate_ids_are_one(void **state)
{
    (void)state;
    seen s = {0};
    fcc_watch *w = watch_new(&s);
    assert_int_equal(fcc_watch_add_from(w, "a", 7, 2), 0);
    assert_int_equal(fcc_watch_add(w, "a", -1), 0);
    assert_int_equal(fcc_watch_add_from(w, "a", 3, 9), 0);
    assert_int_equal(fcc__watch_sub_count(w), 1);
    char path[256];
    fcc__watch_path(w, path, sizeof path); /* one id: the single stream, first position */
    assert_string_equal(path, "/api/workflows/a/updates?since=2&epoch=7");
    msg(w, UPD("a", 7, 3));
    msg(w, UPD("a", 7, 3));
    expect(&s, 1, "a 7:3");
    assert_int_equal(fcc_watch_add_from(w, "a", -1, 2), FCC_EINVAL);
    assert_int_equal(fcc_watch_add_from(w, "c", INT64_C(9007199254740992), 2), FCC_EINVAL);
    assert_int_equal(fcc_watch_add_from(w, "c", INT64_C(9007199254740991), 2), 0);
    watch_free(w);
}

/* A deletion is delivered once; a given id stays known (gone) so that a
 * repeat is dropped and a later incarnation is delivered. */
static void test_deletion_once_then_new_incarnation(void **state)
{
    (void)state;
    seen s = {0};
    fcc_watch *w = watch_new(&s);
    assert_int_equal(fcc_watch_add(w, "a", -1), 0);
    assert_int_equal(fcc_watch_add(w, "b", -1), 0);
    msg(w, UPD("a", 7, 1));
    msg(w, DEL("a", 7, 2));
    msg(w, DEL("a", 7, 2));
    assert_int_equal(fcc__watch_sub_count(w), 1);
    msg(w, UPD("a", 7, 3)); /* nothing follows a deletion in its incarnation */
    msg(w, UPD("a", 11, 1));
    assert_int_equal(fcc__watch_sub_count(w), 2);
    expect(&s, 3, "a 7:1", "a 7:2 d", "a 11:1");
    watch_free(w);
}

/* A watch of all forgets deleted ids (memory follows the live workflows) and
 * ignores deletions of ids it never saw; a re-creation arrives as seq 1. */
static void test_all_forgets_deleted(void **state)
{
    (void)state;
    seen s = {0};
    fcc_watch *w = watch_new(&s);
    assert_int_equal(fcc_watch_add_all(w), 0);
    msg(w, DEL("x", 3, 9));
    msg(w, UPD("a", 7, 1));
    msg(w, UPD("a", 7, 2));
    msg(w, DEL("a", 7, 3));
    assert_int_equal(fcc__watch_sub_count(w), 0);
    msg(w, DEL("a", 7, 3));
    msg(w, UPD("a", 12, 1));
    expect(&s, 4, "a 7:1", "a 7:2", "a 7:3 d", "a 12:1");
    watch_free(w);
}

/* An older server sends no epoch: seq alone decides, as before. A legacy
 * position (no epoch) adopts the epoch of the first update. */
static void test_without_epoch(void **state)
{
    (void)state;
    seen s = {0};
    fcc_watch *w = watch_new(&s);
    assert_int_equal(fcc_watch_add(w, "a", 4), 0);
    char path[256];
    fcc__watch_path(w, path, sizeof path);
    assert_string_equal(path, "/api/workflows/a/updates?since=4");
    msg(w, "{\"workflow_id\":\"a\",\"status\":\"running\",\"seq\":4}");
    msg(w, "{\"workflow_id\":\"a\",\"status\":\"running\",\"seq\":5}");
    msg(w, UPD("a", 7, 6));
    msg(w, UPD("a", 7, 6));
    expect(&s, 2, "a 0:5", "a 7:6");
    fcc__watch_path(w, path, sizeof path);
    assert_string_equal(path, "/api/workflows/a/updates?since=6&epoch=7");
    watch_free(w);
}

/* The names the application saw, one per update ("" included). */
static void on_update_name(fcc_watch *w, const fcc_update *u, void *data)
{
    seen *s = data;
    (void)w;
    assert_true(s->n < 32);
    assert_non_null(u->name);
    snprintf(s->lines[s->n++], sizeof s->lines[0], "%s", u->name);
}

/* Issue 11: an update carries the workflow's name, decoded (escapes, UTF-8);
 * a deletion carries "" (the server sends none), as do an older server's
 * updates without one and a name that is not a string: never NULL. */
static void test_update_carries_the_name(void **state)
{
    (void)state;
    seen s = {0};
    fcc_watch_options o = {.on_update = on_update_name, .data = &s};
    int err = 0;
    fcc_watch *w = fcc_watch_new(NULL, "http://127.0.0.1:1", &o, &err);
    assert_non_null(w);
    assert_int_equal(fcc_watch_add_all(w), 0);
    msg(w, "{\"workflow_id\":\"a\",\"epoch\":7,\"name\":\"N\\u00e4chtlich \\\"q\\\" \\\\ "
           "\u591c\",\"status\":\"running\",\"seq\":1}");
    msg(w, RESYNC("a", 7, 4));
    msg(w, "{\"workflow_id\":\"a\",\"epoch\":7,\"name\":7,\"status\":\"running\",\"seq\":5}");
    msg(w, DEL("a", 7, 6));
    msg(w, "{\"workflow_id\":\"b\",\"epoch\":8,\"name\":\"Deploy\",\"status\":\"running\","
           "\"seq\":2,\"resync\":true}");
    expect(&s, 5, "N\u00e4chtlich \"q\" \\ \u591c", "", "", "", "Deploy");
    watch_free(w);
}

/* Hostile input: not JSON, wrong types, a negative epoch, an overlong id. */
static void test_garbage_is_ignored(void **state)
{
    (void)state;
    seen s = {0};
    fcc_watch *w = watch_new(&s);
    assert_int_equal(fcc_watch_add_all(w), 0);
    msg(w, "not json");
    msg(w, "[1,2]");
    msg(w, "{\"workflow_id\":7,\"seq\":1}");
    msg(w, UPD("a", -4, 1));
    msg(w, UPD("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1, 1));
    msg(w, "{\"workflow_id\":\"a\",\"epoch\":\"x\",\"seq\":\"y\"}");
    msg(w, "{\"workflow_id\":\"a\",\"epoch\":7}");
    expect(&s, 0);
    assert_int_equal(fcc__watch_sub_count(w), 0);
    watch_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_across_recreate),
        cmocka_unit_test(test_other_epoch_is_new_not_old),
        cmocka_unit_test(test_dedupe_by_epoch_and_seq),
        cmocka_unit_test(test_duplicate_ids_are_one),
        cmocka_unit_test(test_deletion_once_then_new_incarnation),
        cmocka_unit_test(test_all_forgets_deleted),
        cmocka_unit_test(test_without_epoch),
        cmocka_unit_test(test_update_carries_the_name),
        cmocka_unit_test(test_garbage_is_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
