/* flowcast watch on a terminal: the rows the watch keeps (commands_watch.c) and
 * the frame drawn from them (commands_watch_view.c). Internal to the CLI. */
#ifndef FC_CLI_WATCH_H
#define FC_CLI_WATCH_H

#include <stddef.h>
#include <stdint.h>

/* One watched workflow. */
typedef struct fc__watch_row {
    char id[65];
    char name[128];
    char status[16];
    char message[256];
    long long step, total;
    int64_t epoch;             /* the incarnation shown; 0 while unknown */
    int64_t start_ms, last_ms; /* created_at (or first update), last change */
    int have_state, name_tried;
    int deleted; /* gone from the list (kept only as a watched id, for --exit-on-done) */
} fc__watch_row;

/* What a frame is drawn from. */
typedef struct fc__watch_view {
    const fc__watch_row *rows; /* in the order they are listed */
    size_t n;
    int active_only;    /* --active: completed, failed and cancelled are not listed */
    int stale;          /* disconnected: bars dimmed, "stale" for the time */
    const char *status; /* connection state and the latest note, for the status line */
    int64_t now_ms;
} fc__watch_view;

/* True for the statuses a workflow never leaves (completed, failed, cancelled). */
int fc__watch_finished(const char *status);

/* The frame for a screen of rows x cols: with_status puts the status line
 * (reverse video) first; then one bar per listed workflow; when they do not
 * all fit, the last line says how many more and in which statuses, and the
 * bars shown are the most active (running, then pending, failed, the rest;
 * the latest change first), kept in list order. Writes line i into
 * lines + i * cap (every line fits cols - 1 columns) and returns the number
 * of lines (<= rows). */
int fc__watch_frame(const fc__watch_view *v, int rows, int cols, int with_status, char *lines,
                    size_t cap);

#endif
