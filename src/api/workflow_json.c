/* Strict parsing of REST request bodies (POST create, PATCH) into workflows and patches. */
#include "api/workflow_json.h"
#include "common/error.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_BYTES 256
#define MESSAGE_MAX_BYTES 4096
#define STEPS_MAX 1000000000LL

#define STATUS_LIST "pending, running, paused, completed, failed, cancelled"

static const char *const create_fields[] = {"name",   "total_steps",  "id",
                                            "status", "current_step", "message"};
static const char *const patch_fields[] = {"status", "current_step", "total_steps", "message",
                                           "if_seq"};

/* Formats an error message into err (which may be NULL) and returns FC_EINVAL,
 * so every failure site is a single `return set_err(...)`. */
__attribute__((format(printf, 3, 4))) static int set_err(char *err, size_t errlen, const char *fmt,
                                                         ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return FC_EINVAL;
}

/* Loads body and checks that it is an object. JSON_DECODE_ANY lets a scalar
 * body reach the "must be a JSON object" message instead of a syntax error;
 * JSON_ALLOW_NUL is deliberately not set so "\u0000" stays rejected. */
static json_t *load_object(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        set_err(err, errlen, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        set_err(err, errlen, "request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Rejects any key not in allowed, so typos ("totalSteps") fail loudly. */
static int check_fields(json_t *obj, const char *const *allowed, size_t n, char *err, size_t errlen)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        size_t i = 0;
        while (i < n && strcmp(key, allowed[i]) != 0)
            i++;
        if (i == n) return set_err(err, errlen, "unknown field \"%s\"", key);
    }
    return 0;
}

/* Reads an integer in [0, max]. null, reals and booleans are type errors. */
static int get_int(const json_t *v, const char *key, int64_t max, int64_t *out, char *err,
                   size_t errlen)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return set_err(err, errlen, "\"%s\" must be a non-negative integer", key);
    if (json_integer_value(v) > max)
        return set_err(err, errlen, "\"%s\" must be at most %lld", key, (long long)max);
    *out = json_integer_value(v);
    return 0;
}

/* Copies a string of at most max bytes into a new heap string in *out. */
static int get_string(const json_t *v, const char *key, size_t max, bool nonempty, char **out,
                      char *err, size_t errlen)
{
    if (!json_is_string(v) || (nonempty && json_string_length(v) == 0))
        return set_err(err, errlen, "\"%s\" must be a%s string", key, nonempty ? " non-empty" : "");
    size_t n = json_string_length(v);
    if (n > max) return set_err(err, errlen, "\"%s\" must be at most %zu bytes", key, max);
    /* jansson cannot hold an embedded NUL without JSON_ALLOW_NUL; keep the check
     * so that a future flag change cannot silently truncate strings. */
    if (strlen(json_string_value(v)) != n)
        return set_err(err, errlen, "\"%s\" must not contain NUL characters", key);
    char *s = malloc(n + 1);
    if (!s) {
        set_err(err, errlen, "out of memory");
        return FC_ENOMEM;
    }
    memcpy(s, json_string_value(v), n + 1);
    *out = s;
    return 0;
}

static int get_status(const json_t *v, fc_status *out, char *err, size_t errlen)
{
    if (!json_is_string(v)) return set_err(err, errlen, "\"status\" must be one of " STATUS_LIST);
    if (fc_status_parse(json_string_value(v), out) != 0)
        return set_err(err, errlen, "unknown status \"%s\": must be one of " STATUS_LIST,
                       json_string_value(v));
    return 0;
}

static int get_id(const json_t *v, char out[FC_ID_MAX + 1], char *err, size_t errlen)
{
    if (!json_is_string(v) || !fc_id_valid(json_string_value(v)))
        return set_err(err, errlen, "\"id\" must match [A-Za-z0-9_-]{1,64}");
    /* strlen, not json_string_length: fc_id_valid bounded the bytes up to the NUL. */
    memcpy(out, json_string_value(v), strlen(json_string_value(v)) + 1);
    return 0;
}

static int check_steps(int64_t step, int64_t total, char *err, size_t errlen)
{
    if (step > total)
        return set_err(err, errlen, "current_step (%lld) is greater than total_steps (%lld)",
                       (long long)step, (long long)total);
    return 0;
}

/* Fills w from a validated-keys object; fields are checked in a fixed order so
 * a body with several problems always reports the same one. */
