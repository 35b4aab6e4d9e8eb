/* flowcast client subcommands (watch, create, update, step, get, list), built on libflowcast. */
#ifndef FC_CLI_COMMANDS_H
#define FC_CLI_COMMANDS_H

#include <stdio.h>

#include "flowcast/client.h"

/* Exit statuses of the client subcommands. */
enum { FC_CLI_OK = 0, FC_CLI_FAIL = 1, FC_CLI_USAGE = 2 };

/* Settings every client subcommand shares. */
typedef struct fc_cli_ctx {
    const char *cmd;     /* subcommand name, for messages */
    const char *server;  /* --server, else FLOWCAST_URL, else http://127.0.0.1:8001; may be a
                            comma-separated list (libflowcast fails over between them) */
    const char *token;   /* --token, else FLOWCAST_API_TOKEN; or the token command's first token */
    const char *ca_file; /* --ca-file, else FLOWCAST_CA_FILE, else NULL (system store) */
    const char *token_command; /* --token-command, else FLOWCAST_TOKEN_COMMAND, else NULL */
    char *token_owned;         /* the token command's first answer (ctx->token points here) */
    char url[2048]; /* the server list with "http://" put in front of each bare host:port */
} fc_cli_ctx;

/* One option of a subcommand: "--name VALUE" (value != NULL) or a flag. */
typedef struct fc_cli_opt {
    const char *name;
    const char **value; /* NULL for a flag */
    int *flag;
} fc_cli_opt;

/* True when name is one of the client subcommands. */
int fc_cli_is_command(const char *name);
/* Runs subcommand argv[0] (argv[0] is its name); returns the exit status. */
int fc_cli_run(int argc, char **argv);
/* The usage lines of the client subcommands, for flowcast --help. */
void fc_cli_usage(FILE *out);

/* Moves the global options (--server, --token, --ca-file, --token-command,
 * each with its value) given before the
 * subcommand to right after it, in place, so argv[1] is the subcommand and the
 * subcommand's parser sees them. */
void fc_cli_hoist_globals(int argc, char **argv);
/* Parses options (opts ends with a NULL name; the global options are always accepted)
 * and collects positional arguments into pos[max_pos]. 0, or FC_CLI_USAGE
 * after printing one line. */
int fc_cli_parse(fc_cli_ctx *ctx, int argc, char **argv, const fc_cli_opt *opts, const char **pos,
                 int max_pos, int *n_pos);
/* Prints "flowcast: <message>" to stderr and returns FC_CLI_USAGE. */
int fc_cli_usage_error(const fc_cli_ctx *ctx, const char *message);

/* flowcast rotate-epochs (commands_admin.c): argv[0] is its name. */
int fc_cli_rotate_epochs(int argc, char **argv);
/* flowcast token (commands_admin.c): mints an access token; argv[0] is its name. */
int fc_cli_token(int argc, char **argv);
/* The usage lines of the administration subcommands, for flowcast --help. */
void fc_cli_admin_usage(FILE *out);

/* flowcast watch (commands_watch.c). */
int fc_cli_watch(fc_cli_ctx *ctx, int argc, char **argv);

/* Gets the first token from --token-command (when given), then makes the
 * REST client with the CA file and the token command for refreshes. NULL
 * after printing one line; *rc is the exit status then. */
fcc_client *fc_cli_client(fc_cli_ctx *ctx, int *rc);

/* --token-command (commands_token.c): at most this long and this much
 * output (a unit test may define a shorter time before including this). */
#ifndef FC_CLI_TOKEN_TIMEOUT_MS
#define FC_CLI_TOKEN_TIMEOUT_MS 10000
#endif
#define FC_CLI_TOKEN_OUTPUT_MAX 65536
/* Runs cmd with /bin/sh -c (stdin /dev/null, its own process group, killed
 * with it after FC_CLI_TOKEN_TIMEOUT_MS) and writes the first line of its
 * stdout into buf: 0, or -1 with a one-line reason in buf (exit status and
 * the first line of stderr, a timeout, no or a malformed token). */
int fc_cli_token_command(const char *cmd, char *buf, size_t cap);
/* An fcc_token_fn running the --token-command of the fc_cli_ctx in data. */
int fc_cli_token_fn(void *data, char *buf, size_t cap);

#endif
