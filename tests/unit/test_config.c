/* Unit tests for src/cli/config*.c: defaults, environment, flags, precedence, errors, --help. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/config.h"
#include "common/log.h"

static const char *const env_names[] = {
    "FLOWCAST_LISTEN",
    "FLOWCAST_DB",
    "FLOWCAST_API_TOKEN",
    "FLOWCAST_ALLOW_ORIGIN",
    "FLOWCAST_MAX_CONNECTIONS",
    "FLOWCAST_MAX_MESSAGE",
    "FLOWCAST_BACKLOG",
    "FLOWCAST_PING_INTERVAL",
    "FLOWCAST_SSE_HEARTBEAT",
    "FLOWCAST_SYNC",
    "FLOWCAST_ENABLE_ECHO",
    "FLOWCAST_LOG_LEVEL",
    "FLOWCAST_RETENTION",
    "FLOWCAST_MAX_BODY",
    "FLOWCAST_MAX_HEADER",
    "FLOWCAST_SLOW_TIMEOUT",
    "FLOWCAST_ALLOW_HOST",
    "FLOWCAST_STARTUP_CHECK",
    "FLOWCAST_NATS",
    "FLOWCAST_NATS_CA",
    "FLOWCAST_NATS_CERT",
    "FLOWCAST_NATS_KEY",
};
#define N_ENV (sizeof env_names / sizeof env_names[0])

/* Each test starts from a clean environment so the host's FLOWCAST_* cannot leak in. */
static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ENV; i++)
        unsetenv(env_names[i]);
    return 0;
}

/* Runs fc_config_parse on a NULL-terminated flag list, with argv[0] = "serve". */
static int parse_v(fc_config *cfg, const char *first, va_list ap)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"serve";
    for (const char *a = first; a != NULL && argc < 63; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    argv[argc] = NULL;
    return fc_config_parse(cfg, argc, argv);
}

static int parse(fc_config *cfg, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    int rc = parse_v(cfg, first, ap);
    va_end(ap);
    return rc;
}

/* Like parse, but captures what fd (1 or 2) received into out. */
static int parse_capture(int fd, char *out, size_t outlen, fc_config *cfg, const char *first, ...)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stdout);
    fflush(stderr);
    int saved = dup(fd);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), fd) >= 0);

    va_list ap;
    va_start(ap, first);
    int rc = parse_v(cfg, first, ap);
    va_end(ap);

    fflush(stdout);
    fflush(stderr);
    assert_true(dup2(saved, fd) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, outlen - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return rc;
}

static void test_defaults(void **state)
{
    (void)state;
    fc_config c;
    assert_int_equal(parse(&c, NULL), 0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8001);
    assert_string_equal(c.db_path, "./flowcast.db");
    assert_null(c.api_token);
    assert_int_equal(c.n_allow_origins, 0);
    assert_int_equal(c.max_connections, 0);
    assert_int_equal(c.max_message, 65536);
    assert_int_equal(c.backlog, 100);
    assert_true(c.ping_interval == 20.0);
    assert_true(c.sse_heartbeat == 15.0);
    assert_int_equal(c.sync_full, 0);
    assert_int_equal(c.enable_echo, 0);
    assert_int_equal(c.log_level, FC_LOG_INFO);
    assert_int_equal(c.retention, 1000);
    assert_true(c.idem_window == 86400.0);
    assert_int_equal(c.max_body, 65536);
    assert_int_equal(c.max_header, 32768);
    assert_true(c.slow_timeout == 30.0);
    assert_int_equal(c.max_output, 1024 * 1024);
    assert_true(c.request_timeout == 10.0);
    assert_true(c.idle_timeout == 60.0);
    assert_int_equal(c.tcp_keepalive, 60);
}

