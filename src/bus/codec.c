/* The bus message: the changes one node committed together, in a compact
 * binary form (docs/cluster.md, "The bus message"). Integers are unsigned
 * LEB128 varints (every field is >= 0), fixed-width ones little-endian:
 *   u8 version (3) | u8 node length | node | u64 sent_ns | u32 count |
 *   count x change:
 *     u8 flags (bit 0: deleted) | u8 status | u8 id length | id |
 *     epoch seq current_step total_steps created_at_ms updated_at_ms |
 *     txid txn_changes |
 *     name length | name | message length | message
 * Version 2 (the one before) has no txid and txn_changes; it is still
 * decoded, with both 0 (a node of the previous release during a rolling
 * upgrade: its transactions are never heard, the catch-up reads them).
 * A message is decoded on the bus's thread of every receiving process, and
 * anything that reaches NATS can publish one: every field is checked. */
#include "bus/bus.h"

#include <stdlib.h>
#include <string.h>

/* The fixed header after the node: sent_ns and count. */
#define TAIL_LEN 12
/* The shortest change: flags, status, the id's length and an id of one
 * byte, six one-byte numbers and two empty strings' lengths. */
#define CHANGE_MIN 12
/* The longest change without its strings: flags, status, id length and
 * ten varints of at most 10 bytes. */
#define CHANGE_FIXED_MAX (3 + 10 * 10)
/* The previous version, still decoded. */
#define VERSION_NO_TXID 2

static void put_le(char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static char *put_varint(char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (char)v;
    return p;
}

static int reserve(fc_bus_writer *w, size_t more)
{
    if (w->len + more <= w->cap) return 0;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + more)
        cap *= 2;
    char *b = realloc(w->buf, cap);
    if (!b) return -1;
    w->buf = b;
    w->cap = cap;
    return 0;
}

int fc_bus_writer_init(fc_bus_writer *w, const char *node)
{
    memset(w, 0, sizeof *w);
    size_t nl = strlen(node);
    if (nl > FC_BUS_NODE_MAX || reserve(w, 2 + nl + TAIL_LEN) != 0) return -1;
    w->buf[0] = FC_BUS_VERSION;
    w->buf[1] = (char)nl;
    memcpy(w->buf + 2, node, nl);
    w->head = w->len = 2 + nl + TAIL_LEN;
    return 0;
}

static uint64_t nonneg(int64_t v)
{
    return v < 0 ? 0 : (uint64_t)v;
}

int fc_bus_writer_add(fc_bus_writer *w, const fc_workflow *st, int deleted, int64_t txid,
                      uint32_t txn_changes, size_t max)
{
    const char *name = st->name ? st->name : "", *msg = st->message ? st->message : "";
    size_t il = strlen(st->id), nl = strlen(name), ml = strlen(msg);
    size_t most = CHANGE_FIXED_MAX + il + nl + ml;
    if (reserve(w, most) != 0) return -1;
    char *start = w->buf + w->len, *p = start;
    *p++ = (char)(deleted ? 1 : 0);
    *p++ = (char)st->status;
    *p++ = (char)il;
    memcpy(p, st->id, il);
    p += il;
    p = put_varint(p, nonneg(st->epoch));
    p = put_varint(p, nonneg(st->seq));
    p = put_varint(p, nonneg(st->current_step));
    p = put_varint(p, nonneg(st->total_steps));
    p = put_varint(p, nonneg(st->created_at_ms));
    p = put_varint(p, nonneg(st->updated_at_ms));
    p = put_varint(p, nonneg(txid));
    p = put_varint(p, txn_changes);
    p = put_varint(p, nl);
    memcpy(p, name, nl);
    p += nl;
    p = put_varint(p, ml);
    memcpy(p, msg, ml);
    p += ml;
    if (w->len + (size_t)(p - start) > max) return 1;
    w->len += (size_t)(p - start);
    w->n++;
    return 0;
}

const char *fc_bus_writer_finish(fc_bus_writer *w, uint64_t sent_ns, size_t *len)
{
    put_le(w->buf + w->head - TAIL_LEN, sent_ns, 8);
    put_le(w->buf + w->head - 4, w->n, 4);
    *len = w->len;
    return w->buf;
}

void fc_bus_writer_reset(fc_bus_writer *w)
{
    w->len = w->head;
    w->n = 0;
}

