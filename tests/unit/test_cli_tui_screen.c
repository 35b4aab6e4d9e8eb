/* Unit tests for the watcher's screen (src/cli/tui_screen.c), drawn into a
 * pipe: only changed lines are written, a resize clears and draws all, and
 * leaving restores the normal screen and prints the final lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>

#include "../../src/cli/tui_screen.c"

static int fds[2];
static char got[65536];

/* Everything written to the pipe since the last call. */
static const char *drain(void)
{
    ssize_t n = read(fds[0], got, sizeof got - 1);
    got[n > 0 ? n : 0] = '\0';
    return got;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(pipe(fds), 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close(fds[0]);
    close(fds[1]);
    return 0;
}

static void only_changed_lines_are_written(void **state)
{
    (void)state;
    fc_tui_screen s;
    assert_int_equal(fc_tui_screen_enter(&s, fds[1]), 0);
    assert_int_equal(s.rows, 24); /* a pipe has no size: 24 x 80 */
    assert_string_equal(drain(), "\x1b[?1049h\x1b[?25l");
    const char *a[] = {"status", "alpha", "bravo"};
    assert_int_equal(fc_tui_screen_draw(&s, a, 3), 0);
    assert_string_equal(drain(), "\x1b[H\x1b[2J\x1b[1;1Hstatus\x1b[K\x1b[2;1Halpha\x1b[K"
                                 "\x1b[3;1Hbravo\x1b[K");
    const char *b[] = {"status", "ALPHA", "bravo"};
    assert_int_equal(fc_tui_screen_draw(&s, b, 3), 0);
    assert_string_equal(drain(), "\x1b[2;1HALPHA\x1b[K");
    assert_int_equal(fc_tui_screen_draw(&s, b, 3), 0); /* nothing changed: nothing written */
    assert_string_equal(drain(), "");
    const char *c[] = {"status"}; /* shorter: the lines below are erased */
    assert_int_equal(fc_tui_screen_draw(&s, c, 1), 0);
    assert_string_equal(drain(), "\x1b[2;1H\x1b[K\x1b[3;1H\x1b[K");
    /* Lines past the screen are not drawn. */
    const char *many[30];
    for (int i = 0; i < 30; i++)
        many[i] = "x";
    assert_int_equal(fc_tui_screen_draw(&s, many, 30), 0);
    assert_null(strstr(drain(), "\x1b[25;1H"));
    const char *fin[] = {"alpha done", "bravo done"};
    fc_tui_screen_leave(&s, fin, 2);
    assert_string_equal(drain(),
                        "\x1b[0m\x1b[?25h\x1b[?1049lalpha done\x1b[0m\nbravo done\x1b[0m\n");
    fc_tui_screen_leave(&s, fin, 2); /* twice: nothing more */
    assert_string_equal(drain(), "");
}

static void resume_draws_everything_afresh(void **state)
{
    (void)state;
    fc_tui_screen s;
    assert_int_equal(fc_tui_screen_enter(&s, fds[1]), 0);
    const char *a[] = {"one", "two"};
    fc_tui_screen_draw(&s, a, 2);
    drain();
    fc_tui_screen_suspend(&s);
    assert_string_equal(drain(), "\x1b[0m\x1b[?25h\x1b[?1049l");
    assert_int_equal(fc_tui_screen_draw(&s, a, 2), 0); /* stopped: nothing drawn */
    assert_string_equal(drain(), "");
    fc_tui_screen_resume(&s);
    assert_string_equal(drain(), "\x1b[?1049h\x1b[?25l");
    fc_tui_screen_draw(&s, a, 2);
    assert_string_equal(drain(), "\x1b[H\x1b[2J\x1b[1;1Hone\x1b[K\x1b[2;1Htwo\x1b[K");
    fc_tui_screen_leave(&s, NULL, 0);
    drain();
}

static void a_closed_terminal_fails_the_draw(void **state)
{
    (void)state;
    fc_tui_screen s;
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(fc_tui_screen_enter(&s, fds[1]), 0);
    close(fds[0]);
    fds[0] = open("/dev/null", O_RDONLY);
    const char *a[] = {"one"};
    assert_int_equal(fc_tui_screen_draw(&s, a, 1), -1);
    fc_tui_screen_leave(&s, a, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(only_changed_lines_are_written, setup, teardown),
        cmocka_unit_test_setup_teardown(resume_draws_everything_afresh, setup, teardown),
        cmocka_unit_test_setup_teardown(a_closed_terminal_fails_the_draw, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
