/* The commit fan-out the store backends share: submits from the loops to the
 * writer thread, committed changes from the writer back to every loop. */
#include "store/fanout_internal.h"

#include "common/error.h"
#include "common/log.h"
#include "common/time.h"
#include "metrics/metrics.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One committed batch as the handles see it once the store is shared: a
 * copy of every state it committed, in commit order, and per handle its own
 * changes to finish. One allocation; the strings of the states live in it. */
typedef struct batch_item {
    fc_workflow wf;
    fc_store_commit commit;
    int deleted;
} batch_item;

typedef struct batch_slot {
    fc__fanout_batch *next; /* the handle's next batch */
    fc_change *own;         /* the handle's changes of this batch, in order */
} batch_slot;

struct fc__fanout_batch {
    atomic_int refs; /* handles that have not delivered it yet */
    int count;
    batch_item *items;
    batch_slot slots[]; /* one per handle index */
};

static fc__fanout_handle *from_base(fc_store *s)
{
    return (fc__fanout_handle *)(void *)s;
}

/* True when c changed the store (committed, not refused, not a replay). */
static int applied(const fc_change *c)
{
    return c->result == 0 && !c->replayed;
}

static fc_store_commit commit_of(const fc_change *c)
{
    return (fc_store_commit){c->commit_ns, c->txid, c->txn_changes};
}

/* Appends the list first..last (linked by next) to the list *head..*tail. */
static void append(fc_change **head, fc_change **tail, fc_change *first, fc_change *last)
{
    if (*tail)
        (*tail)->next = first;
    else
        *head = first;
    *tail = last;
}

int fc__fanout_init(fc__fanout *fo)
{
    memset(fo, 0, sizeof *fo);
    int locks = 0;
    if (pthread_mutex_init(&fo->qlock, NULL) != 0) goto fail;
    locks++;
    if (pthread_mutex_init(&fo->dlock, NULL) != 0) goto fail;
    locks++;
    if (pthread_mutex_init(&fo->wlock, NULL) != 0) goto fail;
    locks++;
    if (pthread_cond_init(&fo->qcond, NULL) != 0) goto fail;
    locks++;
    if (pthread_cond_init(&fo->dcond, NULL) == 0) return 0;
fail:
    if (locks > 3) pthread_cond_destroy(&fo->qcond);
    if (locks > 2) pthread_mutex_destroy(&fo->wlock);
    if (locks > 1) pthread_mutex_destroy(&fo->dlock);
    if (locks > 0) pthread_mutex_destroy(&fo->qlock);
    return FC_EIO;
}

void fc__fanout_destroy(fc__fanout *fo)
{
    pthread_cond_destroy(&fo->qcond);
    pthread_mutex_destroy(&fo->qlock);
    pthread_cond_destroy(&fo->dcond);
    pthread_mutex_destroy(&fo->wlock);
    pthread_mutex_destroy(&fo->dlock);
}

/* Loop side: submitting. */

static void handoff(fc__fanout_handle *h)
{
    if (!h->p_head) return;
    fc__fanout *fo = h->fo;
    h->p_tail->next = NULL;
    int n = 0;
    for (fc_change *c = h->p_head; c; c = c->next)
        n++;
    pthread_mutex_lock(&fo->qlock);
    append(&fo->q_head, &fo->q_tail, h->p_head, h->p_tail);
    fo->q_len += n;
    pthread_mutex_unlock(&fo->qlock);
    /* Outside the lock: the writer wakes straight into a free mutex. */
    pthread_cond_signal(&fo->qcond);
    h->p_head = h->p_tail = NULL;
}

/* At the start of the next loop turn (an active idle handle also keeps the
 * loop from blocking before it runs): every request read in this turn is
 * submitted by then, so the writer wakes once and commits them as one batch.
 * Waking it per change made batches of ~7 under 64 producers (the writer,
 * woken on the same core, preempted the loop) and the per-commit cost
 * dominated. */
static void on_handoff(uv_idle_t *idle)
{
    handoff(idle->data);
    uv_idle_stop(idle);
}

