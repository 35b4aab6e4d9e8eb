/* Unit tests for src/metrics/metrics.c: Prometheus rendering, cumulative histogram, HTTP codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>

#include "metrics/metrics.h"

/* Each test starts from a zeroed shard for this thread. */
static int reset(void **state)
{
    (void)state;
    memset(&fc_metrics_g, 0, sizeof fc_metrics_g);
    return 0;
}

/* True when text contains line as a whole line. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return 1;
    return 0;
}

#define ASSERT_LINE(text, line)                                                                    \
    do {                                                                                           \
        if (!has_line((text), (line))) fail_msg("missing line: %s\n---\n%s", (line), (text));      \
    } while (0)

static char *render(uint64_t bmax, uint64_t btotal)
{
    size_t len = 0;
    fc_metrics_g.backlog_max = bmax;
    fc_metrics_g.backlog_total = btotal;
    char *s = fc_metrics_render(&len);
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    assert_true(len > 0 && s[len - 1] == '\n');
    return s;
}

static void test_render_values(void **state)
{
    (void)state;
    fc_metrics_g.ws_connections = 3;
    fc_metrics_g.ws_connections_opened = 10;
    fc_metrics_g.http_connections = 5;
    fc_metrics_g.subscriptions = 7;
    fc_metrics_g.messages_written = 100;
    fc_metrics_g.messages_coalesced = 4;
    fc_metrics_g.slow_consumers_closed = 1;
    fc_metrics_g.changes_committed = 42;
    char *s = render(4096, 10000);

    ASSERT_LINE(s, "# TYPE flowcast_ws_connections gauge");
    ASSERT_LINE(s, "flowcast_ws_connections 3");
    ASSERT_LINE(s, "# TYPE flowcast_ws_connections_opened_total counter");
    ASSERT_LINE(s, "flowcast_ws_connections_opened_total 10");
    ASSERT_LINE(s, "# TYPE flowcast_connections gauge");
    ASSERT_LINE(s, "flowcast_connections 5");
    ASSERT_LINE(s, "# TYPE flowcast_subscriptions gauge");
    ASSERT_LINE(s, "flowcast_subscriptions 7");
    ASSERT_LINE(s, "# TYPE flowcast_messages_written_total counter");
    ASSERT_LINE(s, "flowcast_messages_written_total 100");
    ASSERT_LINE(s, "# TYPE flowcast_messages_coalesced_total counter");
    ASSERT_LINE(s, "flowcast_messages_coalesced_total 4");
    ASSERT_LINE(s, "# TYPE flowcast_slow_consumers_closed_total counter");
    ASSERT_LINE(s, "flowcast_slow_consumers_closed_total 1");
    ASSERT_LINE(s, "# TYPE flowcast_changes_committed_total counter");
    ASSERT_LINE(s, "flowcast_changes_committed_total 42");
    ASSERT_LINE(s, "# TYPE flowcast_backlog_max gauge");
    ASSERT_LINE(s, "flowcast_backlog_max 4096");
    ASSERT_LINE(s, "# TYPE flowcast_backlog_total gauge");
    ASSERT_LINE(s, "flowcast_backlog_total 10000");
    ASSERT_LINE(s, "# TYPE flowcast_http_requests_total counter");
    ASSERT_LINE(s, "# TYPE flowcast_commit_to_write_seconds histogram");
    ASSERT_LINE(s, "flowcast_commit_to_write_seconds_count 0");
    ASSERT_LINE(s, "# TYPE flowcast_store_commit_seconds histogram");
    ASSERT_LINE(s, "flowcast_store_commit_seconds_count 0");

    /* Every sample's family has exactly one HELP and one TYPE line before it. */
    char *copy = strdup(s);
    assert_non_null(copy);
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char family[128];
        size_t n = strcspn(line, "{ ");
        assert_true(n < sizeof family);
        memcpy(family, line, n);
        family[n] = '\0';
        char *suffix;
        if ((suffix = strstr(family, "_bucket")) || (suffix = strstr(family, "_sum")) ||
            (suffix = strstr(family, "_count")))
            *suffix = '\0';
        char want[256];
        snprintf(want, sizeof want, "# TYPE %s ", family);
        if (strstr(s, want) == NULL) fail_msg("no TYPE for %s", line);
        snprintf(want, sizeof want, "# HELP %s ", family);
        if (strstr(s, want) == NULL) fail_msg("no HELP for %s", line);
    }
    free(copy);
    free(s);
}

