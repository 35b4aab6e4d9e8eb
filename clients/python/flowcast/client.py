"""Client: the blocking REST client (http.client, keep-alive connections,
thread-safe). Every change carries an Idempotency-Key that stays the same
on each retry of that call, so a change whose answer was lost is applied
exactly once however often it is sent again."""

import http.client
import random
import ssl as _ssl
import threading
import time
from typing import Dict, Iterator, List, Optional, Tuple

from . import _common as c
from . import _rest as r
from ._common import BaseURL
from .errors import ConnectionFailed, SeqMismatchError
from .models import History, SinceValue, Workflow, WorkflowPage

# Errors that mean "no answer": the request may or may not have been applied.
LOST = (OSError, http.client.HTTPException)
# How a kept-alive connection the server closed meanwhile fails.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Client:
    """Blocking client of a flowcast server.

    url: "http://host:port" or "https://host:port" (a path prefix is kept),
    or several servers: a comma-separated string "http://a:8001,http://b:8001"
    or a list (also as servers=[...]). A request that gets no answer
    (refused, reset, timed out), or a 502/503/504 when there are several,
    goes to the next URL with the same Idempotency-Key; the backoff delay
    comes once per full round of URLs, and the client keeps to the URL that
    answered.
    token: None, the bearer string (JWT or --api-token), or a callable
    returning one, asked again when the held JWT reaches its exp or the
    server answers 401 (then the call is sent once more with the new one).
    ssl / ca_file: for https, an ssl.SSLContext, or a PEM file of CAs to
    verify the server against (default: the system store).
    timeout: seconds per attempt (connect, send, answer).
    retries, backoff_initial, backoff_max, retry_statuses: see RetryPolicy;
    an attempt with no answer (refused, reset, timed out) or answered with a
    status in retry_statuses waits backoff_delay(...) and is sent again.

    Errors: ApiError subclasses for HTTP errors (status, code, message),
    ConnectionFailed when no attempt got an answer, ProtocolError for an
    answer that is not the protocol's, ValueError for invalid arguments."""

    def __init__(self, url: Optional[c.ServersLike] = None, token: c.TokenLike = None, *,
                 servers: Optional[c.ServersLike] = None,
                 ssl: Optional[_ssl.SSLContext] = None, ca_file: Optional[str] = None,
                 timeout: float = 10.0, retries: int = 4, backoff_initial: float = 0.1,
                 backoff_max: float = 2.0, retry_statuses: Tuple[int, ...] = (429, 503)):
        self.servers = c.Servers(c.parse_servers(url, servers))
        self.tokens = c.TokenSource(token)
        self.ssl = c.ssl_context(self.servers.tls_base(), ssl, ca_file)
        self.timeout = timeout
        self.policy = c.RetryPolicy(retries, backoff_initial, backoff_max, tuple(retry_statuses))
        self._rng = random.Random()
        self._idle: Dict[BaseURL, List[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    @property
    def base(self) -> BaseURL:
        """The server in use: the URL of the list that answered last."""
        return self.servers.base

    # ------------------------------------------------------------ transport

    def _connection(self, base: BaseURL) -> Tuple[http.client.HTTPConnection, bool]:
        """An idle keep-alive connection to base (reused=True) or a new one."""
        with self._lock:
            idle = self._idle.get(base)
            if idle:
                return idle.pop(), True
        if base.tls:
            return http.client.HTTPSConnection(base.host, base.port,
                                               timeout=self.timeout, context=self.ssl), False
        return http.client.HTTPConnection(base.host, base.port, timeout=self.timeout), False

    def _send(self, req: c.Request, token: Optional[str], base: BaseURL):
        conn, reused = self._connection(base)
        try:
            conn.request(req.method, base.prefix + req.path, body=req.body,
                         headers=req.headers(base, token, keep_alive=True))
            resp = conn.getresponse()
            raw = resp.read()
            headers = {k.lower(): v for k, v in resp.getheaders()}
        except LOST as e:
            conn.close()
            e.reused = reused  # type: ignore[attr-defined]
            raise
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.setdefault(base, []).append(conn)
        return resp.status, headers, raw

    def _wait(self, start: int, attempt: int, retry_after: Optional[float]) -> None:
        """Before retry `attempt`: the next URL of the list at once, the
        backoff delay once a full round of URLs failed (every retry with
        one URL)."""
        n = len(self.servers)
        with self._lock:
            round_done = self.servers.move_on(start) if n > 1 else True
        if round_done:
            time.sleep(self.policy.delay(attempt // n, retry_after, self._rng))

    def _call(self, req: c.Request):
        """Sends req until it has an answer (same bytes, same key), and
        returns its JSON or raises its error."""
        attempt = refreshed = 0
        stale_ok = True
        start = self.servers.cur
        many = len(self.servers) > 1
        while True:
            token = self.tokens.get()
            base = self.servers.base
            try:
                status, headers, raw = self._send(req, token, base)
            except _ssl.SSLCertVerificationError as e:
                raise ConnectionFailed("%s: the server's certificate is not trusted: %s"
                                       % (base, e.verify_message), attempt + 1) from e
            except LOST as e:
                # A kept-alive connection the server had already closed
                # (idle timeout) is not a failure of the server: once, at once.
                if isinstance(e, STALE) and getattr(e, "reused", False) and stale_ok:
                    stale_ok = True
                    continue
                if attempt >= self.policy.retries:
                    raise ConnectionFailed("%s %s: no answer from %s after %d attempts: %s"
                                           % (req.method, req.path, base, attempt + 1, e),
                                           attempt + 1) from e
                self._wait(start, attempt, None)
                attempt += 1
                continue
            if status == 401 and self.tokens.refreshable and not refreshed:
                refreshed = 1
                self.tokens.get(refresh=True)
                continue
            gateway = many and status in c.GATEWAY_STATUSES
            if (gateway or status in self.policy.statuses) and attempt < self.policy.retries:
                if gateway:
                    self._wait(start, attempt, c.retry_after(headers))
                else:
                    time.sleep(self.policy.delay(attempt, c.retry_after(headers), self._rng))
                attempt += 1
                continue
            return c.result_of(status, headers, raw)

    def close(self) -> None:
        """Closes the idle keep-alive connections."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ REST

    def create(self, name: str, total_steps: int, *, id: Optional[str] = None,
               status: Optional[str] = None, current_step: Optional[int] = None,
               message: Optional[str] = None,
               idempotency_key: Optional[str] = None) -> Workflow:
        """POST /api/workflows. id: generated by the server when None.
        Raises AlreadyExistsError (409) when the id exists."""
        return r.to_workflow(self._call(r.create(name, total_steps, id, status, current_step,
                                                 message, idempotency_key)))

    def update(self, id: str, *, status: Optional[str] = None,
               current_step: Optional[int] = None, total_steps: Optional[int] = None,
               message: Optional[str] = None, if_seq: Optional[int] = None,
               idempotency_key: Optional[str] = None) -> Workflow:
        """PATCH /api/workflows/{id}: fields left None keep their value.
        if_seq: apply only when the workflow's seq is this (else
        SeqMismatchError, nothing changed). TerminalStatusError once the
        workflow is completed/failed/cancelled; NotFoundError."""
        return r.to_workflow(self._call(r.update(id, status, current_step, total_steps,
                                                 message, if_seq, idempotency_key)))

    def step(self, id: str, message: Optional[str] = None) -> Workflow:
        """Moves the workflow one step on (GET, then PATCH with if_seq; again
        while other writers win the race, up to 50 times): "running" from
        pending/paused, "completed" at the last step. AtLastStepError when
        it already is at its last step."""
        err: Optional[SeqMismatchError] = None
        for _ in range(r.STEP_ATTEMPTS):
            f = r.step_fields(self.get(id), message)
            try:
                return self.update(id, **f)
            except SeqMismatchError as e:
                err = e
        assert err is not None
        raise err

    def get(self, id: str) -> Workflow:
        """GET /api/workflows/{id}; NotFoundError when unknown."""
        return r.to_workflow(self._call(r.get(id)))

    def list(self, *, status: Optional[str] = None, limit: Optional[int] = None,
             cursor: Optional[str] = None) -> WorkflowPage:
        """One page of GET /api/workflows, newest first (limit 1..1000,
        default 100); pass page.next_cursor as cursor for the next."""
        return r.to_page(self._call(r.list_(status, limit, cursor)))

    def iter_workflows(self, *, status: Optional[str] = None,
                       limit: Optional[int] = None) -> Iterator[Workflow]:
        """Every workflow (of `status`), newest first, following the cursors."""
        cursor = None
        while True:
            page = self.list(status=status, limit=limit, cursor=cursor)
            yield from page.workflows
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def delete(self, id: str, *, idempotency_key: Optional[str] = None) -> None:
        """DELETE /api/workflows/{id}; watchers get its Deletion.
        NotFoundError when unknown."""
        self._call(r.delete(id, idempotency_key))

    def history(self, id: str, since: Optional[SinceValue] = None, *,
                limit: Optional[int] = None) -> History:
        """GET /api/workflows/{id}/history: logged changes after `since`
        (a Position, (epoch, seq) or bare seq; None = from the start),
        oldest first, at most `limit` (default 100, at most 1000)."""
        return r.to_history(self._call(r.history(id, since, limit)))