static void test_env(void **state)
{
    (void)state;
    setenv("FLOWCAST_LISTEN", "[::1]:9000", 1);
    setenv("FLOWCAST_DB", "/tmp/x.db", 1);
    setenv("FLOWCAST_API_TOKEN", "secret", 1);
    setenv("FLOWCAST_ALLOW_ORIGIN", " https://a.example , https://b.example,,", 1);
    setenv("FLOWCAST_MAX_CONNECTIONS", "5000", 1);
    setenv("FLOWCAST_MAX_MESSAGE", "1M", 1);
    setenv("FLOWCAST_BACKLOG", "512", 1);
    setenv("FLOWCAST_PING_INTERVAL", "0.5", 1);
    setenv("FLOWCAST_SSE_HEARTBEAT", "2.5", 1);
    setenv("FLOWCAST_SYNC", "full", 1);
    setenv("FLOWCAST_ENABLE_ECHO", "yes", 1);
    setenv("FLOWCAST_LOG_LEVEL", "debug", 1);
    setenv("FLOWCAST_RETENTION", "7", 1);
    setenv("FLOWCAST_MAX_BODY", "2K", 1);
    setenv("FLOWCAST_MAX_HEADER", "4096", 1);
    setenv("FLOWCAST_SLOW_TIMEOUT", "1.25", 1);
    fc_config c;
    assert_int_equal(parse(&c, NULL), 0);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 9000);
    assert_string_equal(c.db_path, "/tmp/x.db");
    assert_string_equal(c.api_token, "secret");
    assert_int_equal(c.n_allow_origins, 2);
    assert_string_equal(c.allow_origins[0], "https://a.example");
    assert_string_equal(c.allow_origins[1], "https://b.example");
    assert_int_equal(c.max_connections, 5000);
    assert_int_equal(c.max_message, 1024 * 1024);
    assert_int_equal(c.backlog, 512);
    assert_true(c.ping_interval == 0.5);
    assert_true(c.sse_heartbeat == 2.5);
    assert_int_equal(c.sync_full, 1);
    assert_int_equal(c.enable_echo, 1);
    assert_int_equal(c.log_level, FC_LOG_DEBUG);
    assert_int_equal(c.retention, 7);
    assert_int_equal(c.max_body, 2048);
    assert_int_equal(c.max_header, 4096);
    assert_true(c.slow_timeout == 1.25);
}

/* An empty variable means "unset", except for the API token: an empty token
 * used to turn authentication off silently (issue 8); now it is an error,
 * like --api-token "". */
static void test_empty_env_is_unset(void **state)
{
    (void)state;
    setenv("FLOWCAST_BACKLOG", "", 1);
    setenv("FLOWCAST_ALLOW_HOST", "", 1);
    fc_config c;
    assert_int_equal(parse(&c, NULL), 0);
    assert_int_equal(c.backlog, 100);
    assert_int_equal(c.n_allow_hosts, 0);
    assert_null(c.api_token);
}

static void test_flag_overrides_env(void **state)
{
    (void)state;
    setenv("FLOWCAST_BACKLOG", "512", 1);
    setenv("FLOWCAST_ENABLE_ECHO", "1", 1);
    setenv("FLOWCAST_ALLOW_ORIGIN", "https://env.example", 1);
    setenv("FLOWCAST_LISTEN", "0.0.0.0:80", 1);
    fc_config c;
    assert_int_equal(
        parse(&c, "--backlog", "7", "--enable-echo=false", "--allow-origin", "*", NULL), 0);
    assert_int_equal(c.backlog, 7);
    assert_int_equal(c.enable_echo, 0);
    /* Flags replace the environment's origin list. */
    assert_int_equal(c.n_allow_origins, 1);
    assert_string_equal(c.allow_origins[0], "*");
    /* Not overridden by a flag, so the environment value stands. */
    assert_string_equal(c.listen_host, "0.0.0.0");
    assert_int_equal(c.listen_port, 80);
}

static void test_connection_limits(void **state)
{
    (void)state;
    fc_config c;
    assert_int_equal(parse(&c, "--max-output=4K", "--request-timeout", "0.5", "--idle-timeout=2",
                           "--tcp-keepalive=0", NULL),
                     0);
    assert_int_equal(c.max_output, 4096);
    assert_true(c.request_timeout == 0.5);
    assert_true(c.idle_timeout == 2.0);
    assert_int_equal(c.tcp_keepalive, 0);
}

