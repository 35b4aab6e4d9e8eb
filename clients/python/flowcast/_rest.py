"""The REST calls as data: each public method of Client and AsyncClient
builds a Request here and turns the answer's JSON into a typed value here,
so the two clients differ only in how bytes travel."""

from typing import Any, Dict, Optional

from . import _common as c
from .errors import FlowcastError, ProtocolError
from .models import History, SinceValue, Update, Workflow, WorkflowPage

# Attempts of step() when other writers keep moving the workflow under it.
STEP_ATTEMPTS = 50


class AtLastStepError(FlowcastError):
    """step() on a workflow whose current_step already equals total_steps."""


def create(name: str, total_steps: int, id: Optional[str], status: Optional[str],
           current_step: Optional[int], message: Optional[str],
           key: Optional[str]) -> c.Request:
    if id is not None:
        c.workflow_path(id)  # checks the alphabet
    body = c.body_of(name=name, total_steps=total_steps, id=id, status=status,
                     current_step=current_step, message=message)
    return c.Request("POST", "/api/workflows", body, c.check_key(key))


def update(wid: str, status: Optional[str], current_step: Optional[int],
           total_steps: Optional[int], message: Optional[str], if_seq: Optional[int],
           key: Optional[str]) -> c.Request:
    fields = dict(status=status, current_step=current_step, total_steps=total_steps,
                  message=message)
    if all(v is None for v in fields.values()):
        raise ValueError("update needs at least one of status, current_step, total_steps, "
                         "message")
    return c.Request("PATCH", c.workflow_path(wid), c.body_of(if_seq=if_seq, **fields),
                     c.check_key(key))


def get(wid: str) -> c.Request:
    return c.Request("GET", c.workflow_path(wid))


def list_(status: Optional[str], limit: Optional[int], cursor: Optional[str]) -> c.Request:
    return c.Request("GET", c.query("/api/workflows",
                                    {"status": status, "limit": limit, "cursor": cursor}))


def delete(wid: str, key: Optional[str]) -> c.Request:
    return c.Request("DELETE", c.workflow_path(wid), None, c.check_key(key))


def history(wid: str, since: Optional[SinceValue], limit: Optional[int]) -> c.Request:
    params: Dict[str, Any] = c.since_params(since)
    params["limit"] = limit
    return c.Request("GET", c.query(c.workflow_path(wid, "/history"), params))


def step_fields(cur: Workflow, message: Optional[str]) -> Dict[str, Any]:
    """The PATCH that moves cur one step on: current_step + 1, "running"
    from pending/paused, "completed" at the last step, guarded by if_seq."""
    if cur.current_step >= cur.total_steps and not cur.terminal:
        raise AtLastStepError("workflow %s is already at its last step (%d of %d)"
                              % (cur.id, cur.current_step, cur.total_steps))
    f: Dict[str, Any] = dict(current_step=cur.current_step + 1, message=message,
                             if_seq=cur.seq, status=None, total_steps=None)
    if cur.status in ("pending", "paused"):
        f["status"] = "running"
    if f["current_step"] == cur.total_steps:
        f["status"] = "completed"
    return f


def to_workflow(j: Any) -> Workflow:
    return Workflow.from_json(j)


def to_page(j: Any) -> WorkflowPage:
    if not isinstance(j, dict) or not isinstance(j.get("workflows"), list):
        raise ProtocolError("the server's answer has no \"workflows\" list")
    nxt = j.get("next_cursor")
    return WorkflowPage([Workflow.from_json(w) for w in j["workflows"]],
                        nxt if isinstance(nxt, str) else None)


def to_history(j: Any) -> History:
    if not isinstance(j, dict) or not isinstance(j.get("events"), list):
        raise ProtocolError("the server's answer has no \"events\" list")
    return History(workflow_id=str(j.get("workflow_id", "")), epoch=int(j.get("epoch", 0)),
                   events=[Update.from_json(e) for e in j["events"]],
                   oldest_seq=int(j.get("oldest_seq", 0)), resync=j.get("resync") is True, raw=j)
