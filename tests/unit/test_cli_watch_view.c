/* Unit tests for the watcher's frame (src/cli/commands_watch_view.c): never
 * more lines than the screen, "… and N more" with the hidden statuses, the
 * most active workflows listed, --active, deleted rows, stale bars. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/cli/commands_watch_view.c"
#include "../../src/cli/tui_text.c"

#define CAP 1024
static char lines[64 * CAP];
static fc__watch_row rows[100];

static void add(size_t i, const char *name, const char *status, long long step)
{
    memset(&rows[i], 0, sizeof rows[i]);
    snprintf(rows[i].id, sizeof rows[i].id, "w%zu", i);
    snprintf(rows[i].name, sizeof rows[i].name, "%s", name);
    snprintf(rows[i].status, sizeof rows[i].status, "%s", status);
    rows[i].step = step;
    rows[i].total = 10;
    rows[i].have_state = 1;
    rows[i].last_ms = (int64_t)i;
}

static const char *line(int i)
{
    return lines + (size_t)i * CAP;
}

static int frame(size_t n, int active, int stale, int height, int width)
{
    fc__watch_view v = {.rows = rows,
                        .n = n,
                        .active_only = active,
                        .stale = stale,
                        .status = "connected to http://x",
                        .now_ms = 1000};
    return fc__watch_frame(&v, height, width, 1, lines, CAP);
}

static int setup(void **state)
{
    (void)state;
    setenv("LC_ALL", "C.UTF-8", 1);
    fc_tui_text_init();
    return 0;
}

static void everything_fits_in_list_order(void **state)
{
    (void)state;
    add(0, "alpha", "completed", 10);
    add(1, "beta", "running", 3);
    add(2, "gamma", "pending", 0);
    assert_int_equal(frame(3, 0, 0, 10, 100), 4);
    assert_non_null(strstr(line(0), "3 workflows: 1 running, 1 pending, 1 completed"));
    assert_ptr_equal(strstr(line(1), "alpha"), line(1));
    assert_ptr_equal(strstr(line(2), "beta"), line(2));
    /* The step column is as wide as the widest ("10/10"). */
    assert_non_null(strstr(line(2), "[######..............] 3/10   30% running"));
    assert_ptr_equal(strstr(line(3), "gamma"), line(3));
}

static void a_tall_list_ends_with_a_summary(void **state)
{
    (void)state;
    for (size_t i = 0; i < 50; i++)
        add(i, "job", i % 5 == 0 ? "running" : i % 5 == 1 ? "pending" : "completed", 1);
    /* 10 running, 10 pending, 30 completed on 8 lines: status, 6 bars, summary. */
    assert_int_equal(frame(50, 0, 0, 8, 100), 8);
    for (int i = 1; i <= 6; i++)
        assert_non_null(strstr(line(i), " running "));
    assert_string_equal(line(7), "\xE2\x80\xA6 and 44 more: 4 running, 10 pending, 30 completed");
    /* The newest running ones, shown in list order. */
    assert_non_null(strstr(line(1), "running"));
    /* One line: just the status; two: status and the summary alone. */
    assert_int_equal(frame(50, 0, 0, 1, 100), 1);
    assert_int_equal(frame(50, 0, 0, 2, 100), 2);
    assert_string_equal(line(1), "\xE2\x80\xA6 and 50 more: 10 running, 10 pending, 30 completed");
}

static void active_hides_finished_and_deleted_rows_leave(void **state)
{
    (void)state;
    add(0, "done", "completed", 10);
    add(1, "broken", "failed", 2);
    add(2, "busy", "running", 4);
    add(3, "gone", "running", 4);
    rows[3].deleted = 1;
    assert_int_equal(frame(4, 1, 0, 10, 100), 2);
    assert_ptr_equal(strstr(line(1), "busy"), line(1));
    assert_non_null(strstr(line(0), "3 workflows: 1 running; 2 finished hidden"));
    assert_int_equal(frame(4, 0, 0, 10, 100), 4);
    assert_null(strstr(lines, "gone"));
}

static void stale_bars_are_dimmed_without_a_clock(void **state)
{
    (void)state;
    add(0, "busy", "running", 4);
    assert_int_equal(frame(1, 0, 1, 10, 100), 2);
    assert_ptr_equal(strstr(line(1), "\x1b[2mbusy"), line(1));
    assert_non_null(strstr(line(1), "running     stale"));
    assert_int_equal(frame(1, 0, 0, 10, 100), 2);
    assert_null(strstr(line(1), "stale"));
}

static void every_line_fits_the_width(void **state)
{
    (void)state;
    add(0, "\xE3\x83\x87\xE3\x83\x97\xE3\x83\xAD\xE3\x82\xA4\xE6\x9C\xAC\xE7\x95\xAA", "running",
        4);
    snprintf(rows[0].message, sizeof rows[0].message, "%s", "a message far too long for the line");
    add(1, "x", "pending", 0);
    for (int width = 10; width <= 120; width += 7) {
        int n = frame(2, 0, 0, 10, width);
        for (int i = 1; i < n; i++)
            assert_true(fc_tui_width(line(i)) <= width - 1);
        /* The bars start in the same column whatever the names' bytes. */
        const char *a = strchr(line(1), '['), *b = strchr(line(2), '[');
        if (a && b) {
            char pa[CAP], pb[CAP];
            snprintf(pa, sizeof pa, "%.*s", (int)(a - line(1)), line(1));
            snprintf(pb, sizeof pb, "%.*s", (int)(b - line(2)), line(2));
            assert_int_equal(fc_tui_width(pa), fc_tui_width(pb));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(everything_fits_in_list_order, setup),
        cmocka_unit_test_setup(a_tall_list_ends_with_a_summary, setup),
        cmocka_unit_test_setup(active_hides_finished_and_deleted_rows_leave, setup),
        cmocka_unit_test_setup(stale_bars_are_dimmed_without_a_clock, setup),
        cmocka_unit_test_setup(every_line_fits_the_width, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
