/* Server lifecycle: the loops (one per I/O thread), the per-turn flush,
 * timers, and a graceful shutdown (close 1001, finish writes, checkpoint,
 * exit 0). */
#include "server/server.h"
#include "server/internal.h"
#include "auth/auth.h"
#include "common/log.h"
#include "metrics/metrics.h"
#include "tls/tls.h"
#include "ws/frame.h"

#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define SHUTDOWN_GRACE_MS 3000
#define FD_RESERVE 64 /* descriptors kept for the store, logs and the listener */
#define MAX_LOOPS 64
/* Freed output past which the loop hands free heap pages back to the system:
 * after a burst of large answers the allocator would otherwise keep the peak
 * resident for ever. */
#define TRIM_AFTER_BYTES (64u * 1024 * 1024)

const fc_config *fc_server_config(const fc_server *s)
{
    return s->cfg;
}

uv_loop_t *fc_server_loop(const fc_server *s)
{
    return s->loop;
}

fc_store *fc_server_store(const fc_server *s)
{
    return s->store;
}

fc_hub *fc_server_hub(const fc_server *s)
{
    return s->hub;
}

int fc_server_accepting(const fc_server *s)
{
    return !s->shutting_down && !atomic_load(&s->cl->stop_now);
}

fc_auth *fc_server_auth(const fc_server *s)
{
    return s->cl->auth;
}

/* An early, cheap check (a refused stream reads nothing from the store);
 * the slot itself is taken atomically in fc_conn_upgrade / fc_conn_start_sse. */
int fc_server_over_limit(const fc_server *s)
{
    return atomic_load_explicit(&s->cl->n_streams, memory_order_relaxed) >= s->cl->max_conns;
}

/* Raises the soft open-file limit to the hard limit; returns the limit. */
static int raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur > 10000000 ? 10000000 : (int)rl.rlim_cur;
}

static void noop_idle(uv_idle_t *h)
{
    (void)h;
}

/* After every poll phase: write what this turn queued, one writev per
 * connection, before the loop sleeps again. Whatever queued work since the
 * last pass started the idle handle (fc__server_flush_soon), so poll did
 * not sleep before this; it stops once nothing is left over. */
static void on_check(uv_check_t *h)
{
    fc_server *srv = h->data;
    fc__conn_run_input(srv); /* input left from earlier turns, a budget each */
    fc__conn_flush_all(srv);
    if (fc_list_empty(&srv->flush_list) && fc_list_empty(&srv->input_list))
        uv_idle_stop(&srv->flush_idle);
}

void fc__server_flush_soon(fc_server *srv)
{
    uv_idle_start(&srv->flush_idle, noop_idle);
}

/* A subscriber stuck past --slow-timeout: its backlog is dropped and a 1008
 * close frame queued behind the write in flight; if the peer does not read
 * it within the close grace period, the closing sweep drops the socket. */
static void close_stuck(fc_server *srv, fc_conn *c, uint64_t now)
{
    FC_INFO("server", "connection stuck for %.1f s with %u messages queued: closing",
            srv->cfg->slow_timeout, c->out.count);
    FC_METRIC_ADD(slow_consumers_closed, 1);
    if (!fc_stream_is_ws((fc_stream_kind)c->kind)) {
        fc__conn_close(c);
        return;
    }
    fc_outq_drop_unlocked(&c->out);
    fc_conn_ws_close(c, FC_WS_CLOSE_POLICY, "subscriber too slow");
    c->close_after_write = 1;
    c->progress_ms = now;
}

static void sweep_stuck_writers(fc_server *srv, uint64_t now)
{
    uint64_t limit = (uint64_t)(srv->cfg->slow_timeout * 1000.0);
    fc_list *it = srv->blocked_list.next;
    while (it != &srv->blocked_list) {
        fc_list *next = it->next;
        fc_conn *c = fc_container_of(it, fc_conn, io_link);
        /* Once the close frame is queued, the closing sweep owns the deadline;
         * over --max-output, the output limit's sweep does. */
        if (!c->ws_close_sent && !c->over_limit && now - c->progress_ms >= limit)
            close_stuck(srv, c, now);
        it = next;
    }
}

