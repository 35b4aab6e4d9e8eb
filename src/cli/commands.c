/* flowcast client subcommands: option parsing and create, update, step, get, list. */
#include "cli/commands.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_URL "http://127.0.0.1:8001"

void fc_cli_usage(FILE *out)
{
    fprintf(out,
            "  watch ID... | --all [--json] [--exit-on-done] [--active]\n"
            "              live progress of workflows (on a terminal a full-screen view,\n"
            "              a bar per workflow, at most 10 redraws a second; one JSON line\n"
            "              per update otherwise or with --json);\n"
            "              --exit-on-done: exit when all are terminal (0 all completed, 1 else)\n"
            "              --active: the terminal view hides completed, failed, cancelled\n"
            "  create NAME --steps N [--id ID] [--status S] [--message M]\n"
            "              [--idempotency-key K] [--retries N]\n"
            "  update ID [--status S] [--step N] [--total N] [--message M]\n"
            "            [--idempotency-key K] [--retries N]\n"
            "  step ID [--message M] [--retries N]\n"
            "              advance by one step (pending becomes running,\n"
            "              the last step completes the workflow)\n"
            "  get ID\n"
            "  list [--status S] [--limit N]   one JSON line per workflow, newest first\n\n"
            "client options (before or after the command):\n"
            "  --server URL[,URL...] http://host[:port] or https://host[:port]; host:port\n"
            "                        means http:// (default $FLOWCAST_URL or " DEFAULT_URL ");\n"
            "                        several: a lost or refused server passes to the next\n"
            "  --token TOKEN         the server's --api-token or a JWT (default\n"
            "                        $FLOWCAST_API_TOKEN), sent with every request and watch\n"
            "  --ca-file FILE        https: trust the CA certificates in FILE (PEM) instead\n"
            "                        of the system store (default $FLOWCAST_CA_FILE); the\n"
            "                        server's certificate and host name are always verified\n"
            "  --token-command CMD   run CMD with /bin/sh -c for a token (the first line of\n"
            "                        its stdout; at most 10 s and 64 KiB of output), at start\n"
            "                        and whenever the token expires: watch reconnects and\n"
            "                        resumes (or refreshes in place before exp), a request is\n"
            "                        sent again (default $FLOWCAST_TOKEN_COMMAND)\n"
            "create, update and step send an Idempotency-Key (random, or --idempotency-key K\n"
            "to repeat a change safely across runs) and resend the same request up to\n"
            "--retries N times (default 4) when the answer is lost: the server applies it once.\n"
            "Client commands print the workflow as JSON; errors print one line and exit 1\n"
            "(2 for usage errors).\n");
}

int fc_cli_usage_error(const fc_cli_ctx *ctx, const char *message)
{
    fprintf(stderr, "flowcast %s: %s (see flowcast --help)\n", ctx->cmd, message);
    return FC_CLI_USAGE;
}

/* Puts "http://" in front of every bare "host:port" of the server list
 * ("URL,URL,..."), as curl reads it; 0, or -1 when it does not fit. */
static int normalize_servers(fc_cli_ctx *ctx)
{
    if (!strchr(ctx->server, ',') && strstr(ctx->server, "://")) return 0;
    char out[sizeof ctx->url];
    size_t n = 0;
    for (const char *p = ctx->server;;) {
        size_t len = strcspn(p, ",");
        while (len && *p == ' ')
            p++, len--;
        int bare = len && !memmem(p, len, "://", 3);
        int w = snprintf(out + n, sizeof out - n, "%s%s%.*s", n ? "," : "", bare ? "http://" : "",
                         (int)len, p);
        if (w < 0 || (size_t)w >= sizeof out - n) return -1;
        n += (size_t)w;
        if (!p[len]) break;
        p += len + 1;
    }
    memcpy(ctx->url, out, n + 1);
    ctx->server = ctx->url;
    return 0;
}