void fc__fanout_submit(fc_store *s, fc_change *c)
{
    fc__fanout_handle *h = from_base(s);
    assert(!h->closed && "fc_store_submit after fc_store_close");
    c->result = 0;
    c->errmsg[0] = '\0';
    c->replayed = 0;
    c->next = NULL;
    c->origin = h;
    c->submit_ns = fc_time_mono_ns();
    c->commit_ns = 0;
    h->outstanding++;
    if (!h->p_head) uv_idle_start(&h->handoff, on_handoff);
    append(&h->p_head, &h->p_tail, c, c);
}

void fc__fanout_on_commit(fc_store *s, fc_store_commit_fn fn, void *ud)
{
    fc__fanout_handle *h = from_base(s);
    h->on_commit = fn;
    h->commit_ud = ud;
}

/* Writer side. */

/* Waits on qcond until want changes are queued or linger_ns passed. */
static void linger(fc__fanout *fo, int want, uint64_t linger_ns)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    uint64_t ns = (uint64_t)until.tv_nsec + linger_ns;
    until.tv_sec += (time_t)(ns / 1000000000u);
    until.tv_nsec = (long)(ns % 1000000000u);
    while (fo->q_len < want && !fo->stopping &&
           pthread_cond_timedwait(&fo->qcond, &fo->qlock, &until) == 0) {
    }
}

fc_change *fc__fanout_take(fc__fanout *fo, int max)
{
    return fc__fanout_take_linger(fo, max, 0, 0);
}

fc_change *fc__fanout_take_linger(fc__fanout *fo, int max, int want, uint64_t linger_ns)
{
    pthread_mutex_lock(&fo->qlock);
    while (!fo->q_head && !fo->stopping)
        pthread_cond_wait(&fo->qcond, &fo->qlock);
    if (want > 1 && fo->q_len < want) linger(fo, want, linger_ns);
    fc_change *batch = fo->q_head, *last = batch;
    int n = batch ? 1 : 0;
    for (; last && last->next && (max <= 0 || n < max); n++)
        last = last->next;
    fo->q_len -= n;
    if (last) {
        fo->q_head = last->next;
        if (!fo->q_head) fo->q_tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&fo->qlock);
    return batch;
}

void fc__fanout_stop(fc__fanout *fo)
{
    pthread_mutex_lock(&fo->qlock);
    fo->stopping = 1;
    pthread_mutex_unlock(&fo->qlock);
    pthread_cond_signal(&fo->qcond);
}

/* Copies what every handle must hear of a committed batch into one
 * allocation and splits the batch's changes by the handle they came from.
 * NULL when out of memory. */
static fc__fanout_batch *batch_build(fc_change *batch)
{
    int count = 0;
    size_t strings = 0;
    for (fc_change *c = batch; c; c = c->next) {
        if (!applied(c)) continue;
        count++;
        strings += strlen(c->wf.name) + strlen(c->wf.message) + 2;
    }
    size_t head = sizeof(fc__fanout_batch) + FC__FANOUT_MAX_HANDLES * sizeof(batch_slot);
    head = (head + 15) & ~(size_t)15;
    fc__fanout_batch *b = calloc(1, head + (size_t)count * sizeof(batch_item) + strings);
    if (!b) return NULL;
    b->items = (batch_item *)(void *)((char *)b + head);
    char *arena = (char *)(b->items + count);
    fc_change *tails[FC__FANOUT_MAX_HANDLES] = {0};
    for (fc_change *c = batch, *next; c; c = next) {
        next = c->next;
        if (applied(c)) {
            batch_item *it = &b->items[b->count++];
            it->wf = c->wf;
            it->wf.name = arena;
            arena = stpcpy(arena, c->wf.name) + 1;
            it->wf.message = arena;
            arena = stpcpy(arena, c->wf.message) + 1;
            it->commit = commit_of(c);
            it->deleted = c->kind == FC_CHANGE_DELETE;
        }
        int h = ((fc__fanout_handle *)c->origin)->index;
        c->next = NULL;
        append(&b->slots[h].own, &tails[h], c, c);
    }
    return b;
}

