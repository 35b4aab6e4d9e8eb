/* Unit tests for src/api/workflow_json.c (request-body validation) and
 * src/wire/encode.c (JSON encoding). */
#include "api/workflow_json.h"
#include "common/error.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/time.h"
#include "wire/wire.h"

#define T_2026_11_27 1795755600000LL /* 2026-11-27T05:00:00.000Z */
#define STATUS_LIST "pending, running, paused, completed, failed, cancelled"

static int parse_create(const char *body, fc_workflow *w, char *err, size_t errlen)
{
    return fc_json_parse_create(body, strlen(body), w, err, errlen);
}

static int parse_patch(const char *body, fc_patch *p, char *err, size_t errlen)
{
    return fc_json_parse_patch(body, strlen(body), p, err, errlen);
}

/* Checks that a failed parse left nothing behind (ASan catches leaks). */
static void assert_workflow_cleared(const fc_workflow *w)
{
    static const fc_workflow zero;
    assert_memory_equal(w, &zero, sizeof zero);
}

static void test_create_defaults(void **state)
{
    (void)state;
    fc_workflow w;
    char err[256] = "";
    assert_int_equal(parse_create("{\"name\":\"build\",\"total_steps\":10}", &w, err, sizeof err),
                     0);
    assert_string_equal(w.name, "build");
    assert_int_equal(w.total_steps, 10);
    assert_int_equal(w.current_step, 0);
    assert_int_equal(w.status, FC_STATUS_PENDING);
    assert_string_equal(w.message, "");
    assert_int_equal(strlen(w.id), 26);
    assert_true(fc_id_valid(w.id));
    fc_workflow_clear(&w);
}

static void test_create_all_fields(void **state)
{
    (void)state;
    fc_workflow w;
    char err[256] = "";
    const char *body =
        "{\"id\":\"job-42_x\",\"name\":\"n\",\"total_steps\":5,\"status\":\"running\","
        "\"current_step\":5,\"message\":\"half\"}";
    assert_int_equal(parse_create(body, &w, err, sizeof err), 0);
    assert_string_equal(w.id, "job-42_x");
    assert_int_equal(w.status, FC_STATUS_RUNNING);
    assert_int_equal(w.current_step, 5);
    assert_int_equal(w.total_steps, 5);
    assert_string_equal(w.message, "half");
    fc_workflow_clear(&w);
}

static void test_create_limits_accepted(void **state)
{
    (void)state;
    fc_workflow w;
    char err[256] = "";
    char body[512];
    char name[257];
    memset(name, 'n', 256);
    name[256] = '\0';
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"total_steps\":1000000000,\"id\":\"%.64s\"}",
             name, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(parse_create(body, &w, err, sizeof err), 0);
    assert_int_equal(strlen(w.name), 256);
    assert_int_equal(strlen(w.id), 64);
    assert_int_equal(w.total_steps, 1000000000);
    fc_workflow_clear(&w);
}

struct bad_case {
    const char *body;
    const char *msg;
};

