/* CHECK() for the fuzz drivers: unlike assert(), active in every build type,
 * and it aborts so libFuzzer saves the input. */
#ifndef FC_FUZZ_CHECK_H
#define FC_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