static void test_negative_gauge(void **state)
{
    (void)state;
    /* A gauge that went below zero signals a bookkeeping bug; it must show, not wrap. */
    fc_metrics_g.subscriptions = -1;
    char *s = render(0, 0);
    ASSERT_LINE(s, "flowcast_subscriptions -1");
    free(s);
}

static void test_http_codes(void **state)
{
    (void)state;
    fc_metrics_http_status(200);
    fc_metrics_http_status(200);
    fc_metrics_http_status(404);
    fc_metrics_http_status(101);
    fc_metrics_http_status(599);
    /* Out of range: ignored, and must not write outside the array. */
    fc_metrics_http_status(99);
    fc_metrics_http_status(600);
    fc_metrics_http_status(-1);
    fc_metrics_http_status(0);
    assert_int_equal(fc_metrics_g.http_by_code[200], 2);
    assert_int_equal(fc_metrics_g.http_by_code[99], 0);

    char *s = render(0, 0);
    ASSERT_LINE(s, "flowcast_http_requests_total{code=\"101\"} 1");
    ASSERT_LINE(s, "flowcast_http_requests_total{code=\"200\"} 2");
    ASSERT_LINE(s, "flowcast_http_requests_total{code=\"404\"} 1");
    ASSERT_LINE(s, "flowcast_http_requests_total{code=\"599\"} 1");
    /* Codes never seen get no line. */
    assert_null(strstr(s, "code=\"500\""));
    assert_null(strstr(s, "code=\"600\""));
    assert_null(strstr(s, "code=\"99\""));
    /* Codes are in ascending order. */
    assert_true(strstr(s, "code=\"101\"") < strstr(s, "code=\"200\""));
    assert_true(strstr(s, "code=\"200\"") < strstr(s, "code=\"404\""));
    free(s);
}

static void test_histogram(void **state)
{
    (void)state;
    fc_metrics_observe_latency(30000);         /* 30 us -> le 0.00005 */
    fc_metrics_observe_latency(50000);         /* exactly on a bound: that bucket */
    fc_metrics_observe_latency(50001);         /* just above -> le 0.0001 */
    fc_metrics_observe_latency(2000000);       /* 2 ms -> le 0.0025 */
    fc_metrics_observe_latency(1000000000);    /* 1 s -> le 1 */
    fc_metrics_observe_latency(3000000000ull); /* 3 s -> +Inf only */
    assert_int_equal(fc_metrics_g.latency.count, 6);
    assert_int_equal(fc_metrics_g.latency.buckets[0], 2);
    assert_int_equal(fc_metrics_g.latency.buckets[1], 1);
    assert_int_equal(fc_metrics_g.latency.buckets[15], 1);

    char *s = render(0, 0);
    static const char *const want[] = {
        "flowcast_commit_to_write_seconds_bucket{le=\"0.00005\"} 2",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.0001\"} 3",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.00025\"} 3",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.0005\"} 3",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.001\"} 3",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.0025\"} 4",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.005\"} 4",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.01\"} 4",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.025\"} 4",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.05\"} 4",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.1\"} 4",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.25\"} 4",
        "flowcast_commit_to_write_seconds_bucket{le=\"0.5\"} 4",
        "flowcast_commit_to_write_seconds_bucket{le=\"1\"} 5",
        "flowcast_commit_to_write_seconds_bucket{le=\"2.5\"} 5",
        "flowcast_commit_to_write_seconds_bucket{le=\"+Inf\"} 6",
    };
    const char *prev = s;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        ASSERT_LINE(s, want[i]);
        /* Buckets are listed in ascending order of le. */
        const char *at = strstr(s, want[i]);
        assert_true(at > prev);
        prev = at;
    }
    ASSERT_LINE(s, "flowcast_commit_to_write_seconds_count 6");
    /* 30e-6 + 50e-6 + 50.001e-6 + 2e-3 + 1 + 3 = 4.002130001 */
    ASSERT_LINE(s, "flowcast_commit_to_write_seconds_sum 4.002130001");
    free(s);
}

/* The store's commit histogram has its own buckets, count and sum: nothing
 * observed there shows in commit-to-write, nor the other way round. */
