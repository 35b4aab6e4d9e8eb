/* flowcast administration subcommands that work on the database offline:
 * rotate-epochs. */
#include "cli/commands.h"
#include "store/store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void fc_cli_admin_usage(FILE *out)
{
    fprintf(out,
            "  rotate-epochs [--db PATH]   give every workflow a new epoch, after restoring\n"
            "              a backup: every watcher then resyncs instead of resuming;\n"
            "              the server must be stopped (PATH: $FLOWCAST_DB or ./flowcast.db)\n");
}

int fc_cli_rotate_epochs(int argc, char **argv)
{
    fc_cli_ctx ctx = {.cmd = "rotate-epochs"};
    const char *db = getenv("FLOWCAST_DB");
    const fc_cli_opt opts[] = {{.name = "--db", .value = &db}, {.name = NULL}};
    int n_pos = 0;
    int r = fc_cli_parse(&ctx, argc, argv, opts, NULL, 0, &n_pos);
    if (r != 0) return r;
    if (ctx.server) return fc_cli_usage_error(&ctx, "works on the database file, not a server");
    if (!db || !*db) db = "./flowcast.db";
    char err[256];
    int64_t n = 0;
    if (fc_store_sqlite_rotate_epochs(db, &n, err, sizeof err) != 0) {
        fprintf(stderr, "flowcast rotate-epochs: %s\n", err);
        return FC_CLI_FAIL;
    }
    printf("rotated the epochs of %" PRId64 " workflows in %s\n", n, db);
    return FC_CLI_OK;
}