int fc_cli_parse(fc_cli_ctx *ctx, int argc, char **argv, const fc_cli_opt *opts, const char **pos,
                 int max_pos, int *n_pos)
{
    char msg[160];
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (*n_pos == max_pos) {
                snprintf(msg, sizeof msg, "unexpected argument \"%.60s\"", a);
                return fc_cli_usage_error(ctx, msg);
            }
            pos[(*n_pos)++] = a;
            continue;
        }
        const char **value = NULL;
        int *flag = NULL, found = 0;
        if (strcmp(a, "--server") == 0) value = &ctx->server, found = 1;
        /* Of --token and --token-command, the one given last wins. */
        if (strcmp(a, "--token") == 0) value = &ctx->token, ctx->token_command = NULL, found = 1;
        if (strcmp(a, "--ca-file") == 0) value = &ctx->ca_file, found = 1;
        if (strcmp(a, "--token-command") == 0) value = &ctx->token_command, found = 1;
        for (const fc_cli_opt *o = opts; !found && o->name; o++)
            if (strcmp(a, o->name) == 0) value = o->value, flag = o->flag, found = 1;
        if (!found) {
            snprintf(msg, sizeof msg, "unknown option %.60s", a);
            return fc_cli_usage_error(ctx, msg);
        }
        if (flag) {
            *flag = 1;
        } else if (i + 1 >= argc) {
            snprintf(msg, sizeof msg, "%.60s needs a value", a);
            return fc_cli_usage_error(ctx, msg);
        } else {
            *value = argv[++i];
        }
    }
    if (ctx->server && normalize_servers(ctx) != 0)
        return fc_cli_usage_error(ctx, "--server: the list of URLs is too long");
    return 0;
}

/* The options every client command takes, which may come before it. */
static int is_global(const char *a)
{
    static const char *const globals[] = {"--server", "--token", "--ca-file", "--token-command"};
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++)
        if (strcmp(a, globals[i]) == 0) return 1;
    return 0;
}

/* Reverses argv[from, to). */
static void reverse(char **argv, int from, int to)
{
    for (to--; from < to; from++, to--) {
        char *t = argv[from];
        argv[from] = argv[to];
        argv[to] = t;
    }
}

void fc_cli_hoist_globals(int argc, char **argv)
{
    int k = 1;
    while (k + 1 < argc && is_global(argv[k]))
        k += 2;
    if (k == 1 || k >= argc) return;
    /* The command moves in front of them; they stay right after it, in
     * order, so an option given later on the line still comes later. */
    reverse(argv, 1, k);
    reverse(argv, 1, k + 1);
}

/* Parses a non-negative integer option; -1 when absent, -2 when invalid. */
static long long int_opt(const char *s)
{
    if (!s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < 0) return -2;
    return v;
}

static int bad_int(const fc_cli_ctx *ctx, const char *opt)
{
    char msg[96];
    snprintf(msg, sizeof msg, "%s needs a non-negative integer", opt);
    return fc_cli_usage_error(ctx, msg);
}

fcc_client *fc_cli_client(fc_cli_ctx *ctx, int *rc)
{
    int err = 0;
    fcc_error e;
    if (ctx->token_command && !ctx->token_owned) {
        char buf[FCC_TOKEN_MAX + 1];
        if (fc_cli_token_command(ctx->token_command, buf, sizeof buf) != 0) {
            fprintf(stderr, "flowcast: %s\n", buf);
            *rc = FC_CLI_FAIL;
            return NULL;
        }
        if (!(ctx->token_owned = strdup(buf))) {
            *rc = FC_CLI_FAIL;
            return NULL;
        }
        ctx->token = ctx->token_owned;
    }
    fcc_client *c = fcc_client_new(ctx->server, ctx->token, &err);
    if (!c) {
        fcc_client *no_token = ctx->token ? fcc_client_new(ctx->server, NULL, &err) : NULL;
        if (no_token)
            fprintf(stderr, "flowcast: invalid token (1-%d visible ASCII characters)\n",
                    FCC_TOKEN_MAX);
        else
            fprintf(stderr,
                    "flowcast: invalid server URL \"%s\" (expected http[s]://host[:port], "
                    "or several separated by commas)\n",
                    ctx->server);
        fcc_client_free(no_token);
        *rc = FC_CLI_USAGE;
        return NULL;
    }
    /* A CA file matters for https only; FLOWCAST_CA_FILE may be set for all. */
    if (ctx->ca_file && strstr(ctx->server, "https://") &&
        fcc_client_set_ca_file(c, ctx->ca_file, &e) != 0) {
        fprintf(stderr, "flowcast: %s\n", e.message);
        fcc_client_free(c);
        *rc = FC_CLI_FAIL;
        return NULL;
    }
    if (ctx->token_command) fcc_client_set_token_fn(c, fc_cli_token_fn, ctx);
    *rc = 0;
    return c;
}

