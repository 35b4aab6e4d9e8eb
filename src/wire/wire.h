/* The wire format of what flowcast sends: workflow objects, the update and
 * deletion messages every stream carries, JSON error bodies, and the shared
 * WebSocket text frames they travel in. Below the hub (which encodes each
 * change once) and the API (which answers with the same objects), so that
 * neither depends on the other for it; another source of changes (a bus)
 * uses the same encoders. Knows nothing of connections, loops or the store. */
#ifndef FC_WIRE_WIRE_H
#define FC_WIRE_WIRE_H

#include "common/buf.h"
#include "model/workflow.h"

#include <stddef.h>
#include <stdint.h>

/* Encodes the workflow object {"id","epoch","name","status","current_step",
 * "total_steps","message","seq","created_at","updated_at"}. Returns a
 * malloc'ed NUL-terminated string (caller frees) and its length in *len, or NULL. */
char *fc_wire_workflow(const fc_workflow *w, size_t *len);

/* Encodes an update message {"workflow_id","epoch","name","status",
 * "current_step","total_steps","message","timestamp","seq"} (+ "resync":true
 * when resync; no "name" when w->name is NULL or empty). Same ownership as
 * fc_wire_workflow. */
char *fc_wire_update(const fc_workflow *w, int resync, size_t *len);

/* Encodes the message sent when a workflow is deleted:
 * {"workflow_id","epoch","deleted":true,"seq","timestamp"}: w's id and
 * epoch, and w->seq as given (the seq the deletion took). */
char *fc_wire_deleted(const fc_workflow *w, int64_t deleted_at_ms, size_t *len);

/* Encodes {"error":{"code":code,"message":message}}. */
char *fc_wire_error(const char *code, const char *message, size_t *len);

/* Encodes one WebSocket text frame carrying an update message for w
 * (with "resync":true when resync); key = w->id, epoch and seq = w's. NULL on OOM. */
fc_buf *fc_wire_update_frame(const fc_workflow *w, int resync);
/* Encodes the text frame of a deletion: w's id and epoch, w->seq the seq the
 * deletion took. No key: a deletion is never coalesced away. NULL on OOM. */
fc_buf *fc_wire_deleted_frame(const fc_workflow *w, int64_t deleted_at_ms);
/* Encodes one text frame with the given payload. NULL on OOM. */
fc_buf *fc_wire_text_frame(const char *payload, size_t len);

#endif
