/* flowcast client subcommands (watch, create, update, step, get, list), built on libflowcast. */
#ifndef FC_CLI_COMMANDS_H
#define FC_CLI_COMMANDS_H

#include <stdio.h>

/* Exit statuses of the client subcommands. */
enum { FC_CLI_OK = 0, FC_CLI_FAIL = 1, FC_CLI_USAGE = 2 };

/* Settings every client subcommand shares. */
typedef struct fc_cli_ctx {
    const char *cmd;    /* subcommand name, for messages */
    const char *server; /* --server, else FLOWCAST_URL, else http://127.0.0.1:8001 */
    const char *token;  /* FLOWCAST_API_TOKEN or NULL */
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

/* Parses options (opts ends with a NULL name; --server is always accepted)
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

#endif