/* A client for a change command: --retries (NULL: the library's default). */
static fcc_client *change_client(fc_cli_ctx *ctx, const char *retries, int *rc)
{
    long long n = int_opt(retries);
    if (n == -2 || n > 1000) {
        *rc = fc_cli_usage_error(ctx, "--retries needs an integer in 0..1000");
        return NULL;
    }
    fcc_client *c = fc_cli_client(ctx, rc);
    if (c && n >= 0) fcc_client_set_retries(c, (unsigned)n, 0);
    return c;
}

/* Prints the workflow or the error line; returns the exit status. */
static int finish(fcc_client *c, int r, fcc_workflow *w, const fcc_error *err)
{
    if (r == 0) {
        printf("%s\n", w->json);
        fcc_workflow_clear(w);
    } else {
        fprintf(stderr, "flowcast: %s\n", err->message);
    }
    fcc_client_free(c);
    return r == 0 ? FC_CLI_OK : FC_CLI_FAIL;
}

static int cmd_create(fc_cli_ctx *ctx, int argc, char **argv)
{
    const char *steps = NULL, *id = NULL, *status = NULL, *message = NULL, *key = NULL,
               *retries = NULL, *pos[1];
    const fc_cli_opt opts[] = {{"--steps", &steps, NULL},
                               {"--id", &id, NULL},
                               {"--status", &status, NULL},
                               {"--message", &message, NULL},
                               {"--idempotency-key", &key, NULL},
                               {"--retries", &retries, NULL},
                               {NULL, NULL, NULL}};
    int n, r = fc_cli_parse(ctx, argc, argv, opts, pos, 1, &n);
    if (r) return r;
    if (n != 1) return fc_cli_usage_error(ctx, "needs a NAME");
    long long total = int_opt(steps);
    if (total == -1) return fc_cli_usage_error(ctx, "needs --steps N");
    if (total < 0) return bad_int(ctx, "--steps");
    fcc_client *c = change_client(ctx, retries, &r);
    if (!c) return r;
    fcc_create p = {.name = pos[0],
                    .total_steps = total,
                    .id = id,
                    .status = status,
                    .current_step = -1,
                    .message = message,
                    .idempotency_key = key};
    fcc_workflow w;
    fcc_error err;
    r = fcc_workflow_create(c, &p, &w, &err);
    return finish(c, r, &w, &err);
}

static int cmd_update(fc_cli_ctx *ctx, int argc, char **argv)
{
    const char *status = NULL, *step = NULL, *total = NULL, *message = NULL, *key = NULL,
               *retries = NULL, *pos[1];
    const fc_cli_opt opts[] = {{"--status", &status, NULL},
                               {"--step", &step, NULL},
                               {"--total", &total, NULL},
                               {"--message", &message, NULL},
                               {"--idempotency-key", &key, NULL},
                               {"--retries", &retries, NULL},
                               {NULL, NULL, NULL}};
    int n, r = fc_cli_parse(ctx, argc, argv, opts, pos, 1, &n);
    if (r) return r;
    if (n != 1) return fc_cli_usage_error(ctx, "needs a workflow ID");
    long long cur = int_opt(step), tot = int_opt(total);
    if (cur == -2) return bad_int(ctx, "--step");
    if (tot == -2) return bad_int(ctx, "--total");
    if (!status && !message && cur < 0 && tot < 0)
        return fc_cli_usage_error(ctx,
                                  "nothing to change: give --status, --step, --total or --message");
    fcc_patch p = FCC_PATCH_INIT;
    p.status = status;
    p.message = message;
    p.idempotency_key = key;
    if (cur >= 0) p.current_step = cur;
    if (tot >= 0) p.total_steps = tot;
    fcc_client *c = change_client(ctx, retries, &r);
    if (!c) return r;
    fcc_workflow w;
    fcc_error err;
    r = fcc_workflow_update(c, pos[0], &p, &w, &err);
    return finish(c, r, &w, &err);
}

