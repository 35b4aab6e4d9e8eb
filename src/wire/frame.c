/* Shared WebSocket text frames for update and deletion messages: encoded
 * once per change and handed by reference to every subscriber (server
 * frames are unmasked, so the bytes are the same for all). */
#include "wire/wire.h"
#include "ws/frame.h"

#include <stdlib.h>
#include <string.h>

static fc_buf *frame_from_json(char *json, size_t len, const char *key)
{
    if (!json) return NULL;
    size_t hlen = fc_ws_header_size(len);
    fc_buf *b = key ? fc_buf_new_keyed(hlen + len, key) : fc_buf_new(hlen + len);
    if (b) {
        fc_ws_header_encode(b->data, FC_WS_OP_TEXT, len);
        memcpy(b->data + hlen, json, len);
    }
    free(json);
    return b;
}

fc_buf *fc_wire_update_frame(const fc_workflow *w, int resync)
{
    size_t len = 0;
    char *json = fc_wire_update(w, resync, &len);
    fc_buf *b = frame_from_json(json, len, w->id);
    if (b) {
        b->seq = w->seq;
        b->epoch = w->epoch;
    }
    return b;
}

fc_buf *fc_wire_deleted_frame(const fc_workflow *w, int64_t deleted_at_ms)
{
    size_t len = 0;
    char *json = fc_wire_deleted(w, deleted_at_ms, &len);
    fc_buf *b = frame_from_json(json, len, NULL);
    if (b) {
        b->seq = w->seq;
        b->epoch = w->epoch;
    }
    return b;
}

fc_buf *fc_wire_text_frame(const char *payload, size_t len)
{
    size_t hlen = fc_ws_header_size(len);
    fc_buf *b = fc_buf_new(hlen + len);
    if (b) {
        fc_ws_header_encode(b->data, FC_WS_OP_TEXT, len);
        memcpy(b->data + hlen, payload, len);
    }
    return b;
}
