/* flowcast watch: live progress bars on a terminal, JSON lines otherwise. */
#include "cli/commands.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "flowcast/client.h"

#define MAX_IDS 256
#define BAR_WIDTH 20

typedef struct row {
    char id[65];
    char name[80];
    char status[16];
    char message[256];
    long long step, total;
    int64_t epoch;             /* the incarnation shown; 0 while unknown */
    int64_t start_ms, last_ms; /* created_at (or first update), last change */
    int have_state, name_tried;
} row;

typedef struct ui {
    fc_cli_ctx *ctx;
    fcc_client *rest;
    fcc_watch *w;
    uv_timer_t tick;
    uv_signal_t sigint;
    row *rows;
    size_t n, cap;
    int json, tty, exit_on_done, lines_drawn, reconnecting, exit_code;
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

static int terminal(const char *status)
{
    return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0 || strcmp(status, "deleted") == 0;
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
    snprintf(r->id, sizeof r->id, "%s", id);
    return r;
}

static void row_from_workflow(row *r, const fcc_workflow *w)
{
    snprintf(r->name, sizeof r->name, "%s", w->name);
    snprintf(r->status, sizeof r->status, "%s", w->status);
    snprintf(r->message, sizeof r->message, "%s", w->message);
    r->step = w->current_step;
    r->total = w->total_steps;
    r->epoch = w->epoch;
    r->start_ms = parse_time(w->created_at);
    r->last_ms = parse_time(w->updated_at);
    r->have_state = r->name_tried = 1;
}

/* Cuts s to at most max bytes without splitting a UTF-8 sequence. */
static void cut_utf8(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) return;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    s[max] = '\0';
}

static void format_row(const row *r, char *out, size_t cols)
{
    char bar[BAR_WIDTH + 1], elapsed[32];
    int pct = r->total > 0 ? (int)(r->step * 100 / r->total) : (terminal(r->status) ? 100 : 0);
    int fill = pct * BAR_WIDTH / 100;
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    int64_t end = terminal(r->status) ? r->last_ms : now_ms();
    long long secs = r->start_ms && end > r->start_ms ? (end - r->start_ms) / 1000 : 0;
    if (secs >= 3600)
        snprintf(elapsed, sizeof elapsed, "%lld:%02lld:%02lld", secs / 3600, secs / 60 % 60,
                 secs % 60);
    else
        snprintf(elapsed, sizeof elapsed, "%lld:%02lld", secs / 60, secs % 60);
    snprintf(out, 1024, "%-18.18s [%s] %lld/%lld %3d%% %-9s %7s  %s", r->name[0] ? r->name : r->id,
             bar, r->step, r->total, pct, r->status, elapsed, r->message);
    cut_utf8(out, cols > 1 ? cols - 1 : 79);
}

