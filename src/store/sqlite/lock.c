/* The database lock: one flowcast process per SQLite file. SQLite lets many
 * processes share a file, but a second server's changes never reach the
 * first server's watchers (each publishes only what it commits itself), so
 * a server refuses to start on a file another process holds. The lock is an
 * flock(2) on the sidecar "<db>.lock", held for the process's life: the
 * kernel drops it when the process dies, however it dies, so a crash leaves
 * no stale lock behind. The file holds the owner's pid, for the error. */
#include "store/store.h"

#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct fc_store_lock {
    int fd;
    char path[]; /* "<db>.lock" */
};

/* Reads the pid the holder wrote into the lock file ("?" when unreadable). */
static void read_owner(int fd, char *out, size_t outlen)
{
    ssize_t n = pread(fd, out, outlen - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    if (!out[0]) snprintf(out, outlen, "?");
}

/* Locks the file at l->path. 0, FC_EBUSY (held elsewhere), FC_EIO, or 1 when
 * the file was replaced while we locked it (the caller tries again). */
static int try_lock(fc_store_lock *l, char *err, size_t errlen)
{
    l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0) {
        snprintf(err, errlen, "cannot open the lock file %s: %s", l->path, strerror(errno));
        return FC_EIO;
    }
    if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[24];
        if (e == EWOULDBLOCK) {
            read_owner(l->fd, pid, sizeof pid);
            snprintf(err, errlen,
                     "the database is in use by another flowcast process (pid %s; lock file %s)",
                     pid, l->path);
        } else {
            snprintf(err, errlen, "cannot lock %s: %s", l->path, strerror(e));
        }
        close(l->fd);
        return e == EWOULDBLOCK ? FC_EBUSY : FC_EIO;
    }
    /* The holder unlinks the file when it lets go: if it did so between our
     * open and our flock, we hold a lock on a file nobody else will see. */
    struct stat a, b;
    if (fstat(l->fd, &a) != 0 || stat(l->path, &b) != 0 || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino) {
        close(l->fd);
        return 1;
    }
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(l->fd, 0) != 0 || pwrite(l->fd, pid, (size_t)n, 0) != n) {
        /* The lock holds without the pid; only the error message of others loses it. */
    }
    return 0;
}

fc_store_lock *fc_store_lock_acquire(const char *db_path, int *code, char *err, size_t errlen)
{
    size_t n = strlen(db_path);
    fc_store_lock *l = malloc(sizeof *l + n + sizeof ".lock");
    int r = FC_ENOMEM;
    if (!l) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    memcpy(l->path, db_path, n);
    memcpy(l->path + n, ".lock", sizeof ".lock");
    for (int tries = 0; tries < 5; tries++) {
        r = try_lock(l, err, errlen);
        if (r == 0) return l;
        if (r != 1) break;
    }
    if (r == 1) {
        snprintf(err, errlen, "the lock file %s keeps being replaced", l->path);
        r = FC_EBUSY;
    }
    free(l);
fail:
    if (code) *code = r;
    return NULL;
}

void fc_store_lock_release(fc_store_lock *l)
{
    if (!l) return;
    /* Unlink while still holding it, so no one can lock the old file after us. */
    unlink(l->path);
    close(l->fd);
    free(l);
}
