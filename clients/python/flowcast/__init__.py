"""flowcast: Python client of a flowcast server (REST and live updates).

    import flowcast
    c = flowcast.Client("http://127.0.0.1:8001", token="...")
    w = c.create("nightly build", 10)
    c.step(w.id, "compiling")

    async with flowcast.AsyncClient(url).watch([w.id]) as watch:
        async for ev in watch:      # flowcast.Update or flowcast.Deletion
            print(ev.workflow_id, ev.seq, getattr(ev, "status", "deleted"))

Client is blocking (http.client), AsyncClient is asyncio; both send an
Idempotency-Key with every change and retry lost answers with it, so each
change is applied once. Watch reconnects with backoff and resumes by
(epoch, seq): nothing lost, nothing repeated. See README.md and
docs/protocol.md of the flowcast repository.
"""

from ._common import (USER_AGENT, TokenSource, __version__, backoff_ceiling, backoff_delay,
                      jwt_exp, new_key)
from ._rest import AtLastStepError
from .aio import AsyncClient
from .client import Client
from .errors import (AlreadyExistsError, ApiError, BadRequestError, ConflictError,
                     ConnectionFailed, FlowcastError, ForbiddenError,
                     IdempotencyKeyReusedError, NotFoundError, ProtocolError, RateLimitedError,
                     RetriesExhausted, SeqMismatchError, ServerError, StorageFullError,
                     TerminalStatusError, TokenExpiredError, UnauthorizedError,
                     UnavailableError)
from .models import (EPOCH_MAX, STATUSES, TERMINAL, Deletion, Event, History, Position, Update,
                    WatchState, Workflow, WorkflowPage, parse_time)
from .watch import Watch

__all__ = [
    "AlreadyExistsError", "ApiError", "AsyncClient", "AtLastStepError", "BadRequestError",
    "Client", "ConflictError", "ConnectionFailed", "Deletion", "EPOCH_MAX", "Event",
    "FlowcastError", "ForbiddenError", "History", "IdempotencyKeyReusedError", "NotFoundError",
    "Position", "ProtocolError", "RateLimitedError", "RetriesExhausted", "STATUSES",
    "SeqMismatchError", "ServerError", "StorageFullError", "TERMINAL", "TerminalStatusError",
    "TokenExpiredError", "TokenSource", "USER_AGENT", "UnauthorizedError", "UnavailableError",
    "Update", "Watch", "WatchState", "Workflow", "WorkflowPage", "__version__",
    "backoff_ceiling", "backoff_delay", "jwt_exp", "new_key", "parse_time",
]
