/* Unit tests for src/hub/hub.c: fan-out by workflow, all-subscriptions,
 * encode-once sharing, the resume filter, and deletion. */
#include "hub/hub.h"
#include "ws/frame.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

typedef struct sink {
    fc_buf *frames[16];
    int n;
    int deleted;
} sink;

static void deliver(void *owner, fc_sub *sub, fc_buf *frame, int deleted)
{
    (void)sub;
    sink *s = owner;
    s->frames[s->n++] = fc_buf_ref(frame);
    s->deleted += deleted;
}

static void sink_clear(sink *s)
{
    for (int i = 0; i < s->n; i++)
        fc_buf_unref(s->frames[i]);
    memset(s, 0, sizeof *s);
}

#define E1 41 /* the epochs of two incarnations of one id */
#define E2 97

static fc_workflow wfe(const char *id, int64_t epoch, int64_t seq)
{
    fc_workflow w = {.status = FC_STATUS_RUNNING,
                     .current_step = seq,
                     .total_steps = 10,
                     .epoch = epoch,
                     .seq = seq};
    snprintf(w.id, sizeof w.id, "%s", id);
    w.name = "n";
    w.message = "m";
    return w;
}

static fc_workflow wf(const char *id, int64_t seq)
{
    return wfe(id, E1, seq);
}

static void test_fanout_shares_one_frame(void **state)
{
    (void)state;
    fc_hub *hub = fc_hub_new(deliver);
    sink s1 = {0}, s2 = {0}, other = {0};
    fc_sub a = {0}, b = {0}, c = {0};
    assert_int_equal(fc_hub_subscribe(hub, &a, "wf1", &s1, E1, 0), 0);
    assert_int_equal(fc_hub_subscribe(hub, &b, "wf1", &s2, E1, 0), 0);
    assert_int_equal(fc_hub_subscribe(hub, &c, "wf2", &other, E1, 0), 0);
    assert_int_equal(fc_hub_subscriptions(hub), 3);

    fc_workflow w = wf("wf1", 1);
    assert_int_equal(fc_hub_publish(hub, &w, 123, 0), 2);
    assert_int_equal(s1.n, 1);
    assert_int_equal(s2.n, 1);
    assert_int_equal(other.n, 0);
    assert_ptr_equal(s1.frames[0], s2.frames[0]); /* the same bytes, not a copy */
    assert_int_equal(s1.frames[0]->refs, 2);
    assert_int_equal(s1.frames[0]->seq, 1);
    assert_int_equal(s1.frames[0]->epoch, E1);
    assert_int_equal(s1.frames[0]->commit_ns, 123);
    assert_string_equal(s1.frames[0]->key, "wf1");
    /* A text frame with the update JSON. */
    fc_ws_header h;
    assert_true(fc_ws_header_parse(s1.frames[0]->data, s1.frames[0]->len, 0, 1 << 20, &h) > 0);
    assert_int_equal(h.opcode, FC_WS_OP_TEXT);
    assert_non_null(memmem(s1.frames[0]->data, s1.frames[0]->len, "\"workflow_id\":\"wf1\"", 19));

    fc_hub_unsubscribe(hub, &a);
    fc_hub_unsubscribe(hub, &a); /* idempotent */
    fc_hub_unsubscribe(hub, &b);
    fc_hub_unsubscribe(hub, &c);
    assert_int_equal(fc_hub_subscriptions(hub), 0);
    sink_clear(&s1);
    sink_clear(&s2);
    fc_hub_free(hub);
}

static void test_resume_filter_and_all(void **state)
{
    (void)state;
    fc_hub *hub = fc_hub_new(deliver);
    sink s = {0}, all = {0};
    fc_sub a = {0}, any = {0};
    fc_hub_subscribe(hub, &a, "wf1", &s, E1, 5); /* already has seq 5 from the log */
    fc_hub_subscribe(hub, &any, NULL, &all, 0, 0);
    fc_workflow w5 = wf("wf1", 5), w6 = wf("wf1", 6), x1 = wf("x", 1);
    assert_int_equal(fc_hub_publish(hub, &w5, 0, 0), 1); /* only the all-subscriber */
    assert_int_equal(fc_hub_publish(hub, &w6, 0, 0), 2);
    assert_int_equal(fc_hub_publish(hub, &x1, 0, 0), 1); /* lower seq, other workflow */
    assert_int_equal(s.n, 1);
    assert_int_equal(s.frames[0]->seq, 6);
    assert_int_equal(all.n, 3);
    fc_hub_unsubscribe(hub, &a);
    fc_hub_unsubscribe(hub, &any);
    sink_clear(&s);
    sink_clear(&all);
    fc_hub_free(hub);
}

