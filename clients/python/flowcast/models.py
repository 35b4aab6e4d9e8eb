"""Typed values of the flowcast protocol: workflows, updates, deletions,
positions, pages and watch states (frozen dataclasses).

Times are the server's strings, RFC 3339 UTC with milliseconds
("2026-11-27T05:00:01.250Z"); `parse_time` turns one into an aware
datetime. Integers are Python ints; an epoch is 1 .. 2**53-1 (0 in a
Position means "unknown"). Every object keeps the JSON it came from in
`raw` (a dict), so fields a newer server adds are not lost.
"""

import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from .errors import ProtocolError

EPOCH_MAX = 2**53 - 1
STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
TERMINAL = ("completed", "failed", "cancelled")


def parse_time(text: str) -> datetime.datetime:
    """"2026-11-27T05:00:01.250Z" -> an aware UTC datetime."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


def _int(d: Dict[str, Any], key: str, default: Optional[int] = None) -> int:
    v = d.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("%r is not an integer in %r" % (key, d))
    return v


def _str(d: Dict[str, Any], key: str, default: Optional[str] = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str):
        raise ProtocolError("%r is not a string in %r" % (key, d))
    return v


@dataclass(frozen=True)
class Position:
    """A place in one workflow's history: change `seq` of incarnation
    `epoch`. Keep the last one you handled and give it back as `since` to
    resume with nothing lost or repeated. epoch 0 = unknown (a bare seq:
    the server resumes it only if the id was never deleted, else resyncs)."""

    epoch: int
    seq: int

    def __str__(self) -> str:
        return "%d:%d" % (self.epoch, self.seq) if self.epoch else str(self.seq)


SinceValue = Union[Position, "tuple[int, int]", int]


def as_position(v: SinceValue) -> Position:
    """Position, (epoch, seq) tuple or bare seq int -> Position (checked)."""
    if isinstance(v, Position):
        p = v
    elif isinstance(v, tuple) and len(v) == 2:
        p = Position(int(v[0]), int(v[1]))
    elif isinstance(v, int) and not isinstance(v, bool):
        p = Position(0, v)
    else:
        raise TypeError("a position is a Position, an (epoch, seq) tuple or a seq int: %r" % (v,))
    if not 0 <= p.epoch <= EPOCH_MAX or p.seq < 0:
        raise ValueError("position out of range: %r" % (p,))
    return p


@dataclass(frozen=True)
class Workflow:
    """A workflow as GET/POST/PATCH return it. current_step/total_steps are
    step counts (0 <= current_step <= total_steps); seq counts the changes
    of incarnation `epoch` from 1; created_at/updated_at are RFC 3339."""

    id: str
    epoch: int
    name: str
    status: str
    current_step: int
    total_steps: int
    message: str
    seq: int
    created_at: str
    updated_at: str
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.seq)

    @property
    def terminal(self) -> bool:
        """completed, failed or cancelled: no more changes are accepted."""
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, d: Any) -> "Workflow":
        if not isinstance(d, dict):
            raise ProtocolError("not a workflow object: %r" % (d,))
        return cls(id=_str(d, "id"), epoch=_int(d, "epoch", 0), name=_str(d, "name", ""),
                   status=_str(d, "status"), current_step=_int(d, "current_step"),
                   total_steps=_int(d, "total_steps"), message=_str(d, "message", ""),
                   seq=_int(d, "seq"), created_at=_str(d, "created_at", ""),
                   updated_at=_str(d, "updated_at", ""), raw=d)


@dataclass(frozen=True)
class Update:
    """One change of one workflow, as a stream or the history delivers it.

    resync: True when this is a current state sent instead of history the
    client cannot have (the log no longer reaches back, another incarnation,
    a server that lost changes): take it as the whole truth, not a delta.
    new_incarnation: True when a watch held another epoch for this id: the
    workflow was deleted and created again, this is a new workflow under the
    old id (its seq starts again). name: the workflow's name when the server
    sends it, else None. timestamp: the change's commit time (RFC 3339)."""

    workflow_id: str
    epoch: int
    seq: int
    status: str
    current_step: int
    total_steps: int
    message: str
    timestamp: Optional[str]
    resync: bool = False
    new_incarnation: bool = False
    name: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.seq)

    @classmethod
    def from_json(cls, d: Dict[str, Any], new_incarnation: bool = False) -> "Update":
        name = d.get("name")
        return cls(workflow_id=_str(d, "workflow_id"), epoch=_int(d, "epoch", 0),
                   seq=_int(d, "seq"), status=_str(d, "status"),
                   current_step=_int(d, "current_step"), total_steps=_int(d, "total_steps"),
                   message=_str(d, "message", ""), timestamp=d.get("timestamp"),
                   resync=d.get("resync") is True, new_incarnation=new_incarnation,
                   name=name if isinstance(name, str) else None, raw=d)


@dataclass(frozen=True)
class Deletion:
    """Incarnation `epoch` of workflow `workflow_id` was deleted. seq is the
    deletion's own seq (one past the last change), or 0 when the watch only
    noticed it on a reconnect (the workflow was gone; seq and timestamp
    unknown). A watch of given ids then has no more updates of the id unless
    the server sends a new incarnation on the same stream."""

    workflow_id: str
    epoch: int
    seq: int
    timestamp: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.seq)


Event = Union[Update, Deletion]


@dataclass(frozen=True)
class WorkflowPage:
    """One page of GET /api/workflows, newest first; next_cursor is None on
    the last page, else the value to pass as cursor= for the next one."""

    workflows: List[Workflow]
    next_cursor: Optional[str]


@dataclass(frozen=True)
class History:
    """GET /api/workflows/{id}/history: the logged changes after the asked
    position, oldest first. epoch is the current incarnation; resync is True
    when the position could not be continued (another epoch, beyond the
    current seq, or a bare seq of a once-deleted id) and events start from
    the current incarnation's log; oldest_seq is the oldest change still
    logged (0 when the log is empty)."""

    workflow_id: str
    epoch: int
    events: List[Update]
    oldest_seq: int
    resync: bool
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class WatchState:
    """A watch's connection state, given to its on_state callback.

    state: "connecting" (attempt number `attempt`, 0 for the first), "open",
    "reconnecting" (the connection failed or ended: the next attempt starts
    after `delay` seconds; `reason` says why, `error` holds the exception
    when there was one), "closed" (the watch ended; error None when it ended
    normally)."""

    state: str
    attempt: int = 0
    delay: float = 0.0
    reason: Optional[str] = None
    error: Optional[BaseException] = None
    url: Optional[str] = None  # the server in use; for "reconnecting", the next one tried