/* Returns free heap pages to the system once enough output was freed. */
static void trim_memory(fc_server *srv)
{
    srv->freed_since_trim += fc_outq_take_freed();
    if (srv->freed_since_trim < TRIM_AFTER_BYTES) return;
    srv->freed_since_trim = 0;
#ifdef __GLIBC__
    malloc_trim(0);
    FC_METRIC_ADD(memory_trims, 1);
#endif
}

static void on_sweep_timer(uv_timer_t *t)
{
    fc_server *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    sweep_stuck_writers(srv, now);
    fc__conn_sweep_over_limit(srv, now);
    fc__ws_sweep_closing(srv, now);
    fc__conn_sweep_http(srv, now);
    /* Loop 0 walks the per-client table a slice at a time: all of it in
     * about 8 s, so idle entries go even where no lookup comes again. */
    if (srv->index == 0 && srv->cl->clients)
        fc_clients_sweep(srv->cl->clients, FC_CLIENTS_CHAINS / 32, uv_hrtime());
    fc_server_update_gauges(srv);
    trim_memory(srv);
}

static void close_handle(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h)) uv_close(h, NULL);
}

/* Closes the sockets handed to this loop that it will no longer serve. */
static void close_inbox(fc_server *srv)
{
    uv_mutex_lock(&srv->inbox_lock);
    for (int i = 0; i < srv->inbox_len; i++)
        close(srv->inbox[i]);
    srv->inbox_len = 0;
    uv_mutex_unlock(&srv->inbox_lock);
}

/* Every connection of this loop is gone: stop its timers and close its store
 * handle (the last loop's also commits what is queued and checkpoints).
 * uv_run then returns. */
static void finish(fc_server *srv)
{
    if (srv->shutting_down == 2) return;
    srv->shutting_down = 2;
    close_inbox(srv);
    if (srv->index == 0) fc__signals_stop(srv->cl);
    close_handle((uv_handle_t *)&srv->wake);
    close_handle((uv_handle_t *)&srv->flush_check);
    close_handle((uv_handle_t *)&srv->flush_idle);
    close_handle((uv_handle_t *)&srv->ping_wheel.timer);
    close_handle((uv_handle_t *)&srv->heartbeat_wheel.timer);
    close_handle((uv_handle_t *)&srv->expiry_wheel.timer);
    close_handle((uv_handle_t *)&srv->sweep_timer);
    close_handle((uv_handle_t *)&srv->shutdown_timer);
    /* The feed first: the store's close never calls its commit callback. */
    fc__server_feed_close(srv);
    fc_store_close(srv->store);
    srv->store = NULL;
    if (srv->cl->n_loops > 1) FC_DEBUG("server", "I/O thread %d stopped", srv->index);
}

void fc__server_conn_gone(fc_server *srv)
{
    srv->n_conns--;
    if (srv->shutting_down == 1 && srv->n_conns == 0) finish(srv);
}

static void force_close(fc_conn *c, void *arg)
{
    (void)arg;
    fc__conn_close(c);
}

static void on_shutdown_timer(uv_timer_t *t)
{
    fc_server *srv = t->data;
    fc__conn_foreach(srv, force_close, NULL);
}

/* WebSockets get 1001; idle HTTP connections close now; busy ones after their answer. */
static void start_closing(fc_conn *c, void *arg)
{
    (void)arg;
    if (fc_stream_is_ws((fc_stream_kind)c->kind))
        fc_conn_ws_close(c, FC_WS_CLOSE_GOING_AWAY, "server shutting down");
    else if (!c->busy && !c->deferred && !c->out.count)
        fc__conn_close(c); /* idle, or half a request that will not be answered */
    else
        c->last_request = 1; /* answers say Connection: close; the last one closes */
}

