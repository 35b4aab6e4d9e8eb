/* Cross-thread wake-ups of an event loop (see wake.h). */
#include "common/wake.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    fc_wake *w = (fc_wake *)p;
    uint64_t n;
    while (read(w->fd, &n, sizeof n) < 0 && errno == EINTR) {
    }
    /* Cleared before cb looks at the work: a send after this point writes
     * the eventfd again, so its work is never left for a wake that came
     * before it. */
    __atomic_store_n(&w->pending, 0, __ATOMIC_SEQ_CST);
    w->cb(w);
}

int fc_wake_init(uv_loop_t *loop, fc_wake *w, fc_wake_cb cb)
{
    w->pending = 0;
    w->cb = cb;
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->fd < 0) return -errno;
    int rc = uv_poll_init(loop, &w->poll, w->fd);
    if (rc != 0) {
        close(w->fd);
        w->fd = -1;
        return rc;
    }
    uv_poll_start(&w->poll, UV_READABLE, on_readable); /* cannot fail: a new fd, a valid mask */
    return 0;
}

void fc_wake_send(fc_wake *w)
{
    /* The work is published before the flag (SEQ_CST), and the loop clears
     * the flag before taking the work: a send that finds the flag set has
     * its work taken by the wake already on its way. */
    if (__atomic_exchange_n(&w->pending, 1, __ATOMIC_SEQ_CST)) return;
    uint64_t one = 1;
    while (write(w->fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

void fc_wake_close(fc_wake *w, uv_close_cb close_cb)
{
    /* uv_close stops polling the fd at once, so it can be closed here. */
    uv_close((uv_handle_t *)&w->poll, close_cb);
    close(w->fd);
    w->fd = -1;
}
