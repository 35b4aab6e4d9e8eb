/* SQLite store: the integrity check at open. A file with an intact header
 * but corrupt pages opens fine and fails only when a read reaches the bad
 * pages, so a server would answer /healthz while every data request fails;
 * PRAGMA quick_check at open refuses it. The check reads every page, which
 * takes seconds on a large file with a cold page cache, so a watchdog
 * thread interrupts it at a deadline (sqlite3_interrupt: the b-tree walk of
 * SQLite 3.40 looks at the interrupt flag on every page, but calls the
 * progress handler only between VM instructions, so that cannot bound it). */
#include "store/sqlite/sqlite_internal.h"

#include "common/error.h"
#include "common/log.h"
#include "common/time.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct watchdog {
    sqlite3 *db;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    struct timespec deadline;
    int done; /* the check finished: the watchdog must not interrupt */
} watchdog;

static void *watchdog_main(void *arg)
{
    watchdog *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &w->deadline) != ETIMEDOUT) continue;
        if (w->done) break;
        /* Thread-safe; the check gets SQLITE_INTERRUPT. An interrupt before
         * the check's statement starts is lost (it affects only running
         * statements), so it repeats every 10 ms until the check ends. */
        sqlite3_interrupt(w->db);
        w->deadline.tv_nsec += 10 * 1000 * 1000;
        if (w->deadline.tv_nsec >= 1000000000) {
            w->deadline.tv_sec++;
            w->deadline.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Sets up w to interrupt db after seconds. 0 or -1 (then no watchdog). */
static int watchdog_init(watchdog *w, sqlite3 *db, double seconds)
{
    pthread_condattr_t attr;
    memset(w, 0, sizeof *w);
    w->db = db;
    clock_gettime(CLOCK_MONOTONIC, &w->deadline);
    long long ns = w->deadline.tv_nsec + (long long)(seconds * 1e9);
    w->deadline.tv_sec += (time_t)(ns / 1000000000);
    w->deadline.tv_nsec = (long)(ns % 1000000000);
    if (pthread_condattr_init(&attr) != 0) return -1;
    int ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
             pthread_cond_init(&w->cond, &attr) == 0;
    pthread_condattr_destroy(&attr);
    if (!ok) return -1;
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        pthread_cond_destroy(&w->cond);
        return -1;
    }
    return 0;
}

static void watchdog_finish(watchdog *w, pthread_t t)
{
    pthread_mutex_lock(&w->lock);
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(t, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

int fc__sqlite_check(sqlite3 *db, double seconds, char *err, size_t errlen)
{
    if (seconds <= 0) return 0;
    watchdog w;
    pthread_t t;
    if (watchdog_init(&w, db, seconds) != 0) {
        snprintf(err, errlen, "cannot set up the integrity check");
        return FC_EIO;
    }
    if (fc__sqlite_thread_start(&t, "fc-check", watchdog_main, &w) != 0) {
        pthread_cond_destroy(&w.cond);
        pthread_mutex_destroy(&w.lock);
        snprintf(err, errlen, "cannot start the integrity check");
        return FC_EIO;
    }
    uint64_t start = fc_time_mono_ns();
    sqlite3_stmt *st = NULL;
    /* quick_check reads every page but skips integrity_check's costly
     * index-content checks: linear in the file size. One row "ok", or one
     * row per problem (at most 1 asked for). */
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    const char *row = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    int ret = 0;
    double took = (double)(fc_time_mono_ns() - start) / 1e9;
    if (rc == SQLITE_INTERRUPT) {
        FC_WARN(FC__SQLITE_TAG,
                "integrity check did not finish within %.1f s (--startup-check); the rest of "
                "the file is not checked",
                seconds);
    } else if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "the database is corrupt or unreadable (integrity check: %s)",
                 sqlite3_errmsg(db));
        ret = FC_EIO;
    } else if (!row || strcmp(row, "ok") != 0) {
        snprintf(err, errlen, "the database is corrupt (integrity check: %.120s)",
                 row ? row : "no result");
        ret = FC_EIO;
    } else {
        FC_INFO(FC__SQLITE_TAG, "integrity check ok (%.3f s)", took);
    }
    sqlite3_finalize(st);
    watchdog_finish(&w, t);
    /* An interrupt that fired after the check ended would hit the next
     * statement: sqlite3_interrupt affects only statements running when it is
     * called, and none runs now, so nothing is left of it. */
    return ret;
}
