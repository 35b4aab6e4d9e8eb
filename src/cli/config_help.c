/* The options table as text: `flowcast serve --help`, and one row at a time for the man page
 * (config_man.c), each option with its range sentence. */
#include "cli/config_internal.h"

#include <stdio.h>

/* The range sentence --help and the man page add after an option's help, or "". */
static void range_text(const fc__config_opt *o, char *buf, size_t len)
{
    buf[0] = '\0';
    switch (o->type) {
    case FC__CONFIG_INT:
    case FC__CONFIG_BYTES_U64:
    case FC__CONFIG_BYTES_SIZE:
        snprintf(buf, len, " Range %.0f..%.0f.", o->min, o->max);
        break;
    case FC__CONFIG_SECONDS:
    case FC__CONFIG_RATE:
        snprintf(buf, len, " Range %g..%g.", o->min, o->max);
        break;
    case FC__CONFIG_LIST:
        snprintf(buf, len, " At most %d.", o->list_max);
        break;
    case FC__CONFIG_STRING:
    case FC__CONFIG_BOOL:
    case FC__CONFIG_LISTEN:
    case FC__CONFIG_SYNC:
    case FC__CONFIG_LOG_LEVEL:
    case FC__CONFIG_LOG_FORMAT:
        break;
    }
}

int fc_config_option_at(size_t i, fc_config_option *out)
{
    if (i >= fc__config_n_options) return -1;
    const fc__config_opt *o = &fc__config_options[i];
    *out = (fc_config_option){
        .name = o->name, .env = o->env, .metavar = o->metavar, .def = o->def, .help = o->help};
    range_text(o, out->range, sizeof out->range);
    return 0;
}

void fc_config_usage(FILE *out)
{
    fprintf(out, "Usage: flowcast serve [options]\n\n"
                 "Every option can also be set with its environment variable.\n"
                 "Precedence: defaults < environment < flags. Use --flag VALUE or "
                 "--flag=VALUE.\n\n");
    fprintf(out, "  %-30s %-26s %s\n", "OPTION", "ENVIRONMENT", "DEFAULT");
    for (size_t i = 0; i < fc__config_n_options; i++) {
        const fc__config_opt *o = &fc__config_options[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        fprintf(out, "  %-30s %-26s %s\n", flag, o->env, o->def ? o->def : "(none)");
        char range[64];
        range_text(o, range, sizeof range);
        fprintf(out, "      %s%s\n", o->help, range);
    }
    fprintf(out, "  -h, --help\n      Print this help and exit.\n");
}
