/* Error codes shared by every flowcast module: 0 is success, failures are negative. */
#ifndef FC_COMMON_ERROR_H
#define FC_COMMON_ERROR_H

enum {
    FC_OK = 0,
    FC_ENOTFOUND = -1, /* no such workflow */
    FC_EEXISTS = -2,   /* id already taken */
    FC_ESEQ = -3,      /* if_seq did not match the current seq */
    FC_ETERMINAL = -4, /* workflow is in a terminal status and cannot change */
    FC_EINVAL = -5,    /* invalid input (message says why) */
    FC_EIO = -6,       /* storage failure */
    FC_ENOMEM = -7,
    FC_ELIMIT = -8, /* a configured limit is reached (answered already) */
    FC_EBUSY = -20, /* the resource is held by another process (the database lock) */
    FC_EFULL = -21, /* storage is full (SQLITE_FULL, ENOSPC): the change was not saved */
    /* An idempotency key already used for another request. */
    FC_EKEYREUSED = -22,
    /* The store's server cannot be reached (PostgreSQL down or too slow):
     * nothing was saved, or the outcome is unknown; retrying later is safe
     * with an idempotency key. */
    FC_EUNAVAILABLE = -23,
};

#endif
