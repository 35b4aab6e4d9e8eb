/* Unit tests for src/model/workflow.c: statuses, ids, copies and patch application. */
#include "common/error.h"
#include "model/workflow.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_status_names_roundtrip(void **state)
{
    (void)state;
    static const char *const names[] = {"pending",   "running", "paused",
                                        "completed", "failed",  "cancelled"};
    for (int i = 0; i < 6; i++) {
        fc_status s = (fc_status)-1;
        assert_string_equal(fc_status_name((fc_status)i), names[i]);
        assert_int_equal(fc_status_parse(names[i], &s), 0);
        assert_int_equal(s, i);
    }
    assert_string_equal(fc_status_name((fc_status)6), "unknown");
    assert_string_equal(fc_status_name((fc_status)-1), "unknown");
}

static void test_status_parse_rejects(void **state)
{
    (void)state;
    fc_status s = FC_STATUS_PAUSED;
    static const char *const bad[] = {"", "Running", "RUNNING", "run", "running ", "unknown"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(fc_status_parse(bad[i], &s), -1);
        assert_int_equal(s, FC_STATUS_PAUSED); /* untouched on failure */
    }
}

static void test_status_terminal(void **state)
{
    (void)state;
    assert_false(fc_status_is_terminal(FC_STATUS_PENDING));
    assert_false(fc_status_is_terminal(FC_STATUS_RUNNING));
    assert_false(fc_status_is_terminal(FC_STATUS_PAUSED));
    assert_true(fc_status_is_terminal(FC_STATUS_COMPLETED));
    assert_true(fc_status_is_terminal(FC_STATUS_FAILED));
    assert_true(fc_status_is_terminal(FC_STATUS_CANCELLED));
}

static void test_id_valid(void **state)
{
    (void)state;
    char id64[66];
    memset(id64, 'a', 65);
    id64[65] = '\0';
    assert_false(fc_id_valid(id64)); /* 65 chars */
    id64[64] = '\0';
    assert_true(fc_id_valid(id64)); /* exactly 64 */

    assert_true(fc_id_valid("a"));
    assert_true(fc_id_valid("AZaz09_-"));
    assert_true(fc_id_valid("-"));
    assert_false(fc_id_valid(""));
    static const char *const bad[] = {"a b", "a/b", "a.b", "a\"b", "\xc3\xa9", "a\n", "~", "a+b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(fc_id_valid(bad[i]));
}

static void test_id_generate_sorted(void **state)
{
    (void)state;
    enum { N = 10000 };
    char(*ids)[FC_ID_MAX + 1] = calloc(N, sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        fc_id_generate(ids[i]);
        assert_int_equal(strlen(ids[i]), 26);
        assert_true(fc_id_valid(ids[i]));
        /* Strictly increasing: unique and sortable in generation order. */
        if (i > 0) assert_true(strcmp(ids[i - 1], ids[i]) < 0);
    }
    free(ids);
}

static void test_id_generate_alphabet(void **state)
{
    (void)state;
    char id[FC_ID_MAX + 1];
    fc_id_generate(id);
    /* Crockford base32 excludes I, L, O, U; the first digit holds only 3 bits. */
    assert_null(strpbrk(id, "ILOUabcdefghijklmnopqrstuvwxyz_-"));
    assert_true(id[0] >= '0' && id[0] <= '7');
}

static fc_workflow make(int64_t step, int64_t total, const char *msg)
{
    fc_workflow w = {.status = FC_STATUS_RUNNING, .current_step = step, .total_steps = total};
    w.name = strdup("n");
    w.message = strdup(msg);
    return w;
}

static void test_copy(void **state)
{
    (void)state;
    fc_workflow a = make(1, 2, "hello"), b;
    strcpy(a.id, "x");
    a.seq = 9;
    assert_int_equal(fc_workflow_copy(&b, &a), 0);
    assert_ptr_not_equal(a.message, b.message);
    assert_string_equal(b.message, "hello");
    assert_string_equal(b.id, "x");
    assert_int_equal(b.seq, 9);
    fc_workflow_clear(&a);
    fc_workflow_clear(&b);
    assert_null(b.name);
    assert_int_equal(b.seq, 0);
}

static void test_apply_patch(void **state)
{
    (void)state;
    fc_workflow w = make(1, 10, "old");
    fc_patch p = {.fields = FC_PATCH_STATUS | FC_PATCH_CURRENT_STEP | FC_PATCH_MESSAGE,
                  .status = FC_STATUS_PAUSED,
                  .current_step = 4,
                  .total_steps = 999, /* not in fields: ignored */
                  .message = strdup("new")};
    assert_int_equal(fc_workflow_apply_patch(&w, &p), 0);
    assert_int_equal(w.status, FC_STATUS_PAUSED);
    assert_int_equal(w.current_step, 4);
    assert_int_equal(w.total_steps, 10);
    assert_string_equal(w.message, "new");
    assert_null(p.message); /* ownership moved to w */
    fc_patch_clear(&p);
    fc_workflow_clear(&w);
}

static void test_apply_patch_step_over_total(void **state)
{
    (void)state;
    fc_workflow w = make(2, 5, "keep");
    fc_patch p = {.fields = FC_PATCH_CURRENT_STEP | FC_PATCH_MESSAGE | FC_PATCH_STATUS,
                  .current_step = 6,
                  .status = FC_STATUS_FAILED,
                  .message = strdup("lost")};
    assert_int_equal(fc_workflow_apply_patch(&w, &p), FC_EINVAL);
    /* w unchanged and p keeps its message. */
    assert_int_equal(w.current_step, 2);
    assert_int_equal(w.status, FC_STATUS_RUNNING);
    assert_string_equal(w.message, "keep");
    assert_string_equal(p.message, "lost");
    fc_patch_clear(&p);

    /* Shrinking total below the stored step is rejected the same way. */
    p = (fc_patch){.fields = FC_PATCH_TOTAL_STEPS, .total_steps = 1};
    assert_int_equal(fc_workflow_apply_patch(&w, &p), FC_EINVAL);
    assert_int_equal(w.total_steps, 5);

    /* Both together are checked against each other, not the stored values. */
    p = (fc_patch){.fields = FC_PATCH_TOTAL_STEPS | FC_PATCH_CURRENT_STEP,
                   .current_step = 20,
                   .total_steps = 20};
    assert_int_equal(fc_workflow_apply_patch(&w, &p), 0);
    assert_int_equal(w.current_step, 20);
    assert_int_equal(w.total_steps, 20);
    fc_workflow_clear(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_names_roundtrip),
        cmocka_unit_test(test_status_parse_rejects),
        cmocka_unit_test(test_status_terminal),
        cmocka_unit_test(test_id_valid),
        cmocka_unit_test(test_id_generate_sorted),
        cmocka_unit_test(test_id_generate_alphabet),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_apply_patch),
        cmocka_unit_test(test_apply_patch_step_over_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
