/* What the configuration's files share: the row type of the options table, the table itself
 * (config_table.c), one value's parser (config_value.c) and the two layers that feed it, the
 * environment (config_env.c) and the command line (config_flags.c). */
#ifndef FC_CLI_CONFIG_INTERNAL_H
#define FC_CLI_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "cli/config.h"

typedef enum {
    FC__CONFIG_INT,        /* int field, integer in [min, max] */
    FC__CONFIG_BYTES_U64,  /* uint64_t field, integer with optional K/M (KiB/MiB) suffix */
    FC__CONFIG_BYTES_SIZE, /* size_t field, same syntax as FC__CONFIG_BYTES_U64 */
    FC__CONFIG_SECONDS,    /* double field, plain decimal seconds in [min, max] */
    FC__CONFIG_RATE,       /* double field, plain decimal per second, optionally written "R/s" */
    FC__CONFIG_STRING,     /* const char * field, non-empty, points into argv/environ */
    FC__CONFIG_LIST,       /* const char *[] + count: repeatable flag, comma-separated in the env */
    FC__CONFIG_BOOL,       /* int field; the bare flag means true */
    FC__CONFIG_LISTEN,     /* listen_host + listen_port */
    FC__CONFIG_SYNC,       /* sync_full: "normal" = 0, "full" = 1 */
    FC__CONFIG_LOG_LEVEL,  /* log_level, via fc_log_parse_level */
    FC__CONFIG_LOG_FORMAT, /* log_format, via fc_log_parse_format */
} fc__config_type;

/* The list options (FC__CONFIG_LIST): each has a list_slot below this. */
#define FC__CONFIG_N_LISTS 2

typedef struct fc__config_opt {
    const char *name; /* flag without the leading "--" */
    const char *env;  /* "FLOWCAST_" + name upper-cased, '-' -> '_' */
    fc__config_type type;
    size_t offset, size; /* field in fc_config; size lets fc__config_set catch a type mismatch */
    double min, max;     /* inclusive range for numeric types; every bound is exact in a double */
    const char *def;     /* default, parsed like any other value, so it obeys the same range */
    const char *metavar; /* shown in --help; NULL for FC__CONFIG_BOOL */
    const char *help;
    const char *over_max; /* BYTES_*: why a value above max cannot work (NULL: plain range) */
    bool empty_env_error; /* an empty variable is an error, not "unset" (secrets) */
    bool userinfo;        /* URLs whose user:password@ is hidden from ps once read */
    size_t count_offset;  /* LIST: the int counting the items */
    int list_max;         /* LIST: most items */
    int list_slot;        /* LIST: 0..FC__CONFIG_N_LISTS-1, its buffer for the split variable */
    const char *noun;     /* LIST: what an item is, plural, for errors ("origins") */
} fc__config_opt;

/* The single source of truth: parsing, defaults, --help and the man page are all generated
 * from it (config_table.c). */
extern const fc__config_opt fc__config_options[];
extern const size_t fc__config_n_options;

/* Parses val for o and stores it in cfg; a list option gets one more item. On failure fills
 * why with the end of the sentence that starts with the quoted value, e.g. "is not an integer
 * in 1..100", and returns -1. A string stored points at val, which must outlive cfg. */
int fc__config_set(fc_config *cfg, const fc__config_opt *o, const char *val, char *why,
                   size_t whylen);

/* The item count of list option o in cfg. */
int *fc__config_list_count(fc_config *cfg, const fc__config_opt *o);

/* Appends item to list option o: false when the list is full. */
bool fc__config_list_add(fc_config *cfg, const fc__config_opt *o, const char *item);

/* Prints the one-line error "flowcast: <prefix><label>: "<val>" <why>" to stderr. */
void fc__config_report(const char *prefix, const char *label, const char *val, const char *why);

/* Applies every FLOWCAST_* variable that is set: 0, or 2 after printing the error. */
int fc__config_env(fc_config *cfg);

/* Applies the flags of argv (argv[0], the subcommand, skipped): 0; 1 after printing --help;
 * 2 after printing the error. Credentials in a --nats value are starred out in argv. */
int fc__config_flags(fc_config *cfg, int argc, char **argv);

#endif