static void test_equals_form_and_flags(void **state)
{
    (void)state;
    fc_config c;
    assert_int_equal(parse(&c, "--listen=localhost:0", "--db=/data/f.db", "--api-token=t=1",
                           "--max-message=4K", "--max-body", "64M", "--max-header=80K",
                           "--ping-interval=.05", "--sse-heartbeat=3600", "--slow-timeout", "86400",
                           "--sync=normal", "--log-level=error", "--retention=10000000",
                           "--max-connections=10000000", "--enable-echo", NULL),
                     0);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 0);
    assert_string_equal(c.db_path, "/data/f.db");
    assert_string_equal(c.api_token, "t=1");
    assert_int_equal(c.max_message, 4096);
    assert_int_equal(c.max_body, 64 * 1024 * 1024);
    assert_int_equal(c.max_header, 80 * 1024);
    assert_true(c.ping_interval == 0.05);
    assert_true(c.sse_heartbeat == 3600.0);
    assert_true(c.slow_timeout == 86400.0);
    assert_int_equal(c.sync_full, 0);
    assert_int_equal(c.log_level, FC_LOG_ERROR);
    assert_int_equal(c.retention, 10000000);
    assert_int_equal(c.max_connections, 10000000);
    assert_int_equal(c.enable_echo, 1);
}

static void test_repeatable_origins(void **state)
{
    (void)state;
    fc_config c;
    assert_int_equal(parse(&c, "--allow-origin", "https://a", "--allow-origin=https://b",
                           "--allow-origin", "https://c", NULL),
                     0);
    assert_int_equal(c.n_allow_origins, 3);
    assert_string_equal(c.allow_origins[0], "https://a");
    assert_string_equal(c.allow_origins[1], "https://b");
    assert_string_equal(c.allow_origins[2], "https://c");

    /* Exactly FC_MAX_ORIGINS fits; one more is an error. */
    char *argv[2 + 2 * (FC_MAX_ORIGINS + 1)];
    int argc = 0;
    argv[argc++] = (char *)"serve";
    for (int i = 0; i < FC_MAX_ORIGINS; i++) {
        argv[argc++] = (char *)"--allow-origin";
        argv[argc++] = (char *)"https://x";
    }
    assert_int_equal(fc_config_parse(&c, argc, argv), 0);
    assert_int_equal(c.n_allow_origins, FC_MAX_ORIGINS);
    argv[argc++] = (char *)"--allow-origin=https://one-too-many";
    fflush(stderr);
    int saved = dup(2);
    FILE *null = fopen("/dev/null", "w");
    assert_non_null(null);
    dup2(fileno(null), 2);
    int rc = fc_config_parse(&c, argc, argv);
    dup2(saved, 2);
    close(saved);
    fclose(null);
    assert_int_equal(rc, 2);
}

/* Asserts that the flags fail with exit code 2 and exactly one stderr line containing want. */
#define ASSERT_ERROR(want, ...)                                                                    \
    do {                                                                                           \
        char err_[1024];                                                                           \
        fc_config c_;                                                                              \
        assert_int_equal(parse_capture(2, err_, sizeof err_, &c_, __VA_ARGS__, NULL), 2);          \
        if (strstr(err_, (want)) == NULL) fail_msg("stderr %s lacks %s", err_, (want));            \
        assert_true(strncmp(err_, "flowcast: ", 10) == 0);                                         \
        assert_ptr_equal(strchr(err_, '\n'), err_ + strlen(err_) - 1);                             \
    } while (0)

/* The credentials in --nats are starred out of argv (what ps shows) once
 * read; the configuration keeps them. */
static void test_nats_credentials_leave_argv(void **state)
{
    (void)state;
    char flag[] = "--nats", urls[] = "nats://node:s3cret@h1:4222,tls://t0ken@h2:4222";
    char eq[] = "--nats=nats://u:pw@h3:4222";
    char *argv[] = {(char *)"serve", flag, urls, NULL};
    fc_config c;
    assert_int_equal(fc_config_parse(&c, 3, argv), 0);
    assert_string_equal(c.nats_urls, "nats://node:s3cret@h1:4222,tls://t0ken@h2:4222");
    assert_string_equal(urls, "nats://***********@h1:4222,tls://*****@h2:4222");
    char *argv2[] = {(char *)"serve", eq, NULL};
    assert_int_equal(fc_config_parse(&c, 2, argv2), 0);
    assert_string_equal(c.nats_urls, "nats://u:pw@h3:4222");
    assert_string_equal(eq, "--nats=nats://****@h3:4222");
    /* Without credentials nothing is written (argv may be read-only). */
    assert_int_equal(parse(&c, "--nats", "nats://h:1", "--nats-ca", "ca.pem", NULL), 0);
    assert_string_equal(c.nats_ca, "ca.pem");
    ASSERT_ERROR("--nats-cert and --nats-key go together", "--nats", "nats://h:1", "--nats-cert",
                 "c.pem");
    ASSERT_ERROR("need --nats", "--nats-ca", "ca.pem");
}