/* Wakes the n handles in to (taken from fo->handles under dlock, with
 * wlock taken before dlock was let go) and lets wlock go. Outside dlock: a
 * writer descheduled between a wake-up's eventfd write and unlocking would
 * otherwise keep the loop it just woke waiting on dlock in deliver() until
 * it ran again. wlock keeps each handle's wake-up open meanwhile
 * (fc__fanout_detach waits for it). */
static void wake_all(fc__fanout *fo, fc__fanout_handle **to, int n)
{
    for (int i = 0; i < n; i++)
        fc_wake_send(&to[i]->wake);
    pthread_mutex_unlock(&fo->wlock);
}

/* With one handle, the changes go back as they are; once shared, every
 * handle gets the batch (its own changes to finish, and every state to
 * publish), so every loop sees the changes in commit order. A change's state
 * is copied before any handle can see it: its owner may free it as soon as
 * it is handed back. */
void fc__fanout_hand_back(fc__fanout *fo, fc_change *batch)
{
    fc__fanout_handle *to[FC__FANOUT_MAX_HANDLES];
    pthread_mutex_lock(&fo->dlock);
    int shared = fo->shared;
    if (!shared) {
        fc__fanout_handle *h = batch->origin;
        fc_change *last = batch;
        while (last->next)
            last = last->next;
        append(&h->d_head, &h->d_tail, batch, last);
        to[0] = h;
        pthread_mutex_lock(&fo->wlock);
    }
    pthread_mutex_unlock(&fo->dlock);
    if (!shared) {
        wake_all(fo, to, 1);
        pthread_cond_broadcast(&fo->dcond);
        return;
    }

    fc__fanout_batch *b;
    while (!(b = batch_build(batch))) {
        /* Committed changes cannot be dropped or reported as failed: wait for memory. */
        FC_ERROR("store", "out of memory handing back a committed batch; retrying");
        usleep(10000);
    }
    pthread_mutex_lock(&fo->dlock);
    int refs = 0;
    for (int i = 0; i < FC__FANOUT_MAX_HANDLES; i++) {
        fc__fanout_handle *h = fo->handles[i];
        if (!h) continue;
        to[refs++] = h;
        if (h->b_tail)
            h->b_tail->slots[i].next = b;
        else
            h->b_head = b;
        h->b_tail = b;
    }
    atomic_store_explicit(&b->refs, refs, memory_order_relaxed);
    pthread_mutex_lock(&fo->wlock);
    pthread_mutex_unlock(&fo->dlock);
    wake_all(fo, to, refs);
    pthread_cond_broadcast(&fo->dcond);
    if (refs == 0) free(b);
}

/* Loop side: delivering. */

static void report(fc__fanout_handle *h, const fc_workflow *w, const fc_store_commit *commit,
                   int deleted)
{
    if (h->on_commit) h->on_commit(h->commit_ud, w, commit, deleted);
}

static void finish(fc__fanout_handle *h, fc_change *c)
{
    c->next = NULL;
    h->outstanding--;
    /* Failed ones too: a 409 or a 503 waited for the writer all the same. */
    if (c->commit_ns >= c->submit_ns) fc_metrics_observe_store_commit(c->commit_ns - c->submit_ns);
    c->done(c); /* may free c, or close the handle */
}

static void batch_unref(fc__fanout_batch *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) free(b);
}

/* Tells h's commit callback of every committed state that reached h and
 * runs done() for h's own changes, in commit order. Every step re-reads the
 * handle's state: a done() may close the handle, and close delivers the rest
 * from where this left off. */
static void deliver(fc__fanout_handle *h)
{
    fc__fanout *fo = h->fo;
    if (!h->delivering && !h->cur) {
        pthread_mutex_lock(&fo->dlock);
        h->delivering = h->d_head;
        h->d_head = h->d_tail = NULL;
        h->cur = h->b_head;
        h->b_head = h->b_tail = NULL;
        pthread_mutex_unlock(&fo->dlock);
    }
    fc_change *c;
    while ((c = h->delivering)) {
        h->delivering = c->next;
        if (applied(c)) {
            fc_store_commit commit = commit_of(c);
            report(h, &c->wf, &commit, c->kind == FC_CHANGE_DELETE);
        }
        finish(h, c);
    }
    fc__fanout_batch *b;
    while ((b = h->cur)) {
        batch_slot *slot = &b->slots[h->index];
        if (h->pos < b->count) {
            batch_item *it = &b->items[h->pos++];
            report(h, &it->wf, &it->commit, it->deleted);
        } else if ((c = slot->own)) {
            slot->own = c->next;
            finish(h, c);
        } else {
            h->cur = slot->next;
            h->pos = 0;
            batch_unref(b);
        }
    }
}

