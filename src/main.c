/* flowcast entry point: dispatches subcommands. */
#include "api/api.h"
#include "bus/bus.h"
#include "cli/commands.h"
#include "cli/config.h"
#include "common/log.h"
#include "server/server.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: flowcast <command> [options]\n\n"
                 "commands:\n"
                 "  serve       run the server (flowcast serve --help for its options)\n");
    fc_cli_admin_usage(out);
    fc_cli_usage(out);
    fprintf(out, "\n  --help      show this text\n"
                 "  --version   print the version\n"
                 "  --man       print the man page flowcast(1) (roff)\n");
}

/* flowcast --man: the man page, written at build time (CMakeLists.txt). */
static int man(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    if (!m) return 1;
    usage(m);
    if (fclose(m) != 0) {
        free(text);
        return 1;
    }
    fc_config_man(stdout, FC_VERSION, text);
    free(text);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* The store and bus addresses, checked before anything opens them; 0 or 2
 * (the exit code, with the reason on stderr). */
static int check_addresses(const fc_config *cfg)
{
    char why[256];
    if (fc_store_path_check(cfg->db_path, why, sizeof why) != 0) {
        fprintf(stderr, "flowcast: --db: %s\n", why);
        return 2;
    }
    if (cfg->nats_urls && fc_bus_urls_check(cfg->nats_urls, why, sizeof why) != 0) {
        fprintf(stderr, "flowcast: --nats: %s\n", why);
        return 2;
    }
    return 0;
}

static int serve(int argc, char **argv)
{
    fc_config cfg;
    int r = fc_config_parse(&cfg, argc, argv);
    if (r == 1) return 0;
    if (r != 0 || check_addresses(&cfg) != 0) return 2;
    /* Refused before the store opens and creates the database file; the feed's
     * relay refuses any other store without a commit log the same way. */
    if (cfg.nats_urls && !fc_store_is_postgres(cfg.db_path)) {
        fprintf(stderr, "flowcast: --nats needs a store that several nodes share "
                        "(--db postgres://...); the sqlite store belongs to one process\n");
        return 2;
    }
    fc_log_threshold = (fc_log_level)cfg.log_level;
    fc_log_output = (fc_log_format)cfg.log_format;
    return fc_server_run(&cfg, &fc_api_handlers);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "flowcast: missing command (see flowcast --help)\n");
        return 2;
    }
    fc_cli_hoist_globals(argc, argv);
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        fputs("\nserve options:\n", stdout);
        fc_config_usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--man") == 0) return man();
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("flowcast %s\n", FC_VERSION);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0) return serve(argc - 1, argv + 1); /* argv[0] is "serve" */
    if (strcmp(cmd, "rotate-epochs") == 0) return fc_cli_rotate_epochs(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0) return fc_cli_token(argc - 1, argv + 1);
    if (fc_cli_is_command(cmd)) return fc_cli_run(argc - 1, argv + 1);
    fprintf(stderr, "flowcast: unknown command \"%s\" (see flowcast --help)\n", cmd);
    return 2;
}
