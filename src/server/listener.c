/* The listening socket. Loop 0 watches it (a uv_poll_t), accepts with
 * accept4 and hands each new socket to the loops in turn: its own are served
 * at once, the others' go through their inbox and one wake-up per accept
 * pass. One socket for all loops, rather than one SO_REUSEPORT socket per
 * loop, so that a second server can never bind the same port unnoticed. */
#include "server/internal.h"
#include "common/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024
/* Accepts per readiness callback, so a connection storm does not starve the loop's own work. */
#define ACCEPT_BATCH 256
/* How long accepting pauses when the process is out of descriptors. */
#define ACCEPT_PAUSE_MS 100

/* Queues fd for srv's loop; 0, or -1 when out of memory (the caller closes fd). */
static int inbox_push(fc_server *srv, int fd)
{
    int ok = 1;
    uv_mutex_lock(&srv->inbox_lock);
    if (srv->inbox_len == srv->inbox_cap) {
        int cap = srv->inbox_cap ? srv->inbox_cap * 2 : 64;
        int *p = realloc(srv->inbox, (size_t)cap * sizeof *p);
        if (p) {
            srv->inbox = p;
            srv->inbox_cap = cap;
        } else {
            ok = 0;
        }
    }
    if (ok) srv->inbox[srv->inbox_len++] = fd;
    uv_mutex_unlock(&srv->inbox_lock);
    return ok ? 0 : -1;
}

static void on_accept_pause(uv_timer_t *t);

/* Out of descriptors: the pending connections wait in the kernel's queue
 * until some close, instead of the loop spinning on a readable socket. */
static void pause_accepting(fc_cluster *cl, int err)
{
    FC_WARN("server", "accept: %s; pausing accepts for %d ms", uv_strerror(err), ACCEPT_PAUSE_MS);
    uv_poll_stop(&cl->listen_poll);
    uv_timer_start(&cl->accept_pause, on_accept_pause, ACCEPT_PAUSE_MS, 0);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    fc_cluster *cl = h->data;
    (void)events;
    if (status < 0) {
        FC_WARN("server", "listener: %s", uv_strerror(status));
        return;
    }
    uint64_t woken = 0; /* loops (bit i) with new sockets in their inbox */
    for (int n = 0; n < ACCEPT_BATCH; n++) {
        int fd = accept4(cl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;                                   /* before logging can change it */
            if (err == EINTR || err == ECONNABORTED) continue; /* the next one may be fine */
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
                pause_accepting(cl, -err);
            else if (err != EAGAIN && err != EWOULDBLOCK)
                FC_WARN("server", "accept: %s", uv_strerror(-err));
            break;
        }
        fc_server *srv = &cl->loops[cl->next_loop];
        cl->next_loop = (cl->next_loop + 1) % (unsigned)cl->n_loops;
        if (srv->index == 0) {
            fc__server_adopt(srv, fd);
        } else if (inbox_push(srv, fd) == 0) {
            woken |= 1ull << srv->index;
        } else {
            FC_WARN("server", "out of memory handing over a connection");
            close(fd);
        }
    }
    for (int i = 1; i < cl->n_loops; i++)
        if (woken & (1ull << i)) uv_async_send(&cl->loops[i].wake);
}

static void on_accept_pause(uv_timer_t *t)
{
    fc_cluster *cl = t->data;
    if (!cl->shutting_down) uv_poll_start(&cl->listen_poll, UV_READABLE, on_readable);
}

/* A bound, listening, non-blocking socket for the configured address, or a
 * negative libuv error. */
static int open_socket(const fc_config *cfg)
{
    struct sockaddr_storage addr;
    const char *host = strcmp(cfg->listen_host, "localhost") == 0 ? "127.0.0.1" : cfg->listen_host;
    int v6 = strchr(host, ':') != NULL;
    int r = v6 ? uv_ip6_addr(host, cfg->listen_port, (struct sockaddr_in6 *)&addr)
               : uv_ip4_addr(host, cfg->listen_port, (struct sockaddr_in *)&addr);
    if (r != 0) return r;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int on = 1;
    socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

int fc__listener_bind(fc_cluster *cl)
{
    const fc_config *cfg = cl->cfg;
    int fd = open_socket(cfg);
    if (fd < 0) {
        FC_ERROR("server", "cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port,
                 uv_strerror(fd));
        return fd;
    }
    cl->listen_fd = fd;
    return 0;
}

int fc__listener_start(fc_cluster *cl)
{
    uv_loop_t *loop = cl->loops[0].loop;
    int r = uv_poll_init(loop, &cl->listen_poll, cl->listen_fd);
    if (r != 0) {
        FC_ERROR("server", "cannot watch the listening socket: %s", uv_strerror(r));
        return r;
    }
    cl->listen_poll.data = cl;
    uv_timer_init(loop, &cl->accept_pause);
    cl->accept_pause.data = cl;
    uv_poll_start(&cl->listen_poll, UV_READABLE, on_readable);
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    fc_cluster *cl = h->data;
    close(cl->listen_fd); /* after libuv is done with it */
    cl->listen_fd = -1;
}

void fc__listener_stop(fc_cluster *cl)
{
    if (cl->listen_fd < 0 || uv_is_closing((uv_handle_t *)&cl->listen_poll)) return;
    uv_close((uv_handle_t *)&cl->listen_poll, on_poll_closed);
    uv_close((uv_handle_t *)&cl->accept_pause, NULL);
}
