/* Names of flowcast error codes, as used in JSON error bodies. */
#include "common/error.h"

const char *fc_error_name(int err)
{
    switch (err) {
    case FC_OK:
        return "ok";
    case FC_ENOTFOUND:
        return "not_found";
    case FC_EEXISTS:
        return "already_exists";
    case FC_ESEQ:
        return "seq_mismatch";
    case FC_ETERMINAL:
        return "terminal_status";
    case FC_EINVAL:
        return "invalid";
    case FC_EIO:
        return "storage_error";
    case FC_ENOMEM:
        return "out_of_memory";
    default:
        return "error";
    }
}
