/* The in-process flowcast loop of the fuzz_server_* drivers (see
 * server_harness.h). It is set up as src/server/server.c sets up a loop,
 * minus the listener thread, signals and timers that only matter over
 * seconds: accepted sockets go to fc__server_adopt, leftover input and the
 * flush run in a check handle, changes commit through the real SQLite
 * writer. Keep it in step with loop_init and on_check in server.c. */
#include "server_harness.h"

#include "api/api.h"
#include "auth/auth.h"
#include "cli/config.h"
#include "common/log.h"
#include "server/internal.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_check.h"

/* Loop turns without news before a session step counts as answered, and
 * the bound on turns while the server still works (a long-poll that waits
 * for its timeout is simply cut off). */
#define IDLE_TURNS 2
#define MAX_TURNS 400
#define TURN_SLEEP_US 100

static fc_config cfg;
static fc_cluster cl;
static fc_server srv;
static uv_loop_t loop;
static uv_check_t flush_check;
static struct sockaddr_in listen_addr;
static int listen_fd = -1;
static char db_dir[32], db_path[64], key_path[64];
static const char *jwt_secret; /* fzh_use_jwt: the loop verifies JWTs with it */

/* server.c's check handle: input left over by the per-turn budget, then output. */
static void on_check(uv_check_t *h)
{
    (void)h;
    fc__conn_run_input(&srv);
    fc__conn_flush_all(&srv);
    if (fc_list_empty(&srv.flush_list) && fc_list_empty(&srv.input_list))
        uv_idle_stop(&srv.flush_idle);
}

static void on_commit(void *ud, const fc_workflow *state, const fc_store_commit *commit,
                         int deleted)
{
    (void)ud;
    (void)fc_hub_publish(srv.hub, state, commit->commit_ns, deleted);
}

/* The database goes when the fuzzer exits (the store may still hold it
 * open: unlinking is fine). */
static void remove_db(void)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal", ".lock"};
    char path[80];
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(path, sizeof path, "%s%s", db_path, suffixes[i]);
        unlink(path);
    }
    if (key_path[0]) unlink(key_path);
    rmdir(db_dir);
}

static void setup_loop(void)
{
    snprintf(db_dir, sizeof db_dir, "/tmp/fc-fuzz-XXXXXX");
    CHECK(mkdtemp(db_dir));
    snprintf(db_path, sizeof db_path, "%s/fuzz.db", db_dir);
    atexit(remove_db);
    char *argv[] = {"serve",
                    "--db",
                    db_path,
                    "--enable-echo",
                    "--max-message",
                    "65536",
                    "--log-level",
                    "off",
                    "--backlog",
                    "4",
                    "--max-connections",
                    "64",
                    "--allow-host",
                    "fuzz.example",
                    "--api-token", /* only with fzh_use_jwt: see argc */
                    FZH_STATIC_TOKEN};
    int argc = (int)(sizeof argv / sizeof *argv) - (jwt_secret ? 0 : 2);
    CHECK(fc_config_parse(&cfg, argc, argv) == 0);
    fc_log_threshold = FC_LOG_OFF;

    cl.cfg = &cfg;
    cl.n_loops = 1;
    cl.loops = &srv;
    cl.listen_fd = -1;
    cl.max_conns = 64;
    srv.cl = &cl;
    srv.cfg = &cfg;
    cl.handlers = srv.handlers = &fc_api_handlers; /* as src/main.c wires them */
    srv.loop = &loop;
    CHECK(uv_loop_init(&loop) == 0);
    loop.data = &srv;
    CHECK(fc__server_loop_state_init(&srv) == 0);
    char err[256] = "";
    fc_store_config scfg = {.path = db_path, .retention = 5};
    srv.store = fc_store_sqlite_open(&loop, &scfg, err, sizeof err);
    if (!srv.store) fprintf(stderr, "fuzz: cannot open %s: %s\n", db_path, err);
    CHECK(srv.store);
    fc_store_on_commit(srv.store, on_commit, &srv);
    uv_check_init(&loop, &flush_check);
    uv_check_start(&flush_check, on_check);
    uv_idle_init(&loop, &srv.flush_idle); /* started by whatever queues output */
    fc__ping_init(&srv);
    fc__heartbeat_init(&srv);
    if (jwt_secret) {
        snprintf(key_path, sizeof key_path, "%s/jwt.key", db_dir);
        FILE *f = fopen(key_path, "w");
        CHECK(f && fputs(jwt_secret, f) >= 0 && fclose(f) == 0);
        char why[256] = "";
        cl.auth = fc_auth_load(key_path, 30, NULL, NULL, why, sizeof why);
        CHECK(cl.auth);
        fc__expiry_init(&srv); /* as init_handles in server.c */
    }

    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(listen_fd >= 0);
    listen_addr.sin_family = AF_INET;
    listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof listen_addr;
    CHECK(bind(listen_fd, (struct sockaddr *)&listen_addr, alen) == 0);
    CHECK(getsockname(listen_fd, (struct sockaddr *)&listen_addr, &alen) == 0);
    CHECK(listen(listen_fd, 16) == 0);
}

typedef struct {
    int working;
} loop_state;

static void conn_state(fc_conn *c, void *arg)
{
    loop_state *st = arg;
    if (c->busy || c->deferred || c->out.count || c->writing || fc_list_linked(&c->input_link))
        st->working = 1;
}

/* Reads and drops what the server wrote; returns the byte count. */
static size_t drain(int fd)
{
    char buf[65536];
    size_t total = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r <= 0) return total;
        total += (size_t)r;
    }
}

