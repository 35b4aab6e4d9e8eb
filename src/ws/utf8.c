/* Hand-written incremental UTF-8 validator (RFC 3629) with an ASCII fast path. */
#include "ws/utf8.h"

#include <string.h>

/* States besides ACCEPT (0) and REJECT (1). Each one names what the next byte
 * must be; the restricted ranges after E0/ED/F0/F4 are what rule out
 * overlongs, surrogates and code points above U+10FFFF at the second byte,
 * so a bad prefix is rejected as soon as it is seen. */
enum {
    S_TAIL1 = 2, /* one continuation byte 80-BF left */
    S_TAIL2,     /* two continuation bytes left */
    S_TAIL3,     /* three continuation bytes left */
    S_E0,        /* after E0: A0-BF (else overlong), then one more */
    S_ED,        /* after ED: 80-9F (else surrogate), then one more */
    S_F0,        /* after F0: 90-BF (else overlong), then two more */
    S_F4,        /* after F4: 80-8F (else > U+10FFFF), then two more */
    S_COUNT
};

/* Allowed range for the next byte in each mid-character state and the state
 * that follows it. Indexed by state; ACCEPT/REJECT rows are unused. */
static const struct {
    uint8_t lo, hi, next;
} cont[S_COUNT] = {
    [S_TAIL1] = {0x80, 0xBF, FC_UTF8_ACCEPT}, [S_TAIL2] = {0x80, 0xBF, S_TAIL1},
    [S_TAIL3] = {0x80, 0xBF, S_TAIL2},        [S_E0] = {0xA0, 0xBF, S_TAIL1},
    [S_ED] = {0x80, 0x9F, S_TAIL1},           [S_F0] = {0x90, 0xBF, S_TAIL2},
    [S_F4] = {0x80, 0x8F, S_TAIL2},
};

/* State after a byte seen on a character boundary. */
static uint32_t lead_state(uint8_t b)
{
    if (b < 0x80) return FC_UTF8_ACCEPT;
    if (b < 0xC2) return FC_UTF8_REJECT; /* stray continuation, or C0/C1 overlong */
    if (b < 0xE0) return S_TAIL1;
    if (b == 0xE0) return S_E0;
    if (b == 0xED) return S_ED;
    if (b < 0xF0) return S_TAIL2;
    if (b == 0xF0) return S_F0;
    if (b < 0xF4) return S_TAIL3;
    if (b == 0xF4) return S_F4;
    return FC_UTF8_REJECT; /* F5-FF can only encode beyond U+10FFFF */
}

/* State after byte b in state s (s is neither REJECT nor out of range). */
static uint32_t step(uint32_t s, uint8_t b)
{
    if (s == FC_UTF8_ACCEPT) return lead_state(b);
    if (b < cont[s].lo || b > cont[s].hi) return FC_UTF8_REJECT;
    return cont[s].next;
}

/* Number of leading bytes of p[0..len) that are ASCII, checked 8 at a time;
 * stops at the first 8-byte block containing a high bit. */
static size_t ascii_prefix(const uint8_t *p, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof w); /* unaligned-safe load */
        if (w & UINT64_C(0x8080808080808080)) break;
    }
    return i;
}

uint32_t fc_utf8_validate(uint32_t state, const uint8_t *data, size_t len)
{
    /* An unknown state can only come from a caller bug; treat it as invalid
     * rather than index past the table. */
    if (state >= S_COUNT) return FC_UTF8_REJECT;
    size_t i = 0;
    while (i < len && state != FC_UTF8_REJECT) {
        if (state == FC_UTF8_ACCEPT) {
            i += ascii_prefix(data + i, len - i);
            if (i == len) break;
        }
        state = step(state, data[i++]);
    }
    return state;
}