static void test_store_commit_histogram(void **state)
{
    (void)state;
    fc_metrics_observe_store_commit(800000);   /* 0.8 ms -> le 0.001 */
    fc_metrics_observe_store_commit(3000000);  /* 3 ms -> le 0.005 */
    fc_metrics_observe_store_commit(5000000);  /* exactly on a bound: that bucket */
    assert_int_equal(fc_metrics_g.store_commit.count, 3);
    assert_int_equal(fc_metrics_g.store_commit.buckets[4], 1);
    assert_int_equal(fc_metrics_g.store_commit.buckets[6], 2);
    char *s = render(0, 0);
    ASSERT_LINE(s, "flowcast_store_commit_seconds_bucket{le=\"0.0005\"} 0");
    ASSERT_LINE(s, "flowcast_store_commit_seconds_bucket{le=\"0.001\"} 1");
    ASSERT_LINE(s, "flowcast_store_commit_seconds_bucket{le=\"0.0025\"} 1");
    ASSERT_LINE(s, "flowcast_store_commit_seconds_bucket{le=\"0.005\"} 3");
    ASSERT_LINE(s, "flowcast_store_commit_seconds_bucket{le=\"+Inf\"} 3");
    ASSERT_LINE(s, "flowcast_store_commit_seconds_count 3");
    ASSERT_LINE(s, "flowcast_store_commit_seconds_sum 0.008800000");
    ASSERT_LINE(s, "flowcast_commit_to_write_seconds_count 0");
    free(s);
}

static void test_len_optional(void **state)
{
    (void)state;
    char *s = fc_metrics_render(NULL);
    assert_non_null(s);
    free(s);
}

/* A second loop thread with its own shard, registered while it runs. */
typedef struct other {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ready, done;
} other;

static void *other_thread(void *arg)
{
    other *o = arg;
    fc_metrics_thread_register();
    FC_METRIC_ADD(ws_connections, 2);
    FC_METRIC_ADD(changes_committed, 5);
    FC_METRIC_SET(backlog_max, 9);
    FC_METRIC_SET(backlog_total, 11);
    fc_metrics_http_status(200);
    pthread_mutex_lock(&o->lock);
    o->ready = 1;
    pthread_cond_broadcast(&o->cond);
    while (!o->done)
        pthread_cond_wait(&o->cond, &o->lock);
    pthread_mutex_unlock(&o->lock);
    fc_metrics_thread_unregister();
    return NULL;
}

/* A scrape sums the shards of every registered thread (the largest backlog
 * wins), and a thread that stops takes its shard with it. */
static void test_shards_add_up(void **state)
{
    (void)state;
    other o = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    pthread_t t;
    fc_metrics_thread_register();
    FC_METRIC_ADD(ws_connections, 3);
    FC_METRIC_ADD(changes_committed, 1);
    fc_metrics_http_status(200);
    assert_int_equal(pthread_create(&t, NULL, other_thread, &o), 0);
    pthread_mutex_lock(&o.lock);
    while (!o.ready)
        pthread_cond_wait(&o.cond, &o.lock);
    pthread_mutex_unlock(&o.lock);

    char *s = render(4, 6);
    ASSERT_LINE(s, "flowcast_ws_connections 5");
    ASSERT_LINE(s, "flowcast_changes_committed_total 6");
    ASSERT_LINE(s, "flowcast_backlog_max 9");
    ASSERT_LINE(s, "flowcast_backlog_total 17");
    ASSERT_LINE(s, "flowcast_http_requests_total{code=\"200\"} 2");
    free(s);

    pthread_mutex_lock(&o.lock);
    o.done = 1;
    pthread_cond_broadcast(&o.cond);
    pthread_mutex_unlock(&o.lock);
    pthread_join(t, NULL);
    s = render(4, 6);
    ASSERT_LINE(s, "flowcast_ws_connections 3");
    ASSERT_LINE(s, "flowcast_backlog_max 4");
    free(s);
    fc_metrics_thread_unregister();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_render_values, reset),
        cmocka_unit_test_setup(test_negative_gauge, reset),
        cmocka_unit_test_setup(test_http_codes, reset),
        cmocka_unit_test_setup(test_histogram, reset),
        cmocka_unit_test_setup(test_store_commit_histogram, reset),
        cmocka_unit_test_setup(test_len_optional, reset),
        cmocka_unit_test_setup(test_shards_add_up, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