static void begin_shutdown(fc_server *srv)
{
    if (srv->shutting_down) return;
    srv->shutting_down = 1;
    fc__conn_foreach(srv, start_closing, NULL);
    uv_timer_start(&srv->shutdown_timer, on_shutdown_timer, SHUTDOWN_GRACE_MS, 0);
    if (srv->n_conns == 0) finish(srv);
}

static int open_connections(const fc_cluster *cl)
{
    int n = 0;
    for (int i = 0; i < cl->n_loops; i++)
        n += cl->loops[i].n_conns; /* a racy read, only for the log line */
    return n;
}

void fc__cluster_shutdown(fc_cluster *cl)
{
    if (cl->shutting_down) return;
    cl->shutting_down = 1;
    int open = open_connections(cl);
    FC_LOGF(FC_LOG_INFO, "server", ((fc_log_field[]){FC_LOG_INT("connections", open)}), 1,
            "shutting down: closing %d connections", open);
    fc__listener_stop(cl);
    for (int i = 1; i < cl->n_loops; i++) {
        atomic_store(&cl->loops[i].stop_requested, 1);
        uv_async_send(&cl->loops[i].wake);
    }
    begin_shutdown(&cl->loops[0]);
}

static void free_unopened(uv_handle_t *h)
{
    free(h); /* the handle is the first member of its fc_conn */
}

/* TCP keepalive reaps half-open sockets (a peer that vanished without a FIN
 * or RST) that no timeout of ours would see: an idle WebSocket between pings
 * is covered, an SSE stream or a long-poll waiting on a quiet workflow is not.
 * Probes start after idle_s seconds of silence; three unanswered probes, a
 * sixth of that apart, end the connection. */
static void set_keepalive(int fd, int idle_s)
{
    if (idle_s <= 0) return;
    int on = 1, intvl = idle_s / 6 > 0 ? idle_s / 6 : 1, cnt = 3;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0) return;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

void fc__server_adopt(fc_server *srv, int fd)
{
    fc_conn *c = srv->shutting_down ? NULL : fc__conn_new(srv->cl->tls != NULL);
    if (!c) {
        close(fd);
        return;
    }
    uv_tcp_init(srv->loop, &c->tcp);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        uv_close((uv_handle_t *)&c->tcp, free_unopened);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    set_keepalive(fd, srv->cfg->tcp_keepalive);
    srv->n_conns++;
    if (c->tls && !(FC_TLS_SESSION(c) = fc_tls_conn_new(srv->cl->tls))) {
        c->tls = 0;                         /* no session to say goodbye with */
        FC_METRIC_ADD(http_connections, 1); /* fc__conn_close takes it back */
        fc__conn_close(c);
        return;
    }
    fc__conn_start(c);
}

/* Sockets from loop 0's listener, and shutdown requests. The inbox is taken
 * whole, so the lock is held only for the swap. */
static void on_wake(uv_async_t *h)
{
    fc_server *srv = h->data;
    uv_mutex_lock(&srv->inbox_lock);
    int *fds = srv->inbox, n = srv->inbox_len;
    srv->inbox = NULL;
    srv->inbox_len = srv->inbox_cap = 0;
    uv_mutex_unlock(&srv->inbox_lock);
    for (int i = 0; i < n; i++)
        fc__server_adopt(srv, fds[i]);
    free(fds);
    if (atomic_load(&srv->stop_requested)) begin_shutdown(srv);
}

/* The one seam between the store and the hub: the loop's committed changes,
 * from whichever loop they came, in commit order, go through the loop's feed
 * (which also orders what other nodes committed: the bus and the catch-up
 * reads) to its subscribers, and from loop 0 to the other nodes. */
static void on_commit(void *ud, const fc_workflow *state, const fc_store_commit *commit,
                      int deleted)
{
    fc__server_feed_commit(ud, state, commit, deleted);
}

