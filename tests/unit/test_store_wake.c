/* Unit tests for the wake-ups other threads send a loop on the latency
 * path (src/common/wake.c): the store's writer handing back a commit
 * (src/store/fanout.c) and the bus posting to a feed (src/feed/queue.c).
 * A sender descheduled right after its eventfd write, as the loop it woke
 * may deschedule it on the same core, must not make that loop wait for it:
 * with uv_async_t (libuv < 1.45) the loop spun and then sched_yield()ed,
 * handing the core to anything else runnable, until the sender ran again.
 * This binary stands in for write() and sched_yield(): the first eventfd
 * write of a thread other than the loop's, once armed, holds its sender
 * until the loop has handled the wake-up or yielded. */
#include "store_fixture.h"
#include "common/time.h"
#include "feed/feed.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

static pthread_t loop_thread;
static int armed;     /* atomic: hold the next eventfd write of another thread */
static int held;      /* atomic: writes held so far */
static int stuck;     /* atomic: held writes the loop never got on without */
static int yields;    /* atomic: sched_yield() calls on the loop's thread */
static sem_t handled; /* posted by the loop: wake-up handled, or yielded */

static int is_eventfd(int fd)
{
    char link[64], target[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = '\0';
    return strcmp(target, "anon_inode:[eventfd]") == 0;
}

ssize_t write(int fd, const void *buf, size_t len)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    /* Counted before the write: once it is written the loop may be done
     * before this thread runs again. */
    int hold = len == 8 && __atomic_load_n(&armed, __ATOMIC_SEQ_CST) &&
               !pthread_equal(pthread_self(), loop_thread) && is_eventfd(fd) &&
               __atomic_exchange_n(&armed, 0, __ATOMIC_SEQ_CST);
    if (hold) __atomic_add_fetch(&held, 1, __ATOMIC_SEQ_CST);
    ssize_t r = real(fd, buf, len);
    if (hold) {
        /* Descheduled here: back once the loop got on without us, or
         * after a bound long past any wake-up (a loop that waits for this
         * thread, on a lock it holds, say, fails the test, not hangs it). */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        int rc;
        while ((rc = sem_timedwait(&handled, &until)) != 0 && errno == EINTR) {
        }
        if (rc != 0) __atomic_add_fetch(&stuck, 1, __ATOMIC_SEQ_CST);
    }
    return r;
}

int sched_yield(void)
{
    static int (*real)(void);
    if (!real) real = (int (*)(void))dlsym(RTLD_NEXT, "sched_yield");
    if (pthread_equal(pthread_self(), loop_thread)) {
        __atomic_add_fetch(&yields, 1, __ATOMIC_SEQ_CST);
        sem_post(&handled);
    }
    return real();
}

static void arm(void)
{
    while (sem_trywait(&handled) == 0) {
    }
    loop_thread = pthread_self();
    __atomic_store_n(&yields, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&held, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&stuck, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&armed, 1, __ATOMIC_SEQ_CST);
}

/* ---- the writer's hand-back ---- */

static void done_and_handled(fc_change *c)
{
    on_done(c);
    sem_post(&handled);
}

/* Submits one create with the sender held after its wake-up (arm) and
 * runs the fixture's loop until it is done; its result. */
static int commit_one(fixture *f)
{
    fc_change *c = mk_create("w1", FC_STATUS_RUNNING, 0, 10);
    c->done = done_and_handled;
    arm();
    fc_store_submit(f->s, c);
    for (int turn = 0; f->ndone < 1 && turn < 100000; turn++)
        uv_run(&f->loop, UV_RUN_ONCE);
    int result = c->result;
    free_change(c);
    return result;
}

