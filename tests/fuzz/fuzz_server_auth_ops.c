/* libFuzzer driver for the multi WebSocket of a --jwt-key server
 * (src/api/stream_auth.c and the ops around it): opened without a
 * credential, it refuses every op until {"op":"auth"} succeeds; a token
 * then replaces the previous one in place, ends the subscriptions outside
 * its scope and re-arms the expiry wheel. The seeds carry tokens signed
 * with the secret below (make_corpus.py), so the fuzzer starts past the
 * signature check and mutates scopes, workflows and the ops in between.
 *
 * Input: as fzh_ops_session takes it. */
#include "server_harness.h"

/* The HMAC secret of the seeds' tokens (make_corpus.py: FUZZ_JWT_SECRET). */
#define FUZZ_JWT_SECRET "fuzz-jwt-secret-for-the-auth-ops-driver-0123456789"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        fzh_use_jwt(FUZZ_JWT_SECRET);
        ready = 1;
    }
    fzh_ops_session(data, size);
    return 0;
}