static void test_flag_errors(void **state)
{
    (void)state;
    ASSERT_ERROR("flowcast: --backlog: \"abc\" is not an integer in 1..1000000\n", "--backlog",
                 "abc");
    ASSERT_ERROR("--backlog: \"0\" is not an integer in 1..1000000", "--backlog=0");
    ASSERT_ERROR("--backlog: \"1000001\"", "--backlog=1000001");
    ASSERT_ERROR("--backlog: \" 5\"", "--backlog= 5");
    ASSERT_ERROR("--backlog: \"5x\"", "--backlog=5x");
    ASSERT_ERROR("--backlog: \"99999999999999999999\"", "--backlog=99999999999999999999");
    ASSERT_ERROR("--max-connections: \"-1\" is not an integer in 0..10000000",
                 "--max-connections=-1");
    ASSERT_ERROR("--retention: \"0\"", "--retention=0");
    ASSERT_ERROR("--idempotency-window: \"0.5\" is not a number of seconds in 1..604800",
                 "--idempotency-window=0.5");
    ASSERT_ERROR("--max-message: \"124\" is not a byte count in 125..268435456",
                 "--max-message=124");
    ASSERT_ERROR("--max-message: \"257M\"", "--max-message=257M");
    ASSERT_ERROR("--max-message: \"1G\"", "--max-message=1G");
    ASSERT_ERROR("--max-message: \"-5\"", "--max-message=-5");
    ASSERT_ERROR("--max-message: \"18446744073709551615K\"", "--max-message=18446744073709551615K");
    ASSERT_ERROR("--max-body: \"15\" is not a byte count in 16..67108864", "--max-body=15");
    ASSERT_ERROR("--max-header: \"2M\" is above 81920 (80K)", "--max-header=2M");
    ASSERT_ERROR("--ping-interval: \"0.01\" is not a number of seconds in 0.05..86400",
                 "--ping-interval=0.01");
    ASSERT_ERROR("--ping-interval: \"inf\"", "--ping-interval=inf");
    ASSERT_ERROR("--ping-interval: \"0x10\"", "--ping-interval=0x10");
    ASSERT_ERROR("--ping-interval: \".\"", "--ping-interval=.");
    ASSERT_ERROR("--sse-heartbeat: \"0.5\" is not a number of seconds in 1..3600",
                 "--sse-heartbeat=0.5");
    ASSERT_ERROR("--sse-heartbeat: \"3601\" is not a number of seconds in 1..3600",
                 "--sse-heartbeat", "3601");
    ASSERT_ERROR("--slow-timeout: \"86400.5\" is not a number of seconds in 0.1..86400",
                 "--slow-timeout=86400.5");
    ASSERT_ERROR("--max-output: \"4095\" is not a byte count in 4096..1073741824",
                 "--max-output=4095");
    ASSERT_ERROR("--request-timeout: \"0\"", "--request-timeout=0");
    ASSERT_ERROR("--idle-timeout: \"0.05\"", "--idle-timeout=0.05");
    ASSERT_ERROR("--tcp-keepalive: \"-1\" is not an integer in 0..86400", "--tcp-keepalive=-1");
    ASSERT_ERROR("--listen: \"127.0.0.1\" is not ADDR:PORT", "--listen=127.0.0.1");
    ASSERT_ERROR("--listen: \"127.0.0.1:65536\"", "--listen=127.0.0.1:65536");
    ASSERT_ERROR("--listen: \"127.0.0.1:-1\"", "--listen=127.0.0.1:-1");
    ASSERT_ERROR("--listen: \"127.0.0.1:\"", "--listen=127.0.0.1:");
    ASSERT_ERROR("--listen: \"256.0.0.1:80\"", "--listen=256.0.0.1:80");
    ASSERT_ERROR("--listen: \"example.com:80\"", "--listen=example.com:80");
    ASSERT_ERROR("--listen: \"::1:80\"", "--listen=::1:80");
    ASSERT_ERROR("--listen: \"[::1]80\"", "--listen=[::1]80");
    ASSERT_ERROR("--listen: \"[::g]:80\"", "--listen=[::g]:80");
    ASSERT_ERROR("--listen: \":80\"", "--listen=:80");
    ASSERT_ERROR("--sync: \"fast\" is not one of normal|full", "--sync", "fast");
    ASSERT_ERROR("--log-level: \"loud\" is not one of debug|info|warn|error", "--log-level=loud");
    ASSERT_ERROR("--enable-echo: \"maybe\" is not a boolean", "--enable-echo=maybe");
    ASSERT_ERROR("--db: \"\" is empty", "--db=");
    ASSERT_ERROR("--api-token: \"\" is empty", "--api-token", "");
    ASSERT_ERROR("--allow-origin: \"\" is empty", "--allow-origin=");
    ASSERT_ERROR("flowcast: --backlog: missing value (see flowcast --help)\n", "--backlog");
    ASSERT_ERROR("flowcast: unknown option \"--foo\" (see flowcast --help)\n", "--foo");
    ASSERT_ERROR("unknown option \"--foo\"", "--foo=bar");
    ASSERT_ERROR("unknown option \"-x\"", "-x");
    ASSERT_ERROR("unknown option \"--\"", "--");
    ASSERT_ERROR("unexpected argument \"extra\"", "--backlog=5", "extra");
}

