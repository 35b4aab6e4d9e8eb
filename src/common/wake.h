/* A wake-up another thread sends to an event loop: an eventfd the loop
 * polls, and a flag so that the sends made before the loop runs write it
 * once. It stands in for uv_async_t where a thread hands work to a loop on
 * the latency path (the store's writer, the bus): libuv before 1.45 makes
 * a loop that wakes while the sender is still inside uv_async_send (between
 * its eventfd write and marking the send done, e.g. descheduled there by the
 * very loop it woke, on the same core) spin and then sched_yield() until the
 * sender runs again, handing the core to whatever else is runnable. Here the
 * flag is set before the write, so the loop never waits for the sender. */
#ifndef FC_COMMON_WAKE_H
#define FC_COMMON_WAKE_H

#include <uv.h>

typedef struct fc_wake fc_wake;
typedef void (*fc_wake_cb)(fc_wake *w);

struct fc_wake {
    uv_poll_t poll; /* first: the handle uv_close and close callbacks see */
    int fd;
    int pending; /* atomic: sent, not yet taken by the loop */
    fc_wake_cb cb;
    void *data; /* the caller's */
};

/* Sets up w on loop (loop thread); cb runs on the loop after one or more
 * fc_wake_send. 0, or a negative errno-style code (nothing to close). */
int fc_wake_init(uv_loop_t *loop, fc_wake *w, fc_wake_cb cb);
/* Any thread, any time between init and close: cb runs on a later loop
 * turn, and sees what the sender did before this call. */
void fc_wake_send(fc_wake *w);
/* Loop thread: no cb after this; close_cb gets (uv_handle_t *)w, after
 * which w's memory may go. No fc_wake_send may follow. */
void fc_wake_close(fc_wake *w, uv_close_cb close_cb);

#endif
