/* libFuzzer driver for the watcher's text measure (src/cli/tui_text.c): any
 * bytes a server may send as a name or message come out as valid UTF-8 with
 * no control character, within the width and the buffer asked for, and the
 * columns returned are the columns the text takes. */
#include <locale.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/cli/tui_text.c"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Valid UTF-8 holding no C0, DEL or C1 control and no unprintable character. */
static int clean(const char *s)
{
    mbstate_t st;
    memset(&st, 0, sizeof st);
    while (*s) {
        wchar_t wc;
        size_t n = mbrtowc(&wc, s, MB_CUR_MAX, &st);
        if (n == (size_t)-1 || n == (size_t)-2 || n == 0) return 0;
        if (wcwidth(wc) < 0) return 0;
        s += n;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setenv("LC_ALL", "C.UTF-8", 1);
        CHECK(fc_tui_text_init() == 1);
        ready = 1;
    }
    if (size < 3) return 0;
    int width = data[0] % 120, flags = data[1] & 3;
    size_t cap = 1 + data[2] % 512;
    utf8_mode = !(data[1] & 4); /* bit 2: the '?' mode of a non-UTF-8 locale */
    char *s = malloc(size - 3 + 1), *out = malloc(cap);
    CHECK(s && out);
    memcpy(s, data + 3, size - 3);
    s[size - 3] = '\0';

    out[0] = '\0';
    int used = fc_tui_fit(out, cap, s, width, flags);
    CHECK(strlen(out) < cap);
    CHECK(used >= 0 && used <= width);
    CHECK(used == fc_tui_width(out));
    utf8_mode = 1; /* check the output as the UTF-8 terminal reads it */
    CHECK(clean(out));
    /* Out holds at most the input's bytes, the ellipsis and the padding. */
    if ((flags & FC_TUI_PAD) && cap > size + (size_t)width + 4) CHECK(used == width);

    fc_tui_copy(out, cap, s);
    CHECK(strlen(out) < cap && strncmp(out, s, strlen(out)) == 0);
    /* Cut short of the room by at most 3 bytes, before a character unless
     * the bytes there are a run of continuation bytes (invalid UTF-8). */
    size_t n = strlen(out), len = strlen(s);
    if (n < len) {
        CHECK(n + 3 >= cap - 1);
        int run = n + 3 == cap - 1; /* it gave up after 3 continuation bytes */
        for (size_t i = n + 1; i <= cap - 1 && run; i++)
            run = ((unsigned char)s[i] & 0xC0) == 0x80;
        CHECK(((unsigned char)s[n] & 0xC0) != 0x80 || n == 0 || run);
    }
    free(s);
    free(out);
    return 0;
}
