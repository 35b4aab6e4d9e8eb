/* JSON for workflows: strict validation of request bodies (with precise
 * messages) and encoding of workflow objects and update messages. */
#ifndef FC_API_WORKFLOW_JSON_H
#define FC_API_WORKFLOW_JSON_H

#include "model/workflow.h"

#include <stddef.h>

/* Parses a POST /api/workflows body into w (all fields filled; id generated
 * when absent; status defaults to pending, current_step to 0, message to "").
 * Returns 0, or FC_EINVAL with a message in err such as
 * "invalid JSON at line 1, column 7: ..." / "unknown field \"foo\"" /
 * "\"total_steps\" must be a non-negative integer" /
 * "current_step (5) is greater than total_steps (3)". */
int fc_json_parse_create(const char *body, size_t len, fc_workflow *w, char *err, size_t errlen);

/* Parses a PATCH body into p. Same error convention. An empty object is an error. */
int fc_json_parse_patch(const char *body, size_t len, fc_patch *p, char *err, size_t errlen);

/* Encodes the workflow object {"id","epoch","name","status","current_step",
 * "total_steps","message","seq","created_at","updated_at"}. Returns a
 * malloc'ed NUL-terminated string (caller frees) and its length in *len, or NULL. */
char *fc_json_workflow(const fc_workflow *w, size_t *len);

/* Encodes an update message {"workflow_id","epoch","status","current_step",
 * "total_steps","message","timestamp","seq"} (+ "resync":true when resync).
 * Same ownership as fc_json_workflow. */
char *fc_json_update(const fc_workflow *w, int resync, size_t *len);

/* Encodes the message sent when a workflow is deleted:
 * {"workflow_id","epoch","deleted":true,"seq","timestamp"}: w's id and
 * epoch, and w->seq as given (the seq the deletion took). */
char *fc_json_deleted(const fc_workflow *w, int64_t deleted_at_ms, size_t *len);

/* Encodes {"error":{"code":code,"message":message}}. */
char *fc_json_error(const char *code, const char *message, size_t *len);

#endif
