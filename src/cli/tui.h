/* The terminal under `flowcast watch`: display widths of UTF-8 text (tui_text.c)
 * and a full-screen view redrawn line by line in place (tui_screen.c). */
#ifndef FC_CLI_TUI_H
#define FC_CLI_TUI_H

#include <stddef.h>
#include <stdint.h>
#include <termios.h>

/* ---- text (tui_text.c) ---- */

/* Chooses how text is measured, once, before any other fc_tui_ call. Widths
 * come from the C library (mbrtowc + wcwidth), which needs a UTF-8 LC_CTYPE:
 * the user's locale when it is UTF-8; when it is unset ("C"/"POSIX", the
 * usual case in containers and under ssh without SendEnv) C.UTF-8, since the
 * server's text is UTF-8 and such terminals are UTF-8 in practice. Under an
 * explicit non-UTF-8 locale, every non-ASCII character shows as one '?'.
 * Returns 1 when the text is shown as UTF-8, 0 in the '?' mode. */
int fc_tui_text_init(void);
/* What fc_tui_text_init returned (0 before it). */
int fc_tui_utf8(void);

/* Flags of fc_tui_fit. */
enum {
    FC_TUI_PAD = 1,      /* fill with spaces up to width */
    FC_TUI_ELLIPSIS = 2, /* when cut, end with one column of "…" (UTF-8) or '~' */
};

/* Appends s to out (cap bytes in all, out already NUL-terminated) as it will
 * show on the terminal in at most width columns: control and unprintable
 * characters and invalid UTF-8 as '?', so the text can never move the cursor
 * or change colours; cut before the first character that does not fit (a
 * wide character never half shown; combining marks stay with their base).
 * Stops early, still at a character boundary, when out is full. Returns the
 * columns appended. */
int fc_tui_fit(char *out, size_t cap, const char *s, int width, int flags);
/* Columns s takes on the terminal, as fc_tui_fit would draw it uncut. */
int fc_tui_width(const char *s);
/* Copies src into dst[cap], cut at a UTF-8 character boundary when too long. */
void fc_tui_copy(char *dst, size_t cap, const char *src);

/* ---- screen (tui_screen.c) ---- */

/* A full-screen view on the terminal's alternate screen. Each draw writes
 * only the lines that differ from what the screen shows, each in place
 * (cursor position, text, erase to end of line), in one write. */
typedef struct fc_tui_screen {
    int fd; /* the terminal (stdout) */
    int rows, cols;
    char **shown; /* rows entries: what each line shows, NULL = unknown (drawn next time) */
    char *out;    /* the bytes of one draw */
    size_t out_len, out_cap;
    int active, clear, suspended;
    int lost; /* bytes of this draw could not be buffered */
    int termios_saved;
    struct termios saved;
    uint64_t bytes; /* written by draws since enter, for tests and the curious */
} fc_tui_screen;

/* Switches fd to the alternate screen, hides the cursor and turns off input
 * echo (restored by fc_tui_screen_leave). 0, or -1 (nothing changed). */
int fc_tui_screen_enter(fc_tui_screen *s, int fd);
/* Reads the terminal's size; on a change forgets what the screen shows so
 * the next draw clears it and draws every line. Returns 1 on a change. */
int fc_tui_screen_resize(fc_tui_screen *s);
/* Shows lines[0..n) on screen lines 1..n (lines past the screen are not
 * drawn; screen lines past n are cleared). Each line must already fit the
 * width (fc_tui_fit) and may carry SGR attributes. 0, or -1 when the write
 * failed (the terminal is gone). */
int fc_tui_screen_draw(fc_tui_screen *s, const char *const *lines, int n);
/* Ctrl-Z: gives the shell its screen, cursor and echo back while the process
 * is stopped; resume (on SIGCONT) takes the alternate screen again and
 * makes the next draw clear it and draw every line. */
void fc_tui_screen_suspend(fc_tui_screen *s);
void fc_tui_screen_resume(fc_tui_screen *s);
/* Back to the normal screen with the cursor and echo as they were, then
 * lines[0..n) printed there, one per line (the view's final state stays
 * visible in the shell). Frees what the screen holds; safe to call twice. */
void fc_tui_screen_leave(fc_tui_screen *s, const char *const *lines, int n);

#endif
