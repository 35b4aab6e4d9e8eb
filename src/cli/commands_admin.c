/* flowcast administration subcommands that need no server: rotate-epochs
 * (works on the database offline) and token (mints an access token). */
#include "auth/auth.h"
#include "cli/commands.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void fc_cli_admin_usage(FILE *out)
{
    fprintf(out, "  rotate-epochs [--db PATH]   give every workflow a new epoch, after restoring\n"
                 "              a backup: every watcher then resyncs instead of resuming;\n"
                 "              the server must be stopped (PATH: $FLOWCAST_DB or ./flowcast.db)\n"
                 "  token --key FILE [--scope 'read write admin'] [--workflows 'a,deploy-*']\n"
                 "        [--sub NAME] [--ttl 1h]   mint an HS256 access token with an HMAC key\n"
                 "              file; --sub names the client the per-client limits count\n");
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
    if (fc_store_is_postgres(db)) {
        /* Nothing keeps the nodes of a shared database offline while it
         * runs, and a restore of PostgreSQL is PostgreSQL's own procedure. */
        fprintf(stderr, "flowcast rotate-epochs: works on a SQLite file, not PostgreSQL; after "
                        "restoring a PostgreSQL backup, stop every node and run: UPDATE "
                        "workflows SET epoch = 1 + floor(random() * 9007199254740990)::bigint\n");
        return FC_CLI_FAIL;
    }
    char err[256];
    int64_t n = 0;
    if (fc_store_sqlite_rotate_epochs(db, &n, err, sizeof err) != 0) {
        fprintf(stderr, "flowcast rotate-epochs: %s\n", err);
        return FC_CLI_FAIL;
    }
    printf("rotated the epochs of %" PRId64 " workflows in %s\n", n, db);
    return FC_CLI_OK;
}

/* A lifetime: seconds, or a number with s, m, h or d; at most 366 days. */
static int64_t parse_ttl(const char *s)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    int64_t unit = !*end               ? 1
                   : !strcmp(end, "s") ? 1
                   : !strcmp(end, "m") ? 60
                   : !strcmp(end, "h") ? 3600
                   : !strcmp(end, "d") ? 86400
                                       : 0;
    if (errno || end == s || n <= 0 || unit == 0 || n > 366LL * 86400 / unit) return -1;
    return (int64_t)n * unit;
}

/* Only the scope words the server knows, so a typo is not a silent no-right. */
static int scope_valid(const char *s)
{
    int words = 0;
    while (*s) {
        size_t n = strcspn(s, " ");
        if (n > 0) {
            if (!(n == 4 && !strncmp(s, "read", 4)) && !(n == 5 && !strncmp(s, "write", 5)) &&
                !(n == 5 && !strncmp(s, "admin", 5)))
                return 0;
            words++;
        }
        s += n + (s[n] == ' ');
    }
    return words > 0;
}

int fc_cli_token(int argc, char **argv)
{
    fc_cli_ctx ctx = {.cmd = "token"};
    const char *key = NULL, *scope = "read", *workflows = NULL, *sub = NULL, *ttl_s = "1h";
    const fc_cli_opt opts[] = {{.name = "--key", .value = &key},
                               {.name = "--scope", .value = &scope},
                               {.name = "--workflows", .value = &workflows},
                               {.name = "--sub", .value = &sub},
                               {.name = "--ttl", .value = &ttl_s},
                               {.name = NULL}};
    int n_pos = 0;
    int r = fc_cli_parse(&ctx, argc, argv, opts, NULL, 0, &n_pos);
    if (r != 0) return r;
    if (ctx.server) return fc_cli_usage_error(&ctx, "mints offline, it needs no server");
    if (!key) return fc_cli_usage_error(&ctx, "--key FILE (the HMAC secret) is required");
    if (!scope_valid(scope))
        return fc_cli_usage_error(&ctx, "--scope takes the words read, write and admin");
    if (sub && !*sub) return fc_cli_usage_error(&ctx, "--sub takes a non-empty name");
    int64_t ttl = parse_ttl(ttl_s);
    if (ttl < 0)
        return fc_cli_usage_error(&ctx, "--ttl takes N, Ns, Nm, Nh or Nd (at most 366 days)");
    char err[256];
    char *token =
        fc_auth_mint(key, scope, workflows, sub, ttl, (int64_t)time(NULL), err, sizeof err);
    if (!token) {
        fprintf(stderr, "flowcast token: %s\n", err);
        return FC_CLI_FAIL;
    }
    printf("%s\n", token);
    free(token);
    return FC_CLI_OK;
}