static int create_from_object(json_t *obj, fc_workflow *w, char *err, size_t errlen)
{
    json_t *v;
    int rc;

    if (!(v = json_object_get(obj, "name")))
        return set_err(err, errlen, "missing required field \"name\"");
    if ((rc = get_string(v, "name", NAME_MAX_BYTES, true, &w->name, err, errlen))) return rc;
    if (!(v = json_object_get(obj, "total_steps")))
        return set_err(err, errlen, "missing required field \"total_steps\"");
    if ((rc = get_int(v, "total_steps", STEPS_MAX, &w->total_steps, err, errlen))) return rc;

    if ((v = json_object_get(obj, "id")) && (rc = get_id(v, w->id, err, errlen))) return rc;
    if (!v) fc_id_generate(w->id);
    if ((v = json_object_get(obj, "status")) && (rc = get_status(v, &w->status, err, errlen)))
        return rc;
    if ((v = json_object_get(obj, "current_step")) &&
        (rc = get_int(v, "current_step", INT64_MAX, &w->current_step, err, errlen)))
        return rc;
    if ((v = json_object_get(obj, "message")) &&
        (rc = get_string(v, "message", MESSAGE_MAX_BYTES, false, &w->message, err, errlen)))
        return rc;
    if (!w->message && !(w->message = strdup(""))) {
        set_err(err, errlen, "out of memory");
        return FC_ENOMEM;
    }
    return check_steps(w->current_step, w->total_steps, err, errlen);
}

int fc_json_parse_create(const char *body, size_t len, fc_workflow *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->status = FC_STATUS_PENDING;
    json_t *obj = load_object(body, len, err, errlen);
    if (!obj) return FC_EINVAL;
    int rc =
        check_fields(obj, create_fields, sizeof create_fields / sizeof *create_fields, err, errlen);
    if (rc == 0) rc = create_from_object(obj, w, err, errlen);
    json_decref(obj);
    if (rc != 0) fc_workflow_clear(w);
    return rc;
}

static int patch_from_object(json_t *obj, fc_patch *p, char *err, size_t errlen)
{
    json_t *v;
    int rc;

    if ((v = json_object_get(obj, "status"))) {
        if ((rc = get_status(v, &p->status, err, errlen))) return rc;
        p->fields |= FC_PATCH_STATUS;
    }
    if ((v = json_object_get(obj, "current_step"))) {
        if ((rc = get_int(v, "current_step", INT64_MAX, &p->current_step, err, errlen))) return rc;
        p->fields |= FC_PATCH_CURRENT_STEP;
    }
    if ((v = json_object_get(obj, "total_steps"))) {
        if ((rc = get_int(v, "total_steps", STEPS_MAX, &p->total_steps, err, errlen))) return rc;
        p->fields |= FC_PATCH_TOTAL_STEPS;
    }
    if ((v = json_object_get(obj, "message"))) {
        if ((rc = get_string(v, "message", MESSAGE_MAX_BYTES, false, &p->message, err, errlen)))
            return rc;
        p->fields |= FC_PATCH_MESSAGE;
    }
    if ((v = json_object_get(obj, "if_seq"))) {
        if ((rc = get_int(v, "if_seq", INT64_MAX, &p->if_seq, err, errlen))) return rc;
        p->fields |= FC_PATCH_IF_SEQ;
    }
    return 0;
}

/* A patch with only if_seq would bump seq without changing anything visible. */
static int check_patch(const fc_patch *p, char *err, size_t errlen)
{
    const unsigned changes =
        FC_PATCH_STATUS | FC_PATCH_CURRENT_STEP | FC_PATCH_TOTAL_STEPS | FC_PATCH_MESSAGE;
    if (!(p->fields & changes))
        return set_err(err, errlen,
                       "request body must set at least one of status, current_step, "
                       "total_steps, message");
    const unsigned both = FC_PATCH_CURRENT_STEP | FC_PATCH_TOTAL_STEPS;
    if ((p->fields & both) == both)
        return check_steps(p->current_step, p->total_steps, err, errlen);
    return 0;
}

int fc_json_parse_patch(const char *body, size_t len, fc_patch *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    json_t *obj = load_object(body, len, err, errlen);
    if (!obj) return FC_EINVAL;
    int rc =
        check_fields(obj, patch_fields, sizeof patch_fields / sizeof *patch_fields, err, errlen);
    if (rc == 0) rc = patch_from_object(obj, p, err, errlen);
    if (rc == 0) rc = check_patch(p, err, errlen);
    json_decref(obj);
    if (rc != 0) fc_patch_clear(p);
    return rc;
}