static void test_delete_unlinks_subscribers(void **state)
{
    (void)state;
    fc_hub *hub = fc_hub_new(deliver);
    sink s = {0};
    fc_sub a = {0};
    fc_hub_subscribe(hub, &a, "wf1", &s, E1, 0);
    fc_workflow w = wf("wf1", 3);
    assert_int_equal(fc_hub_publish(hub, &w, 0, 1), 1);
    assert_int_equal(s.deleted, 1);
    assert_null(a.topic);
    assert_int_equal(fc_hub_subscriptions(hub), 0);
    assert_non_null(memmem(s.frames[0]->data, s.frames[0]->len, "\"deleted\":true", 14));
    /* The deletion takes the next seq of its incarnation, and is never coalesced. */
    assert_int_equal(s.frames[0]->seq, 4);
    assert_int_equal(s.frames[0]->epoch, E1);
    assert_null(s.frames[0]->key);
    /* Nobody left: publishing costs nothing and reaches no one. */
    assert_int_equal(fc_hub_publish(hub, &w, 0, 0), 0);
    sink_clear(&s);
    fc_hub_free(hub);
}

/* A subscription is to one incarnation: a late publication of an older one
 * (the loop publishes a deletion and re-creation after the subscriber read
 * the new state) is not delivered, however its seq compares; an
 * all-subscription sees every incarnation: the deletion, then the new one. */
static void test_epoch_filter(void **state)
{
    (void)state;
    fc_hub *hub = fc_hub_new(deliver);
    sink s = {0}, all = {0};
    fc_sub a = {0}, any = {0};
    fc_hub_subscribe(hub, &a, "w", &s, E2, 1); /* read the new incarnation at seq 1 */
    fc_hub_subscribe(hub, &any, NULL, &all, 0, 0);
    fc_workflow old3 = wfe("w", E1, 3), new1 = wfe("w", E2, 1), new2 = wfe("w", E2, 2);
    assert_int_equal(fc_hub_publish(hub, &old3, 0, 0), 1); /* seq 3 > 1, but E1 */
    assert_int_equal(fc_hub_publish(hub, &old3, 0, 1), 1); /* E1's deletion does not end it */
    assert_int_equal(fc_hub_publish(hub, &new1, 0, 0), 1); /* already read */
    assert_int_equal(fc_hub_publish(hub, &new2, 0, 0), 2);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.frames[0]->epoch, E2);
    assert_int_equal(s.frames[0]->seq, 2);
    assert_non_null(a.topic);
    assert_int_equal(all.n, 4);
    assert_int_equal(all.deleted, 1);
    assert_int_equal(all.frames[1]->epoch, E1);
    assert_int_equal(all.frames[2]->epoch, E2);
    assert_int_equal(all.frames[2]->seq, 1); /* not "older" than E1's 4 */
    /* Its own incarnation's deletion ends it. */
    assert_int_equal(fc_hub_publish(hub, &new2, 0, 1), 2);
    assert_null(a.topic);
    fc_hub_unsubscribe(hub, &any);
    assert_int_equal(fc_hub_subscriptions(hub), 0);
    sink_clear(&s);
    sink_clear(&all);
    fc_hub_free(hub);
}

/* The feed's two needs: the lowest position of a workflow's subscribers on
 * one incarnation (and whether any sit on another), and a resync frame to
 * those behind a state the log can no longer lead up to. */
static void test_floor_and_resync(void **state)
{
    (void)state;
    fc_hub *hub = fc_hub_new(deliver);
    sink s1 = {0}, s2 = {0}, s3 = {0};
    fc_sub a = {0}, b = {0}, c = {0};
    int64_t seq = -1, other = -1;
    assert_int_equal(fc_hub_floor(hub, "w", E1, &seq, &other), 0);
    assert_int_equal(other, 0);
    fc_hub_subscribe(hub, &a, "w", &s1, E1, 7);
    fc_hub_subscribe(hub, &b, "w", &s2, E1, 3);
    assert_int_equal(fc_hub_floor(hub, "w", E1, &seq, &other), 1);
    assert_int_equal(seq, 3);
    assert_int_equal(other, 0);
    fc_hub_subscribe(hub, &c, "w", &s3, E2, 1);
    assert_int_equal(fc_hub_floor(hub, "w", E1, &seq, &other), 1);
    assert_int_equal(other, E2);
    fc_workflow w5 = wf("w", 5);
    assert_int_equal(fc_hub_resync(hub, &w5, 0), 1); /* b only: a is ahead, c elsewhere */
    assert_int_equal(s2.n, 1);
    assert_non_null(memmem(s2.frames[0]->data, s2.frames[0]->len, "\"resync\":true", 13));
    assert_int_equal(fc_hub_floor(hub, "w", E1, &seq, &other), 1);
    assert_int_equal(seq, 5);
    fc_hub_unsubscribe(hub, &a);
    fc_hub_unsubscribe(hub, &b);
    fc_hub_unsubscribe(hub, &c);
    sink_clear(&s2);
    fc_hub_free(hub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout_shares_one_frame),
        cmocka_unit_test(test_resume_filter_and_all),
        cmocka_unit_test(test_delete_unlinks_subscribers),
        cmocka_unit_test(test_epoch_filter),
        cmocka_unit_test(test_floor_and_resync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
