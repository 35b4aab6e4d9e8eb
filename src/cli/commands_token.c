/* flowcast client subcommands: --token-command, a shell command whose first
 * line of output is a fresh bearer token, run with bounded time and output. */
#include "cli/commands.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flowcast/client.h"

extern char **environ;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts /bin/sh -c cmd in its own process group (so that a timeout kills
 * whatever it started too), stdin from /dev/null, stdout and stderr to the
 * pipes' write ends. 0 or an errno. */
static int spawn(const char *cmd, int out_w, int err_w, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    int r = posix_spawn_file_actions_init(&fa);
    if (r) return r;
    if ((r = posix_spawnattr_init(&at)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return r;
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_w, 1);
    posix_spawn_file_actions_adddup2(&fa, err_w, 2);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    r = posix_spawn(pid, "/bin/sh", &fa, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return r;
}

/* What the command wrote: stdout up to FC_CLI_TOKEN_OUTPUT_MAX bytes (more
 * is an error), the start of stderr for the message. */
typedef struct output {
    char out[FC_CLI_TOKEN_OUTPUT_MAX + 1];
    size_t out_len;
    int too_long;
    char err[256];
    size_t err_len;
} output;

/* Reads both pipes until both end or the deadline; 0, or ETIMEDOUT, or an errno. */
static int collect(int out_r, int err_r, int64_t deadline, output *o)
{
    struct pollfd p[2] = {{.fd = out_r, .events = POLLIN}, {.fd = err_r, .events = POLLIN}};
    char scratch[4096];
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) return ETIMEDOUT;
        int n = poll(p, 2, (int)left);
        if (n < 0 && errno != EINTR) return errno;
        for (int i = 0; n > 0 && i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents) continue;
            char *dst = scratch;
            size_t room = sizeof scratch;
            if (i == 0 && o->out_len < FC_CLI_TOKEN_OUTPUT_MAX)
                dst = o->out + o->out_len, room = FC_CLI_TOKEN_OUTPUT_MAX - o->out_len;
            else if (i == 1 && o->err_len < sizeof o->err - 1)
                dst = o->err + o->err_len, room = sizeof o->err - 1 - o->err_len;
            ssize_t r = read(p[i].fd, dst, room);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                p[i].fd = -1;
                continue;
            }
            if (dst == scratch && i == 0) o->too_long = 1;
            if (dst != scratch) *(i == 0 ? &o->out_len : &o->err_len) += (size_t)r;
        }
        if (o->too_long) return 0; /* no need to read the rest */
    }
    return 0;
}

/* Waits for pid; kills its group at once (kill_now) or at the deadline,
 * setting *late then. Returns the wait status, or -1. */
static int reap(pid_t pid, int64_t deadline, int kill_now, int *late)
{
    int st;
    for (;;) {
        if (kill_now || mono_ms() >= deadline) {
            if (!kill_now) *late = 1;
            kill(-pid, SIGKILL);
            kill_now = 0;
            deadline = INT64_MAX; /* now a blocking wait: SIGKILL cannot be ignored */
        }
        pid_t r = waitpid(pid, &st, deadline == INT64_MAX ? 0 : WNOHANG);
        if (r == pid) return st;
        if (r < 0 && errno != EINTR) return -1;
        if (r == 0) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
}

/* The first line of stderr, for a failure message. */
static const char *first_line(char *s, size_t len)
{
    s[len] = '\0';
    char *nl = strpbrk(s, "\r\n");
    if (nl) *nl = '\0';
    return s;
}

/* The token: the first line of stdout (a CRLF ending allowed), checked as
 * the library will (visible ASCII, 1..FCC_TOKEN_MAX). 0, or -1 with why. */
static int token_line(output *o, char *buf, size_t cap)
{
    o->out[o->out_len] = '\0';
    size_t n = strcspn(o->out, "\n");
    if (n > 0 && o->out[n - 1] == '\r') n--;
    o->out[n] = '\0';
    size_t visible = 0;
    while (visible < n && o->out[visible] > ' ' && o->out[visible] <= '~')
        visible++;
    if (n == 0)
        snprintf(buf, cap, "the token command printed no token (its first line is empty)");
    else if (n > FCC_TOKEN_MAX || n >= cap)
        snprintf(buf, cap, "the token command's first line is longer than %d bytes", FCC_TOKEN_MAX);
    else if (visible != n)
        snprintf(buf, cap,
                 "the token command's first line is not a token (it holds a space "
                 "or a control character)");
    else {
        memcpy(buf, o->out, n + 1);
        return 0;
    }
    return -1;
}

int fc_cli_token_command(const char *cmd, char *buf, size_t cap)
{
    int fds[4] = {-1, -1, -1, -1};
    if (pipe2(fds, O_CLOEXEC) != 0 || pipe2(fds + 2, O_CLOEXEC) != 0) {
        snprintf(buf, cap, "cannot run the token command: %s", strerror(errno));
        for (int i = 0; i < 4; i++)
            if (fds[i] >= 0) close(fds[i]);
        return -1;
    }
    int64_t deadline = mono_ms() + FC_CLI_TOKEN_TIMEOUT_MS;
    pid_t pid;
    int r = spawn(cmd, fds[1], fds[3], &pid);
    close(fds[1]);
    close(fds[3]);
    if (r != 0) {
        close(fds[0]);
        close(fds[2]);
        snprintf(buf, cap, "cannot run the token command with /bin/sh: %s", strerror(r));
        return -1;
    }
    output *o = calloc(1, sizeof *o);
    r = o ? collect(fds[0], fds[2], deadline, o) : ENOMEM;
    close(fds[0]);
    close(fds[2]);
    int late = r == ETIMEDOUT;
    int st = reap(pid, deadline, r != 0 || o->too_long, &late);
    int ok = -1;
    if (late)
        snprintf(buf, cap, "the token command did not finish within %g s (killed)",
                 FC_CLI_TOKEN_TIMEOUT_MS / 1000.0);
    else if (r != 0)
        snprintf(buf, cap, "cannot read the token command's output: %s", strerror(r));
    else if (o->too_long)
        snprintf(buf, cap, "the token command printed more than %d bytes (killed)",
                 FC_CLI_TOKEN_OUTPUT_MAX);
    else if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char how[48];
        if (st >= 0 && WIFSIGNALED(st))
            snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(st));
        else
            snprintf(how, sizeof how, "exit status %d", st >= 0 ? WEXITSTATUS(st) : -1);
        const char *why = first_line(o->err, o->err_len);
        snprintf(buf, cap, "the token command failed (%s)%s%.200s", how, *why ? ": " : "", why);
    } else {
        ok = token_line(o, buf, cap);
    }
    free(o);
    return ok;
}

int fc_cli_token_fn(void *data, char *buf, size_t cap)
{
    const fc_cli_ctx *ctx = data;
    return fc_cli_token_command(ctx->token_command, buf, cap);
}
