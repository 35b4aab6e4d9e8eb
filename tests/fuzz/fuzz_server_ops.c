/* libFuzzer driver for the multi-workflow stream ops (src/api/stream.c:
 * subscribe, unsubscribe, subscribe_all, their ids and since maps) from the
 * real entry point: a WebSocket on /api/updates of the in-process server.
 *
 * Input: as fzh_ops_session takes it. */
#include "server_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fzh_ops_session(data, size);
    return 0;
}
