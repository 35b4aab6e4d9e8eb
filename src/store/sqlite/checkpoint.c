/* Background WAL checkpoints: a thread with its own connection copies the WAL
 * back into the database every 250 ms (PASSIVE: it never blocks the writer),
 * so commits never stall on a checkpoint's copy and fsync. */
#include "sqlite_internal.h"
#include "common/error.h"
#include "common/log.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define CHECKPOINT_PERIOD_NS 250000000L

static void *checkpoint_main(void *arg)
{
    fc__sqlite_store *s = arg;
    pthread_setname_np(pthread_self(), "fc-checkpoint"); /* shows in top -H and perf */
    pthread_mutex_lock(&s->clock);
    while (!s->cstop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += CHECKPOINT_PERIOD_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->ccond, &s->clock, &ts);
        if (s->cstop) break;
        pthread_mutex_unlock(&s->clock);
        int rc = sqlite3_wal_checkpoint_v2(s->cdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            FC_WARN(FC__SQLITE_TAG, "checkpoint failed: %s", sqlite3_errmsg(s->cdb));
        pthread_mutex_lock(&s->clock);
    }
    pthread_mutex_unlock(&s->clock);
    return NULL;
}

int fc__sqlite_checkpointer_start(fc__sqlite_store *s, const char *path, char *err, size_t errlen)
{
    /* This thread does the copying. The writer still checkpoints when the WAL
     * passes 10,000 pages (about 40 MB): by then most frames are copied
     * already, so its checkpoint is short, and it is what lets the WAL start
     * over from the beginning, which a checkpoint racing the writer never
     * does (measured: the WAL grew by 100 MB/s under ingest without it). */
    if (sqlite3_exec(s->wdb, "PRAGMA wal_autocheckpoint=10000", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure checkpoints: %s", sqlite3_errmsg(s->wdb));
        return FC_EIO;
    }
    if (fc__sqlite_connect(path, 0, 0, &s->cdb, err, errlen) != 0) return FC_EIO;
    if (pthread_mutex_init(&s->clock, NULL) != 0) goto fail_lock;
    if (pthread_cond_init(&s->ccond, NULL) != 0) goto fail_cond;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* signals belong to the loop thread */
    int rc = pthread_create(&s->cthread, NULL, checkpoint_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0) {
        s->cthread_started = 1;
        return 0;
    }
    snprintf(err, errlen, "cannot start the checkpoint thread: %s", strerror(rc));
    pthread_cond_destroy(&s->ccond);
fail_cond:
    pthread_mutex_destroy(&s->clock);
fail_lock:
    if (!*err) snprintf(err, errlen, "cannot set up checkpoint synchronisation");
    sqlite3_close(s->cdb);
    s->cdb = NULL;
    return FC_EIO;
}

void fc__sqlite_checkpointer_stop(fc__sqlite_store *s)
{
    if (!s->cthread_started) return;
    pthread_mutex_lock(&s->clock);
    s->cstop = 1;
    pthread_mutex_unlock(&s->clock);
    pthread_cond_signal(&s->ccond);
    pthread_join(s->cthread, NULL);
    s->cthread_started = 0;
    pthread_cond_destroy(&s->ccond);
    pthread_mutex_destroy(&s->clock);
    sqlite3_close(s->cdb);
    s->cdb = NULL;
}
