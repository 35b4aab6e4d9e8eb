/* flowcast watch: live progress bars filling the terminal, JSON lines otherwise.
 *
 * On a terminal the bars are a full-screen view (tui_screen.c, which says why
 * the alternate screen): a status line with the connection state, one line
 * per workflow, and "… and N more" for what does not fit. Changes mark the
 * view dirty; it is drawn at most FRAME_MS apart and only the lines that
 * changed are written, so a burst of updates costs a few frames, not one
 * screen per update. */
#include "cli/commands.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/tui.h"
#include "cli/watch.h"
#include "flowcast/client.h"

#define MAX_IDS 256
/* At most 10 frames a second: fast enough to look live, slow enough that a
 * server sending hundreds of updates a second does not flood the terminal. */
#define FRAME_MS 100
/* How long a note ("X was deleted") stays on the status line. */
#define NOTE_MS 10000
/* --all on a terminal lists the existing workflows first, at most this many
 * (newest first), so the start-up stays quick on a huge server. */
#define PRELOAD_MAX 10000

typedef fc__watch_row row;

typedef struct ui {
    fc_cli_ctx *ctx;
    fcc_client *rest;
    fcc_watch *w;
    uv_loop_t *loop;
    uv_timer_t tick, render;
    uv_signal_t sig[6]; /* INT, TERM, HUP: end the watch; WINCH: redraw; TSTP, CONT */
    uv_poll_t keys;     /* the terminal's keys while the view is up: q quits */
    int keys_on;
    row *rows;
    size_t n, cap;
    fc_tui_screen screen;
    char *frame;        /* rows lines of line_cap bytes */
    const char **lines; /* rows pointers into frame */
    size_t frame_cap, line_cap, lines_cap;
    int json, tty, exit_on_done, active_only, all, exit_code;
    /* The connection as the status line tells it. */
    int state, stale, reconnected, reason_only;
    unsigned attempt;
    uint64_t retry_at; /* uv_now when the next attempt starts */
    char reason[300];
    char url[256]; /* the server the watch is connected to (one of --server's list) */
    char note[200];
    uint64_t note_at, drawn_at;
} ui;

/* "2026-11-27T05:00:00.000Z" -> epoch ms; 0 when unparsable. */
static int64_t parse_time(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static row *find_row(ui *u, const char *id, int create)
{
    for (size_t i = 0; i < u->n; i++)
        if (strcmp(u->rows[i].id, id) == 0) return &u->rows[i];
    if (!create) return NULL;
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        row *r = realloc(u->rows, cap * sizeof *r);
        if (!r) return NULL;
        u->rows = r;
        u->cap = cap;
    }
    row *r = &u->rows[u->n++];
    memset(r, 0, sizeof *r);
    fc_tui_copy(r->id, sizeof r->id, id);
    return r;
}

static void row_from_workflow(row *r, const fcc_workflow *w)
{
    fc_tui_copy(r->name, sizeof r->name, w->name);
    fc_tui_copy(r->status, sizeof r->status, w->status);
    fc_tui_copy(r->message, sizeof r->message, w->message);
    r->step = w->current_step;
    r->total = w->total_steps;
    r->epoch = w->epoch;
    r->start_ms = parse_time(w->created_at);
    r->last_ms = parse_time(w->updated_at);
    r->have_state = r->name_tried = 1;
}

/* The connection state for the status line: what happens next first, so a
 * narrow terminal still shows it when the reason is cut. */
static void connection_text(const ui *u, char *out, size_t cap)
{
    const char *server = u->url[0] ? u->url : u->ctx->server;
    uint64_t now = uv_now(u->loop);
    if (u->state == FCC_STATE_RECONNECTING && u->reason_only)
        snprintf(out, cap, "%s", u->reason);
    else if (u->state == FCC_STATE_RECONNECTING)
        snprintf(out, cap, "reconnecting in %.1f s (attempt %u): %s",
                 (double)(u->retry_at > now ? u->retry_at - now : 0) / 1000.0, u->attempt,
                 u->reason);
    else if (u->stale)
        snprintf(out, cap, "reconnecting now (attempt %u): %s", u->attempt, u->reason);
    else if (u->state == FCC_STATE_OPEN)
        snprintf(out, cap, "%s to %s", u->reconnected ? "reconnected" : "connected", server);
    else
        snprintf(out, cap, "connecting to %s", server);
}