/* Runs the loop until the server has nothing more to do for this step (or
 * until_closed: until every connection is gone); returns bytes received. */
static size_t pump(int fd, int until_closed)
{
    size_t total = 0;
    int idle = 0;
    for (int turn = 0; turn < MAX_TURNS; turn++) {
        int events = uv_run(&loop, UV_RUN_NOWAIT);
        (void)events;
        size_t got = fd >= 0 ? drain(fd) : 0;
        total += got;
        loop_state st = {0};
        fc__conn_foreach(&srv, conn_state, &st);
        int done = until_closed ? srv.n_conns == 0 : !st.working;
        if (done && !got) {
            if (++idle >= IDLE_TURNS) break;
        } else {
            idle = 0;
        }
        if (!got && st.working) usleep(TURN_SLEEP_US);
    }
    return total;
}

/* Sends all of p, letting the server read when the socket buffer is full;
 * gives up when the server closed or stopped reading for good. */
static size_t send_step(int fd, const uint8_t *p, size_t n)
{
    size_t received = 0;
    for (int stalls = 0; n && stalls < 50;) {
        ssize_t r = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            p += r, n -= (size_t)r;
            stalls = 0;
            continue;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
        received += pump(fd, 0);
        stalls++;
    }
    return received + pump(fd, 0);
}

static size_t session(const uint8_t *data, size_t len, const size_t *cuts, size_t ncuts)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&listen_addr, sizeof listen_addr) == 0);
    int sfd = accept(listen_fd, NULL, NULL);
    CHECK(sfd >= 0);
    fc__server_adopt(&srv, sfd);
    size_t received = 0, prev = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        if (end <= prev || end > len) continue;
        received += send_step(fd, data + prev, end - prev);
        prev = end;
    }
    shutdown(fd, SHUT_WR);
    received += pump(fd, 1);
    close(fd);
    received += pump(-1, 1);
    return received;
}

static void send_text(const char *s)
{
    session((const uint8_t *)s, strlen(s), NULL, 0);
}

/* The harness's own requests carry the static token, which only a JWT loop
 * configures (elsewhere the header is ignored). */
#define AUTH_HEADER "Authorization: Bearer " FZH_STATIC_TOKEN "\r\n"

/* Puts back a baseline workflow an input deleted or made terminal (a
 * terminal one takes no more PATCH, which would hide those paths). */
static void ensure_workflow(const char *id)
{
    fc_workflow w = {0};
    int r = fc_store_get(srv.store, id, &w);
    int usable = r == 0 && !fc_status_is_terminal(w.status);
    fc_workflow_clear(&w);
    if (usable) return;
    char req[512];
    if (r == 0) {
        snprintf(req, sizeof req,
                 "DELETE /api/workflows/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n" AUTH_HEADER "\r\n", id);
        send_text(req);
    }
    static const char body_fmt[] = "{\"id\":\"%s\",\"name\":\"fuzz\",\"total_steps\":10}";
    char body[128];
    int blen = snprintf(body, sizeof body, body_fmt, id);
    snprintf(req, sizeof req,
             "POST /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
             "application/json\r\n" AUTH_HEADER "Content-Length: %d\r\n\r\n%s",
             blen, body);
    send_text(req);
    static const char patch[] = "{\"current_step\":1,\"message\":\"one\"}";
    snprintf(req, sizeof req,
             "PATCH /api/workflows/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
             "application/json\r\n" AUTH_HEADER "Content-Length: %zu\r\n\r\n%s",
             id, sizeof patch - 1, patch);
    send_text(req);
    send_text(req);
}

void fzh_use_jwt(const char *secret)
{
    CHECK(listen_fd < 0); /* before the loop is set up */
    jwt_secret = secret;
}

size_t fzh_session(const uint8_t *data, size_t len, const size_t *cuts, size_t ncuts)
{
    if (listen_fd < 0) setup_loop();
    static const char *const ids[] = FZH_IDS;
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++)
        ensure_workflow(ids[i]);
    return session(data, len, cuts, ncuts);
}

size_t fzh_frame(uint8_t *out, uint8_t opcode, int fin, const uint8_t *payload, size_t len)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memset(out + n, 0, 4); /* mask key 0: the payload goes out as it is */
    n += 4;
    if (len) memcpy(out + n, payload, len);
    return n + len;
}

size_t fzh_upgrade(char *out, size_t cap, const char *path)
{
    int n = snprintf(out, cap,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                     path);
    CHECK(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

#define MAX_MESSAGES 16

size_t fzh_ops_session(const uint8_t *data, size_t size)
{
    char head[256];
    size_t hlen = fzh_upgrade(head, sizeof head, "/api/updates");
    uint8_t *buf = malloc(hlen + size + 2 * 14 * (MAX_MESSAGES + 1));
    CHECK(buf);
    memcpy(buf, head, hlen);
    size_t n = hlen;
    const uint8_t *p = data, *end = data + size;
    for (int m = 0; m < MAX_MESSAGES && p <= end; m++) {
        const uint8_t *z = memchr(p, 0, (size_t)(end - p));
        size_t len = (size_t)((z ? z : end) - p);
        if (len && p[0] == 0x01) { /* two fragments */
            size_t half = len / 2;
            n += fzh_frame(buf + n, 0x1, 0, p + 1, half ? half - 1 : 0);
            n += fzh_frame(buf + n, 0x0, 1, p + (half ? half : 1), len - (half ? half : 1));
        } else {
            n += fzh_frame(buf + n, 0x1, 1, p, len);
        }
        if (!z) break;
        p = z + 1;
    }
    size_t got = fzh_session(buf, n, NULL, 0);
    free(buf);
    return got;
}
