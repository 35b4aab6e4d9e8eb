/* Per-connection output queues in pooled chunks, with same-workflow coalescing. */
#include "server/outq.h"
#include "common/error.h"

#include <stdlib.h>
#include <string.h>

/* Per loop thread: a chunk is taken and returned on the thread that owns its connection. */
static _Thread_local fc_outq_chunk *pool;

static fc_outq_chunk *chunk_get(void)
{
    fc_outq_chunk *c = pool;
    if (c)
        pool = c->next;
    else if (!(c = malloc(sizeof *c)))
        return NULL;
    c->next = NULL;
    return c;
}

static void chunk_put(fc_outq_chunk *c)
{
    c->next = pool;
    pool = c;
}

void fc_outq_pool_trim(void)
{
    while (pool) {
        fc_outq_chunk *c = pool;
        pool = c->next;
        free(c);
    }
}

/* A position in the queue: chunk and slot. */
typedef struct pos {
    fc_outq_chunk *chunk;
    unsigned idx;
} pos;

static void pos_next(pos *p)
{
    if (++p->idx == FC_OUTQ_CHUNK) {
        p->chunk = p->chunk->next;
        p->idx = 0;
    }
}

static pos pos_at(const fc_outq *q, uint32_t skip)
{
    pos p = {q->head, q->head_idx};
    for (uint32_t i = 0; i < skip; i++)
        pos_next(&p);
    return p;
}

int fc_outq_push(fc_outq *q, fc_buf *buf)
{
    if (!q->tail || q->tail_idx == FC_OUTQ_CHUNK) {
        fc_outq_chunk *c = chunk_get();
        if (!c) {
            fc_buf_unref(buf);
            return FC_ENOMEM;
        }
        if (q->tail)
            q->tail->next = c;
        else
            q->head = c, q->head_idx = 0;
        q->tail = c;
        q->tail_idx = 0;
    }
    q->tail->bufs[q->tail_idx++] = buf;
    q->count++;
    return 0;
}

/* Frees the chunks after the one holding the last kept entry and sets the tail. */
static void truncate_at(fc_outq *q, pos end, uint32_t kept)
{
    q->count = kept;
    if (kept == 0) {
        fc_outq_chunk *c = q->head;
        while (c) {
            fc_outq_chunk *next = c->next;
            chunk_put(c);
            c = next;
        }
        q->head = q->tail = NULL;
        q->head_idx = q->tail_idx = 0;
        return;
    }
    /* end is the slot after the last kept entry. */
    fc_outq_chunk *last = end.chunk;
    unsigned idx = end.idx;
    if (idx == 0) { /* the last kept entry filled its chunk: find that chunk */
        fc_outq_chunk *c = q->head;
        while (c->next != end.chunk)
            c = c->next;
        last = c;
        idx = FC_OUTQ_CHUNK;
    }
    fc_outq_chunk *c = last->next;
    while (c) {
        fc_outq_chunk *next = c->next;
        chunk_put(c);
        c = next;
    }
    last->next = NULL;
    q->tail = last;
    q->tail_idx = (uint16_t)idx;
}

/* The entries that must stay: locked by an in-flight write, or partly written. */
static uint32_t pinned(const fc_outq *q)
{
    return q->locked ? q->locked : (q->head_off ? 1u : 0u);
}

/* Keeps the pinned entries and, after them, those keep() accepts (in order);
 * releases the others. Returns how many were released. */
static uint32_t filter(fc_outq *q, int (*keep)(const fc_buf *b, const void *arg), const void *arg)
{
    uint32_t n = q->count, fixed = pinned(q);
    if (n <= fixed) return 0;
    pos rd = pos_at(q, fixed), wr = rd;
    uint32_t kept = fixed;
    for (uint32_t i = fixed; i < n; i++, pos_next(&rd)) {
        fc_buf *b = rd.chunk->bufs[rd.idx];
        if (keep && keep(b, arg)) {
            wr.chunk->bufs[wr.idx] = b;
            pos_next(&wr);
            kept++;
        } else {
            fc_buf_unref(b);
        }
    }
    truncate_at(q, wr, kept);
    return n - kept;
}

static int other_key(const fc_buf *b, const void *key)
{
    return !b->key || strcmp(b->key, key) != 0;
}

int fc_outq_push_coalesce(fc_outq *q, fc_buf *buf, uint32_t limit)
{
    int dropped = 0;
    if (q->count >= limit && buf->key) dropped = (int)filter(q, other_key, buf->key);
    int rc = fc_outq_push(q, buf);
    return rc < 0 ? rc : dropped;
}

uint32_t fc_outq_drop_unlocked(fc_outq *q)
{
    return filter(q, NULL, NULL);
}

int fc_outq_iov(const fc_outq *q, uv_buf_t *iov, int max, size_t max_bytes, size_t *bytes)
{
    int n = 0;
    size_t total = 0;
    uint32_t off = q->head_off;
    pos p = {q->head, q->head_idx};
    for (uint32_t i = 0; i < q->count && n < max; i++, pos_next(&p)) {
        const fc_buf *b = p.chunk->bufs[p.idx];
        size_t len = b->len - off;
        if (n > 0 && total + len > max_bytes) break;
        iov[n++] = uv_buf_init((char *)b->data + off, (unsigned)len);
        total += len;
        off = 0;
    }
    *bytes = total;
    return n;
}

/* Removes the head entry (its reference is the caller's now). */
static fc_buf *pop_head(fc_outq *q)
{
    fc_buf *b = q->head->bufs[q->head_idx++];
    q->count--;
    if (q->locked) q->locked--;
    q->head_off = 0;
    if (q->count == 0 || q->head_idx == FC_OUTQ_CHUNK) {
        fc_outq_chunk *c = q->head;
        q->head = c->next;
        q->head_idx = 0;
        chunk_put(c);
        if (!q->head) {
            q->tail = NULL;
            q->tail_idx = 0;
        }
    }
    return b;
}

void fc_outq_consume(fc_outq *q, size_t n, void (*on_done)(const fc_buf *buf))
{
    while (q->count && n > 0) {
        const fc_buf *head = q->head->bufs[q->head_idx];
        size_t left = head->len - q->head_off;
        if (n < left) {
            q->head_off += (uint32_t)n;
            return;
        }
        n -= left;
        fc_buf *b = pop_head(q);
        if (on_done && b->seq) on_done(b);
        fc_buf_unref(b);
    }
}

void fc_outq_clear(fc_outq *q)
{
    q->locked = q->head_off = 0;
    filter(q, NULL, NULL);
}

fc_buf *fc_outq_first(const fc_outq *q)
{
    return q->count ? q->head->bufs[q->head_idx] : NULL;
}

fc_buf *fc_outq_last(const fc_outq *q)
{
    return q->count ? q->tail->bufs[q->tail_idx - 1] : NULL;
}

size_t fc_outq_bytes(const fc_outq *q)
{
    size_t total = 0;
    pos p = {q->head, q->head_idx};
    for (uint32_t i = 0; i < q->count; i++, pos_next(&p))
        total += p.chunk->bufs[p.idx]->len;
    return total - q->head_off;
}