static const struct bad_case create_errors[] = {
    {"[1]", "request body must be a JSON object"},
    {"42", "request body must be a JSON object"},
    {"\"x\"", "request body must be a JSON object"},
    {"null", "request body must be a JSON object"},
    {"{\"name\":\"a\",\"total_steps\":1,\"foo\":1}", "unknown field \"foo\""},
    {"{\"total_steps\":1}", "missing required field \"name\""},
    {"{\"name\":\"a\"}", "missing required field \"total_steps\""},
    {"{\"name\":\"\",\"total_steps\":1}", "\"name\" must be a non-empty string"},
    {"{\"name\":null,\"total_steps\":1}", "\"name\" must be a non-empty string"},
    {"{\"name\":7,\"total_steps\":1}", "\"name\" must be a non-empty string"},
    {"{\"name\":\"a\",\"total_steps\":-1}", "\"total_steps\" must be a non-negative integer"},
    {"{\"name\":\"a\",\"total_steps\":1.5}", "\"total_steps\" must be a non-negative integer"},
    {"{\"name\":\"a\",\"total_steps\":\"3\"}", "\"total_steps\" must be a non-negative integer"},
    {"{\"name\":\"a\",\"total_steps\":null}", "\"total_steps\" must be a non-negative integer"},
    {"{\"name\":\"a\",\"total_steps\":true}", "\"total_steps\" must be a non-negative integer"},
    {"{\"name\":\"a\",\"total_steps\":1000000001}", "\"total_steps\" must be at most 1000000000"},
    {"{\"name\":\"a\",\"total_steps\":1,\"id\":\"a b\"}", "\"id\" must match [A-Za-z0-9_-]{1,64}"},
    {"{\"name\":\"a\",\"total_steps\":1,\"id\":\"\"}", "\"id\" must match [A-Za-z0-9_-]{1,64}"},
    {"{\"name\":\"a\",\"total_steps\":1,\"id\":5}", "\"id\" must match [A-Za-z0-9_-]{1,64}"},
    {"{\"name\":\"a\",\"total_steps\":1,\"id\":"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
     "\"id\" must match [A-Za-z0-9_-]{1,64}"},
    {"{\"name\":\"a\",\"total_steps\":1,\"status\":\"foo\"}",
     "unknown status \"foo\": must be one of " STATUS_LIST},
    {"{\"name\":\"a\",\"total_steps\":1,\"status\":1}", "\"status\" must be one of " STATUS_LIST},
    {"{\"name\":\"a\",\"total_steps\":1,\"status\":null}",
     "\"status\" must be one of " STATUS_LIST},
    {"{\"name\":\"a\",\"total_steps\":3,\"current_step\":5}",
     "current_step (5) is greater than total_steps (3)"},
    {"{\"name\":\"a\",\"total_steps\":3,\"current_step\":-1}",
     "\"current_step\" must be a non-negative integer"},
    {"{\"name\":\"a\",\"total_steps\":3,\"message\":null}", "\"message\" must be a string"},
    {"{\"name\":\"a\",\"total_steps\":3,\"message\":[]}", "\"message\" must be a string"},
};

static void test_create_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof create_errors / sizeof *create_errors; i++) {
        fc_workflow w;
        char err[256] = "";
        assert_int_equal(parse_create(create_errors[i].body, &w, err, sizeof err), FC_EINVAL);
        assert_string_equal(err, create_errors[i].msg);
        assert_workflow_cleared(&w);
    }
}

static void test_create_too_long_strings(void **state)
{
    (void)state;
    char *body = malloc(8192);
    char err[256] = "";
    fc_workflow w;
    /* 257-byte name: "é" is two bytes, so 128 of them plus one ASCII byte. */
    strcpy(body, "{\"total_steps\":1,\"name\":\"x");
    for (int i = 0; i < 128; i++)
        strcat(body, "\xc3\xa9");
    strcat(body, "\"}");
    assert_int_equal(parse_create(body, &w, err, sizeof err), FC_EINVAL);
    assert_string_equal(err, "\"name\" must be at most 256 bytes");
    assert_workflow_cleared(&w);

    strcpy(body, "{\"name\":\"a\",\"total_steps\":1,\"message\":\"");
    size_t n = strlen(body);
    memset(body + n, 'm', 4097);
    strcpy(body + n + 4097, "\"}");
    assert_int_equal(parse_create(body, &w, err, sizeof err), FC_EINVAL);
    assert_string_equal(err, "\"message\" must be at most 4096 bytes");
    assert_workflow_cleared(&w);
    free(body);
}

static void test_syntax_error_position(void **state)
{
    (void)state;
    fc_workflow w;
    char err[256] = "";
    const char *body = "{\n  \"name\": \"a\",\n  \"total_steps\": x\n}";
    assert_int_equal(parse_create(body, &w, err, sizeof err), FC_EINVAL);
    assert_string_equal(err, "invalid JSON at line 3, column 18: invalid token near 'x'");
    assert_workflow_cleared(&w);
}