static int cmd_step(fc_cli_ctx *ctx, int argc, char **argv)
{
    const char *message = NULL, *retries = NULL, *pos[1];
    const fc_cli_opt opts[] = {
        {"--message", &message, NULL}, {"--retries", &retries, NULL}, {NULL, NULL, NULL}};
    int n, r = fc_cli_parse(ctx, argc, argv, opts, pos, 1, &n);
    if (r) return r;
    if (n != 1) return fc_cli_usage_error(ctx, "needs a workflow ID");
    fcc_client *c = change_client(ctx, retries, &r);
    if (!c) return r;
    fcc_workflow w;
    fcc_error err;
    r = fcc_workflow_step(c, pos[0], message, &w, &err);
    return finish(c, r, &w, &err);
}

static int cmd_get(fc_cli_ctx *ctx, int argc, char **argv)
{
    const char *pos[1];
    const fc_cli_opt opts[] = {{NULL, NULL, NULL}};
    int n, r = fc_cli_parse(ctx, argc, argv, opts, pos, 1, &n);
    if (r) return r;
    if (n != 1) return fc_cli_usage_error(ctx, "needs a workflow ID");
    fcc_client *c = fc_cli_client(ctx, &r);
    if (!c) return r;
    fcc_workflow w;
    fcc_error err;
    r = fcc_workflow_get(c, pos[0], &w, &err);
    return finish(c, r, &w, &err);
}

/* Follows the cursors until the end or --limit workflows were printed. */
static int cmd_list(fc_cli_ctx *ctx, int argc, char **argv)
{
    const char *status = NULL, *limit_s = NULL, *pos[1];
    const fc_cli_opt opts[] = {
        {"--status", &status, NULL}, {"--limit", &limit_s, NULL}, {NULL, NULL, NULL}};
    int n, r = fc_cli_parse(ctx, argc, argv, opts, pos, 0, &n);
    if (r) return r;
    long long limit = int_opt(limit_s);
    if (limit == -2 || limit == 0) return bad_int(ctx, "--limit");
    fcc_client *c = fc_cli_client(ctx, &r);
    if (!c) return r;
    fcc_error err;
    char *cursor = NULL;
    long long printed = 0;
    do {
        unsigned page = limit > 0 && limit - printed < 1000 ? (unsigned)(limit - printed) : 1000;
        fcc_workflow_page p;
        r = fcc_workflow_list(c, status, cursor, page, &p, &err);
        free(cursor);
        cursor = NULL;
        if (r != 0) break;
        for (size_t i = 0; i < p.count; i++)
            printf("%s\n", p.items[i].json);
        printed += (long long)p.count;
        if (p.next_cursor && (limit < 0 || printed < limit)) cursor = strdup(p.next_cursor);
        fcc_workflow_page_clear(&p);
    } while (cursor);
    if (r != 0) fprintf(stderr, "flowcast: %s\n", err.message);
    fcc_client_free(c);
    return r == 0 ? FC_CLI_OK : FC_CLI_FAIL;
}

static const struct {
    const char *name;
    int (*run)(fc_cli_ctx *ctx, int argc, char **argv);
} commands[] = {
    {"watch", fc_cli_watch}, {"create", cmd_create}, {"update", cmd_update},
    {"step", cmd_step},      {"get", cmd_get},       {"list", cmd_list},
};

int fc_cli_is_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0) return 1;
    return 0;
}

int fc_cli_run(int argc, char **argv)
{
    const char *env_url = getenv("FLOWCAST_URL"), *env_token = getenv("FLOWCAST_API_TOKEN"),
               *env_ca = getenv("FLOWCAST_CA_FILE"), *env_cmd = getenv("FLOWCAST_TOKEN_COMMAND");
    fc_cli_ctx ctx = {.cmd = argv[0],
                      .server = env_url && *env_url ? env_url : DEFAULT_URL,
                      .token = env_token && *env_token ? env_token : NULL,
                      .ca_file = env_ca && *env_ca ? env_ca : NULL,
                      .token_command = env_cmd && *env_cmd ? env_cmd : NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: flowcast <command> [options]; client commands:\n");
            fc_cli_usage(stdout);
            return FC_CLI_OK;
        }
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[0], commands[i].name) == 0) {
            int rc = commands[i].run(&ctx, argc, argv);
            free(ctx.token_owned);
            return rc;
        }
    }
    return fc_cli_usage_error(&ctx, "unknown command");
}