static void init_handles(fc_server *srv)
{
    uv_check_init(srv->loop, &srv->flush_check);
    uv_idle_init(srv->loop, &srv->flush_idle);
    uv_timer_init(srv->loop, &srv->sweep_timer);
    uv_timer_init(srv->loop, &srv->shutdown_timer);
    srv->flush_check.data = srv->sweep_timer.data = srv->shutdown_timer.data = srv;
    uv_check_start(&srv->flush_check, on_check);
    fc__ping_init(srv);
    fc__heartbeat_init(srv);
    if (srv->cl->auth) fc__expiry_init(srv);
    uv_timer_start(&srv->sweep_timer, on_sweep_timer, 250, 250);
}

int fc__server_loop_state_init(fc_server *srv)
{
    fc_list_init(&srv->flush_list);
    fc_list_init(&srv->blocked_list);
    fc_list_init(&srv->closing_list);
    fc_list_init(&srv->input_list);
    fc_list_init(&srv->request_list);
    fc_list_init(&srv->idle_list);
    srv->read_buf = malloc(FC_READ_BUF_SIZE);
    srv->ping_frame = fc__ws_ping_frame();
    srv->heartbeat = fc_buf_copy(": keep-alive\n\n", 14);
    srv->hub = fc_hub_new(srv->handlers->deliver);
    return srv->read_buf && srv->ping_frame && srv->heartbeat && srv->hub ? 0 : -1;
}

/* Sets up loop i: its libuv loop, wake-up, hub and store handle (loop 0
 * opens the store, the others attach to it). */
