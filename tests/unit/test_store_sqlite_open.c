/* Unit tests for opening the SQLite store (src/store/sqlite/lock.c, the
 * integrity check in schema.c): one process per database file, corrupt files
 * refused at open, a bounded check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/error.h"
#include "store_fixture.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int lock_file_exists(const fixture *f)
{
    char p[sizeof f->path + 8];
    struct stat st;
    snprintf(p, sizeof p, "%s.lock", f->path);
    return stat(p, &st) == 0;
}

/* flock locks belong to an open file description, so a second open in this
 * process conflicts just as another process's would. */
static void test_second_open_refused(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    int code = 0;
    assert_true(lock_file_exists(f));
    fc_store_config cfg = {.path = f->path, .retention = 10};
    assert_null(fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "in use by another flowcast process"));
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    assert_non_null(strstr(err, pid));
    /* The lock offline tools take is the same. */
    assert_null(fc_store_lock_acquire(f->path, &code, err, sizeof err));
    assert_int_equal(code, FC_EBUSY);

    close_store(f);
    assert_false(lock_file_exists(f)); /* released and removed at close */
    fc_store_lock *l = fc_store_lock_acquire(f->path, &code, err, sizeof err);
    assert_non_null(l);
    assert_null(fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err)); /* a tool holds it */
    fc_store_lock_release(l);
    assert_false(lock_file_exists(f));
    fc_store_lock_release(NULL);
    f->s = open_store(f, 10);
}

/* Fills the database with enough rows to span many pages, closes it. */
static void fill(fixture *f, int n)
{
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "w%04d", i);
        fc_change *c = mk_create(id, FC_STATUS_RUNNING, 0, 10);
        free(c->wf.message);
        c->wf.message = malloc(1001);
        memset(c->wf.message, 'm', 1000);
        c->wf.message[1000] = '\0';
        do1(f, c, 0);
    }
    close_store(f);
}

static void test_corrupt_pages_refused(void **state)
{
    fixture *f = *state;
    fill(f, 300);
    int fd = open(f->path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    long pages = (long)st.st_size / 4096;
    assert_true(pages > 20);
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    for (long p = pages / 2; p < pages / 2 + 4; p++)
        assert_int_equal(pwrite(fd, junk, sizeof junk, p * 4096), (ssize_t)sizeof junk);
    close(fd);

    char err[256] = "";
    fc_store_config cfg = {.path = f->path, .retention = 10, .check_seconds = 10};
    assert_null(fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "corrupt"));
    assert_false(lock_file_exists(f)); /* a failed open lets go of the lock */
    /* Without the check the file opens (the damage shows only on reads). */
    cfg.check_seconds = 0;
    f->s = fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err);
    assert_non_null(f->s);
    close_store(f);
    remove_db(f);
    f->s = open_store(f, 10);
}

static void test_sound_file_passes_check(void **state)
{
    fixture *f = *state;
    fill(f, 50);
    char err[256] = "";
    fc_store_config cfg = {.path = f->path, .retention = 10, .check_seconds = 0.001};
    /* However short the time, a sound file opens (a check cut short is only logged). */
    f->s = fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err);
    assert_non_null(f->s);
    close_store(f);
    cfg.check_seconds = 10;
    f->s = fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err);
    assert_non_null(f->s);
}

/* Runs fc_store_sqlite_open with stderr captured into out. */
static fc_store *open_capturing(fixture *f, double check_seconds, char *out, size_t outlen)
{
    char err[256] = "";
    fc_store_config cfg = {.path = f->path, .retention = 10, .check_seconds = check_seconds};
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    fc_store *s = fc_store_sqlite_open(&f->loop, &cfg, err, sizeof err);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, outlen - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    if (!s) fprintf(stderr, "open failed: %s\n", err);
    return s;
}

/* 30 MB cannot be checked within 1 ms: the watchdog interrupts the check,
 * which is logged, and the store opens. */
static void test_check_is_bounded(void **state)
{
    fixture *f = *state;
    close_store(f);
    sqlite3 *db = external(f);
    exec_ok(db, "CREATE TABLE filler (b BLOB);"
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000)"
                " INSERT INTO filler SELECT randomblob(1000) FROM n;");
    sqlite3_close(db);
    static char log[8192];
    f->s = open_capturing(f, 0.001, log, sizeof log);
    assert_non_null(f->s);
    assert_non_null(strstr(log, "integrity check did not finish within"));
    close_store(f);
    f->s = open_capturing(f, 60, log, sizeof log);
    assert_non_null(f->s);
    assert_non_null(strstr(log, "integrity check ok"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_second_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_pages_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sound_file_passes_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_is_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
