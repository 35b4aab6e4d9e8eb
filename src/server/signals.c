/* Signals: SIGTERM and SIGINT shut the server down, SIGHUP reloads the TLS
 * certificate and key (when serving TLS) and logs a line.
 * They are taken by a thread of their own (sigtimedwait), not by a libuv
 * signal handle: a handle's callback runs only when loop 0 next polls, and a
 * loop busy with a large backlog may not poll for seconds, while the
 * shutdown promise is 5 s. The thread sets cl->stop_now at once, which every
 * loop checks between two requests or frames (so each returns to its poll
 * promptly), and wakes loop 0, which starts the graceful shutdown. */
#include "server/internal.h"
#include "common/log.h"
#include "tls/tls.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

enum { PENDING_HUP = 1, PENDING_STOP = 2 };

static sigset_t handled_set(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

void fc__signals_block(void)
{
    sigset_t set = handled_set();
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static int open_connections(const fc_cluster *cl)
{
    int n = 0;
    for (int i = 0; i < cl->n_loops; i++)
        n += cl->loops[i].n_conns; /* a racy read, only for the log line */
    return n;
}

/* On loop 0: what the signal thread saw. SIGHUP conventionally means "reopen
 * your logs": flowcast logs to stderr, which whoever started it owns, so
 * there is nothing to reopen; the line proves the server alive. It never
 * ends the server, which would skip the checkpoint. */
static void on_signal_async(uv_async_t *h)
{
    fc_cluster *cl = h->data;
    int pending = atomic_exchange(&cl->sig_pending, 0);
    if (pending & PENDING_HUP)
        FC_INFO("server",
                "SIGHUP: still serving, %d connections open (logs go to stderr: "
                "nothing to reopen)",
                open_connections(cl));
    if (pending & PENDING_STOP) fc__cluster_shutdown(cl);
}

/* SIGHUP with --tls-cert: the files are loaded here, on the signal thread,
 * not on a loop (parsing a key takes milliseconds no I/O thread should
 * stall for). fc_tls_reload swaps the context under its lock, so every loop
 * takes the new one at its next handshake and nothing else needs telling;
 * open connections keep the one they were made with. */
static void reload_tls(fc_cluster *cl)
{
    if (!cl->tls) return;
    char err[512] = "";
    if (fc_tls_reload(cl->tls, err, sizeof err) == 0)
        FC_INFO("tls", "SIGHUP: certificate and key reloaded from %s and %s", cl->cfg->tls_cert,
                cl->cfg->tls_key);
    else
        FC_ERROR("tls", "SIGHUP: reload failed, keeping the current certificate: %s", err);
}

static void *signal_main(void *arg)
{
    fc_cluster *cl = arg;
    sigset_t set = handled_set();
    /* The tick only bounds the wait; fc__signals_stop wakes the thread at once. */
    const struct timespec tick = {.tv_sec = 1, .tv_nsec = 0};
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &tick);
        if (atomic_load(&cl->sig_thread_stop)) break;
        if (sig < 0) continue;
        if (sig == SIGHUP) {
            reload_tls(cl);
            atomic_fetch_or(&cl->sig_pending, PENDING_HUP);
        } else {
            atomic_store(&cl->stop_now, 1);
            atomic_fetch_or(&cl->sig_pending, PENDING_STOP);
        }
        uv_async_send(&cl->sig_async);
    }
    return NULL;
}

int fc__signals_start(fc_cluster *cl)
{
    if (uv_async_init(cl->loops[0].loop, &cl->sig_async, on_signal_async) != 0) return -1;
    cl->sig_async.data = cl;
    if (pthread_create(&cl->sig_thread, NULL, signal_main, cl) != 0) {
        uv_close((uv_handle_t *)&cl->sig_async, NULL);
        return -1;
    }
    cl->sig_thread_started = 1;
    return 0;
}

void fc__signals_stop(fc_cluster *cl)
{
    if (cl->sig_thread_started) {
        /* Joined before the wake-up handle closes, so the thread never sends
         * to a closed handle. The signal is blocked everywhere, so it only
         * wakes the thread's sigtimedwait, which then sees the flag. */
        atomic_store(&cl->sig_thread_stop, 1);
        pthread_kill(cl->sig_thread, SIGHUP);
        pthread_join(cl->sig_thread, NULL);
        cl->sig_thread_started = 0;
    }
    if (cl->sig_async.loop && !uv_is_closing((uv_handle_t *)&cl->sig_async))
        uv_close((uv_handle_t *)&cl->sig_async, NULL);
    /* The signals stay blocked: one that arrives from here on is moot (the
     * server is stopping anyway) and must not turn exit status 0 into a kill. */
}
