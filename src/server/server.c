/* Server lifecycle: listen and accept, the per-turn flush, timers, and a
 * graceful shutdown (close 1001, finish writes, checkpoint, exit 0). */
#include "server/server.h"
#include "server/internal.h"
#include "api/api.h"
#include "common/log.h"
#include "metrics/metrics.h"
#include "ws/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define SHUTDOWN_GRACE_MS 3000
#define FD_RESERVE 64 /* descriptors kept for the store, logs and the listener */

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

int fc_server_over_limit(const fc_server *s)
{
    return s->n_streams >= s->max_conns;
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
 * connection, before the loop sleeps again. */
static void on_check(uv_check_t *h)
{
    fc_server *srv = h->data;
    fc__conn_flush_all(srv);
    if (fc_list_empty(&srv->flush_list))
        uv_idle_stop(&srv->flush_idle);
    else
        uv_idle_start(&srv->flush_idle, noop_idle); /* leftovers: do not block in poll */
}

/* A subscriber stuck past --slow-timeout: its backlog is dropped and a 1008
 * close frame queued behind the write in flight; if the peer does not read
 * it within the close grace period, the closing sweep drops the socket. */
static void close_stuck(fc_server *srv, fc_conn *c, uint64_t now)
{
    FC_INFO("ws", "subscriber stuck for %.1f s with %u messages queued: closing (1008)",
            srv->cfg->slow_timeout, c->out.count);
    fc_metrics_g.slow_consumers_closed++;
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
        /* Once the close frame is queued, the closing sweep owns the deadline. */
        if (!c->ws_close_sent && now - c->progress_ms >= limit) close_stuck(srv, c, now);
        it = next;
    }
}