static int loop_init(fc_cluster *cl, int i)
{
    fc_server *srv = &cl->loops[i];
    srv->cl = cl;
    srv->index = i;
    srv->cfg = cl->cfg;
    srv->handlers = cl->handlers;
    srv->loop = malloc(sizeof *srv->loop);
    if (!srv->loop || uv_loop_init(srv->loop) != 0) {
        free(srv->loop);
        srv->loop = NULL;
        return -1;
    }
    srv->loop->data = srv; /* connections find their server through their loop */
    uv_mutex_init(&srv->inbox_lock);
    if (uv_async_init(srv->loop, &srv->wake, on_wake) != 0) {
        FC_ERROR("server", "cannot set up the wake-up of I/O thread %d", i);
        return -1;
    }
    srv->wake.data = srv;
    if (fc__server_loop_state_init(srv) != 0) return -1;
    if (cl->tls && !(srv->tls_buf = malloc(FC_READ_BUF_SIZE))) return -1;

    char err[256] = "";
    if (i == 0) {
        fc_store_config scfg = {.path = cl->cfg->db_path,
                                .sync_full = cl->cfg->sync_full,
                                .retention = cl->cfg->retention,
                                .check_seconds = cl->cfg->startup_check,
                                .idem_window_ms = (int64_t)(cl->cfg->idem_window * 1000),
                                .timeout_s = cl->cfg->db_timeout,
                                .commit_delay_us = cl->cfg->commit_delay};
        srv->store = fc_store_open(srv->loop, &scfg, err, sizeof err);
    } else {
        srv->store = fc_store_attach(cl->loops[0].store, srv->loop, err, sizeof err);
    }
    if (!srv->store) {
        /* A PostgreSQL URL may hold a password: it is not logged. */
        FC_ERROR("store", "cannot open %s: %s",
                 fc_store_is_postgres(cl->cfg->db_path) ? "the PostgreSQL database"
                                                        : cl->cfg->db_path,
                 err);
        return -1;
    }
    fc_store_on_commit(srv->store, on_commit, srv);
    return fc__server_feed_open(srv);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* After a failed start: closes whatever loop i opened and runs it dry. */
static void loop_abandon(fc_server *srv)
{
    if (!srv->loop) return;
    close_inbox(srv);
    fc__server_feed_close(srv);
    if (srv->store) fc_store_close(srv->store);
    srv->store = NULL;
    uv_walk(srv->loop, close_any, NULL);
    uv_run(srv->loop, UV_RUN_DEFAULT);
}

/* Frees loop i once its uv_run returned (on any thread, but only then). */
static void loop_free(fc_server *srv)
{
    if (!srv->loop) return;
    fc_hub_free(srv->hub);
    fc_buf_unref(srv->ping_frame);
    fc_buf_unref(srv->heartbeat);
    free(srv->read_buf);
    free(srv->tls_buf);
    free(srv->inbox);
    uv_mutex_destroy(&srv->inbox_lock);
    if (uv_loop_close(srv->loop) != 0) FC_WARN("server", "loop closed with handles still open");
    free(srv->loop);
}

/* An I/O thread other than the main one: runs its loop to the end. */
static void loop_main(void *arg)
{
    fc_server *srv = arg;
    /* Shows in top -H and perf (the main thread, loop 0, keeps the process's
     * name); the cost of each loop per change is then read per thread. */
    char name[16];
    snprintf(name, sizeof name, "fc-loop-%d", srv->index);
    pthread_setname_np(pthread_self(), name);
    fc_metrics_thread_register();
    uv_run(srv->loop, UV_RUN_DEFAULT);
    fc_outq_pool_trim(); /* the pool is per thread */
    fc_metrics_thread_unregister();
}

/* --io-threads, or one per core this process may run on (its CPU affinity). */
static int loop_count(const fc_config *cfg)
{
    int n = cfg->io_threads > 0 ? cfg->io_threads : (int)uv_available_parallelism();
    return n < 1 ? 1 : n > MAX_LOOPS ? MAX_LOOPS : n;
}

/* Runs every loop until shutdown; 0, or -1 when an I/O thread could not start. */
static int run_loops(fc_cluster *cl)
{
    int started = 1;
    for (int i = 0; i < cl->n_loops; i++)
        init_handles(&cl->loops[i]);
    if (fc__signals_start(cl) != 0) {
        FC_ERROR("server", "cannot start the signal thread");
        fc__cluster_shutdown(cl);
    }
    for (int i = 1; i < cl->n_loops; i++) {
        if (uv_thread_create(&cl->loops[i].thread, loop_main, &cl->loops[i]) != 0) {
            FC_ERROR("server", "cannot start I/O thread %d; shutting down", i);
            fc__cluster_shutdown(cl);
            break;
        }
        started++;
    }
    const fc_config *cfg = cl->cfg;
    const char *db = fc_store_is_postgres(cfg->db_path) ? "postgres" : cfg->db_path;
    fc_log_field f[] = {FC_LOG_STR("host", cfg->listen_host),
                        FC_LOG_INT("port", cfg->listen_port),
                        FC_LOG_INT("tls", cl->tls != NULL),
                        FC_LOG_STR("db", db),
                        FC_LOG_STR("sync", cfg->sync_full ? "full" : "normal"),
                        FC_LOG_INT("io_threads", cl->n_loops)};
    FC_LOGF(FC_LOG_INFO, "server", f, sizeof f / sizeof f[0],
            "listening on %s:%d%s (db %s, sync %s, %d I/O thread%s)", cfg->listen_host,
            cfg->listen_port, cl->tls ? " with TLS" : "", db,
            cfg->sync_full ? "full" : "normal", cl->n_loops, cl->n_loops == 1 ? "" : "s");
    uv_run(cl->loops[0].loop, UV_RUN_DEFAULT);
    for (int i = 1; i < started; i++)
        uv_thread_join(&cl->loops[i].thread);
    /* Loops that never got a thread: shut down in place. */
    for (int i = started; i < cl->n_loops; i++) {
        begin_shutdown(&cl->loops[i]);
        uv_run(cl->loops[i].loop, UV_RUN_DEFAULT);
    }
    FC_INFO("server", "stopped");
    return started == cl->n_loops ? 0 : -1;
}

/* A write to a peer that has gone away must fail with EPIPE, not raise
 * SIGPIPE and end the process: libuv writes with plain writev, which has no
 * MSG_NOSIGNAL, and leaves this to the application. */
static void ignore_write_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    /* Likewise a write past the file-size limit (RLIMIT_FSIZE) must fail with
     * EFBIG, which the store answers 507, not end the process. */
    sigaction(SIGXFSZ, &sa, NULL);
}