static size_t term_cols(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

/* Redraws every bar in place: back up over the last drawing, rewrite each line. */
static void redraw(ui *u)
{
    if (!u->tty) return;
    size_t cols = term_cols();
    char line[1024];
    if (u->lines_drawn) printf("\r\x1b[%dA", u->lines_drawn);
    for (size_t i = 0; i < u->n; i++) {
        if (!u->rows[i].have_state) continue;
        format_row(&u->rows[i], line, cols);
        printf("\x1b[2K%s\n", line);
    }
    printf("\x1b[J");
    u->lines_drawn = 0;
    for (size_t i = 0; i < u->n; i++)
        u->lines_drawn += u->rows[i].have_state;
    fflush(stdout);
}

/* A one-off line: above the bars on a terminal, on stderr otherwise. */
static void note(ui *u, const char *text)
{
    if (!u->tty) {
        fprintf(stderr, "flowcast: %s\n", text);
        return;
    }
    if (u->lines_drawn) printf("\r\x1b[%dA\x1b[J", u->lines_drawn);
    printf("%s\n", text);
    u->lines_drawn = 0;
    redraw(u);
}

static void fetch_name(ui *u, row *r)
{
    r->name_tried = 1;
    fcc_workflow wf;
    if (fcc_workflow_get(u->rest, r->id, &wf, NULL) != 0) return;
    snprintf(r->name, sizeof r->name, "%s", wf.name);
    r->start_ms = parse_time(wf.created_at);
    fcc_workflow_clear(&wf);
}

static void check_done(ui *u)
{
    if (!u->exit_on_done || u->n == 0) return;
    int failed = 0;
    for (size_t i = 0; i < u->n; i++) {
        if (!u->rows[i].have_state || !terminal(u->rows[i].status)) return;
        failed |= strcmp(u->rows[i].status, "completed") != 0;
    }
    u->exit_code = failed ? FC_CLI_FAIL : FC_CLI_OK;
    fcc_watch_close(u->w);
}

static void on_update(fcc_watch *w, const fcc_update *up, void *data)
{
    ui *u = data;
    (void)w;
    if (u->json) {
        printf("%s\n", up->json);
        fflush(stdout);
    }
    row *r = find_row(u, up->workflow_id, 1);
    if (!r) return;
    if (!up->deleted && up->epoch && r->epoch && up->epoch != r->epoch) {
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
    snprintf(r->status, sizeof r->status, "%s", up->deleted ? "deleted" : up->status);
    if (!up->deleted) {
        r->step = up->current_step;
        r->total = up->total_steps;
        snprintf(r->message, sizeof r->message, "%s", up->message);
    }
    r->last_ms = up->timestamp ? parse_time(up->timestamp) : now_ms();
    if (!r->start_ms) r->start_ms = r->last_ms;
    r->have_state = 1;
    if (u->tty && !r->name_tried) fetch_name(u, r);
    redraw(u);
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
    (void)w;
    if (s->state == FCC_STATE_RECONNECTING) {
        u->reconnecting = 1;
        if (s->error == FCC_EAUTH && s->delay_ms == 0) /* the reason says it all */
            snprintf(text, sizeof text, "%s", s->reason ? s->reason : "token expired");
        else
            snprintf(text, sizeof text, "%s; reconnecting in %.1f s (attempt %u)",
                     s->reason ? s->reason : "connection lost", (double)s->delay_ms / 1000.0,
                     s->attempt);
        note(u, text);
    } else if (s->state == FCC_STATE_OPEN && u->reconnecting) {
        u->reconnecting = 0;
        snprintf(text, sizeof text, "reconnected to %s", u->ctx->server);
        note(u, text);
    } else if (s->state == FCC_STATE_CLOSED) {
        if (s->error) {
            fprintf(stderr, "flowcast: %s\n", s->reason ? s->reason : fcc_strerror(s->error));
            u->exit_code = FC_CLI_FAIL;
        }
        u->w = NULL;
        uv_close((uv_handle_t *)&u->tick, on_handle_closed);
        uv_close((uv_handle_t *)&u->sigint, on_handle_closed);
    }
}

/* The watch's token callback: the --token-command, as for the REST calls. */
static int watch_token(void *data, char *buf, size_t cap)
{
    ui *u = data;
    return fc_cli_token_fn(u->ctx, buf, cap);
}

static void on_tick(uv_timer_t *t)
{
    redraw(t->data);
}

static void on_sigint(uv_signal_t *s, int signum)
{
    ui *u = s->data;
    (void)signum;
    u->exit_code = 130;
    if (u->w) fcc_watch_close(u->w);
}

/* --all on a terminal starts from the current list, so existing workflows show at once. */
static void preload(ui *u)
{
    fcc_workflow_page p;
    if (fcc_workflow_list(u->rest, NULL, NULL, 100, &p, NULL) != 0) return;
    for (size_t i = p.count; i-- > 0;) {
        row *r = find_row(u, p.items[i].id, 1);
        if (!r) break;
        row_from_workflow(r, &p.items[i]);
        fcc_watch_add_from(u->w, p.items[i].id, p.items[i].epoch, p.items[i].seq);
    }
    fcc_workflow_page_clear(&p);
}

int fc_cli_watch(fc_cli_ctx *ctx, int argc, char **argv)
{
    const char *ids[MAX_IDS];
    ui u = {.ctx = ctx};
    int all = 0, n, err = 0;
    const fc_cli_opt opts[] = {{"--all", NULL, &all},
                               {"--json", NULL, &u.json},
                               {"--exit-on-done", NULL, &u.exit_on_done},
                               {NULL, NULL, NULL}};
    int r = fc_cli_parse(ctx, argc, argv, opts, ids, MAX_IDS, &n);
    if (r) return r;
    if ((n == 0) == !all) return fc_cli_usage_error(ctx, "give workflow IDs or --all");
    u.json = u.json || !isatty(STDOUT_FILENO);
    u.tty = !u.json;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) return FC_CLI_FAIL;
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
            return fc_cli_usage_error(ctx, "invalid workflow ID");
        }
        find_row(&u, ids[i], 1);
    }
    if (all) {
        fcc_watch_add_all(u.w);
        if (u.tty) preload(&u);
    }
    uv_timer_init(&loop, &u.tick);
    uv_signal_init(&loop, &u.sigint);
    u.tick.data = u.sigint.data = &u;
    if (u.tty) uv_timer_start(&u.tick, on_tick, 1000, 1000);
    uv_signal_start(&u.sigint, on_sigint, SIGINT);
    redraw(&u);
    fcc_watch_start(u.w);
    check_done(&u);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    fcc_client_free(u.rest);
    free(u.rows);
    return u.exit_code;
}
