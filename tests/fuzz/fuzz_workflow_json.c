/* libFuzzer driver for request-body validation and workflow JSON encoding
 * (src/api/workflow_json.c, src/wire/encode.c): whatever parses must encode
 * to JSON that jansson reads back with the same values. */
#include "api/workflow_json.h"
#include "common/error.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const fc_workflow *w)
{
    size_t len = 0;
    char *out = fc_wire_workflow(w, &len);
    CHECK(out && strlen(out) == len);
    json_error_t e;
    json_t *j = json_loadb(out, len, 0, &e);
    CHECK(j);
    CHECK(strcmp(json_string_value(json_object_get(j, "id")), w->id) == 0);
    CHECK(strcmp(json_string_value(json_object_get(j, "name")), w->name) == 0);
    CHECK(strcmp(json_string_value(json_object_get(j, "message")), w->message) == 0);
    CHECK(json_integer_value(json_object_get(j, "total_steps")) == w->total_steps);
    json_decref(j);
    free(out);
    out = fc_wire_update(w, 1, &len);
    CHECK(out);
    j = json_loadb(out, len, 0, &e);
    CHECK(j && json_is_true(json_object_get(j, "resync")));
    json_decref(j);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    fc_workflow w = {0};
    if (fc_json_parse_create((const char *)data, size, &w, err, sizeof err) == 0) {
        CHECK(fc_id_valid(w.id) && w.current_step <= w.total_steps);
        check_roundtrip(&w);
        fc_workflow_clear(&w);
    } else {
        CHECK(err[0] != '\0');
    }
    fc_patch p = {0};
    if (fc_json_parse_patch((const char *)data, size, &p, err, sizeof err) == 0)
        CHECK(p.fields &
              (FC_PATCH_STATUS | FC_PATCH_CURRENT_STEP | FC_PATCH_TOTAL_STEPS | FC_PATCH_MESSAGE));
    else
        CHECK(err[0] != '\0');
    fc_patch_clear(&p);
    return 0;
}
