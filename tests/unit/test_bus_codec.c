/* Unit tests for src/bus/codec.c: a batch of changes round trip (with their
 * transactions), the node prefix a node skips its own messages by, the
 * size cap, version 2 messages, and malformed, truncated and oversized
 * input. */
#include "bus/bus.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static fc_workflow sample(int64_t seq)
{
    fc_workflow w = {.status = FC_STATUS_RUNNING,
                     .current_step = 3,
                     .total_steps = 9,
                     .epoch = 9007199254740991,
                     .seq = seq,
                     .created_at_ms = 1764547200123,
                     .updated_at_ms = 1764547201456};
    snprintf(w.id, sizeof w.id, "wf-%lld", (long long)seq % 3);
    w.name = "build \"x\"";
    w.message = "caf\xc3\xa9\n\xf0\x9f\x98\x80";
    return w;
}

/* A message of n sample changes (seq 1..n, the last one deleted) from node. */
static const char *write_n(fc_bus_writer *w, const char *node, int n, size_t *len)
{
    assert_int_equal(fc_bus_writer_init(w, node), 0);
    for (int i = 1; i <= n; i++) {
        fc_workflow s = sample(i);
        /* Three changes a transaction; ids past one varint byte. */
        assert_int_equal(
            fc_bus_writer_add(w, &s, i == n, 4000000000 + i / 3, 3, FC_BUS_MESSAGE_MAX), 0);
    }
    return fc_bus_writer_finish(w, 1764547201456000001ull, len);
}

static void test_batch_round_trip(void **state)
{
    (void)state;
    fc_bus_writer w;
    size_t len = 0;
    const char *m = write_n(&w, "host:8080-ab12", 50, &len);
    assert_true(fc_bus_from(m, len, "host:8080-ab12"));
    assert_false(fc_bus_from(m, len, "host:8080-ab1"));
    assert_false(fc_bus_from(m, len, "host:8080-ab123"));
    fc_bus_batch b;
    assert_int_equal(fc_bus_decode(m, len, &b), 0);
    assert_string_equal(b.node, "host:8080-ab12");
    assert_true(b.sent_ns == 1764547201456000001ull);
    assert_int_equal(b.n, 50);
    for (int i = 1; i <= 50; i++) {
        fc_workflow x = sample(i);
        const fc_bus_change *c = &b.changes[i - 1];
        assert_int_equal(c->deleted, i == 50);
        assert_string_equal(c->state.id, x.id);
        assert_true(c->state.epoch == x.epoch);
        assert_int_equal(c->state.seq, i);
        assert_int_equal(c->state.status, FC_STATUS_RUNNING);
        assert_int_equal(c->state.current_step, 3);
        assert_int_equal(c->state.total_steps, 9);
        assert_string_equal(c->state.name, x.name);
        assert_string_equal(c->state.message, x.message);
        assert_true(c->state.created_at_ms == x.created_at_ms);
        assert_true(c->state.updated_at_ms == x.updated_at_ms);
        assert_true(c->txid == 4000000000 + i / 3);
        assert_int_equal(c->txn_changes, 3);
    }
    free(b.changes);
    /* reset: the next message starts empty, from the same node */
    fc_bus_writer_reset(&w);
    fc_workflow s = sample(7);
    s.status = FC_STATUS_CANCELLED;
    s.name = "";
    s.message = "";
    assert_int_equal(fc_bus_writer_add(&w, &s, 0, 0, 0, FC_BUS_MESSAGE_MAX), 0);
    m = fc_bus_writer_finish(&w, 5, &len);
    assert_int_equal(fc_bus_decode(m, len, &b), 0);
    assert_int_equal(b.n, 1);
    assert_true(b.sent_ns == 5);
    assert_int_equal(b.changes[0].state.status, FC_STATUS_CANCELLED);
    assert_string_equal(b.changes[0].state.name, "");
    assert_true(fc_bus_from(m, len, "host:8080-ab12"));
    free(b.changes);
    fc_bus_writer_free(&w);
}

/* A change that would take the message past its cap is refused whole, and
 * goes into the next message; one longer than the cap alone never fits. */
static void test_cap(void **state)
{
    (void)state;
    fc_bus_writer w;
    assert_int_equal(fc_bus_writer_init(&w, "n"), 0);
    fc_workflow s = sample(1);
    size_t cap = 200, len = 0;
    int added = 0;
    while (fc_bus_writer_add(&w, &s, 0, 0, 0, cap) == 0)
        added++;
    assert_true(added >= 2);
    const char *m = fc_bus_writer_finish(&w, 1, &len);
    assert_true(len <= cap);
    fc_bus_batch b;
    assert_int_equal(fc_bus_decode(m, len, &b), 0);
    assert_int_equal(b.n, (size_t)added);
    free(b.changes);
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fc_bus_writer_reset(&w);
    s.message = big;
    assert_int_equal(fc_bus_writer_add(&w, &s, 0, 0, 0, cap), 1);
    assert_int_equal(w.n, 0);
    fc_bus_writer_free(&w);
}