static void test_env_errors(void **state)
{
    (void)state;
    setenv("FLOWCAST_BACKLOG", "abc", 1);
    ASSERT_ERROR("flowcast: FLOWCAST_BACKLOG: \"abc\" is not an integer in 1..1000000\n", "--db",
                 "x");
    clear_env(NULL);
    setenv("FLOWCAST_ENABLE_ECHO", "2", 1);
    ASSERT_ERROR("FLOWCAST_ENABLE_ECHO: \"2\" is not a boolean", "--db", "x");
    clear_env(NULL);
    setenv("FLOWCAST_SSE_HEARTBEAT", "0", 1);
    ASSERT_ERROR("FLOWCAST_SSE_HEARTBEAT: \"0\" is not a number of seconds in 1..3600", "--db",
                 "x");
    clear_env(NULL);

    /* FC_MAX_ORIGINS + 1 comma-separated origins. */
    char list[FC_MAX_ORIGINS * 3 + 8] = "";
    for (int i = 0; i <= FC_MAX_ORIGINS; i++)
        strcat(list, "o,");
    setenv("FLOWCAST_ALLOW_ORIGIN", list, 1);
    ASSERT_ERROR("FLOWCAST_ALLOW_ORIGIN: \"o,o,", "--db", "x");
    ASSERT_ERROR("has more than 32 origins", "--db", "x");

    static char huge[8192];
    memset(huge, 'a', sizeof huge - 1);
    setenv("FLOWCAST_ALLOW_ORIGIN", huge, 1);
    /* The echoed value is cut short so the error stays one readable line. */
    ASSERT_ERROR("aaa...\" is longer than 4095 bytes", "--db", "x");
}

static void test_empty_env_token_is_an_error(void **state)
{
    (void)state;
    setenv("FLOWCAST_API_TOKEN", "", 1);
    ASSERT_ERROR("flowcast: FLOWCAST_API_TOKEN: \"\" is empty\n", "--db", "x");
    /* A flag does not rescue it: the mistake is in the environment. */
    ASSERT_ERROR("FLOWCAST_API_TOKEN", "--api-token", "t");
}

