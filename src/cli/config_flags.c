/* The command-line layer: --flag VALUE and --flag=VALUE after the subcommand, applied over the
 * environment; a list flag replaces the environment's list. --nats credentials are starred out
 * of argv once read, so ps does not show them. */
#include "cli/config_internal.h"

#include <stdio.h>
#include <string.h>

/* The --nats value, kept here while its credentials in argv are starred
 * out: ps reads argv from the process's memory. */
static char userinfo_copy[4096];

/* Overwrites each URL's user:password@ or token@ in s with '*'. */
static void star_userinfo(char *s)
{
    for (char *item = s; *item;) {
        size_t n = strcspn(item, ",");
        char *host = item;
        for (char *q = item; q + 3 <= item + n; q++)
            if (memcmp(q, "://", 3) == 0) {
                host = q + 3;
                break;
            }
        char *at = NULL; /* the last '@', as nats.c reads a URL */
        for (char *q = host; q < item + n; q++)
            if (*q == '@') at = q;
        if (at) memset(host, '*', (size_t)(at - host));
        item += n;
        item += strspn(item, ",");
    }
}

static const fc__config_opt *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < fc__config_n_options; i++)
        if (strlen(fc__config_options[i].name) == len &&
            memcmp(fc__config_options[i].name, name, len) == 0)
            return &fc__config_options[i];
    return NULL;
}

int fc__config_flags(fc_config *cfg, int argc, char **argv)
{
    char why[128];
    bool list_from_flags[FC__CONFIG_N_LISTS] = {false}; /* by list_slot */
    /* Like getopt, argv[0] is the program (or subcommand) name and is skipped. */
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fc_config_usage(stdout);
            return 1;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            fprintf(stderr, "flowcast: unexpected argument \"%s\" (see flowcast --help)\n", arg);
            return 2;
        }
        const char *name = arg[1] == '-' ? arg + 2 : arg + 1;
        const char *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const fc__config_opt *o = arg[1] == '-' ? find_option(name, nlen) : NULL;
        if (o == NULL) {
            fprintf(stderr, "flowcast: unknown option \"%.*s\" (see flowcast --help)\n",
                    (int)(name - arg + (ptrdiff_t)nlen), arg);
            return 2;
        }

        const char *val;
        char *in_argv = NULL; /* val, when it is argv's own memory */
        if (eq != NULL) {
            val = in_argv = argv[i] + (eq + 1 - arg);
        } else if (o->type == FC__CONFIG_BOOL) {
            val = "true";
        } else if (i + 1 < argc) {
            val = in_argv = argv[++i];
        } else {
            fprintf(stderr, "flowcast: --%s: missing value (see flowcast --help)\n", o->name);
            return 2;
        }

        /* Flags replace the environment's list rather than extending it. */
        if (o->type == FC__CONFIG_LIST && !list_from_flags[o->list_slot]) {
            *fc__config_list_count(cfg, o) = 0;
            list_from_flags[o->list_slot] = true;
        }
        if (o->userinfo) {
            if (strlen(val) >= sizeof userinfo_copy) {
                fprintf(stderr, "flowcast: --%s: longer than %zu bytes\n", o->name,
                        sizeof userinfo_copy - 1);
                return 2;
            }
            snprintf(userinfo_copy, sizeof userinfo_copy, "%s", val);
            star_userinfo(in_argv);
            val = userinfo_copy;
        }
        if (fc__config_set(cfg, o, val, why, sizeof why) != 0) {
            fc__config_report("--", o->name, val, why);
            return 2;
        }
    }
    return 0;
}
