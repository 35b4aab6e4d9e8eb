/* libFuzzer driver for the bus message codec (src/bus/codec.c): whatever
 * another node (or anything that can publish on the subject) sends must
 * decode safely or be refused, and a decoded batch must encode back to a
 * message that decodes to the same changes (a version 2 message comes back
 * as version 3, two bytes longer per change: its transaction fields, 0). */
#include "bus/bus.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const fc_bus_change *a, const fc_bus_change *b)
{
    const fc_workflow *x = &a->state, *y = &b->state;
    return a->deleted == b->deleted && strcmp(x->id, y->id) == 0 && x->epoch == y->epoch &&
           x->seq == y->seq && x->status == y->status && x->current_step == y->current_step &&
           x->total_steps == y->total_steps && x->created_at_ms == y->created_at_ms &&
           x->updated_at_ms == y->updated_at_ms && strcmp(x->name, y->name) == 0 &&
           strcmp(x->message, y->message) == 0 && a->txid == b->txid &&
           a->txn_changes == b->txn_changes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fc_bus_batch c;
    (void)fc_bus_from((const char *)data, size, "node-a");
    if (fc_bus_decode((const char *)data, size, &c) != 0) return 0;
    fc_bus_writer w;
    CHECK(fc_bus_writer_init(&w, c.node) == 0);
    size_t most = data[0] == FC_BUS_VERSION ? size : size + 2 * c.n;
    for (size_t i = 0; i < c.n; i++)
        CHECK(fc_bus_writer_add(&w, &c.changes[i].state, c.changes[i].deleted, c.changes[i].txid,
                                c.changes[i].txn_changes, most) == 0);
    size_t len = 0;
    const char *out = fc_bus_writer_finish(&w, c.sent_ns, &len);
    CHECK(len <= most); /* never longer than a message that decodes to the same */
    fc_bus_batch d;
    CHECK(fc_bus_decode(out, len, &d) == 0);
    CHECK(strcmp(d.node, c.node) == 0 && d.sent_ns == c.sent_ns && d.n == c.n);
    for (size_t i = 0; i < c.n; i++)
        CHECK(same(&c.changes[i], &d.changes[i]));
    CHECK(fc_bus_from(out, len, c.node));
    free(d.changes);
    free(c.changes);
    fc_bus_writer_free(&w);
    return 0;
}
