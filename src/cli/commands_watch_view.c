/* flowcast watch on a terminal: the frame (status line, bars, "… and N more") from the rows. */
#include "cli/watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/tui.h"

/* Statuses from the most to the least worth a line when not all fit; the
 * summaries list them in this order too. */
static const char *const by_priority[] = {"running", "paused",    "pending",
                                          "failed",  "cancelled", "completed"};
#define N_STATUS (sizeof by_priority / sizeof by_priority[0])

int fc__watch_finished(const char *status)
{
    return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

static size_t priority(const char *status)
{
    for (size_t i = 0; i < N_STATUS; i++)
        if (strcmp(status, by_priority[i]) == 0) return i;
    return N_STATUS;
}

typedef struct pick {
    size_t index, prio;
    int64_t last_ms;
} pick;

static int by_worth(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    if (x->prio != y->prio) return x->prio < y->prio ? -1 : 1;
    if (x->last_ms != y->last_ms) return x->last_ms > y->last_ms ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int by_index(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* ", 30 running, 7 pending" for the picks in p[0..n), after the text in out. */
static void append_counts(char *out, size_t cap, const pick *p, size_t n)
{
    size_t count[N_STATUS + 1] = {0};
    for (size_t i = 0; i < n; i++)
        count[p[i].prio]++;
    const char *sep = "";
    for (size_t s = 0; s <= N_STATUS; s++) {
        if (!count[s]) continue;
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%zu %s", sep, count[s],
                 s < N_STATUS ? by_priority[s] : "other");
        sep = ", ";
    }
}

static void elapsed_text(const fc__watch_view *v, const fc__watch_row *r, char *out, size_t cap)
{
    if (v->stale) {
        snprintf(out, cap, "stale");
        return;
    }
    int64_t end = fc__watch_finished(r->status) ? r->last_ms : v->now_ms;
    long long secs = r->start_ms && end > r->start_ms ? (end - r->start_ms) / 1000 : 0;
    if (secs >= 3600)
        snprintf(out, cap, "%lld:%02lld:%02lld", secs / 3600, secs / 60 % 60, secs % 60);
    else
        snprintf(out, cap, "%lld:%02lld", secs / 60, secs % 60);
}

typedef struct columns {
    int name, bar, step;
} columns;

/* One bar: name, [####....], step/total, percent, status, elapsed, message. */
static void format_row(const fc__watch_view *v, const fc__watch_row *r, const columns *c, int cols,
                       char *out, size_t cap)
{
    char line[1024] = "", bar[64], step[48], time[32];
    int pct =
        r->total > 0 ? (int)(r->step * 100 / r->total) : (fc__watch_finished(r->status) ? 100 : 0);
    pct = pct < 0 ? 0 : pct > 100 ? 100 : pct;
    int fill = pct * c->bar / 100;
    for (int i = 0; i < c->bar; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[c->bar] = '\0';
    snprintf(step, sizeof step, "%lld/%lld", r->step, r->total);
    elapsed_text(v, r, time, sizeof time);
    fc_tui_fit(line, sizeof line, r->name[0] ? r->name : r->id, c->name,
               FC_TUI_PAD | FC_TUI_ELLIPSIS);
    size_t len = strlen(line);
    if (c->bar) len += (size_t)snprintf(line + len, sizeof line - len, " [%s]", bar);
    snprintf(line + len, sizeof line - len, " %-*s %3d%% %-9s %7s", c->step, step, pct, r->status,
             time);
    /* The message takes what is left; a sliver of it would say nothing. */
    int room = cols - 1 - fc_tui_width(line) - 2;
    if (r->message[0] && room >= 6) {
        strcat(line, "  ");
        fc_tui_fit(line, sizeof line, r->message, room, FC_TUI_ELLIPSIS);
    }
    snprintf(out, cap, "%s", v->stale ? "\x1b[2m" : "");
    fc_tui_fit(out, cap > 8 ? cap - 8 : cap, line, cols - 1, FC_TUI_ELLIPSIS);
    if (v->stale) strcat(out, "\x1b[0m");
}

static columns layout(const fc__watch_view *v, const pick *p, size_t n, int cols)
{
    columns c = {.name = 4, .bar = cols >= 80 ? 20 : cols >= 50 ? 10 : 0, .step = 3};
    int name_cap = cols >= 120 ? 32 : cols >= 80 ? 24 : cols / 4 > 8 ? cols / 4 : 8;
    for (size_t i = 0; i < n; i++) {
        const fc__watch_row *r = &v->rows[p[i].index];
        int w = fc_tui_width(r->name[0] ? r->name : r->id);
        c.name = w > c.name ? w : c.name;
        char step[48];
        int sw = snprintf(step, sizeof step, "%lld/%lld", r->step, r->total);
        c.step = sw > c.step ? sw : c.step;
    }
    c.name = c.name < name_cap ? c.name : name_cap;
    return c;
}

static void status_line(const fc__watch_view *v, const pick *p, size_t n, size_t hidden, int cols,
                        char *out, size_t cap)
{
    char text[1024];
    snprintf(text, sizeof text, "%s %s %zu workflow%s", v->status, fc_tui_utf8() ? "\xC2\xB7" : "-",
             n + hidden, n + hidden == 1 ? "" : "s");
    if (n) strncat(text, ": ", sizeof text - strlen(text) - 1);
    append_counts(text, sizeof text, p, n);
    if (hidden) {
        size_t len = strlen(text);
        snprintf(text + len, sizeof text - len, "%s%zu finished hidden", n ? "; " : ": ", hidden);
    }
    snprintf(out, cap, "\x1b[7m");
    fc_tui_fit(out, cap > 8 ? cap - 8 : cap, text, cols - 1, FC_TUI_PAD | FC_TUI_ELLIPSIS);
    strcat(out, "\x1b[0m");
}

int fc__watch_frame(const fc__watch_view *v, int rows, int cols, int with_status, char *lines,
                    size_t cap)
{
    pick *p = calloc(v->n ? v->n : 1, sizeof *p);
    size_t n = 0, hidden = 0;
    int out = 0;
    if (!p || rows <= 0) {
        free(p);
        return 0;
    }
    for (size_t i = 0; i < v->n; i++) {
        const fc__watch_row *r = &v->rows[i];
        if (!r->have_state || r->deleted) continue;
        if (v->active_only && fc__watch_finished(r->status)) {
            hidden++;
            continue;
        }
        p[n++] = (pick){.index = i, .prio = priority(r->status), .last_ms = r->last_ms};
    }
    if (with_status) status_line(v, p, n, hidden, cols, lines + (size_t)out++ * cap, cap);
    size_t room = (size_t)(rows - out), listed = n;
    if (n > room) {
        listed = room ? room - 1 : 0;
        qsort(p, n, sizeof *p, by_worth);
        qsort(p, listed, sizeof *p, by_index);
    }
    columns c = layout(v, p, listed, cols);
    for (size_t i = 0; i < listed; i++)
        format_row(v, &v->rows[p[i].index], &c, cols, lines + (size_t)out++ * cap, cap);
    if (listed < n && room) {
        char text[512];
        snprintf(text, sizeof text, "%s and %zu more: ", fc_tui_utf8() ? "\xE2\x80\xA6" : "...",
                 n - listed);
        append_counts(text, sizeof text, p + listed, n - listed);
        char *line = lines + (size_t)out++ * cap;
        line[0] = '\0';
        fc_tui_fit(line, cap, text, cols - 1, FC_TUI_ELLIPSIS);
    }
    free(p);
    return out;
}
