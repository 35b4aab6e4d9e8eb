/* Workflow statuses, ids, and patch application. */
#include "model/workflow.h"
#include "common/error.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char *const status_names[] = {"pending",   "running", "paused",
                                           "completed", "failed",  "cancelled"};

const char *fc_status_name(fc_status s)
{
    return (unsigned)s < sizeof status_names / sizeof *status_names ? status_names[s] : "unknown";
}

int fc_status_parse(const char *name, fc_status *out)
{
    for (size_t i = 0; i < sizeof status_names / sizeof *status_names; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (fc_status)i;
            return 0;
        }
    }
    return -1;
}

bool fc_status_is_terminal(fc_status s)
{
    return s == FC_STATUS_COMPLETED || s == FC_STATUS_FAILED || s == FC_STATUS_CANCELLED;
}

bool fc_id_valid(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        if (!ok || n >= FC_ID_MAX) return false;
    }
    return n > 0;
}

/* ULID layout: 48-bit millisecond time + 80 random bits, Crockford base32.
 * Within one millisecond the random part is incremented, so ids from this
 * process sort in creation order. */
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t id_last_ms;
static uint8_t id_last_rand[10];

void fc_id_generate(char out[FC_ID_MAX + 1])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    uint8_t bytes[16];

    pthread_mutex_lock(&id_lock);
    if (ms <= id_last_ms) {
        ms = id_last_ms;
        for (int i = 9; i >= 0 && ++id_last_rand[i] == 0; i--)
            ;
    } else {
        if (getrandom(id_last_rand, sizeof id_last_rand, 0) != (ssize_t)sizeof id_last_rand)
            for (size_t i = 0; i < sizeof id_last_rand; i++)
                id_last_rand[i] = (uint8_t)rand();
        id_last_rand[0] &= 0x7f; /* headroom so increments within a ms never wrap */
        id_last_ms = ms;
    }
    for (int i = 0; i < 6; i++)
        bytes[i] = (uint8_t)((uint64_t)ms >> (40 - 8 * i));
    memcpy(bytes + 6, id_last_rand, 10);
    pthread_mutex_unlock(&id_lock);

    /* 128 bits -> 26 base32 digits, most significant first (first digit holds 3 bits). */
    for (int i = 0; i < 26; i++) {
        int bit = 128 - 5 * (25 - i) - 5; /* position of this digit's lowest bit from the top */
        unsigned v = 0;
        for (int b = 0; b < 5; b++) {
            int pos = bit + b; /* bit index from the most significant end; may be negative */
            v <<= 1;
            if (pos >= 0) v |= (bytes[pos / 8] >> (7 - pos % 8)) & 1u;
        }
        out[i] = alphabet[v];
    }
    out[26] = '\0';
}

void fc_workflow_clear(fc_workflow *w)
{
    free(w->name);
    free(w->message);
    memset(w, 0, sizeof *w);
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

int fc_workflow_copy(fc_workflow *dst, const fc_workflow *src)
{
    *dst = *src;
    dst->name = dup_or_empty(src->name);
    dst->message = dup_or_empty(src->message);
    if (!dst->name || !dst->message) {
        fc_workflow_clear(dst);
        return FC_ENOMEM;
    }
    return 0;
}

void fc_patch_clear(fc_patch *p)
{
    free(p->message);
    memset(p, 0, sizeof *p);
}

int fc_workflow_apply_patch(fc_workflow *w, fc_patch *p)
{
    int64_t step = p->fields & FC_PATCH_CURRENT_STEP ? p->current_step : w->current_step;
    int64_t total = p->fields & FC_PATCH_TOTAL_STEPS ? p->total_steps : w->total_steps;
    if (step > total) return FC_EINVAL;
    w->current_step = step;
    w->total_steps = total;
    if (p->fields & FC_PATCH_STATUS) w->status = p->status;
    if (p->fields & FC_PATCH_MESSAGE) {
        free(w->message);
        w->message = p->message;
        p->message = NULL;
    }
    return 0;
}
