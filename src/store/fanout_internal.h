/* Private to the store backends (sqlite/, postgres/): the commit fan-out
 * they share. It carries changes from the loops to the backend's writer
 * thread and every committed change back to every loop:
 *   - a loop's submits are queued on its handle and handed to the writer
 *     together at the start of the next loop turn (one batch per turn);
 *   - the writer takes them (fc__fanout_take), commits them its own way and
 *     hands them back (fc__fanout_hand_back);
 *   - each handle's loop is woken (fc_wake) and, in commit order, tells its
 *     commit callback of every committed state and runs done() of its own
 *     changes after them.
 * With one handle the changes themselves go back; once a second handle was
 * attached, every batch goes out as one shared copy (fc__fanout_batch).
 *
 * A backend's handle starts with an fc__fanout_handle (which starts with the
 * fc_store every handle starts with), is allocated with malloc and is freed
 * by the fan-out once its loop handles are closed (fc__fanout_release). */
#ifndef FC_STORE_FANOUT_INTERNAL_H
#define FC_STORE_FANOUT_INTERNAL_H

#include "store/store.h"
#include "common/wake.h"

#include <pthread.h>
#include <stddef.h>
#include <uv.h>

/* Handles a store can have: one per event loop. */
#define FC__FANOUT_MAX_HANDLES 64

typedef struct fc__fanout_batch fc__fanout_batch;
typedef struct fc__fanout fc__fanout;

/* One loop's end of the store. Loop thread only, but for the fields under
 * the fan-out's dlock. */
typedef struct fc__fanout_handle {
    fc_store base; /* must stay first: fc_store * is cast back to this */
    fc__fanout *fo;
    int index;    /* in fo->handles */
    fc_wake wake; /* the writer wakes the loop with this */
    /* Changes submitted during this loop turn, handed to the writer together
     * once the turn's I/O is done. */
    uv_idle_t handoff;
    fc_change *p_head, *p_tail;
    int open_handles; /* loop handles not closed yet; freed at 0 */
    int outstanding;  /* submitted, done() not called yet */
    fc_store_commit_fn on_commit;
    void *commit_ud;
    /* Committed, waiting for the loop; guarded by fo->dlock. Before the
     * store is shared the changes themselves (d_), after, batches (b_). */
    fc_change *d_head, *d_tail;
    fc__fanout_batch *b_head, *b_tail;
    /* Being delivered right now. Kept here, not on the stack, so a done()
     * that closes the handle still gets the rest finished in order. */
    fc_change *delivering;
    fc__fanout_batch *cur; /* cur's states told up to pos */
    int pos;
    int closed;
} fc__fanout_handle;

/* What the handles of one store share; lives in the backend's core. */
struct fc__fanout {
    /* Submitted, not yet taken by the writer. */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    fc_change *q_head, *q_tail;
    int q_len;
    int stopping;
    /* The handles and what was handed back to them: a second lock, so the
     * loops' submits never wait behind a hand-back; dcond is signalled after
     * every hand-back (a closing handle waits on it). */
    pthread_mutex_t dlock;
    pthread_cond_t dcond;
    /* Held by the writer while it wakes the handles, after dlock (never
     * the other way round); a leaving handle takes it once, so no wake-up
     * of it is in flight when its loop closes it. */
    pthread_mutex_t wlock;
    fc__fanout_handle *handles[FC__FANOUT_MAX_HANDLES];
    int n_handles; /* open ones */
    int shared;    /* a second handle was attached: batches go out as copies */
};

/* 0 or FC_EIO (the locks could not be set up; nothing to destroy). */
int fc__fanout_init(fc__fanout *fo);
/* After the writer stopped and the last handle detached. */
void fc__fanout_destroy(fc__fanout *fo);

/* Sets up h (zeroed, its base.ops set) as a handle of fo on loop. 0, or
 * FC_EIO with a reason in err: the caller then frees what else it took and
 * calls fc__fanout_release(h). */
int fc__fanout_attach(fc__fanout *fo, fc__fanout_handle *h, uv_loop_t *loop, char *err,
                      size_t errlen);
/* The close of a handle, first part: drops its commit callback (close never
 * calls it), runs done() of every change it submitted, right here, and takes
 * it out of fo. 1 when it was the last handle, 0 when not,
 * -1 when h was detached already (nothing done). */
int fc__fanout_detach(fc__fanout_handle *h);
/* Second part, or after a failed attach: closes h's loop handles; h is
 * freed once they are (on a later loop turn, or at once when none was open). */
void fc__fanout_release(fc__fanout_handle *h);

/* The fc_store_ops slots, for a handle that starts with fc__fanout_handle. */
void fc__fanout_submit(fc_store *s, fc_change *c);
void fc__fanout_on_commit(fc_store *s, fc_store_commit_fn fn, void *ud);

/* Writer thread: waits for submitted changes and takes at most max of them
 * (0: all), oldest first, as a list linked by next. NULL once
 * fc__fanout_stop was called and nothing is left to take. */
fc_change *fc__fanout_take(fc__fanout *fo, int max);
/* Like fc__fanout_take, but once something is queued waits up to linger_ns
 * more for want changes (a writer that committed a batch of several under
 * load gathers a batch as large again: fewer, larger transactions). */
fc_change *fc__fanout_take_linger(fc__fanout *fo, int max, int want, uint64_t linger_ns);
/* Writer thread: hands a list from fc__fanout_take back to the handles once
 * every change's result (and for an applied one, wf and commit_ns) is set.
 * The changes belong to their owners again from here on. */
void fc__fanout_hand_back(fc__fanout *fo, fc_change *batch);
/* Lets fc__fanout_take return NULL once the queue is empty; the backend
 * then joins its writer. */
void fc__fanout_stop(fc__fanout *fo);

#endif
