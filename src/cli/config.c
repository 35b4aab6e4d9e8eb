/* Server configuration: fc_config_parse fills fc_config from the defaults of the options table
 * (config_table.c), then the environment (config_env.c), then the flags (config_flags.c), and
 * last checks the combinations no single option can. */
#include "cli/config_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The options that only make sense together: 0, or 2 after printing the error. */
static int check_combinations(const fc_config *cfg)
{
    if ((cfg->nats_cert == NULL) != (cfg->nats_key == NULL)) {
        fprintf(stderr, "flowcast: --nats-cert and --nats-key go together: give both or neither\n");
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