void fc_bus_writer_free(fc_bus_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

int fc_bus_node_valid(const char *node)
{
    size_t n = strlen(node);
    return n >= 1 && n <= FC_BUS_NODE_MAX &&
           strspn(node, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n;
}

int fc_bus_from(const char *data, size_t len, const char *node)
{
    size_t nl = strlen(node);
    return len >= 2 + nl && data[0] == FC_BUS_VERSION && (unsigned char)data[1] == nl &&
           memcmp(data + 2, node, nl) == 0;
}

/* What is left to read of a message. */
typedef struct reader {
    const unsigned char *p, *end;
} reader;

static int get_byte(reader *r, unsigned *out)
{
    if (r->p == r->end) return -1;
    *out = *r->p++;
    return 0;
}

/* A varint of at most INT64_MAX (the fields are int64_t). */
static int get_varint(reader *r, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 63; shift += 7) {
        if (r->p == r->end) return -1;
        unsigned b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)v;
            return 0;
        }
    }
    return -1; /* nine bytes hold 63 bits: a tenth is past INT64_MAX */
}

/* Whether s[0..n) is UTF-8 (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF) without a NUL: the hub writes it into JSON as it is. */
static int utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c == 0) return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : 0;
        if (k == 0 || c > 0xf4 || n - i <= k) return 0;
        unsigned c1 = s[i + 1];
        if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
            (c == 0xf4 && c1 > 0x8f))
            return 0;
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return 0;
        i += k + 1;
    }
    return 1;
}

/* A string of length-prefix bytes, copied NUL-terminated to *arena. */
static int get_string(reader *r, char **arena, char **out)
{
    int64_t n;
    if (get_varint(r, &n) != 0 || (uint64_t)n > (size_t)(r->end - r->p) ||
        !utf8_ok(r->p, (size_t)n))
        return -1;
    *out = *arena;
    memcpy(*arena, r->p, (size_t)n);
    (*arena)[n] = '\0';
    *arena += n + 1;
    r->p += n;
    return 0;
}

static int get_change(reader *r, int version, char **arena, fc_bus_change *c)
{
    unsigned flags, status, il;
    fc_workflow *w = &c->state;
    if (get_byte(r, &flags) != 0 || flags > 1 || get_byte(r, &status) != 0 ||
        status > FC_STATUS_CANCELLED || get_byte(r, &il) != 0 || il < 1 || il > FC_ID_MAX ||
        il > (size_t)(r->end - r->p))
        return -1;
    memcpy(w->id, r->p, il);
    w->id[il] = '\0';
    r->p += il;
    c->deleted = (int)flags;
    w->status = (fc_status)status;
    if (!fc_id_valid(w->id) || get_varint(r, &w->epoch) != 0 || get_varint(r, &w->seq) != 0 ||
        get_varint(r, &w->current_step) != 0 || get_varint(r, &w->total_steps) != 0 ||
        get_varint(r, &w->created_at_ms) != 0 || get_varint(r, &w->updated_at_ms) != 0)
        return -1;
    if (w->epoch < 1 || w->epoch > FC_EPOCH_MAX || w->seq < 1) return -1;
    c->txid = 0;
    c->txn_changes = 0;
    if (version != VERSION_NO_TXID) {
        int64_t of;
        if (get_varint(r, &c->txid) != 0 || get_varint(r, &of) != 0 || of > UINT32_MAX)
            return -1;
        c->txn_changes = (uint32_t)of;
    }
    return get_string(r, arena, &w->name) == 0 && get_string(r, arena, &w->message) == 0 ? 0 : -1;
}

int fc_bus_decode(const char *data, size_t len, fc_bus_batch *out)
{
    const unsigned char *d = (const unsigned char *)data;
    if (len < 2 || (d[0] != FC_BUS_VERSION && d[0] != VERSION_NO_TXID)) return -1;
    size_t nl = d[1];
    if (nl < 1 || nl > FC_BUS_NODE_MAX || len < 2 + nl + TAIL_LEN) return -1;
    char node[FC_BUS_NODE_MAX + 1];
    memcpy(node, d + 2, nl);
    node[nl] = '\0';
    size_t body = len - 2 - nl - TAIL_LEN;
    uint64_t sent = get_le(d + 2 + nl, 8), n = get_le(d + 2 + nl + 8, 4);
    /* The count is checked against the bytes before anything is allocated
     * for it: a forged count costs no memory. */
    if (!fc_bus_node_valid(node) || n < 1 || n > body / CHANGE_MIN) return -1;
    /* The changes, then their strings: at most the body plus a NUL each. */
    size_t head = (size_t)n * sizeof(fc_bus_change);
    fc_bus_change *changes = malloc(head + body + 2 * (size_t)n);
    if (!changes) return -1;
    char *arena = (char *)changes + head;
    reader r = {.p = d + len - body, .end = d + len};
    for (size_t i = 0; i < n; i++)
        if (get_change(&r, d[0], &arena, &changes[i]) != 0) {
            free(changes);
            return -1;
        }
    if (r.p != r.end) {
        free(changes);
        return -1;
    }
    memcpy(out->node, node, nl + 1);
    out->sent_ns = sent;
    out->n = (size_t)n;
    out->changes = changes;
    return 0;
}