/* Makes the frame buffer hold the screen's lines. */
static int frame_room(ui *u)
{
    size_t rows = (size_t)u->screen.rows, line_cap = (size_t)u->screen.cols * 6 + 64;
    if (line_cap * rows > u->frame_cap) {
        char *f = realloc(u->frame, line_cap * rows);
        if (!f) return -1;
        u->frame = f;
        u->frame_cap = line_cap * rows;
    }
    if (rows > u->lines_cap) { /* a wide short screen can become a narrow tall one */
        const char **l = realloc(u->lines, rows * sizeof *l);
        if (!l) return -1;
        u->lines = l;
        u->lines_cap = rows;
    }
    u->line_cap = line_cap;
    for (size_t i = 0; i < rows; i++)
        u->lines[i] = u->frame + i * line_cap;
    return 0;
}

/* Formats the view for rows lines; returns how many. */
static int build(ui *u, int rows, int with_status)
{
    char status[720], conn[500];
    connection_text(u, conn, sizeof conn);
    if (u->note[0] && uv_now(u->loop) - u->note_at > NOTE_MS) u->note[0] = '\0';
    const char *sep = fc_tui_utf8() ? " \xC2\xB7 " : " - ";
    snprintf(status, sizeof status, "%s%s%s", conn, u->note[0] ? sep : "", u->note);
    fc__watch_view v = {.rows = u->rows,
                        .n = u->n,
                        .active_only = u->active_only,
                        .stale = u->stale,
                        .status = status,
                        .now_ms = now_ms()};
    if (frame_room(u) != 0) return 0;
    return fc__watch_frame(&v, rows, u->screen.cols, with_status, u->frame, u->line_cap);
}

static void draw(ui *u)
{
    if (!u->screen.active) return;
    fc_tui_screen_resize(&u->screen);
    int n = build(u, u->screen.rows, 1);
    u->drawn_at = uv_now(u->loop);
    if (fc_tui_screen_draw(&u->screen, u->lines, n) != 0 && u->w) {
        u->exit_code = FC_CLI_FAIL; /* the terminal is gone */
        fcc_watch_close(u->w);
    }
}

static void on_render(uv_timer_t *t)
{
    draw(t->data);
}

/* Something changed: draw soon, but never sooner than FRAME_MS after the last frame. */
static void schedule(ui *u)
{
    if (!u->screen.active || uv_is_active((uv_handle_t *)&u->render)) return;
    uint64_t now = uv_now(u->loop), due = u->drawn_at + FRAME_MS;
    uv_timer_start(&u->render, on_render, due > now ? due - now : 0, 0);
}

/* Leaves the full-screen view with its last state printed on the normal
 * screen (fitted so the shell prompt and one line of error still show). */
static void leave_screen(ui *u)
{
    if (!u->screen.active) return;
    int rows = u->screen.rows > 3 ? u->screen.rows - 2 : 1;
    int n = build(u, rows, 0);
    fc_tui_screen_leave(&u->screen, u->lines, n);
}

/* A one-off line: on the status line on a terminal, on stderr otherwise. */
static void note(ui *u, const char *text)
{
    if (!u->tty) {
        fprintf(stderr, "flowcast: %s\n", text);
        return;
    }
    fc_tui_copy(u->note, sizeof u->note, text);
    u->note_at = uv_now(u->loop);
    schedule(u);
}

/* The name of a workflow first seen in an update from a server that does
 * not send names (older than issue 11): one GET, once per incarnation. */
