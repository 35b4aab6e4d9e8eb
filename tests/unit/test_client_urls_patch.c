/* Unit tests for libflowcast's server lists (src/client/common.c: "URL,URL,...")
 * and for the explicit presence of fcc_patch fields (src/client/rest.c): a
 * zeroed patch is refused before anything is sent, so it can never reset a
 * workflow's progress. The client points at a port nothing listens on: a
 * request that went out would fail with FCC_ECONNECT, not FCC_EINVAL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "client/internal.h"

static void url_lists(void **state)
{
    (void)state;
    fcc__urls u;
    assert_int_equal(fcc__urls_parse("http://a:1", &u), 0);
    assert_int_equal(u.n, 1);
    assert_string_equal(u.text[0], "http://a:1");
    assert_false(u.any_tls);
    fcc__urls_free(&u);

    assert_int_equal(fcc__urls_parse("http://a:1, https://[::1]:2/ ,http://c", &u), 0);
    assert_int_equal(u.n, 3);
    assert_string_equal(u.text[1], "https://[::1]:2/");
    assert_string_equal(u.url[1].hostport, "[::1]:2");
    assert_string_equal(u.url[2].port, "80");
    assert_true(u.any_tls);
    fcc__urls_free(&u);

    const char *bad[] = {"", ",", "http://a,", ",http://a", "http://a,,http://b",
                         "http://a,ftp://b", "http://a http://b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(fcc__urls_parse(bad[i], &u), FCC_EINVAL);
        assert_int_equal(u.n, 0);
        assert_null(u.url);
    }
    char many[FCC__URLS_MAX * 20 + 40] = "";
    for (int i = 0; i <= FCC__URLS_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%shttp://h%d", i ? "," : "", i);
    assert_int_equal(fcc__urls_parse(many, &u), FCC_EINVAL); /* one too many */
    *strrchr(many, ',') = '\0';
    assert_int_equal(fcc__urls_parse(many, &u), 0);
    assert_int_equal(u.n, FCC__URLS_MAX);
    fcc__urls_free(&u);
}

static void client_takes_a_list(void **state)
{
    (void)state;
    int err = 0;
    fcc_client *c = fcc_client_new("http://127.0.0.1:1,http://127.0.0.1:2", NULL, &err);
    assert_non_null(c);
    assert_string_equal(fcc_client_url(c), "http://127.0.0.1:1,http://127.0.0.1:2");
    assert_string_equal(fcc_client_server(c), "http://127.0.0.1:1");
    fcc_client_free(c);
    assert_null(fcc_client_new("http://127.0.0.1:1,nope", NULL, &err));
    assert_int_equal(err, FCC_EINVAL);
}

/* The update must be refused with FCC_EINVAL (never sent: that would be
 * FCC_ECONNECT here) and its reason kept for fcc_client_last_error. */
static void refused(fcc_client *c, const fcc_patch *p, const char *why)
{
    fcc_workflow w;
    fcc_error e;
    assert_int_equal(fcc_workflow_update(c, "wf", p, &w, &e), FCC_EINVAL);
    assert_non_null(strstr(e.message, why));
    int code = 0;
    /* Also without an fcc_error: the detail is kept on the client. */
    assert_int_equal(fcc_workflow_update(c, "wf", p, &w, NULL), FCC_EINVAL);
    const fcc_error *last = fcc_client_last_error(c, &code);
    assert_int_equal(code, FCC_EINVAL);
    assert_non_null(strstr(last->message, why));
}

static void zeroed_patch_is_refused(void **state)
{
    (void)state;
    int err;
    fcc_client *c = fcc_client_new("http://127.0.0.1:1", NULL, &err);
    assert_non_null(c);
    fcc_client_set_retries(c, 0, 0);
    int code = -99;
    assert_int_equal(fcc_client_last_error(c, &code)->message[0], '\0');
    assert_int_equal(code, 0);

    fcc_patch zero;
    memset(&zero, 0, sizeof zero);
    refused(c, &zero, "FCC_PATCH_INIT");
    /* The old way to say "unchanged" (negative) without the marker. */
    fcc_patch old = {.current_step = 3, .total_steps = -1};
    refused(c, &old, "FCC_PATCH_INIT");

    fcc_patch nothing = FCC_PATCH_INIT;
    refused(c, &nothing, "changes nothing");
    fcc_patch minus = FCC_PATCH_INIT;
    minus.total_steps = -1;
    minus.message = "m";
    refused(c, &minus, "FCC_UNSET or >= 0");

    /* A well-made patch does go out: here it cannot connect. */
    fcc_patch ok = FCC_PATCH_INIT;
    ok.current_step = 0; /* an explicit 0 is a change like any other */
    fcc_workflow w;
    assert_int_equal(fcc_workflow_update(c, "wf", &ok, &w, NULL), FCC_ECONNECT);
    const fcc_error *last = fcc_client_last_error(c, &code);
    assert_int_equal(code, FCC_ECONNECT);
    assert_non_null(strstr(last->message, "127.0.0.1:1"));
    fcc_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_lists),
        cmocka_unit_test(client_takes_a_list),
        cmocka_unit_test(zeroed_patch_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