static void test_syntax_errors_rejected(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "",
        "{",
        "{\"name\":\"a\",\"name\":\"b\",\"total_steps\":1}", /* duplicate key */
        "{\"name\":\"a\\u0000b\",\"total_steps\":1}",        /* NUL stays rejected */
        "{\"name\":\"\xff\",\"total_steps\":1}",             /* invalid UTF-8 */
        "{\"name\":\"a\",\"total_steps\":1} x",              /* trailing garbage */
        "{\"name\":\"a\",\"total_steps\":99999999999999999999}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        fc_workflow w;
        char err[256] = "";
        assert_int_equal(parse_create(bodies[i], &w, err, sizeof err), FC_EINVAL);
        assert_memory_equal(err, "invalid JSON at line 1, column ", 31);
        assert_workflow_cleared(&w);
    }
}

static void test_error_buffer_handling(void **state)
{
    (void)state;
    fc_workflow w;
    char err[8];
    /* A NULL or short buffer must be safe: the message is truncated, never overrun. */
    assert_int_equal(parse_create("[]", &w, NULL, 0), FC_EINVAL);
    assert_int_equal(parse_create("[]", &w, err, sizeof err), FC_EINVAL);
    assert_string_equal(err, "request");
}

static void test_patch_fields(void **state)
{
    (void)state;
    fc_patch p;
    char err[256] = "";
    assert_int_equal(parse_patch("{\"status\":\"paused\",\"current_step\":2,\"total_steps\":4,"
                                 "\"message\":\"m\",\"if_seq\":7}",
                                 &p, err, sizeof err),
                     0);
    assert_int_equal(p.fields, FC_PATCH_STATUS | FC_PATCH_CURRENT_STEP | FC_PATCH_TOTAL_STEPS |
                                   FC_PATCH_MESSAGE | FC_PATCH_IF_SEQ);
    assert_int_equal(p.status, FC_STATUS_PAUSED);
    assert_int_equal(p.current_step, 2);
    assert_int_equal(p.total_steps, 4);
    assert_string_equal(p.message, "m");
    assert_int_equal(p.if_seq, 7);
    fc_patch_clear(&p);

    assert_int_equal(parse_patch("{\"current_step\":99}", &p, err, sizeof err), 0);
    assert_int_equal(p.fields, FC_PATCH_CURRENT_STEP);
    assert_null(p.message);
    fc_patch_clear(&p);

    assert_int_equal(parse_patch("{\"message\":\"\"}", &p, err, sizeof err), 0);
    assert_int_equal(p.fields, FC_PATCH_MESSAGE);
    assert_string_equal(p.message, "");
    fc_patch_clear(&p);
}

static const struct bad_case patch_errors[] = {
    {"{}", "request body must set at least one of status, current_step, total_steps, message"},
    {"{\"if_seq\":3}",
     "request body must set at least one of status, current_step, total_steps, message"},
    {"[]", "request body must be a JSON object"},
    {"{\"name\":\"x\"}", "unknown field \"name\""},
    {"{\"current_step\":5,\"total_steps\":3}", "current_step (5) is greater than total_steps (3)"},
    {"{\"current_step\":-2}", "\"current_step\" must be a non-negative integer"},
    {"{\"total_steps\":null}", "\"total_steps\" must be a non-negative integer"},
    {"{\"total_steps\":2000000000}", "\"total_steps\" must be at most 1000000000"},
    {"{\"status\":\"done\"}", "unknown status \"done\": must be one of " STATUS_LIST},
    {"{\"status\":null}", "\"status\" must be one of " STATUS_LIST},
    {"{\"message\":1}", "\"message\" must be a string"},
    {"{\"message\":\"ok\",\"if_seq\":-1}", "\"if_seq\" must be a non-negative integer"},
    {"{\"message\":\"ok\",\"if_seq\":\"1\"}", "\"if_seq\" must be a non-negative integer"},
    {"{\n\"status\":\"running\",\n,}", "invalid JSON at line 3, column 1: string or '}' expected "
                                       "near ','"},
};

