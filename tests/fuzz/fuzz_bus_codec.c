/* libFuzzer driver for the bus message codec (src/bus/codec.c): whatever
 * another node (or anything that can publish on the subject) sends must
 * decode safely or be refused, and a decoded message must encode back to
 * one that decodes to the same change. */
#include "bus/bus.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fc_bus_change c;
    (void)fc_bus_from((const char *)data, size, "node-a");
    if (fc_bus_decode((const char *)data, size, &c) != 0) return 0;
    size_t len = 0;
    char *out = fc_bus_encode(c.node, c.sent_ns, &c.state, c.deleted, c.deleted_at_ms, &len);
    CHECK(out && strlen(out) == len);
    fc_bus_change d;
    CHECK(fc_bus_decode(out, len, &d) == 0);
    CHECK(strcmp(d.node, c.node) == 0 && d.sent_ns == c.sent_ns && d.deleted == c.deleted);
    CHECK(strcmp(d.state.id, c.state.id) == 0 && d.state.epoch == c.state.epoch &&
          d.state.seq == c.state.seq && d.state.status == c.state.status);
    CHECK(strcmp(d.state.name, c.state.name) == 0 && strcmp(d.state.message, c.state.message) == 0);
    CHECK(d.state.updated_at_ms == c.state.updated_at_ms);
    CHECK(fc_bus_from(out, len, c.node));
    fc_workflow_clear(&d.state);
    fc_workflow_clear(&c.state);
    free(out);
    return 0;
}