/* Every strict prefix of a valid message, and the message with a byte
 * more, is refused. */
static void test_truncated_and_trailing(void **state)
{
    (void)state;
    fc_bus_writer w;
    size_t len = 0;
    const char *m = write_n(&w, "node-a", 3, &len);
    fc_bus_batch b;
    for (size_t i = 0; i < len; i++)
        assert_int_equal(fc_bus_decode(m, i, &b), -1);
    char *more = malloc(len + 1);
    memcpy(more, m, len);
    more[len] = 0;
    assert_int_equal(fc_bus_decode(more, len + 1, &b), -1);
    free(more);
    fc_bus_writer_free(&w);
}

/* One change from node "n" with the given field bytes patched in. */
static size_t one(char *buf, unsigned flags, unsigned status, const char *id, const char *varints,
                  size_t vlen, const char *name, size_t name_len)
{
    size_t n = 0;
    buf[n++] = FC_BUS_VERSION;
    buf[n++] = 1;
    buf[n++] = 'n';
    memset(buf + n, 0, 12);
    buf[n + 8] = 1; /* count 1 */
    n += 12;
    buf[n++] = (char)flags;
    buf[n++] = (char)status;
    buf[n++] = (char)strlen(id);
    memcpy(buf + n, id, strlen(id));
    n += strlen(id);
    memcpy(buf + n, varints, vlen);
    n += vlen;
    buf[n++] = (char)name_len;
    memcpy(buf + n, name, name_len);
    n += name_len;
    buf[n++] = 0; /* empty message */
    return n;
}