static void test_patch_errors(void **state)
{
    (void)state;
    static const fc_patch zero;
    for (size_t i = 0; i < sizeof patch_errors / sizeof *patch_errors; i++) {
        fc_patch p;
        char err[256] = "";
        assert_int_equal(parse_patch(patch_errors[i].body, &p, err, sizeof err), FC_EINVAL);
        assert_string_equal(err, patch_errors[i].msg);
        assert_memory_equal(&p, &zero, sizeof zero);
    }
}

static void test_patch_error_after_message_frees_it(void **state)
{
    (void)state;
    fc_patch p;
    char err[256] = "";
    /* message is allocated before if_seq fails; ASan reports a leak if it is kept. */
    assert_int_equal(parse_patch("{\"message\":\"kept?\",\"if_seq\":1.5}", &p, err, sizeof err),
                     FC_EINVAL);
    assert_null(p.message);
    assert_int_equal(p.fields, 0);
}

static fc_workflow sample(const char *name, const char *message)
{
    fc_workflow w = {.status = FC_STATUS_RUNNING,
                     .current_step = 3,
                     .total_steps = 10,
                     .epoch = FC_EPOCH_MAX, /* the largest: exact in JavaScript */
                     .seq = 42,
                     .created_at_ms = T_2026_11_27,
                     .updated_at_ms = T_2026_11_27 + 1234};
    strcpy(w.id, "wf_1");
    w.name = (char *)name;
    w.message = (char *)message;
    return w;
}

static void test_encode_workflow(void **state)
{
    (void)state;
    fc_workflow w = sample("deploy", "copying files");
    size_t len = 0;
    char *s = fc_wire_workflow(&w, &len);
    const char *want = "{\"id\":\"wf_1\",\"epoch\":9007199254740991,\"name\":\"deploy\",\"status\":"
                       "\"running\",\"current_step\":3,"
                       "\"total_steps\":10,\"message\":\"copying files\",\"seq\":42,"
                       "\"created_at\":\"2026-11-27T05:00:00.000Z\","
                       "\"updated_at\":\"2026-11-27T05:00:01.234Z\"}";
    assert_string_equal(s, want);
    assert_int_equal(len, strlen(want));
    free(s);
}

static void test_encode_update(void **state)
{
    (void)state;
    fc_workflow w = sample("deploy", "copying files");
    size_t len = 0;
    char *s = fc_wire_update(&w, 0, &len);
    const char *want = "{\"workflow_id\":\"wf_1\",\"epoch\":9007199254740991,\"name\":\"deploy\","
                       "\"status\":\"running\",\"current_step\":3,"
                       "\"total_steps\":10,\"message\":\"copying files\","
                       "\"timestamp\":\"2026-11-27T05:00:01.234Z\",\"seq\":42}";
    assert_string_equal(s, want);
    assert_int_equal(len, strlen(want));
    free(s);

    s = fc_wire_update(&w, 1, &len);
    const char *want_resync = "{\"workflow_id\":\"wf_1\",\"epoch\":9007199254740991,\"name\":\"deploy\","
                              "\"status\":\"running\",\"current_step\":3,"
                              "\"total_steps\":10,\"message\":\"copying files\","
                              "\"timestamp\":\"2026-11-27T05:00:01.234Z\",\"seq\":42,"
                              "\"resync\":true}";
    assert_string_equal(s, want_resync);
    assert_int_equal(len, strlen(want_resync));
    free(s);

    /* A name needing escapes is escaped; a state without a name sends none. */
    w.name = (char *)"say \"hi\"\n\xc3\xa9";
    s = fc_wire_update(&w, 0, &len);
    assert_non_null(strstr(s, ",\"name\":\"say \\\"hi\\\"\\n\xc3\xa9\",\"status\":"));
    assert_int_equal(len, strlen(s));
    free(s);
    w.name = NULL;
    s = fc_wire_update(&w, 0, &len);
    assert_null(strstr(s, "\"name\""));
    assert_int_equal(len, strlen(s));
    free(s);
    w.name = (char *)"";
    s = fc_wire_update(&w, 0, &len);
    assert_null(strstr(s, "\"name\""));
    free(s);
}