static void on_sweep_timer(uv_timer_t *t)
{
    fc_server *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    sweep_stuck_writers(srv, now);
    fc__ws_sweep_closing(srv, now);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Every connection is gone: stop the timers and close the store (which
 * commits what is queued and checkpoints). uv_run then returns. */
static void finish(fc_server *srv)
{
    if (srv->shutting_down == 2) return;
    srv->shutting_down = 2;
    close_handle((uv_handle_t *)&srv->listener);
    close_handle((uv_handle_t *)&srv->sigint);
    close_handle((uv_handle_t *)&srv->sigterm);
    close_handle((uv_handle_t *)&srv->flush_check);
    close_handle((uv_handle_t *)&srv->flush_idle);
    close_handle((uv_handle_t *)&srv->ping_wheel.timer);
    close_handle((uv_handle_t *)&srv->heartbeat_wheel.timer);
    close_handle((uv_handle_t *)&srv->sweep_timer);
    close_handle((uv_handle_t *)&srv->shutdown_timer);
    fc_store_close(srv->store);
    srv->store = NULL;
    FC_INFO("server", "stopped");
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
    FC_INFO("server", "shutting down: closing %d connections", srv->n_conns);
    srv->shutting_down = 1;
    close_handle((uv_handle_t *)&srv->listener);
    fc__conn_foreach(srv, start_closing, NULL);
    uv_timer_start(&srv->shutdown_timer, on_shutdown_timer, SHUTDOWN_GRACE_MS, 0);
    if (srv->n_conns == 0) finish(srv);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    begin_shutdown(h->data);
}

static void free_unaccepted(uv_handle_t *h)
{
    free(h); /* the handle is the first member of its fc_conn */
}

static void on_connection(uv_stream_t *listener, int status)
{
    fc_server *srv = listener->data;
    if (status < 0) {
        FC_WARN("server", "accept: %s", uv_strerror(status));
        return;
    }
    fc_conn *c = fc__conn_new();
    if (!c) return;
    uv_tcp_init(srv->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, free_unaccepted);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    srv->n_conns++;
    fc__conn_start(c);
}

static int start_listening(fc_server *srv)
{
    const fc_config *cfg = srv->cfg;
    struct sockaddr_storage addr;
    const char *host = strcmp(cfg->listen_host, "localhost") == 0 ? "127.0.0.1" : cfg->listen_host;
    int r = strchr(host, ':') ? uv_ip6_addr(host, cfg->listen_port, (struct sockaddr_in6 *)&addr)
                              : uv_ip4_addr(host, cfg->listen_port, (struct sockaddr_in *)&addr);
    if (r == 0) r = uv_tcp_init(srv->loop, &srv->listener);
    if (r == 0) r = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
    if (r == 0) r = uv_listen((uv_stream_t *)&srv->listener, 1024, on_connection);
    if (r != 0) {
        FC_ERROR("server", "cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port,
                 uv_strerror(r));
        return r;
    }
    srv->listener.data = srv;
    return 0;
}

static void init_handles(fc_server *srv)
{
    uv_check_init(srv->loop, &srv->flush_check);
    uv_idle_init(srv->loop, &srv->flush_idle);
    uv_timer_init(srv->loop, &srv->sweep_timer);
    uv_timer_init(srv->loop, &srv->shutdown_timer);
    uv_signal_init(srv->loop, &srv->sigint);
    uv_signal_init(srv->loop, &srv->sigterm);
    srv->flush_check.data = srv->sweep_timer.data = srv;
    srv->shutdown_timer.data = srv->sigint.data = srv->sigterm.data = srv;
    uv_check_start(&srv->flush_check, on_check);
    fc__ping_init(srv);
    fc__heartbeat_init(srv);
    uv_timer_start(&srv->sweep_timer, on_sweep_timer, 250, 250);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
}

static int server_init(fc_server *srv, const fc_config *cfg, uv_loop_t *loop)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->cfg = cfg;
    loop->data = srv; /* connections find their server through their loop */
    fc_list_init(&srv->flush_list);
    fc_list_init(&srv->blocked_list);
    fc_list_init(&srv->closing_list);
    int fd_limit = raise_fd_limit();
    srv->max_conns = cfg->max_connections ? cfg->max_connections : fd_limit - FD_RESERVE;
    FC_INFO("server", "open-file limit %d allows about %d connections; limit set to %d", fd_limit,
            fd_limit - FD_RESERVE, srv->max_conns);
    srv->read_buf = malloc(FC_READ_BUF_SIZE);
    srv->ping_frame = fc__ws_ping_frame();
    srv->heartbeat = fc_buf_copy(": keep-alive\n\n", 14);
    srv->hub = fc_hub_new(fc_stream_deliver);
    if (!srv->read_buf || !srv->ping_frame || !srv->heartbeat || !srv->hub) return -1;

    char err[256] = "";
    fc_store_config scfg = {
        .path = cfg->db_path, .sync_full = cfg->sync_full, .retention = cfg->retention};
    srv->store = fc_store_sqlite_open(loop, &scfg, err, sizeof err);
    if (!srv->store) {
        FC_ERROR("store", "cannot open %s: %s", cfg->db_path, err);
        return -1;
    }
    return 0;
}

static void server_free(fc_server *srv)
{
    fc_hub_free(srv->hub);
    fc_buf_unref(srv->ping_frame);
    fc_buf_unref(srv->heartbeat);
    free(srv->read_buf);
    fc_outq_pool_trim();
}

int fc_server_run(const fc_config *cfg)
{
    uv_loop_t loop;
    fc_server srv;
    if (uv_loop_init(&loop) != 0) return 1;
    int ok = server_init(&srv, cfg, &loop) == 0 && start_listening(&srv) == 0;
    if (ok) {
        init_handles(&srv);
        FC_INFO("server", "listening on %s:%d (db %s, sync %s)", cfg->listen_host, cfg->listen_port,
                cfg->db_path, cfg->sync_full ? "full" : "normal");
        uv_run(&loop, UV_RUN_DEFAULT);
    } else {
        if (uv_is_active((uv_handle_t *)&srv.listener) || srv.listener.loop)
            close_handle((uv_handle_t *)&srv.listener);
        if (srv.store) fc_store_close(srv.store);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    server_free(&srv);
    if (uv_loop_close(&loop) != 0) FC_WARN("server", "loop closed with handles still open");
    return ok ? 0 : 1;
}
