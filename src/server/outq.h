/* fc_outq: a connection's queue of references to shared buffers, flushed
 * with writev. References are stored in small arrays (chunks) from a
 * free-list pool: queueing a delivery writes one pointer into memory the
 * connection already touched, never calls malloc in the steady state, and
 * building the writev walks contiguous memory. An idle connection holds no
 * chunk. Single-threaded (one pool per process, used from the loop thread). */
#ifndef FC_SERVER_OUTQ_H
#define FC_SERVER_OUTQ_H

#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define FC_OUTQ_CHUNK 30 /* references per chunk: 248 bytes with the link */

typedef struct fc_outq_chunk {
    struct fc_outq_chunk *next;
    fc_buf *bufs[FC_OUTQ_CHUNK];
} fc_outq_chunk;

struct fc_outq_index;

typedef struct fc_outq {
    fc_outq_chunk *head, *tail;
    uint16_t head_idx; /* first queued slot in head */
    uint16_t tail_idx; /* next free slot in tail */
    uint32_t count;    /* entries queued, including the locked ones */
    uint32_t locked;   /* head entries referenced by an in-flight write: never dropped */
    uint32_t head_off; /* bytes of the head entry already written */
    uint32_t popped;   /* entries ever taken off the head (wraps): numbers entries */
    size_t bytes;      /* bytes still to write */
    /* Pending entry of each workflow, only while the queue is over its
     * coalescing limit (built once when it gets there, freed below half). */
    struct fc_outq_index *index;
} fc_outq;

/* Queues buf, taking over one reference from the caller. 0 or FC_ENOMEM
 * (the reference is then released). */
int fc_outq_push(fc_outq *q, fc_buf *buf);

/* Queues buf like fc_outq_push; when the queue already holds limit or more
 * entries and buf has a key, buf instead replaces, in its place, the
 * queued, unlocked, unstarted entry with the same key (the pending older
 * state of the same workflow), found through an index that exists only
 * while the queue is over the limit: O(1) per change, never a scan of the
 * queue. Returns the number replaced (0 or 1), or FC_ENOMEM. */
int fc_outq_push_coalesce(fc_outq *q, fc_buf *buf, uint32_t limit);

/* Fills up to max iovecs from the head, at most max_bytes in all (at least
 * one entry). Returns the count; *bytes gets their total length. */
int fc_outq_iov(const fc_outq *q, uv_buf_t *iov, int max, size_t max_bytes, size_t *bytes);

/* Marks n bytes as written: fully written entries are released. Calls
 * on_done(buf) before releasing each change-carrying (seq != 0) entry. */
void fc_outq_consume(fc_outq *q, size_t n, void (*on_done)(const fc_buf *buf));

/* Releases every entry that is neither locked nor partly written; returns how many. */
uint32_t fc_outq_drop_unlocked(fc_outq *q);

/* Releases every entry. */
void fc_outq_clear(fc_outq *q);

/* The first and last queued buffers, or NULL when empty (for tests). */
fc_buf *fc_outq_first(const fc_outq *q);
fc_buf *fc_outq_last(const fc_outq *q);

/* Bytes still to write. O(1). */
static inline size_t fc_outq_bytes(const fc_outq *q)
{
    return q->bytes;
}

/* What a queued entry costs besides its bytes: the buffer's header and the
 * allocator's overhead, and the reference in its chunk. */
#define FC_OUTQ_ENTRY_COST 64

/* The memory the queue holds, about: what the output limit counts, so that
 * a flood of 2-byte pongs costs what it really does. O(1). */
static inline size_t fc_outq_cost(const fc_outq *q)
{
    return q->bytes + (size_t)q->count * FC_OUTQ_ENTRY_COST;
}

/* Bytes of buffers freed by this thread's queues since the last call (their
 * last reference was the queue's): tells when returning memory to the
 * system is worth it. */
size_t fc_outq_take_freed(void);

/* Releases the pooled chunks not in use (at shutdown). */
void fc_outq_pool_trim(void);

#endif