static void test_malformed(void **state)
{
    (void)state;
    char buf[256];
    fc_bus_batch b;
    /* epoch 1, seq 1, step 0, total 1, created 0, updated 0, txid 0, txn_changes 0 */
    const char ok[] = {1, 1, 0, 1, 0, 0, 0, 0};
    size_t n = one(buf, 0, 1, "a", ok, 8, "nm", 2);
    assert_int_equal(fc_bus_decode(buf, n, &b), 0); /* the template itself is fine */
    free(b.changes);
    struct {
        unsigned flags, status;
        const char *id, *v;
        size_t vlen;
        const char *name;
        size_t nl;
    } bad[] = {
        {2, 1, "a", ok, 8, "nm", 2},             /* unknown flag */
        {0, 6, "a", ok, 8, "nm", 2},             /* unknown status */
        {0, 1, "a b", ok, 8, "nm", 2},           /* an id the API refuses */
        {0, 1, "a", "\0\1\0\1\0\0\0\0", 8, "nm", 2}, /* epoch 0 */
        {0, 1, "a", "\1\0\0\1\0\0\0\0", 8, "nm", 2}, /* seq 0 */
        {0, 1, "a", "\x80\x80\x80\x80\x80\x80\x80\x80\x10\1\0\1\0\0\0\0", 16, "nm", 2}, /* epoch 2^60 */
        {0, 1, "a", "\1\x80\x80\x80\x80\x80\x80\x80\x80\x80\1\0\1\0\0\0\0", 17, "nm", 2}, /* 2^63 */
        {0, 1, "a", ok, 8, "n\0", 2},                                                 /* a NUL */
        {0, 1, "a", ok, 8, "\xc3", 1},             /* cut UTF-8 */
        {0, 1, "a", ok, 8, "\xed\xa0\x80", 3},     /* a surrogate */
        {0, 1, "a", ok, 8, "\xc0\xaf", 2},         /* an overlong */
        {0, 1, "a", ok, 8, "\xf4\x90\x80\x80", 4}, /* past U+10FFFF */
        {0, 1, "a", "\1\1\0\1\0\0\0\x80\x80\x80\x80\x10", 12, "nm", 2}, /* txn_changes 2^32 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = one(buf, bad[i].flags, bad[i].status, bad[i].id, bad[i].v, bad[i].vlen, bad[i].name,
                bad[i].nl);
        assert_int_equal(fc_bus_decode(buf, n, &b), -1);
    }
    /* the header: version 1 (the JSON of an unreleased build), another
     * version, a node id the encoder could not write, a zero or forged count */
    n = one(buf, 0, 1, "a", ok, 8, "nm", 2);
    const char *json = "{\"v\":1,\"node\":\"n\"}";
    assert_int_equal(fc_bus_decode(json, strlen(json), &b), -1);
    buf[0] = FC_BUS_VERSION + 1;
    assert_int_equal(fc_bus_decode(buf, n, &b), -1);
    buf[0] = FC_BUS_VERSION;
    buf[2] = '"';
    assert_int_equal(fc_bus_decode(buf, n, &b), -1);
    buf[2] = 'n';
    buf[11] = 0;
    assert_int_equal(fc_bus_decode(buf, n, &b), -1);
    buf[11] = (char)0xff;
    buf[14] = 0x7f; /* count 2^31 + 255 in a message of a few bytes */
    assert_int_equal(fc_bus_decode(buf, n, &b), -1);
    buf[11] = 2; /* two changes announced, one there */
    buf[14] = 0;
    assert_int_equal(fc_bus_decode(buf, n, &b), -1);
    buf[1] = 0; /* an empty node id */
    assert_int_equal(fc_bus_decode(buf, n, &b), -1);
    assert_false(fc_bus_from(buf, 2, "n"));
    assert_int_equal(fc_bus_decode("", 0, &b), -1);
}

/* Changes as short as they come (one-byte id and numbers, empty strings)
 * still decode: the count's check against the bytes allows for them (it
 * did not: the fuzz target found a batch of them refused). */
static void test_shortest_changes(void **state)
{
    (void)state;
    fc_bus_writer w;
    assert_int_equal(fc_bus_writer_init(&w, "n"), 0);
    fc_workflow s = {.epoch = 1, .seq = 1};
    snprintf(s.id, sizeof s.id, "a");
    for (int i = 0; i < 100; i++)
        assert_int_equal(fc_bus_writer_add(&w, &s, 0, 0, 0, FC_BUS_MESSAGE_MAX), 0);
    size_t len = 0;
    const char *m = fc_bus_writer_finish(&w, 1, &len);
    fc_bus_batch b;
    assert_int_equal(fc_bus_decode(m, len, &b), 0);
    assert_int_equal(b.n, 100);
    assert_string_equal(b.changes[99].state.name, "");
    free(b.changes);
    fc_bus_writer_free(&w);
}

/* An oversized message: a megabyte of changes decodes whole. */
static void test_oversized(void **state)
{
    (void)state;
    fc_bus_writer w;
    assert_int_equal(fc_bus_writer_init(&w, "n"), 0);
    fc_workflow s = sample(1);
    size_t added = 0;
    while (fc_bus_writer_add(&w, &s, 0, 0, 0, FC_BUS_MESSAGE_MAX) == 0)
        added++;
    size_t len = 0;
    const char *m = fc_bus_writer_finish(&w, 1, &len);
    assert_true(len <= FC_BUS_MESSAGE_MAX && len > FC_BUS_MESSAGE_MAX - 200);
    fc_bus_batch b;
    assert_int_equal(fc_bus_decode(m, len, &b), 0);
    assert_int_equal(b.n, added);
    assert_string_equal(b.changes[added - 1].state.message, s.message);
    free(b.changes);
    fc_bus_writer_free(&w);
}

/* A message of the previous version (no transaction ids) still decodes,
 * its changes of no known transaction: a node of the release before during
 * a rolling upgrade. */
static void test_version_2(void **state)
{
    (void)state;
    static const char v2[] = {2, 1, 'n', 5, 0, 0, 0, 0, 0, 0, 0, /* sent_ns */
                              1, 0, 0, 0,                        /* count */
                              0, 1, 1, 'a', 1, 2, 0, 3, 0, 0, 0, 0};
    fc_bus_batch b;
    assert_int_equal(fc_bus_decode(v2, sizeof v2, &b), 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.changes[0].state.id, "a");
    assert_int_equal(b.changes[0].state.seq, 2);
    assert_int_equal(b.changes[0].state.total_steps, 3);
    assert_true(b.changes[0].txid == 0);
    assert_int_equal(b.changes[0].txn_changes, 0);
    free(b.changes);
    /* The same bytes as version 3 lack the two numbers: malformed. */
    char v3[sizeof v2];
    memcpy(v3, v2, sizeof v2);
    v3[0] = FC_BUS_VERSION;
    assert_int_equal(fc_bus_decode(v3, sizeof v3, &b), -1);
    /* A transaction's count past 32 bits is refused. */
    fc_bus_writer w;
    size_t len;
    fc_workflow s = sample(1);
    assert_int_equal(fc_bus_writer_init(&w, "n"), 0);
    assert_int_equal(fc_bus_writer_add(&w, &s, 0, 1, UINT32_MAX, FC_BUS_MESSAGE_MAX), 0);
    const char *m = fc_bus_writer_finish(&w, 1, &len);
    assert_int_equal(fc_bus_decode(m, len, &b), 0);
    assert_true(b.changes[0].txn_changes == UINT32_MAX);
    free(b.changes);
    fc_bus_writer_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_round_trip),       cmocka_unit_test(test_cap),
        cmocka_unit_test(test_truncated_and_trailing), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_shortest_changes),       cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_version_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
