/* Shared between the files of the bus module; not for its users. */
#ifndef FC_BUS_INTERNAL_H
#define FC_BUS_INTERNAL_H

#include <stddef.h>

/* A user nkey's public key: 'U' and 55 more base32 characters. */
#define FC__BUS_NKEY_LEN 56

/* Writes the public key of the user nkey seed in seed_file (its first
 * "SU..." word) into pub: 0, or -1 with the reason in err (the seed is
 * never in it; the buffers that held it are wiped). */
int fc__bus_nkey_public(const char *seed_file, char pub[FC__BUS_NKEY_LEN + 1], char *err,
                        size_t errlen);

#endif