static void test_allow_hosts(void **state)
{
    (void)state;
    fc_config c;
    assert_int_equal(parse(&c, NULL), 0);
    assert_int_equal(c.n_allow_hosts, 0);
    setenv("FLOWCAST_ALLOW_HOST", " a.example ,b.example:8080,, ", 1);
    assert_int_equal(parse(&c, NULL), 0);
    assert_int_equal(c.n_allow_hosts, 2);
    assert_string_equal(c.allow_hosts[0], "a.example");
    assert_string_equal(c.allow_hosts[1], "b.example:8080");
    /* Flags replace the environment's list, and leave the origins alone. */
    assert_int_equal(parse(&c, "--allow-host", "*", "--allow-host=c.example", NULL), 0);
    assert_int_equal(c.n_allow_hosts, 2);
    assert_string_equal(c.allow_hosts[0], "*");
    assert_string_equal(c.allow_hosts[1], "c.example");
    assert_int_equal(c.n_allow_origins, 0);
    ASSERT_ERROR("--allow-host: \"\" is empty", "--allow-host=");
    char list[FC_MAX_HOSTS * 3 + 8] = "";
    for (int i = 0; i <= FC_MAX_HOSTS; i++)
        strcat(list, "h,");
    setenv("FLOWCAST_ALLOW_HOST", list, 1);
    ASSERT_ERROR("has more than 32 hosts", "--db", "x");
}

static void test_max_header_cap(void **state)
{
    (void)state;
    fc_config c;
    assert_int_equal(parse(&c, "--max-header=80K", NULL), 0);
    assert_int_equal(c.max_header, FC_MAX_HEADER_LIMIT);
    assert_int_equal(FC_MAX_HEADER_LIMIT, 80 * 1024); /* libhttp-parser's HTTP_MAX_HEADER_SIZE */
    ASSERT_ERROR("--max-header: \"81921\" is above 81920 (80K), the most libhttp-parser reads",
                 "--max-header=81921");
    ASSERT_ERROR("--max-header: \"1M\" is above 81920", "--max-header", "1M");
    ASSERT_ERROR("--max-header: \"255\" is not a byte count in 256..81920", "--max-header=255");
    assert_int_equal(parse(&c, "--startup-check=0", NULL), 0);
    assert_true(c.startup_check == 0.0);
    assert_int_equal(parse(&c, NULL), 0);
    assert_true(c.startup_check == 5.0);
}

static void test_help(void **state)
{
    (void)state;
    static char out[16384];
    fc_config c;
    assert_int_equal(parse_capture(1, out, sizeof out, &c, "--backlog=5", "--help", NULL), 1);
    assert_non_null(strstr(out, "Usage: flowcast serve"));
    assert_int_equal(parse_capture(1, out, sizeof out, &c, "-h", NULL), 1);
    /* Every option appears with its flag and its derived environment variable. */
    for (size_t i = 0; i < N_ENV; i++) {
        assert_non_null(strstr(out, env_names[i]));
        char flag[64] = "--";
        size_t n = 2;
        for (const char *p = env_names[i] + strlen("FLOWCAST_"); *p && n + 1 < sizeof flag; p++)
            flag[n++] = *p == '_' ? '-' : (char)(*p - 'A' + 'a');
        flag[n] = '\0';
        if (strstr(out, flag) == NULL) fail_msg("usage lacks %s", flag);
    }
    assert_non_null(strstr(out, "127.0.0.1:8001"));
    assert_non_null(strstr(out, "Range 1..1000000."));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_env, clear_env),
        cmocka_unit_test_setup(test_empty_env_is_unset, clear_env),
        cmocka_unit_test_setup(test_empty_env_token_is_an_error, clear_env),
        cmocka_unit_test_setup(test_allow_hosts, clear_env),
        cmocka_unit_test_setup(test_max_header_cap, clear_env),
        cmocka_unit_test_setup(test_flag_overrides_env, clear_env),
        cmocka_unit_test_setup(test_equals_form_and_flags, clear_env),
        cmocka_unit_test_setup(test_connection_limits, clear_env),
        cmocka_unit_test_setup(test_repeatable_origins, clear_env),
        cmocka_unit_test_setup(test_nats_credentials_leave_argv, clear_env),
        cmocka_unit_test_setup(test_flag_errors, clear_env),
        cmocka_unit_test_setup(test_env_errors, clear_env),
        cmocka_unit_test_setup(test_help, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
