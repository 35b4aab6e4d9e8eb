/* Unit tests for src/bus/codec.c: the change message round trip, the
 * node prefix a node skips its own messages by, and malformed input. */
#include "bus/bus.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static fc_workflow sample(void)
{
    fc_workflow w = {.status = FC_STATUS_RUNNING,
                     .current_step = 3,
                     .total_steps = 9,
                     .epoch = 9007199254740991,
                     .seq = 42,
                     .created_at_ms = 1764547200123,
                     .updated_at_ms = 1764547201456};
    snprintf(w.id, sizeof w.id, "wf-1");
    w.name = "build \"x\"";
    w.message = "caf\xc3\xa9\n";
    return w;
}

static void test_round_trip(void **state)
{
    (void)state;
    fc_workflow w = sample();
    size_t len = 0;
    char *m = fc_bus_encode("host:8080-ab12", 1764547201456000001ull, &w, 0, 0, &len);
    assert_non_null(m);
    assert_int_equal(strlen(m), len);
    assert_true(fc_bus_from(m, len, "host:8080-ab12"));
    assert_false(fc_bus_from(m, len, "host:8080-ab1"));
    assert_false(fc_bus_from(m, len, "host:8080-ab123"));
    fc_bus_change c;
    assert_int_equal(fc_bus_decode(m, len, &c), 0);
    assert_string_equal(c.node, "host:8080-ab12");
    assert_true(c.sent_ns == 1764547201456000001ull);
    assert_int_equal(c.deleted, 0);
    assert_string_equal(c.state.id, "wf-1");
    assert_true(c.state.epoch == w.epoch);
    assert_int_equal(c.state.seq, 42);
    assert_int_equal(c.state.status, FC_STATUS_RUNNING);
    assert_int_equal(c.state.current_step, 3);
    assert_int_equal(c.state.total_steps, 9);
    assert_string_equal(c.state.name, w.name);
    assert_string_equal(c.state.message, w.message);
    assert_true(c.state.created_at_ms == w.created_at_ms);
    assert_true(c.state.updated_at_ms == w.updated_at_ms);
    fc_workflow_clear(&c.state);
    free(m);
}

static void test_deleted(void **state)
{
    (void)state;
    fc_workflow w = sample();
    size_t len = 0;
    char *m = fc_bus_encode("n", 5, &w, 1, 1764547209999, &len);
    assert_non_null(strstr(m, "\"deleted\":true,\"deleted_at\":1764547209999"));
    fc_bus_change c;
    assert_int_equal(fc_bus_decode(m, len, &c), 0);
    assert_int_equal(c.deleted, 1);
    assert_true(c.deleted_at_ms == 1764547209999);
    fc_workflow_clear(&c.state);
    free(m);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "{}",
        "not json",
        "{\"v\":2,\"node\":\"n\",\"sent_ns\":1,\"deleted\":false,\"deleted_at\":null,"
        "\"workflow\":{}}",
        /* an id the API would refuse */
        "{\"v\":1,\"node\":\"n\",\"sent_ns\":1,\"deleted\":false,\"deleted_at\":null,"
        "\"workflow\":{\"id\":\"a b\",\"epoch\":1,\"name\":\"\",\"status\":\"running\","
        "\"current_step\":0,\"total_steps\":1,\"message\":\"\",\"seq\":1,"
        "\"created_at\":\"2026-01-01T00:00:00.000Z\",\"updated_at\":\"2026-01-01T00:00:00.000Z\"}}",
        /* a time that is not RFC 3339 */
        "{\"v\":1,\"node\":\"n\",\"sent_ns\":1,\"deleted\":false,\"deleted_at\":null,"
        "\"workflow\":{\"id\":\"a\",\"epoch\":1,\"name\":\"\",\"status\":\"running\","
        "\"current_step\":0,\"total_steps\":1,\"message\":\"\",\"seq\":1,"
        "\"created_at\":\"yesterday\",\"updated_at\":\"2026-01-01T00:00:00.000Z\"}}",
        /* epoch 0 */
        "{\"v\":1,\"node\":\"n\",\"sent_ns\":1,\"deleted\":false,\"deleted_at\":null,"
        "\"workflow\":{\"id\":\"a\",\"epoch\":0,\"name\":\"\",\"status\":\"running\","
        "\"current_step\":0,\"total_steps\":1,\"message\":\"\",\"seq\":1,"
        "\"created_at\":\"2026-01-01T00:00:00.000Z\",\"updated_at\":\"2026-01-01T00:00:00.000Z\"}}",
        /* a node id fc_bus_encode could not write back (anyone may publish) */
        "{\"v\":1,\"node\":\"a\\\"b\",\"sent_ns\":1,\"deleted\":false,\"deleted_at\":null,"
        "\"workflow\":{\"id\":\"a\",\"epoch\":1,\"name\":\"\",\"status\":\"running\","
        "\"current_step\":0,\"total_steps\":1,\"message\":\"\",\"seq\":1,"
        "\"created_at\":\"2026-01-01T00:00:00.000Z\",\"updated_at\":\"2026-01-01T00:00:00.000Z\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fc_bus_change c;
        assert_int_equal(fc_bus_decode(bad[i], strlen(bad[i]), &c), -1);
    }
    assert_false(fc_bus_from("{\"v\":1,\"node\":\"", 15, "n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_deleted),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
