/* Unit tests for src/common/log.c: --log-format json lines are valid JSON
 * whatever the message holds (quotes, control bytes, bytes that are not
 * UTF-8, a message longer than the line), and carry their fields. */
#include "common/log.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* Between capture_begin and capture_end stderr goes to a temporary file;
 * capture_end returns what was written (caller frees). */
static FILE *capture_file;
static int saved_fd;

static void capture_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_fd = dup(2);
    assert_true(dup2(fileno(capture_file), 2) >= 0);
}

static char *capture_end(void)
{
    fflush(stderr);
    assert_true(dup2(saved_fd, 2) >= 0);
    close(saved_fd);
    off_t n = lseek(fileno(capture_file), 0, SEEK_END); /* fd 2 shared its offset */
    assert_true(n >= 0);
    char *text = calloc(1, (size_t)n + 1);
    assert_non_null(text);
    assert_int_equal(pread(fileno(capture_file), text, (size_t)n, 0), n);
    fclose(capture_file);
    return text;
}

/* Parses one line (with its newline) as a JSON object. */
static json_t *parse_line(const char *text)
{
    size_t len = strlen(text);
    assert_true(len > 2 && text[len - 1] == '\n');
    assert_null(memchr(text, '\n', len - 1)); /* one line */
    json_error_t e;
    json_t *o = json_loadb(text, len - 1, 0, &e);
    if (!o) fail_msg("not JSON (%s): %s", e.text, text);
    assert_true(json_is_object(o));
    return o;
}

static void setup_json(void)
{
    fc_log_output = FC_LOG_JSON;
    fc_log_threshold = FC_LOG_DEBUG;
}

static void test_formats_parse(void **state)
{
    (void)state;
    assert_int_equal(fc_log_parse_format("text"), FC_LOG_TEXT);
    assert_int_equal(fc_log_parse_format("json"), FC_LOG_JSON);
    assert_int_equal(fc_log_parse_format("JSON"), -1);
    assert_int_equal(fc_log_parse_format(""), -1);
}

static void test_json_line_escapes_everything(void **state)
{
    (void)state;
    setup_json();
    capture_begin();
    FC_WARN("ws", "quote \" backslash \\ tab \t nl \n bell \a del \x7f bad \xff\xc0\xaf é 名 ✓");
    char *text = capture_end();
    json_t *o = parse_line(text);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(o, "subsystem")), "ws");
    const char *time = json_string_value(json_object_get(o, "time"));
    assert_non_null(time);
    assert_int_equal(strlen(time), 24); /* 2026-11-30T20:39:45.566Z */
    assert_int_equal(time[23], 'Z');
    assert_string_equal(json_string_value(json_object_get(o, "message")),
                        "quote \" backslash \\ tab \t nl \n bell \a del \x7f bad "
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd é 名 ✓");
    assert_int_equal(json_object_size(o), 4);
    json_decref(o);
    free(text);
}

static void test_json_fields(void **state)
{
    (void)state;
    setup_json();
    capture_begin();
    FC_LOGF(FC_LOG_INFO, "server",
            ((fc_log_field[]){FC_LOG_STR("db", "/tmp/\"x\".db"), FC_LOG_INT("port", 8001),
                              FC_LOG_INT("big", -9007199254740993LL)}),
            3, "listening on %d", 8001);
    char *text = capture_end();
    json_t *o = parse_line(text);
    assert_string_equal(json_string_value(json_object_get(o, "message")), "listening on 8001");
    assert_string_equal(json_string_value(json_object_get(o, "db")), "/tmp/\"x\".db");
    assert_int_equal(json_integer_value(json_object_get(o, "port")), 8001);
    assert_true(json_integer_value(json_object_get(o, "big")) == -9007199254740993LL);
    json_decref(o);
    free(text);
}

/* A message longer than a line is cut, every byte of it needing escaping:
 * the line stays one valid object, and a field that no longer fits whole is
 * left out rather than cut. */
static void test_json_long_message_stays_valid(void **state)
{
    (void)state;
    setup_json();
    char msg[5000];
    memset(msg, 1, sizeof msg - 1); /* \u0001 each: 6 bytes per byte */
    msg[sizeof msg - 1] = '\0';
    char big[3000];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    capture_begin();
    FC_LOGF(FC_LOG_ERROR, "store.sqlite", ((fc_log_field[]){FC_LOG_STR("path", big)}), 1, "%s",
            msg);
    char *text = capture_end();
    json_t *o = parse_line(text);
    const char *m = json_string_value(json_object_get(o, "message"));
    assert_non_null(m);
    assert_true(strlen(m) >= 1000 && strlen(m) < sizeof msg);
    assert_null(json_object_get(o, "path"));
    json_decref(o);
    free(text);
}

static void test_text_line_unchanged_and_fields_left_out(void **state)
{
    (void)state;
    fc_log_output = FC_LOG_TEXT;
    fc_log_threshold = FC_LOG_INFO;
    capture_begin();
    FC_LOGF(FC_LOG_INFO, "server", ((fc_log_field[]){FC_LOG_INT("port", 1)}), 1, "up on %d", 1);
    FC_DEBUG("server", "below the threshold");
    char *text = capture_end();
    /* "2026-11-30T20:39:45.566Z info  server: up on 1\n" */
    assert_int_equal(strlen(text), 24 + 1 + 5 + 1 + strlen("server: up on 1\n"));
    assert_memory_equal(text + 25, "info  server: up on 1\n", 22);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats_parse),
        cmocka_unit_test(test_json_line_escapes_everything),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_long_message_stays_valid),
        cmocka_unit_test(test_text_line_unchanged_and_fields_left_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
