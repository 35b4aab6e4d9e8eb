/* Server configuration: fc_config_parse fills fc_config from the defaults of the options table
 * (config_table.c), then the environment (config_env.c), then the flags (config_flags.c), and
 * last checks the combinations no single option can. */
#include "cli/config_internal.h"
#include "bus/bus.h"
#include "store/store.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A URL that is not PostgreSQL's would otherwise open as a SQLite file of
 * that name (and fail on its folder, or create it): 0, or 2 after printing
 * the error. The URL is not echoed: it may hold a password. */
static int check_db_scheme(const char *db)
{
    const char *scheme_end = strstr(db, "://");
    if (!scheme_end || fc_store_is_postgres(db)) return 0;
    int n = (int)(scheme_end - db);
    bool shown = n > 0 && n <= 32;
    for (int i = 0; shown && i < n; i++)
        shown = isalnum((unsigned char)db[i]) || strchr("+.-", db[i]);
    fprintf(stderr,
            "flowcast: --db: the scheme \"%.*s://\" is not one flowcast opens: a PostgreSQL URL "
            "starts postgres:// or postgresql:// (lower case), anything else is a SQLite file "
            "path\n",
            shown ? n : 1, shown ? db : "?");
    return 2;
}

/* The options that only make sense together: 0, or 2 after printing the error. */
static int check_combinations(const fc_config *cfg)
{
    if ((cfg->nats_cert == NULL) != (cfg->nats_key == NULL)) {
        fprintf(stderr, "flowcast: --nats-cert and --nats-key go together: give both or neither\n");
        return 2;
    }
    if (check_db_scheme(cfg->db_path) != 0) return 2;
    char why[128];
    if (cfg->nats_urls && fc_bus_urls_check(cfg->nats_urls, why, sizeof why) != 0) {
        fprintf(stderr, "flowcast: --nats: %s\n", why);
        return 2;
    }
    if (!cfg->nats_urls && (cfg->nats_ca || cfg->nats_cert || cfg->nats_nkey)) {
        fprintf(stderr, "flowcast: --nats-ca, --nats-cert, --nats-key and --nats-nkey need "
                        "--nats\n");
        return 2;
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        fprintf(stderr, "flowcast: --tls-cert and --tls-key go together: give both or neither\n");
        return 2;
    }
    /* The node id travels unescaped at the head of every bus message. */
    if (cfg->node_id && (strlen(cfg->node_id) > 128 ||
                         strspn(cfg->node_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                              "0123456789._:-") != strlen(cfg->node_id))) {
        fprintf(stderr, "flowcast: --node-id: 1 to 128 of [A-Za-z0-9._:-]\n");
        return 2;
    }
    return 0;
}

int fc_config_parse(fc_config *cfg, int argc, char **argv)
{
    char why[128];
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < fc__config_n_options; i++) {
        const fc__config_opt *o = &fc__config_options[i];
        /* A default that fails its own range is a bug in the table, not a user error. */
        if (o->def != NULL && fc__config_set(cfg, o, o->def, why, sizeof why) != 0) abort();
    }
    int rc = fc__config_env(cfg);
    if (rc == 0) rc = fc__config_flags(cfg, argc, argv);
    if (rc == 0) rc = check_combinations(cfg);
    return rc;
}
