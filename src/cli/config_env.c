/* The environment layer: every FLOWCAST_* variable that is set, applied over the defaults
 * (flags come after and win). A list option's variable is comma-separated. */
#include "cli/config_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FLOWCAST_ALLOW_ORIGIN and FLOWCAST_ALLOW_HOST are split in place, and environ must not be
 * modified, so the items point into these copies (one per list option, see list_slot). They are
 * overwritten by the next fc_config_parse call. */
static char env_lists[FC__CONFIG_N_LISTS][4096];

/* Splits a comma-separated environment value into the option's env_lists buffer, trimming
 * blanks and skipping empty items so "a, b," means two items. */
static int set_list(fc_config *cfg, const fc__config_opt *o, const char *val, char *why,
                    size_t whylen)
{
    char *buf = env_lists[o->list_slot];
    if (strlen(val) >= sizeof env_lists[0]) {
        snprintf(why, whylen, "is longer than %zu bytes", sizeof env_lists[0] - 1);
        return -1;
    }
    strcpy(buf, val);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (*tok == '\0') continue;
        if (!fc__config_list_add(cfg, o, tok)) {
            snprintf(why, whylen, "has more than %d %s", o->list_max, o->noun);
            return -1;
        }
    }
    return 0;
}

int fc__config_env(fc_config *cfg)
{
    char why[128];
    for (size_t i = 0; i < fc__config_n_options; i++) {
        const fc__config_opt *o = &fc__config_options[i];
        const char *val = getenv(o->env);
        /* An empty variable counts as unset, so `FLOWCAST_X= flowcast` is harmless; but an
         * empty token would silently turn authentication off, so that one is an error. */
        if (val == NULL || (val[0] == '\0' && !o->empty_env_error)) continue;
        int rc = o->type == FC__CONFIG_LIST ? set_list(cfg, o, val, why, sizeof why)
                                            : fc__config_set(cfg, o, val, why, sizeof why);
        if (rc != 0) {
            fc__config_report("", o->env, val, why);
            return 2;
        }
    }
    return 0;
}
