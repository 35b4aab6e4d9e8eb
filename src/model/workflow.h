/* The workflow record and the changes that can be applied to it.
 * Plain data shared by the store, the API and the hub. */
#ifndef FC_MODEL_WORKFLOW_H
#define FC_MODEL_WORKFLOW_H

#include <stdbool.h>
#include <stdint.h>

#define FC_ID_MAX 64
/* Epochs are in [1, FC_EPOCH_MAX] = 2^53-1: exact as a JavaScript number. */
#define FC_EPOCH_MAX INT64_C(9007199254740991)

typedef enum {
    FC_STATUS_PENDING = 0,
    FC_STATUS_RUNNING,
    FC_STATUS_PAUSED,
    FC_STATUS_COMPLETED,
    FC_STATUS_FAILED,
    FC_STATUS_CANCELLED,
} fc_status;

/* One workflow's state. name and message are heap strings owned by the
 * struct (never NULL once filled; "" when empty); fc_workflow_clear frees them. */
typedef struct fc_workflow {
    char id[FC_ID_MAX + 1];
    char *name;
    fc_status status;
    int64_t current_step;
    int64_t total_steps;
    char *message;
    /* The incarnation: a random number in [1, 2^53-1] the store draws when it
     * commits the create. (id, epoch, seq) names one change for ever, even
     * when the id is deleted and created again (seq starts at 1 again). */
    int64_t epoch;
    int64_t seq;
    int64_t created_at_ms; /* Unix time in ms */
    int64_t updated_at_ms; /* Unix time in ms; the commit time of change `seq` */
} fc_workflow;

/* Which fields a PATCH sets. */
enum {
    FC_PATCH_STATUS = 1u << 0,
    FC_PATCH_CURRENT_STEP = 1u << 1,
    FC_PATCH_TOTAL_STEPS = 1u << 2,
    FC_PATCH_MESSAGE = 1u << 3,
    FC_PATCH_IF_SEQ = 1u << 4,
};

typedef struct fc_patch {
    unsigned fields; /* FC_PATCH_* bits */
    fc_status status;
    int64_t current_step;
    int64_t total_steps;
    char *message; /* owned; NULL unless FC_PATCH_MESSAGE */
    int64_t if_seq;
} fc_patch;

const char *fc_status_name(fc_status s);
/* Returns 0 and sets *out, or -1 when name is not a status. */
int fc_status_parse(const char *name, fc_status *out);
bool fc_status_is_terminal(fc_status s);

/* True when id matches [A-Za-z0-9_-]{1,64}. */
bool fc_id_valid(const char *id);
/* Writes a new id, sortable by creation time (26 chars, ULID-like), into out. Thread-safe. */
void fc_id_generate(char out[FC_ID_MAX + 1]);

/* Frees name and message and zeroes the struct. */
void fc_workflow_clear(fc_workflow *w);
/* Deep copy; returns 0 or FC_ENOMEM. */
int fc_workflow_copy(fc_workflow *dst, const fc_workflow *src);
void fc_patch_clear(fc_patch *p);

/* Applies p to w (not if_seq; checks are the caller's). Takes ownership of
 * p->message. Returns 0, or FC_EINVAL when the result has current_step >
 * total_steps (w is then unchanged and p still owns its message). */
int fc_workflow_apply_patch(fc_workflow *w, fc_patch *p);

#endif