static void test_encode_deleted_and_error(void **state)
{
    (void)state;
    fc_workflow w = sample("x", "");
    w.seq = 43;
    size_t len = 0;
    char *s = fc_wire_deleted(&w, T_2026_11_27 + 60000, &len);
    assert_string_equal(s, "{\"workflow_id\":\"wf_1\",\"epoch\":9007199254740991,"
                           "\"deleted\":true,\"seq\":43,"
                           "\"timestamp\":\"2026-11-27T05:01:00.000Z\"}");
    assert_int_equal(len, strlen(s));
    free(s);

    s = fc_wire_error("invalid", "unknown field \"foo\"", &len);
    assert_string_equal(s, "{\"error\":{\"code\":\"invalid\",\"message\":\"unknown field "
                           "\\\"foo\\\"\"}}");
    assert_int_equal(len, strlen(s));
    free(s);
}

static void test_encode_escaping(void **state)
{
    (void)state;
    size_t len = 0;
    char *s =
        fc_wire_error("c", "q\" b\\ \n\r\t\b\f \x01\x1f\x0b e\xe2\x80\xa8 f\xe2\x80\xa9!", &len);
    assert_string_equal(
        s, "{\"error\":{\"code\":\"c\",\"message\":"
           "\"q\\\" b\\\\ \\n\\r\\t\\b\\f \\u0001\\u001f\\u000b e\\u2028 f\\u2029!\"}}");
    assert_int_equal(len, strlen(s));
    free(s);
}

static void test_encode_unicode_passthrough(void **state)
{
    (void)state;
    const char *text = "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89 \x7f";
    fc_workflow w = sample(text, text);
    char *s = fc_wire_workflow(&w, NULL);
    assert_non_null(strstr(s, "\"name\":\"h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89 "
                              "\x7f\""));
    free(s);
}

static void test_encode_invalid_utf8_replaced(void **state)
{
    (void)state;
    /* Lone continuation, truncated sequence, overlong, surrogate, > U+10FFFF. */
    char *s = fc_wire_error("c",
                            "a\x80"
                            "b\xe4\xb8"
                            "c\xc0\xaf"
                            "d\xed\xa0\x80"
                            "e\xf4\x90\x80\x80",
                            NULL);
    assert_string_equal(s, "{\"error\":{\"code\":\"c\",\"message\":\"a\\ufffdb\\ufffd\\ufffdc"
                           "\\ufffd\\ufffdd\\ufffd\\ufffd\\ufffde\\ufffd\\ufffd\\ufffd\\ufffd\"}}");
    free(s);
}

/* Decodes an encoded workflow with jansson and checks every field. */
static void assert_roundtrip(const fc_workflow *w)
{
    size_t len;
    char *s = fc_wire_workflow(w, &len);
    assert_non_null(s);
    json_error_t jerr;
    json_t *o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 10);
    assert_string_equal(json_string_value(json_object_get(o, "id")), w->id);
    assert_int_equal(json_integer_value(json_object_get(o, "epoch")), w->epoch);
    assert_string_equal(json_string_value(json_object_get(o, "name")), w->name);
    assert_string_equal(json_string_value(json_object_get(o, "status")), fc_status_name(w->status));
    assert_int_equal(json_integer_value(json_object_get(o, "current_step")), w->current_step);
    assert_int_equal(json_integer_value(json_object_get(o, "total_steps")), w->total_steps);
    assert_string_equal(json_string_value(json_object_get(o, "message")), w->message);
    assert_int_equal(json_integer_value(json_object_get(o, "seq")), w->seq);
    json_decref(o);
    free(s);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char *msg = malloc(4097);
    /* A maximal 4096-byte message full of characters that need escaping. */
    for (int i = 0; i < 4096; i++)
        msg[i] = "\"\\\n\x01\x1fz"[i % 6];
    msg[4096] = '\0';
    fc_workflow w = sample("n\xe2\x80\xa8\"\\", msg);
    w.seq = INT64_MAX;
    w.current_step = 0;
    w.total_steps = 1000000000;
    assert_roundtrip(&w);

    fc_workflow parsed;
    char err[256];
    size_t len;
    char *body = fc_wire_workflow(&w, &len);
    /* The workflow encoding has server-side fields; the message alone must parse back. */
    json_t *o = json_loads(body, 0, NULL);
    json_object_del(o, "epoch");
    json_object_del(o, "seq");
    json_object_del(o, "created_at");
    json_object_del(o, "updated_at");
    char *req = json_dumps(o, 0);
    assert_int_equal(parse_create(req, &parsed, err, sizeof err), 0);
    assert_string_equal(parsed.message, msg);
    assert_string_equal(parsed.name, w.name);
    assert_int_equal(parsed.status, FC_STATUS_RUNNING);
    fc_workflow_clear(&parsed);
    free(req);
    json_decref(o);
    free(body);
    free(msg);
}