static void fetch_name(ui *u, row *r)
{
    r->name_tried = 1;
    fcc_workflow wf;
    if (fcc_workflow_get(u->rest, r->id, &wf, NULL) != 0) return;
    fc_tui_copy(r->name, sizeof r->name, wf.name);
    r->start_ms = parse_time(wf.created_at);
    fcc_workflow_clear(&wf);
}

static void check_done(ui *u)
{
    if (!u->exit_on_done || u->n == 0) return;
    int failed = 0;
    for (size_t i = 0; i < u->n; i++) {
        const row *r = &u->rows[i];
        if (!r->have_state || !(r->deleted || fc__watch_finished(r->status))) return;
        failed |= r->deleted || strcmp(r->status, "completed") != 0;
    }
    u->exit_code = failed ? FC_CLI_FAIL : FC_CLI_OK;
    fcc_watch_close(u->w);
}

/* A deletion: the workflow leaves the list. A watched id keeps its row
 * (hidden) so --exit-on-done knows it ended; with --all the row goes. */
static void remove_row(ui *u, row *r)
{
    char text[200];
    snprintf(text, sizeof text, "%s was deleted", r->name[0] ? r->name : r->id);
    if (r->have_state && u->tty) note(u, text);
    if (!u->all) {
        r->deleted = r->have_state = 1;
        snprintf(r->status, sizeof r->status, "deleted");
        return;
    }
    size_t i = (size_t)(r - u->rows);
    memmove(r, r + 1, (u->n - i - 1) * sizeof *r);
    u->n--;
}

