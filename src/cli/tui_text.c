/* Display widths of UTF-8 text for the terminal watcher: cut by columns, never mid-character. */
#include "cli/tui.h"

#include <langinfo.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

static int utf8_mode;

int fc_tui_text_init(void)
{
    setlocale(LC_CTYPE, "");
    const char *name = setlocale(LC_CTYPE, NULL);
    if (strcmp(nl_langinfo(CODESET), "UTF-8") != 0 && name &&
        (strcmp(name, "C") == 0 || strcmp(name, "POSIX") == 0))
        setlocale(LC_CTYPE, "C.UTF-8");
    utf8_mode = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
    return utf8_mode;
}

int fc_tui_utf8(void)
{
    return utf8_mode;
}

/* The next character of s: its length in bytes (>= 1) and its columns in
 * *width; *shown is the text to draw for it (s itself or "?"). */
static size_t next_char(const char *s, int *width, const char **shown)
{
    unsigned char c = (unsigned char)*s;
    *shown = s;
    if (c >= 0x20 && c < 0x7f) {
        *width = 1;
        return 1;
    }
    *shown = "?";
    *width = 1;
    if (c < 0x80 || !utf8_mode) {
        if (c < 0x80 || utf8_mode) return 1;
        /* '?' mode: one '?' per character, not per byte. */
        size_t n = 1;
        while (((unsigned char)s[n] & 0xC0) == 0x80 && n < 4)
            n++;
        return n;
    }
    mbstate_t st;
    memset(&st, 0, sizeof st);
    wchar_t wc;
    size_t n = mbrtowc(&wc, s, MB_CUR_MAX, &st);
    if (n == (size_t)-1 || n == (size_t)-2 || n == 0) return 1; /* invalid: one '?' per byte */
    int w = wcwidth(wc);
    if (w < 0) return n; /* C1 controls, unassigned: '?' */
    *shown = s;
    *width = w;
    return n;
}

int fc_tui_width(const char *s)
{
    int total = 0, w;
    const char *shown;
    while (*s) {
        s += next_char(s, &w, &shown);
        total += w;
    }
    return total;
}

int fc_tui_fit(char *out, size_t cap, const char *s, int width, int flags)
{
    size_t len = strlen(out);
    if (width < 0) width = 0;
    int ellipsis = (flags & FC_TUI_ELLIPSIS) && fc_tui_width(s) > width;
    int limit = ellipsis ? width - 1 : width, used = 0, w;
    const char *shown;
    while (*s) {
        size_t n = next_char(s, &w, &shown), bytes = shown == s ? n : 1;
        if (used + w > limit || len + bytes >= cap) break;
        memcpy(out + len, shown, bytes);
        len += bytes;
        used += w;
        s += n;
    }
    if (ellipsis && limit >= 0) {
        const char *mark = utf8_mode ? "\xE2\x80\xA6" : "~";
        size_t ml = strlen(mark);
        if (len + ml < cap) {
            memcpy(out + len, mark, ml);
            len += ml;
            used++;
        }
    }
    while ((flags & FC_TUI_PAD) && used < width && len + 1 < cap) {
        out[len++] = ' ';
        used++;
    }
    out[len] = '\0';
    return used;
}

void fc_tui_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (cap == 0) return;
    if (n >= cap) {
        /* Back to the start of the character cut (at most 3 continuation
         * bytes; a longer run is invalid and shows as '?' anyway). */
        size_t room = cap - 1;
        n = room;
        while (n > 0 && room - n < 3 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}