/* Any byte string must encode to valid JSON; valid UTF-8 must survive exactly. */
static void test_random_strings_encode_valid_json(void **state)
{
    (void)state;
    srand(12345);
    char buf[64];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = (size_t)(rand() % 63);
        for (size_t i = 0; i < n; i++) {
            int r = rand();
            buf[i] = (char)(r % 4 == 0 ? 0xE2 : r % 4 == 1 ? 0x80 + (r >> 8) % 64 : 1 + r % 255);
        }
        buf[n] = '\0';
        size_t len;
        char *s = fc_wire_error("c", buf, &len);
        assert_int_equal(len, strlen(s));
        json_t *o = json_loadb(s, len, 0, NULL);
        assert_non_null(o);
        /* json_string returns NULL for invalid UTF-8, which we only require to be valid JSON. */
        json_t *valid = json_string(buf);
        if (valid) {
            json_t *msg = json_object_get(json_object_get(o, "error"), "message");
            assert_string_equal(json_string_value(msg), buf);
            json_decref(valid);
        }
        json_decref(o);
        free(s);
    }
}

/* The formatter reuses the seconds part within a second: it must follow the
 * clock forwards, backwards and across a minute. */
static void test_rfc3339_runs(void **state)
{
    (void)state;
    char out[FC_TIME_RFC3339_LEN + 1];
    static const struct {
        int64_t ms;
        const char *want;
    } cases[] = {
        {T_2026_11_27, "2026-11-27T05:00:00.000Z"},
        {T_2026_11_27 + 999, "2026-11-27T05:00:00.999Z"},
        {T_2026_11_27 + 1000, "2026-11-27T05:00:01.000Z"},
        {T_2026_11_27 + 1042, "2026-11-27T05:00:01.042Z"},
        {T_2026_11_27 - 1, "2026-11-27T04:59:59.999Z"},
        {T_2026_11_27 + 60000, "2026-11-27T05:01:00.000Z"},
        {T_2026_11_27 + 60007, "2026-11-27T05:01:00.007Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fc_time_format_rfc3339(cases[i].ms, out);
        assert_string_equal(out, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339_runs),
        cmocka_unit_test(test_create_defaults),
        cmocka_unit_test(test_create_all_fields),
        cmocka_unit_test(test_create_limits_accepted),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_create_too_long_strings),
        cmocka_unit_test(test_syntax_error_position),
        cmocka_unit_test(test_syntax_errors_rejected),
        cmocka_unit_test(test_error_buffer_handling),
        cmocka_unit_test(test_patch_fields),
        cmocka_unit_test(test_patch_errors),
        cmocka_unit_test(test_patch_error_after_message_frees_it),
        cmocka_unit_test(test_encode_workflow),
        cmocka_unit_test(test_encode_update),
        cmocka_unit_test(test_encode_deleted_and_error),
        cmocka_unit_test(test_encode_escaping),
        cmocka_unit_test(test_encode_unicode_passthrough),
        cmocka_unit_test(test_encode_invalid_utf8_replaced),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_random_strings_encode_valid_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