static void on_update(fcc_watch *w, const fcc_update *up, void *data)
{
    ui *u = data;
    (void)w;
    if (u->json) {
        printf("%s\n", up->json);
        fflush(stdout);
    }
    row *r = find_row(u, up->workflow_id, !up->deleted);
    if (!r) return;
    if (up->deleted) {
        if (up->epoch) r->epoch = up->epoch;
        remove_row(u, r);
        schedule(u);
        check_done(u);
        return;
    }
    if (up->epoch && r->epoch && up->epoch != r->epoch) {
        /* Another incarnation: a new workflow under the same id (its name and
         * start are its own), never a continuation of the bar shown. */
        char text[160];
        snprintf(text, sizeof text, "%s was deleted and created again", r->id);
        r->name[0] = '\0';
        r->start_ms = 0;
        r->name_tried = 0;
        if (u->tty) note(u, text);
    }
    if (up->epoch) r->epoch = up->epoch;
    fc_tui_copy(r->status, sizeof r->status, up->status);
    r->step = up->current_step;
    r->total = up->total_steps;
    fc_tui_copy(r->message, sizeof r->message, up->message);
    r->last_ms = up->timestamp ? parse_time(up->timestamp) : now_ms();
    if (!r->start_ms) r->start_ms = r->last_ms;
    r->have_state = 1;
    r->deleted = 0;
    /* The bar shows the name (the id only while it is unknown). Updates
     * carry it, so a workflow met on a stream costs no request. */
    if (up->name[0])
        fc_tui_copy(r->name, sizeof r->name, up->name);
    else if (u->tty && !r->name_tried)
        fetch_name(u, r);
    schedule(u);
    check_done(u);
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_state(fcc_watch *w, const fcc_state_info *s, void *data)
{
    ui *u = data;
    char text[400];
    u->state = s->state;
    if (s->state == FCC_STATE_OPEN) fc_tui_copy(u->url, sizeof u->url, fcc_watch_url(w));
    if (s->state == FCC_STATE_RECONNECTING) {
        u->stale = 1;
        u->reason_only = s->error == FCC_EAUTH && s->delay_ms == 0; /* the reason says it all */
        u->attempt = s->attempt;
        u->retry_at = uv_now(u->loop) + s->delay_ms;
        fc_tui_copy(u->reason, sizeof u->reason, s->reason ? s->reason : "connection lost");
        if (!u->tty) {
            if (u->reason_only)
                snprintf(text, sizeof text, "%s", u->reason);
            else
                snprintf(text, sizeof text, "%s; reconnecting in %.1f s (attempt %u)", u->reason,
                         (double)s->delay_ms / 1000.0, s->attempt);
            note(u, text);
        }
        schedule(u);
    } else if (s->state == FCC_STATE_OPEN && u->stale) {
        u->stale = 0;
        u->reconnected = 1;
        snprintf(text, sizeof text, "reconnected to %s", u->url);
        if (!u->tty) note(u, text);
        schedule(u);
    } else if (s->state == FCC_STATE_CLOSED) {
        leave_screen(u);
        if (s->error) {
            fprintf(stderr, "flowcast: %s\n", s->reason ? s->reason : fcc_strerror(s->error));
            u->exit_code = FC_CLI_FAIL;
        }
        u->w = NULL;
        uv_close((uv_handle_t *)&u->tick, on_handle_closed);
        uv_close((uv_handle_t *)&u->render, on_handle_closed);
        for (size_t i = 0; i < sizeof u->sig / sizeof u->sig[0]; i++)
            uv_close((uv_handle_t *)&u->sig[i], on_handle_closed);
        if (u->keys_on) uv_close((uv_handle_t *)&u->keys, on_handle_closed);
    } else {
        schedule(u);
    }
}

/* The watch's token callback: the --token-command, as for the REST calls. */
static int watch_token(void *data, char *buf, size_t cap)
{
    ui *u = data;
    return fc_cli_token_fn(u->ctx, buf, cap);
}

/* Once a second: the elapsed times and the reconnect countdown move on. */
static void on_tick(uv_timer_t *t)
{
    schedule(t->data);
}

static void on_signal(uv_signal_t *s, int signum)
{
    ui *u = s->data;
    if (signum == SIGWINCH) {
        schedule(u); /* the draw reads the new size, clears and draws every line */
        return;
    }
    if (signum == SIGTSTP) { /* Ctrl-Z: the shell's screen back while stopped */
        fc_tui_screen_suspend(&u->screen);
        kill(getpid(), SIGSTOP);
        return;
    }
    if (signum == SIGCONT) { /* fg, or any other continue: the view back, drawn afresh */
        fc_tui_screen_resume(&u->screen);
        schedule(u);
        return;
    }
    u->exit_code = 128 + signum;
    if (u->w) fcc_watch_close(u->w);
}

/* A key on the terminal: q (or Q) ends the watch as done (exit 0); other
 * keys are read and ignored. End of input or an error stops listening. */
static void on_keys(uv_poll_t *p, int status, int events)
{
    ui *u = p->data;
    char buf[64];
    ssize_t n = status == 0 && (events & UV_READABLE) ? read(STDIN_FILENO, buf, sizeof buf) : -1;
    if (n < 0 && status == 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        uv_poll_stop(p);
        return;
    }
    if (memchr(buf, 'q', (size_t)n) || memchr(buf, 'Q', (size_t)n)) {
        uv_poll_stop(p);
        if (u->w) fcc_watch_close(u->w);
    }
}

/* --all on a terminal starts from the current list, so existing workflows show at once. */
static void preload(ui *u)
{
    char cursor[256] = "";
    while (u->n < PRELOAD_MAX) {
        fcc_workflow_page p;
        if (fcc_workflow_list(u->rest, NULL, cursor[0] ? cursor : NULL, 100, &p, NULL) != 0) break;
        for (size_t i = 0; i < p.count; i++) {
            row *r = find_row(u, p.items[i].id, 1);
            if (!r) break;
            row_from_workflow(r, &p.items[i]);
            fcc_watch_add_from(u->w, p.items[i].id, p.items[i].epoch, p.items[i].seq);
        }
        int more = p.next_cursor && p.count && strlen(p.next_cursor) < sizeof cursor;
        if (more) snprintf(cursor, sizeof cursor, "%s", p.next_cursor);
        fcc_workflow_page_clear(&p);
        if (!more) break;
    }
    /* Listed newest first; shown oldest first, new ones joining at the end. */
    for (size_t i = 0, j = u->n; i + 1 < j; i++, j--) {
        row t = u->rows[i];
        u->rows[i] = u->rows[j - 1];
        u->rows[j - 1] = t;
    }
}

static void start_handles(ui *u)
{
    static const int signums[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGTSTP, SIGCONT};
    uv_timer_init(u->loop, &u->tick);
    uv_timer_init(u->loop, &u->render);
    u->tick.data = u->render.data = u;
    for (size_t i = 0; i < sizeof u->sig / sizeof u->sig[0]; i++) {
        uv_signal_init(u->loop, &u->sig[i]);
        u->sig[i].data = u;
        if (i < 3 || u->tty) uv_signal_start(&u->sig[i], on_signal, signums[i]);
    }
    if (u->tty) uv_timer_start(&u->tick, on_tick, 1000, 1000);
    u->keys.data = u;
    u->keys_on = u->tty && isatty(STDIN_FILENO) &&
                 uv_poll_init(u->loop, &u->keys, STDIN_FILENO) == 0;
    if (u->keys_on) uv_poll_start(&u->keys, UV_READABLE, on_keys);
}

int fc_cli_watch(fc_cli_ctx *ctx, int argc, char **argv)
{
    const char *ids[MAX_IDS];
    ui u = {.ctx = ctx};
    int n, err = 0;
    const fc_cli_opt opts[] = {{"--all", NULL, &u.all},
                               {"--json", NULL, &u.json},
                               {"--exit-on-done", NULL, &u.exit_on_done},
                               {"--active", NULL, &u.active_only},
                               {NULL, NULL, NULL}};
    int r = fc_cli_parse(ctx, argc, argv, opts, ids, MAX_IDS, &n);
    if (r) return r;
    if ((n == 0) == !u.all) return fc_cli_usage_error(ctx, "give workflow IDs or --all");
    /* A dumb terminal cannot draw in place: lines, as for a pipe. */
    const char *term = getenv("TERM");
    u.json = u.json || !isatty(STDOUT_FILENO) || (term && strcmp(term, "dumb") == 0);
    u.tty = !u.json;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return FC_CLI_FAIL;
    u.loop = &loop;
    u.rest = fc_cli_client(ctx, &r);
    if (!u.rest) {
        uv_loop_close(&loop);
        return r;
    }
    fcc_watch_options o = {.on_update = on_update,
                           .on_state = on_state,
                           .data = &u,
                           .token = ctx->token,
                           .token_fn = ctx->token_command ? watch_token : NULL,
                           .ca_file = ctx->ca_file};
    u.w = fcc_watch_new(&loop, ctx->server, &o, &err);
    if (!u.w) {
        fcc_client_free(u.rest);
        uv_loop_close(&loop);
        fprintf(stderr, "flowcast: cannot watch %s: %s\n", ctx->server, fcc_strerror(err));
        return FC_CLI_FAIL;
    }
    fcc_client_set_timeout(u.rest, 2000);
    for (int i = 0; i < n; i++) {
        if (fcc_watch_add(u.w, ids[i], -1) != 0) {
            fcc_watch_close(u.w);
            uv_run(&loop, UV_RUN_DEFAULT);
            fcc_client_free(u.rest);
            free(u.rows);
            uv_loop_close(&loop);
            return fc_cli_usage_error(ctx, "invalid workflow ID");
        }
        find_row(&u, ids[i], 1);
    }
    if (u.all) {
        fcc_watch_add_all(u.w);
        if (u.tty) preload(&u);
    }
    if (u.tty) {
        fc_tui_text_init();
        u.tty = fc_tui_screen_enter(&u.screen, STDOUT_FILENO) == 0;
        u.json = !u.tty;
    }
    start_handles(&u);
    schedule(&u);
    fcc_watch_start(u.w);
    check_done(&u);
    uv_run(&loop, UV_RUN_DEFAULT);
    leave_screen(&u);
    uv_loop_close(&loop);
    fcc_client_free(u.rest);
    free(u.rows);
    free(u.frame);
    free(u.lines);
    return u.exit_code;
}
