"""Exceptions raised by the flowcast client.

Every error the package raises is a FlowcastError. An answer of the server
that is not 2xx is an ApiError (or a subclass chosen by its status and
`error.code`), carrying the HTTP status, the server's error code and
message, and the Retry-After seconds when the server sent them. A request
whose answer never came even after the retries is ConnectionFailed; a watch
that stops reconnecting is RetriesExhausted.
"""

from typing import Mapping, Optional


class FlowcastError(Exception):
    """Base class of every error of this package."""


class ProtocolError(FlowcastError):
    """The server answered something that is not the flowcast protocol
    (not HTTP, not JSON, a workflow object without an id, ...)."""


class ConnectionFailed(FlowcastError):
    """A request got no answer: the connection could not be made, was
    closed or timed out, `attempts` times in a row (1 + the retries).
    For a change (create/update/step/delete) the server may or may not have
    applied it; sending the same call again with the same idempotency_key
    is safe and tells. The last low-level error is __cause__."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


class RetriesExhausted(FlowcastError):
    """A watch gave up after `attempts` failed connection attempts in a row
    (its max_retries); `reason` says why the last one failed."""

    def __init__(self, attempts: int, reason: str):
        super().__init__("gave up after %d retries: %s" % (attempts, reason))
        self.attempts = attempts
        self.reason = reason


class ApiError(FlowcastError):
    """The server answered with an HTTP error.

    status: the HTTP status (int). code: the server's error code
    ("bad_request", "seq_mismatch", "token_expired", ...; see the Errors
    table of docs/protocol.md), or "" when the body had none. message: the
    server's human-readable text. retry_after: seconds from a Retry-After
    header (429, some 503), else None. headers: the answer's headers with
    lower-case names. workflow_id: the id an error of the multi-workflow
    stream named, else None."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Optional[Mapping[str, str]] = None,
                 retry_after: Optional[float] = None, workflow_id: Optional[str] = None):
        super().__init__("%s %s: %s" % (status, code or "error", message))
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.retry_after = retry_after
        self.workflow_id = workflow_id


class BadRequestError(ApiError):
    """400: the request or a value in it is invalid."""


class UnauthorizedError(ApiError):
    """401: missing, malformed or wrong credential (code "unauthorized")."""


class TokenExpiredError(UnauthorizedError):
    """401 with code "token_expired": the JWT reached its `exp`."""


class ForbiddenError(ApiError):
    """403: the credential does not allow this (scope or workflows), or the
    WebSocket Origin is not allowed."""


class NotFoundError(ApiError):
    """404: no workflow with this id (or unknown path)."""


class ConflictError(ApiError):
    """409: the change conflicts with the stored state."""


class AlreadyExistsError(ConflictError):
    """409 already_exists: a create with an id that exists."""


class SeqMismatchError(ConflictError):
    """409 seq_mismatch: `if_seq` differs from the workflow's current seq;
    nothing changed."""


class TerminalStatusError(ConflictError):
    """409 terminal_status: the workflow is completed, failed or cancelled
    and takes no more changes."""


class IdempotencyKeyReusedError(ApiError):
    """422 idempotency_key_reused: the key was used for another request."""


class RateLimitedError(ApiError):
    """429 rate_limited: over the server's --write-rate; see retry_after."""


class ServerError(ApiError):
    """500 and other 5xx without a more precise class."""


class UnavailableError(ServerError):
    """503: over a connection limit, or a read raced a re-creation."""


class StorageFullError(ServerError):
    """507 storage_full: the server's disk is full; the change was not saved."""


_BY_CODE = {
    "token_expired": TokenExpiredError,
    "already_exists": AlreadyExistsError,
    "seq_mismatch": SeqMismatchError,
    "terminal_status": TerminalStatusError,
    "idempotency_key_reused": IdempotencyKeyReusedError,
    "rate_limited": RateLimitedError,
    "storage_full": StorageFullError,
}

_BY_STATUS = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: IdempotencyKeyReusedError,
    429: RateLimitedError,
    503: UnavailableError,
    507: StorageFullError,
}


def api_error(status: int, code: str, message: str, headers: Optional[Mapping[str, str]] = None,
              retry_after: Optional[float] = None,
              workflow_id: Optional[str] = None) -> ApiError:
    """The most precise ApiError subclass for this status and code."""
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ApiError
    return cls(status, code, message, headers, retry_after, workflow_id)