int fc_server_run(const fc_config *cfg, const fc_server_handlers *handlers)
{
    ignore_write_signals();
    fc__signals_block(); /* before any thread starts: they inherit the mask */
    fc_cluster cl = {
        .cfg = cfg, .handlers = handlers, .listen_fd = -1, .n_loops = loop_count(cfg)};
    if (cfg->jwt_key) {
        char err[256] = "";
        cl.auth = fc_auth_load(cfg->jwt_key, cfg->jwt_leeway, cfg->jwt_audience, cfg->jwt_issuer,
                               err, sizeof err);
        if (!cl.auth || fc_auth_set_cache(cl.auth, cfg->jwt_cache) != 0) {
            FC_ERROR("server", "--jwt-key: %s", cl.auth ? "out of memory" : err);
            fc_auth_free(cl.auth);
            return 1;
        }
    }
    if (cfg->tls_cert) {
        char err[512] = "";
        cl.tls = fc_tls_new(cfg->tls_cert, cfg->tls_key, err, sizeof err);
        if (!cl.tls) {
            FC_ERROR("server", "TLS: %s", err);
            fc_auth_free(cl.auth);
            return 1;
        }
    }
    cl.loops = calloc((size_t)cl.n_loops, sizeof *cl.loops);
    if (!cl.loops) {
        fc_tls_free(cl.tls);
        fc_auth_free(cl.auth);
        return 1;
    }
    if (cfg->max_streams_per_client > 0 || cfg->write_rate > 0) {
        cl.clients = fc_clients_new(cfg->max_streams_per_client, cfg->write_rate, cfg->write_burst);
        if (!cl.clients) {
            free(cl.loops);
            fc_tls_free(cl.tls);
            fc_auth_free(cl.auth);
            return 1;
        }
    }
    int fd_limit = raise_fd_limit();
    cl.max_conns = cfg->max_connections ? cfg->max_connections : fd_limit - FD_RESERVE;
    FC_INFO("server", "open-file limit %d allows about %d connections; limit set to %d", fd_limit,
            fd_limit - FD_RESERVE, cl.max_conns);
    fc_metrics_thread_register();

    int ok = fc__listener_bind(&cl) == 0;
    for (int i = 0; i < cl.n_loops && ok; i++)
        ok = loop_init(&cl, i) == 0;
    ok = ok && fc__server_feed_start(&cl) == 0;
    int watched = ok && fc__listener_start(&cl) == 0;
    if (watched) {
        ok = run_loops(&cl) == 0;
    } else {
        ok = 0;
        /* Not watched by libuv yet, so nothing else closes it. */
        if (cl.listen_fd >= 0) close(cl.listen_fd);
        cl.listen_fd = -1;
        /* The attached handles first: loop 0's close is the store's last. */
        for (int i = cl.n_loops - 1; i >= 0; i--)
            loop_abandon(&cl.loops[i]);
    }
    fc__server_feed_free(&cl); /* every loop has ended: no feed is left to post to */
    for (int i = 0; i < cl.n_loops; i++)
        loop_free(&cl.loops[i]);
    free(cl.loops);
    fc_clients_free(cl.clients);
    fc_auth_free(cl.auth);
    fc_tls_free(cl.tls); /* after the loops: every session is gone */
    fc_outq_pool_trim();
    fc_metrics_thread_unregister();
    return ok ? 0 : cl.exit_code ? cl.exit_code : 1;
}
