/* A full-screen view on the alternate screen, redrawn in place one changed line at a time.
 *
 * Why the alternate screen rather than cursor movements on the normal one:
 * drawing in place on the normal screen counts on the lines drawn last time
 * still being where they were, and a resize breaks that (terminals rewrap or
 * crop long lines, the shell prompt scrolls), which is where leftovers and
 * repeated blocks in the scrollback come from. On the alternate screen every
 * line is addressed absolutely, a resize is a clear and a full draw, and
 * nothing reaches the scrollback. What the alternate screen loses, the view
 * left behind on exit, fc_tui_screen_leave prints once on the normal screen. */
#include "cli/tui.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static void forget(fc_tui_screen *s)
{
    if (s->shown)
        for (int i = 0; i < s->rows; i++) {
            free(s->shown[i]);
            s->shown[i] = NULL;
        }
}

static int put(fc_tui_screen *s, const char *bytes, size_t n)
{
    if (s->out_len + n > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap : 4096;
        while (cap < s->out_len + n)
            cap *= 2;
        char *p = realloc(s->out, cap);
        if (!p) {
            s->lost = 1;
            return -1;
        }
        s->out = p;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, bytes, n);
    s->out_len += n;
    return 0;
}

static int puts_(fc_tui_screen *s, const char *text)
{
    return put(s, text, strlen(text));
}

/* Writes and empties the output buffer; -1 when the terminal is gone. Bytes
 * lost to a failed allocation make the next draw a full one. */
static int flush(fc_tui_screen *s)
{
    size_t off = 0;
    if (s->lost) {
        s->lost = 0;
        forget(s);
        s->clear = 1;
    }
    while (off < s->out_len) {
        ssize_t w = write(s->fd, s->out + off, s->out_len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) { /* another program made the tty non-blocking */
            struct pollfd p = {.fd = s->fd, .events = POLLOUT};
            if (poll(&p, 1, 1000) > 0) continue;
        }
        if (w <= 0) {
            s->out_len = 0;
            return -1;
        }
        off += (size_t)w;
    }
    s->bytes += s->out_len;
    s->out_len = 0;
    return 0;
}

int fc_tui_screen_resize(fc_tui_screen *s)
{
    struct winsize ws;
    int rows = 24, cols = 80;
    if (ioctl(s->fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        rows = ws.ws_row;
        cols = ws.ws_col;
    }
    if (s->shown && rows == s->rows && cols == s->cols) return 0;
    forget(s);
    char **shown = calloc((size_t)rows, sizeof *shown);
    if (!shown) return 0; /* keep the old size; the next resize tries again */
    free(s->shown);
    s->shown = shown;
    s->rows = rows;
    s->cols = cols;
    s->clear = 1;
    return 1;
}

/* Takes the alternate screen, hides the cursor, turns echo and line
 * editing off (keys arrive one at a time; Ctrl-C and Ctrl-Z still signal). */
static void take(fc_tui_screen *s)
{
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &s->saved) == 0) {
        struct termios t = s->saved;
        t.c_lflag &= ~(tcflag_t)(ECHO | ICANON); /* typed keys would land in the bars */
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        s->termios_saved = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    puts_(s, "\x1b[?1049h\x1b[?25l");
    flush(s);
}

/* Gives the normal screen, the cursor and echo back. */
static void give_back(fc_tui_screen *s)
{
    puts_(s, "\x1b[0m\x1b[?25h\x1b[?1049l");
    flush(s);
    if (s->termios_saved) tcsetattr(STDIN_FILENO, TCSANOW, &s->saved);
    s->termios_saved = 0;
}

int fc_tui_screen_enter(fc_tui_screen *s, int fd)
{
    memset(s, 0, sizeof *s);
    s->fd = fd;
    fc_tui_screen_resize(s);
    if (!s->shown) return -1;
    s->active = 1;
    take(s);
    return 0;
}

void fc_tui_screen_suspend(fc_tui_screen *s)
{
    if (s->active && !s->suspended) give_back(s);
    s->suspended = s->active;
}

void fc_tui_screen_resume(fc_tui_screen *s)
{
    if (!s->suspended) return;
    s->suspended = 0;
    take(s);
    forget(s);
    s->clear = 1;
}

int fc_tui_screen_draw(fc_tui_screen *s, const char *const *lines, int n)
{
    char pos[32];
    if (!s->active || s->suspended) return 0;
    if (s->clear) puts_(s, "\x1b[H\x1b[2J");
    for (int i = 0; i < s->rows; i++) {
        const char *text = i < n ? lines[i] : "";
        if (s->shown[i] && strcmp(s->shown[i], text) == 0) continue;
        if (!s->clear || *text) {
            snprintf(pos, sizeof pos, "\x1b[%d;1H", i + 1);
            puts_(s, pos);
            puts_(s, text);
            puts_(s, "\x1b[K");
        }
        free(s->shown[i]);
        s->shown[i] = strdup(text); /* NULL on failure: drawn again next time */
    }
    s->clear = 0;
    return flush(s);
}

void fc_tui_screen_leave(fc_tui_screen *s, const char *const *lines, int n)
{
    if (s->active) {
        if (!s->suspended) give_back(s);
        for (int i = 0; i < n; i++) {
            puts_(s, lines[i]);
            puts_(s, "\x1b[0m\n");
        }
        flush(s);
        s->active = s->suspended = 0;
    }
    forget(s);
    free(s->shown);
    free(s->out);
    s->shown = NULL;
    s->out = NULL;
    s->out_len = s->out_cap = 0;
}
