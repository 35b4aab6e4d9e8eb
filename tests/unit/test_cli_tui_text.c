/* Unit tests for the watcher's text measure (src/cli/tui_text.c): columns by
 * display width, cuts only between characters, control characters defused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/cli/tui_text.c"

static char out[256];

static const char *fit(const char *s, int width, int flags, int *used)
{
    out[0] = '\0';
    *used = fc_tui_fit(out, sizeof out, s, width, flags);
    return out;
}

static void unset_locale_is_measured_as_utf8(void **state)
{
    (void)state;
    /* The test runs under whatever LANG ctest has; "C" is the case to cover. */
    setenv("LC_ALL", "C", 1);
    assert_int_equal(fc_tui_text_init(), 1);
    assert_int_equal(fc_tui_utf8(), 1);
}

static void widths_of_wide_combining_and_emoji(void **state)
{
    (void)state;
    assert_int_equal(fc_tui_width("abc"), 3);
    /* デプロイ */
    assert_int_equal(fc_tui_width("\xE3\x83\x87\xE3\x83\x97\xE3\x83\xAD\xE3\x82\xA4"), 8);
    assert_int_equal(fc_tui_width("Cafe\xCC\x81"), 4);        /* e + combining acute */
    assert_int_equal(fc_tui_width("\xF0\x9F\x9A\x80 go"), 5); /* rocket is 2 wide */
    assert_int_equal(fc_tui_width("caf\xC3\xA9"), 4);         /* precomposed é */
}

static void wide_characters_are_never_cut_in_half(void **state)
{
    (void)state;
    int used;
    /* 5 columns of デプロイ (8): two characters, the third would need columns 5-6. */
    assert_string_equal(fit("\xE3\x83\x87\xE3\x83\x97\xE3\x83\xAD\xE3\x82\xA4", 5, 0, &used),
                        "\xE3\x83\x87\xE3\x83\x97");
    assert_int_equal(used, 4);
    /* Padded, the lost column is a space: the column after it stays aligned. */
    fit("\xE3\x83\x87\xE3\x83\x97\xE3\x83\xAD\xE3\x82\xA4", 5, FC_TUI_PAD, &used);
    assert_string_equal(out, "\xE3\x83\x87\xE3\x83\x97 ");
    assert_int_equal(used, 5);
    /* With the ellipsis: 4 columns for text, "…" in the fifth. */
    fit("\xE3\x83\x87\xE3\x83\x97\xE3\x83\xAD\xE3\x82\xA4", 5, FC_TUI_ELLIPSIS, &used);
    assert_string_equal(out, "\xE3\x83\x87\xE3\x83\x97\xE2\x80\xA6");
    assert_int_equal(used, 5);
    fit("\xF0\x9F\x9A\x80\xF0\x9F\x9A\x80", 3, 0, &used);
    assert_string_equal(out, "\xF0\x9F\x9A\x80");
    assert_int_equal(used, 2);
}

static void combining_marks_stay_with_their_base(void **state)
{
    (void)state;
    int used;
    fit("Cafe\xCC\x81s", 4, 0, &used);
    assert_string_equal(out, "Cafe\xCC\x81");
    assert_int_equal(used, 4);
    fit("ab", 2, FC_TUI_ELLIPSIS, &used); /* fits: no ellipsis */
    assert_string_equal(out, "ab");
    fit("abc", 2, FC_TUI_ELLIPSIS, &used);
    assert_string_equal(out, "a\xE2\x80\xA6");
}

static void control_characters_cannot_reach_the_terminal(void **state)
{
    (void)state;
    int used;
    fit("a\x1b[2Jb\nc\td\x7f", 20, 0, &used);
    assert_string_equal(out, "a?[2Jb?c?d?");
    assert_int_equal(used, 11);
    /* C1 controls (U+009B is a CSI on some terminals) and invalid UTF-8. */
    fit("x\xC2\x9By\xFFz\xE3\x83", 20, 0, &used);
    assert_null(strchr(out, 0x1b));
    assert_string_equal(out, "x?y?z??");
}

static void a_full_buffer_stops_at_a_character_boundary(void **state)
{
    (void)state;
    char small[8] = "ab"; /* room for 5 more bytes and the NUL */
    int used = fc_tui_fit(small, sizeof small, "\xE3\x83\x87\xE3\x83\x97", 10, 0);
    assert_string_equal(small, "ab\xE3\x83\x87");
    assert_int_equal(used, 2);
    char copy[6];
    /* 5 bytes of room: "ab" and the 3-byte character, not the next one. */
    fc_tui_copy(copy, sizeof copy, "ab\xE3\x83\x87\xE3\x83\x97");
    assert_string_equal(copy, "ab\xE3\x83\x87");
    fc_tui_copy(copy, 4, "ab\xE3\x83\x87");
    assert_string_equal(copy, "ab");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unset_locale_is_measured_as_utf8),
        cmocka_unit_test(widths_of_wide_combining_and_emoji),
        cmocka_unit_test(wide_characters_are_never_cut_in_half),
        cmocka_unit_test(combining_marks_stay_with_their_base),
        cmocka_unit_test(control_characters_cannot_reach_the_terminal),
        cmocka_unit_test(a_full_buffer_stops_at_a_character_boundary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