static void test_commit_wake_does_not_wait_for_writer(void **state)
{
    fixture *f = *state;
    int result = commit_one(f);
    assert_int_equal(f->ndone, 1);
    assert_int_equal(result, 0);
    assert_int_equal(__atomic_load_n(&held, __ATOMIC_SEQ_CST), 1); /* the hand-back's wake-up */
    assert_int_equal(__atomic_load_n(&yields, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(__atomic_load_n(&stuck, __ATOMIC_SEQ_CST), 0);
}

/* Two loops on the store: the batch goes out shared, and the first loop
 * woken must not wait for the writer either (it is still to wake the
 * second). */
static void test_shared_commit_wake_does_not_wait_for_writer(void **state)
{
    fixture *f = *state;
    uv_loop_t loop2;
    char err[256] = "";
    assert_int_equal(uv_loop_init(&loop2), 0);
    fc_store *s2 = fc_store_attach(f->s, &loop2, err, sizeof err);
    assert_non_null(s2);
    int result = commit_one(f);
    fc_store_close(s2);
    assert_int_equal(uv_run(&loop2, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop2), 0);
    assert_int_equal(f->ndone, 1);
    assert_int_equal(result, 0);
    assert_int_equal(__atomic_load_n(&held, __ATOMIC_SEQ_CST), 1);
    assert_int_equal(__atomic_load_n(&yields, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(__atomic_load_n(&stuck, __ATOMIC_SEQ_CST), 0);
}

/* ---- a bus thread's post to a feed ---- */

typedef struct feed_world {
    fc_feed *feed;
    fc_feed_msg *msg;
    int posted; /* fc_feed_post's answer, on the bus thread */
    int published;
} feed_world;

static void sink_publish(void *ud, const fc_workflow *st, uint64_t commit_ns, int deleted)
{
    (void)st;
    (void)commit_ns;
    (void)deleted;
    feed_world *x = ud;
    x->published++;
    sem_post(&handled);
}

static void sink_resync(void *ud, const fc_workflow *st)
{
    (void)ud;
    (void)st;
}

static int sink_floor(void *ud, const char *id, int64_t epoch, int64_t *seq, int64_t *other)
{
    (void)ud;
    (void)id;
    (void)epoch;
    (void)seq;
    (void)other;
    return 0;
}

static void *bus_thread(void *arg)
{
    feed_world *x = arg;
    x->posted = fc_feed_post(x->feed, x->msg);
    return NULL;
}

static void test_bus_wake_does_not_wait_for_poster(void **state)
{
    fixture *f = *state;
    feed_world x = {0};
    fc_feed_sink sink = {
        .publish = sink_publish, .resync = sink_resync, .floor = sink_floor, .ud = &x};
    fc_feed_config cfg = {.max_workflows = 16, .max_queue = 16};
    x.feed = fc_feed_new(&f->loop, f->s, &sink, &cfg);
    assert_non_null(x.feed);
    fc_workflow w = {.epoch = 1, .seq = 1, .current_step = 1, .total_steps = 10};
    snprintf(w.id, sizeof w.id, "w1");
    w.name = "n";
    w.message = "m";
    /* A catch-up message: handed on without a store read. */
    x.msg = fc_feed_msg_new(&w, 0, 0, FC_FEED_CATCHUP, 0);
    assert_non_null(x.msg);
    arm();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bus_thread, &x), 0);
    for (int turn = 0; x.published < 1 && turn < 100000; turn++)
        uv_run(&f->loop, UV_RUN_ONCE);
    pthread_join(t, NULL);
    fc_feed_msg_unref(x.msg);
    fc_feed_close(x.feed);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(x.posted, 0);
    assert_int_equal(x.published, 1);
    assert_int_equal(__atomic_load_n(&held, __ATOMIC_SEQ_CST), 1);
    assert_int_equal(__atomic_load_n(&yields, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(__atomic_load_n(&stuck, __ATOMIC_SEQ_CST), 0);
}

int main(void)
{
    sem_init(&handled, 0, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_wake_does_not_wait_for_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_commit_wake_does_not_wait_for_writer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bus_wake_does_not_wait_for_poster, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