/* A batch is committed. What was submitted since goes to the writer first,
 * so it commits that while this thread runs the callbacks and writes their
 * answers (on two cores the two overlap; the idle handle would only hand it
 * over after them). */
static void on_wake(fc_wake *w)
{
    handoff(w->data);
    deliver(w->data);
}

/* Loop side: attaching and closing. */

int fc__fanout_attach(fc__fanout *fo, fc__fanout_handle *h, uv_loop_t *loop, char *err,
                      size_t errlen)
{
    h->fo = fo;
    h->closed = 1; /* until it has a slot */
    if (fc_wake_init(loop, &h->wake, on_wake) != 0) {
        snprintf(err, errlen, "cannot set up the store's wake-up");
        return FC_EIO;
    }
    h->wake.data = h;
    uv_idle_init(loop, &h->handoff); /* cannot fail */
    h->handoff.data = h;
    h->open_handles = 2;

    pthread_mutex_lock(&fo->dlock);
    int i = 0;
    while (i < FC__FANOUT_MAX_HANDLES && fo->handles[i])
        i++;
    if (i < FC__FANOUT_MAX_HANDLES) {
        h->index = i;
        h->closed = 0;
        fo->handles[i] = h;
        fo->shared |= fo->n_handles > 0;
        fo->n_handles++;
    }
    pthread_mutex_unlock(&fo->dlock);
    if (i == FC__FANOUT_MAX_HANDLES) {
        snprintf(err, errlen, "more than %d loops on one store", FC__FANOUT_MAX_HANDLES);
        return FC_EIO;
    }
    return 0;
}

/* The handle is going away, so its changes cannot wait for a later loop turn. */
static void finish_outstanding(fc__fanout_handle *h)
{
    fc__fanout *fo = h->fo;
    handoff(h);
    deliver(h);
    while (h->outstanding > 0) {
        pthread_mutex_lock(&fo->dlock);
        while (!h->d_head && !h->b_head)
            pthread_cond_wait(&fo->dcond, &fo->dlock);
        pthread_mutex_unlock(&fo->dlock);
        deliver(h);
    }
}

int fc__fanout_detach(fc__fanout_handle *h)
{
    fc__fanout *fo = h->fo;
    if (h->closed) return -1;
    h->closed = 1;
    /* The contract of fc_store_ops.close: the loop's consumer of commits may
     * be gone already (the server closes its feed first), so what the handle
     * still finishes here is told to nobody; other handles hear of it as
     * usual, and other nodes read it in the store's log. */
    h->on_commit = NULL;
    finish_outstanding(h);
    pthread_mutex_lock(&fo->dlock);
    fo->handles[h->index] = NULL;
    int last = --fo->n_handles == 0;
    /* What others committed since: nobody here to tell. */
    fc__fanout_batch *b = h->b_head;
    h->b_head = h->b_tail = NULL;
    while (b) {
        fc__fanout_batch *next = b->slots[h->index].next;
        batch_unref(b);
        b = next;
    }
    pthread_mutex_unlock(&fo->dlock);
    /* A hand-back that saw h before it left may still be waking it. */
    pthread_mutex_lock(&fo->wlock);
    pthread_mutex_unlock(&fo->wlock);
    return last;
}

static void closed(fc__fanout_handle *h)
{
    if (--h->open_handles == 0) free(h);
}

static void on_idle_closed(uv_handle_t *uh)
{
    closed(uh->data);
}

static void on_wake_closed(uv_handle_t *uh)
{
    closed(((fc_wake *)uh)->data);
}

void fc__fanout_release(fc__fanout_handle *h)
{
    if (h->open_handles == 0) {
        free(h);
        return;
    }
    uv_close((uv_handle_t *)&h->handoff, on_idle_closed);
    fc_wake_close(&h->wake, on_wake_closed);
}
