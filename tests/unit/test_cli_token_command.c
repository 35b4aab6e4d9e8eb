/* Unit tests for --token-command (src/cli/commands_token.c): the first line
 * of the command's stdout is the token; failures, timeouts, floods and
 * malformed tokens give one precise line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define FC_CLI_TOKEN_TIMEOUT_MS 700 /* the real bound is 10 s */
#include "../../src/cli/commands_token.c"

static char buf[FCC_TOKEN_MAX + 1];

static void first_line_of_stdout_is_the_token(void **state)
{
    (void)state;
    assert_int_equal(fc_cli_token_command("printf 'aaa.bbb.ccc\\nsecond line\\n'", buf, sizeof buf),
                     0);
    assert_string_equal(buf, "aaa.bbb.ccc");
    assert_int_equal(fc_cli_token_command("printf 'crlf-token\\r\\n'", buf, sizeof buf), 0);
    assert_string_equal(buf, "crlf-token");
    assert_int_equal(fc_cli_token_command("printf no-newline", buf, sizeof buf), 0);
    assert_string_equal(buf, "no-newline");
    /* stderr is not the token; a command reading stdin sees /dev/null. */
    assert_int_equal(fc_cli_token_command("echo noise >&2; cat; echo tok", buf, sizeof buf), 0);
    assert_string_equal(buf, "tok");
    fc_cli_ctx ctx = {.token_command = "echo via-ctx"};
    assert_int_equal(fc_cli_token_fn(&ctx, buf, sizeof buf), 0);
    assert_string_equal(buf, "via-ctx");
}

static void failures_say_why(void **state)
{
    (void)state;
    assert_int_equal(
        fc_cli_token_command("echo 'no credentials here' >&2; exit 3", buf, sizeof buf), -1);
    assert_string_equal(buf, "the token command failed (exit status 3): no credentials here");
    assert_int_equal(fc_cli_token_command("kill -TERM $$", buf, sizeof buf), -1);
    assert_string_equal(buf, "the token command failed (killed by signal 15)");
    assert_int_equal(fc_cli_token_command("true", buf, sizeof buf), -1);
    assert_string_equal(buf, "the token command printed no token (its first line is empty)");
    assert_int_equal(fc_cli_token_command("echo 'two words'", buf, sizeof buf), -1);
    assert_non_null(strstr(buf, "is not a token"));
    assert_int_equal(fc_cli_token_command("head -c 5000 /dev/zero | tr '\\0' x", buf, sizeof buf),
                     -1);
    assert_string_equal(buf, "the token command's first line is longer than 4096 bytes");
    assert_int_equal(fc_cli_token_command("exec /nonexistent/token-tool", buf, sizeof buf), -1);
    assert_non_null(strstr(buf, "exit status 127"));
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void bounded_in_time_and_output(void **state)
{
    (void)state;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* The whole process group goes: the background sleep too, which holds stdout. */
    assert_int_equal(fc_cli_token_command("sleep 30 & sleep 30", buf, sizeof buf), -1);
    assert_string_equal(buf, "the token command did not finish within 0.7 s (killed)");
    assert_true(seconds_since(&t0) < 10); /* generous: the bound is 0.7 s */
    /* Closed its output but goes on running. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(fc_cli_token_command("echo tok; exec >&- 2>&-; sleep 30", buf, sizeof buf),
                     -1);
    assert_non_null(strstr(buf, "did not finish"));
    assert_true(seconds_since(&t0) < 10);
    /* An endless flood is cut off, not buffered. */
    assert_int_equal(fc_cli_token_command("yes", buf, sizeof buf), -1);
    assert_string_equal(buf, "the token command printed more than 65536 bytes (killed)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_line_of_stdout_is_the_token),
        cmocka_unit_test(failures_say_why),
        cmocka_unit_test(bounded_in_time_and_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
