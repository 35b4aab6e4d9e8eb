/* JSON for workflows: strict validation of request bodies (with precise
 * messages). Encoding is the wire format's (src/wire/wire.h). */
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

#endif
