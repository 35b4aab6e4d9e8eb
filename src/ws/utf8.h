/* Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF) for text messages that arrive in fragments. */
#ifndef FC_WS_UTF8_H
#define FC_WS_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define FC_UTF8_ACCEPT 0u
#define FC_UTF8_REJECT 1u

/* Feeds len bytes into the validator. state starts at FC_UTF8_ACCEPT.
 * Returns the new state: FC_UTF8_REJECT as soon as the bytes cannot be
 * UTF-8 (fail fast, even mid-message); FC_UTF8_ACCEPT when they end on a
 * character boundary; any other value means "valid so far, mid-character". */
uint32_t fc_utf8_validate(uint32_t state, const uint8_t *data, size_t len);

#endif
