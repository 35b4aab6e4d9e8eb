"""Watch: live updates over WebSocket, with reconnect, backoff and resume
by (epoch, seq), following the same rules as libflowcast's fcc_watch
(src/client/watch*.c) and docs/protocol.md "What the clients do with
positions": each change is delivered once, in order, across reconnects and
server restarts; a re-created workflow arrives as a new incarnation.

One workflow (and not all=True) uses the single-workflow stream
/api/workflows/{id}/updates?since=N&epoch=E; anything else the
multi-workflow stream /api/updates with one subscribe op per id (with its
position) and subscribe_all."""

import asyncio
import json
import random
import ssl as _ssl
import time
from collections import deque
from typing import (Any, AsyncIterator, Callable, Deque, Dict, Iterable, List, Mapping, Optional,
                    Union)

import websockets.exceptions as wse
# The asyncio client of websockets 10.4 (Debian 12), which later versions
# keep under this name while websockets.connect moved to another API.
from websockets.legacy.client import connect as ws_connect

from . import _common as c
from .errors import (ConnectionFailed, FlowcastError, NotFoundError, ProtocolError, RetriesExhausted,
                     TokenExpiredError, api_error)
from .models import Deletion, Event, Position, SinceValue, Update, WatchState, as_position

MAX_MESSAGE = 16 << 20
# Close code of a stream whose token reached its exp (docs/protocol.md).
CLOSE_TOKEN_EXPIRED = 4401
# A multi stream whose every watched workflow is deleted waits this long
# for a new incarnation a resume may bring right behind the deletion.
GONE_GRACE = 1.0
_OP_STATUS = {"bad_request": 400, "unauthorized": 401, "token_expired": 401, "forbidden": 403,
              "not_found": 404, "internal": 500}


class _Sub:
    """One watched workflow and the last position delivered for it."""

    __slots__ = ("id", "epoch", "retired", "last_seq", "seen", "gone")

    def __init__(self, wid: str, epoch: int, last_seq: int):
        self.id = wid
        self.epoch = epoch      # incarnation of last_seq; 0 while unknown
        self.retired = 0        # the epoch `epoch` replaced: its late messages are old
        self.last_seq = last_seq  # -1 before the first update
        self.seen = False       # the server confirmed it exists
        self.gone = False       # incarnation `epoch` was deleted (kept to drop repeats)

    def fresh(self, epoch: int, seq: int, resync: bool, deleted: bool) -> bool:
        """Whether a message at (epoch, seq) is new to the application:
        another incarnation always is, the tracked one only past last_seq or
        as a resync below it (a server that lost changes), the retired one
        never; epoch 0 compares by seq alone. A gone sub takes only another
        incarnation, never a second deletion."""
        if epoch and epoch == self.retired:
            return False
        other = bool(epoch and self.epoch and epoch != self.epoch)
        if self.gone:
            return other and not deleted
        return other or seq > self.last_seq or (resync and seq < self.last_seq)


class _Retry(Exception):
    """This connection is over: try again (after a backoff unless immediate)."""

    def __init__(self, reason: str, error: Optional[BaseException] = None,
                 immediate: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.error = error
        self.immediate = immediate


class Watch:
    """Live updates of some workflows, or of all, as an async iterator of
    Update and Deletion events:

        async with client.watch(["build-42"]) as w:
            async for ev in w:
                ...

    ids: workflow ids (a set). all: also every change of every workflow
    (creations, seq 1, and deletions). since: id -> Position / (epoch, seq)
    / bare seq to resume from (ids named only here are watched too).
    token / tokens: as Client's token (a watch made by AsyncClient.watch
    shares the client's). ssl / ca_file: for https URLs (wss).
    url: one server, or several: a comma-separated string or a list (see
    Client); a failed or lost connection moves on to the next URL (round
    robin) and resumes there by (epoch, seq) exactly as on one server.
    backoff_initial, backoff_max: seconds; before retry n the watch waits
    a random delay in [0, min(backoff_max, backoff_initial * 2**n)], n
    counting failed attempts since the last open connection (with several
    URLs: only when a full round of them failed, n = attempts // URLs).
    max_retries: failed attempts in a row before RetriesExhausted (None =
    forever). ping_interval / ping_timeout / open_timeout: seconds.
    on_state: called with a WatchState on every connection change.
    refresh_lead: seconds before the token's exp to refresh it in place on
    the multi stream (default: a fifth of its lifetime, 1..30 s).

    The iteration ends when close() is called or every watched id (without
    all) is deleted; it raises NotFoundError for an id that does not exist,
    ForbiddenError / UnauthorizedError / TokenExpiredError when the
    credential does not (or no longer) cover the watch, RetriesExhausted,
    ApiError for other refused handshakes. Events already received are
    delivered before the error."""

    def __init__(self, url: c.ServersLike, ids: Iterable[str] = (), *, all: bool = False,
                 since: Optional[Mapping[str, SinceValue]] = None, token: c.TokenLike = None,
                 tokens: Optional[c.TokenSource] = None, ssl: Optional[_ssl.SSLContext] = None,
                 ca_file: Optional[str] = None, backoff_initial: float = 0.1,
                 backoff_max: float = 30.0, max_retries: Optional[int] = None,
                 ping_interval: float = 15.0, ping_timeout: float = 10.0,
                 open_timeout: float = 10.0,
                 on_state: Optional[Callable[[WatchState], Any]] = None,
                 refresh_lead: Optional[float] = None, seed: Optional[int] = None):
        if isinstance(ids, str):
            raise TypeError("ids is a collection of ids, not one string")
        self.servers = c.Servers(c.parse_servers(url))
        self._round_start = 0  # the URL where the failures since the last open began
        self.tokens = tokens or c.TokenSource(token)
        self.ssl = c.ssl_context(self.servers.tls_base(), ssl, ca_file)
        self.all = all
        if backoff_initial <= 0 or backoff_max <= 0 or (max_retries or 0) < 0:
            raise ValueError("backoff times must be > 0 and max_retries >= 0")
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.max_retries = max_retries
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.open_timeout = open_timeout
        self.on_state = on_state
        self.refresh_lead = refresh_lead
        self.state = "idle"
        self._rng = random.Random(seed)
        self._subs: Dict[str, _Sub] = {}
        positions = {k: as_position(v) for k, v in (since or {}).items()}
        ids = list(ids)
        for wid in ids + [k for k in positions if k not in ids]:
            c.workflow_path(wid)  # checks the id
            if wid not in self._subs:  # a set: the first position wins
                p = positions.get(wid)
                self._subs[wid] = _Sub(wid, p.epoch if p else 0, p.seq if p else -1)
        if not self._subs and not all:
            raise ValueError("nothing to watch: give ids or all=True")
        self._out: Deque[Event] = deque()
        self._pending: List[str] = []   # ids of subscribe ops awaiting an answer
        self._auth_pending = 0
        self._attempt = 0
        self._refreshed = False   # a refresh since the last open connection
        self._need_refresh = False
        self._fatal: Optional[BaseException] = None
        self._closing = False
        self._wake = asyncio.Event()
        self._stream_exp: Optional[float] = None  # exp of the token the open stream uses
        self._stream_life: Optional[float] = None
        self._ws: Optional[Any] = None
        self._conn_single: Optional[_Sub] = None  # the sub of an open single stream
        self._switch = False  # the open stream no longer fits the watched set
        self._all_sent: Optional[Any] = None  # the stream subscribe_all went on
        self._gen: Optional[AsyncIterator[Event]] = None

    # ------------------------------------------------------------ public

    @property
    def base(self) -> c.BaseURL:
        """The server in use (or being tried)."""
        return self.servers.base

    def position(self, wid: str) -> Optional[Position]:
        """The last position delivered for wid (None before any)."""
        s = self._subs.get(wid)
        return Position(s.epoch, s.last_seq) if s and s.last_seq >= 0 else None

    def positions(self) -> Dict[str, Position]:
        """id -> last position delivered, of every workflow not deleted:
        pass it as `since` to a later watch to resume exactly there."""
        return {s.id: Position(s.epoch, s.last_seq) for s in self._subs.values()
                if s.last_seq >= 0 and not s.gone}

    async def add(self, ids: Iterable[str] = (),
                  since: Optional[Mapping[str, SinceValue]] = None) -> None:
        """Watches more workflows, before or while the watch runs (ids
        already watched are left as they are; since: id -> position as in
        the constructor). On the multi stream each new id is subscribed at
        once; a single stream that now has company is reopened as a multi
        stream, resuming every id by position, so nothing is lost."""
        if isinstance(ids, str):
            raise TypeError("ids is a collection of ids, not one string")
        positions = {k: as_position(v) for k, v in (since or {}).items()}
        ids = list(ids)
        added: List[_Sub] = []
        for wid in ids + [k for k in positions if k not in ids]:
            c.workflow_path(wid)
            old = self._subs.get(wid)
            if old is not None and not old.gone:
                continue
            p = positions.get(wid)
            s = self._subs[wid] = _Sub(wid, p.epoch if p else 0, p.seq if p else -1)
            if old is not None:
                s.retired = old.epoch  # late messages of the deleted incarnation stay old
            added.append(s)
        ws = self._ws
        if not added or ws is None:
            return
        if self._conn_single is not None:
            await self._reopen(ws)
            return
        try:
            await self._subscribe(ws, added)
        except wse.ConnectionClosed:
            pass  # the reconnect subscribes them

    async def remove(self, ids: Iterable[str]) -> None:
        """Stops watching these workflows (their later changes are not
        delivered; with all=True they still come through subscribe_all).
        Removing every watched id of a watch without all ends it."""
        if isinstance(ids, str):
            raise TypeError("ids is a collection of ids, not one string")
        gone = [wid for wid in dict.fromkeys(ids) if self._subs.pop(wid, None) is not None]
        ws = self._ws
        if self._nothing_left():
            await self.close()
        elif not gone or ws is None:
            return
        elif self._conn_single is not None:
            if self._conn_single.id in gone:
                await self._reopen(ws)
        else:
            try:
                await ws.send(json.dumps({"op": "unsubscribe", "workflow_ids": gone}))
            except wse.ConnectionClosed:
                pass

    async def _reopen(self, ws) -> None:
        """Closes the open stream so that the watch reconnects at once with
        the stream that fits the watched set now."""
        self._switch = True
        await ws.close()

    def __aiter__(self) -> "Watch":
        return self

    async def __anext__(self) -> Event:
        if self._gen is None:
            self._gen = self._events()
        return await self._gen.__anext__()

    async def __aenter__(self) -> "Watch":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Ends the watch: the iteration stops (StopAsyncIteration)."""
        self._closing = True
        self._wake.set()
        if self._ws is not None:
            await self._ws.close()
        gen = self._gen
        if gen is not None and not gen.ag_running:  # type: ignore[attr-defined]
            await gen.aclose()  # type: ignore[attr-defined]

    # ------------------------------------------------------------ state

    def _emit(self, state: str, attempt: int = 0, delay: float = 0.0,
              reason: Optional[str] = None, error: Optional[BaseException] = None) -> None:
        self.state = state
        if self.on_state:
            self.on_state(WatchState(state, attempt, delay, reason, error, str(self.base)))

    def _live(self) -> List[_Sub]:
        return [s for s in self._subs.values() if not s.gone]

    def _single(self) -> Optional[_Sub]:
        """The one watched workflow when the single-workflow stream serves."""
        live = self._live()
        return live[0] if not self.all and len(live) == 1 else None

    def _path(self) -> str:
        s = self._single()
        if s is None:
            return "/api/updates"
        path = "/api/workflows/%s/updates" % s.id
        if s.last_seq >= 0:
            path += "?since=%d" % s.last_seq
            if s.epoch:
                path += "&epoch=%d" % s.epoch
        return path

    def _nothing_left(self) -> bool:
        return not self.all and not self._live()

    def _retry(self, why: _Retry) -> Optional[float]:
        """After a failed or ended connection: the delay before the next
        attempt, or None when the watch ends (nothing left, or too many
        failures: then _fatal is set)."""
        if self._nothing_left():
            return None
        if self.max_retries is not None and self._attempt >= self.max_retries:
            err = RetriesExhausted(self._attempt, why.reason)
            err.__cause__ = why.error
            self._fatal = err
            return None
        delay, reason, n = 0.0, why.reason, len(self.servers)
        if not why.immediate:
            # A failure moves on to the next server at once; the backoff
            # delay comes once every server failed in turn (a full round).
            round_done = self.servers.move_on(self._round_start) if n > 1 else True
            if n > 1:
                reason = "%s; next: %s" % (reason, self.base)
            if round_done:
                delay = c.backoff_delay(self.backoff_initial, self.backoff_max,
                                        self._attempt // n, self._rng)
        self._attempt += 1
        self._emit("reconnecting", self._attempt, delay, reason, why.error)
        return delay

    # ------------------------------------------------------------ messages

    def _deleted(self, s: _Sub, epoch: int, seq: int, ts: Optional[str],
                 raw: Optional[Dict[str, Any]]) -> None:
        """Incarnation `epoch` of s is gone: tell once. A watch of given ids
        keeps s, marked gone, to drop repeats and take a new incarnation
        that follows on the same stream; a watch of all forgets it."""
        epoch = epoch or s.epoch
        if raw is None:
            raw = {"workflow_id": s.id, "deleted": True, "seq": 0}
            if epoch:
                raw["epoch"] = epoch
        if self.all:
            del self._subs[s.id]
        else:
            s.gone = True
            if s.epoch and epoch != s.epoch:
                s.retired = s.epoch
            s.epoch = epoch
            if seq > 0:
                s.last_seq = seq
        self._out.append(Deletion(s.id, epoch, seq, ts, raw))

    def _update(self, j: Dict[str, Any]) -> None:
        wid, seq, epoch = j.get("workflow_id"), j.get("seq"), j.get("epoch", 0)
        if not isinstance(wid, str) or not _nonneg(seq) or not _nonneg(epoch):
            return
        resync, deleted = j.get("resync") is True, j.get("deleted") is True
        s = self._subs.get(wid)
        # A watch of all learns ids as they come; the deletion of one it
        # never saw (or already forgot) is not news.
        if s is None and self.all and not deleted and c.ID_RE.match(wid):
            s = self._subs[wid] = _Sub(wid, 0, -1)
        if s is None or not s.fresh(epoch, seq, resync, deleted):
            return
        if deleted:
            ts = j.get("timestamp")
            self._deleted(s, epoch, seq, ts if isinstance(ts, str) else None, j)
            return
        other = bool(epoch and s.epoch and epoch != s.epoch)
        try:
            u = Update.from_json(j, new_incarnation=other)
        except ProtocolError:
            return
        s.gone = False
        if other:
            s.retired = s.epoch
        if epoch:
            s.epoch = epoch
        s.last_seq, s.seen = seq, True
        self._out.append(u)

    def _op(self, j: Dict[str, Any], op: str) -> None:
        if op == "subscribed":
            for wid in j.get("workflow_ids") or ():
                if wid in self._pending:
                    self._pending.remove(wid)
            return
        if op == "authenticated":
            self._auth_pending = max(0, self._auth_pending - 1)
            return
        if op != "error":
            return
        code, msg, wid = j.get("code"), j.get("message") or "", j.get("workflow_id")
        if code == "token_expired":
            return  # the close 4401 follows; the watch then reconnects with a fresh token
        if code in ("unauthorized", "forbidden") and wid is None and self._auth_pending:
            # A refused refresh: the old token holds until its exp, then 4401.
            self._auth_pending -= 1
            return
        if isinstance(wid, str) and wid not in self._subs and not self.all:
            return  # an answer about an id removed meanwhile
        s = None
        if isinstance(wid, str) and wid in self._pending:
            self._pending.remove(wid)
            s = self._subs.get(wid)
        elif wid is None and self._pending:
            s = self._subs.get(self._pending.pop(0))
        if s is not None and code == "not_found":
            if not s.seen and not s.gone:
                self._fatal = NotFoundError(404, "not_found", msg or "unknown workflow",
                                            workflow_id=s.id)
            elif not s.gone:
                self._deleted(s, 0, 0, None, None)  # deleted while we were away
            return
        code = code if isinstance(code, str) else ""
        self._fatal = api_error(_OP_STATUS.get(code, 400), code,
                                msg or "the server refused a subscription",
                                workflow_id=wid if isinstance(wid, str) else
                                (s.id if s else None))

    def _message(self, text: Union[str, bytes]) -> None:
        try:
            j = json.loads(text)
        except ValueError:
            return
        if not isinstance(j, dict):
            return
        op = j.get("op")
        if isinstance(op, str):
            self._op(j, op)
        elif op is None:
            self._update(j)

    # ------------------------------------------------------------ connection

    async def _connect(self):
        """Opens the stream and subscribes; raises _Retry or a fatal error."""
        token = await self.tokens.aget(refresh=self._need_refresh)
        self._need_refresh = False
        single = self._single()
        kw: Dict[str, Any] = dict(
            extra_headers=[("Authorization", "Bearer " + token)] if token else None,
            open_timeout=self.open_timeout, ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout, close_timeout=2, max_size=MAX_MESSAGE,
            compression=None, user_agent_header=c.USER_AGENT)
        if self.base.tls:
            kw["ssl"] = self.ssl
        try:
            ws = await ws_connect(self.base.ws(self._path()), **kw)
        except wse.InvalidStatusCode as e:
            self._refused(e.status_code, single)
            raise _Retry("the handshake was answered %d" % e.status_code, e)
        except _ssl.SSLCertVerificationError as e:
            raise ConnectionFailed("%s: the server's certificate is not trusted: %s"
                                   % (self.base, e.verify_message), 1) from e
        except (OSError, asyncio.TimeoutError, wse.InvalidHandshake, wse.InvalidMessage,
                EOFError) as e:
            raise _Retry("cannot connect to %s: %s" % (self.base, e or type(e).__name__), e)
        self._ws = ws
        self._conn_single, self._switch = single, False
        self._stream_exp = c.jwt_exp(token) if token else None
        self._stream_life = self.tokens.lifetime() if token == self.tokens.token else None
        self._attempt = 0
        self._round_start = self.servers.cur
        self._refreshed = False
        self._pending, self._auth_pending = [], 0
        self._emit("open")
        if single is not None and self._single() is not single:
            await self._reopen(ws)  # add() or remove() ran while it connected
            return ws
        if single is None:
            try:
                await self._subscribe(ws, self._live())
            except wse.ConnectionClosed as e:
                raise _Retry("connection lost while subscribing: %s" % e, e)
        return ws

    def _refused(self, status: int, single: Optional[_Sub]) -> None:
        """A handshake answered status (not 101): fatal, or back to retry."""
        if status == 404 and single is not None:
            if not single.seen:
                raise NotFoundError(404, "not_found", "no workflow with id %r" % single.id,
                                    workflow_id=single.id)
            self._deleted(single, 0, 0, None, None)
            return
        if status == 401 and self.tokens.refreshable and not self._refreshed:
            self._refreshed = self._need_refresh = True
            raise _Retry("the server refused the token (401): refreshing it", immediate=True)
        if status >= 500 or status == 429:
            return
        if status == 401 and self.tokens.exp is not None and self.tokens.exp <= time.time():
            raise TokenExpiredError(401, "token_expired", "the token expired at %d and cannot "
                                    "be refreshed" % self.tokens.exp)
        raise api_error(status, {401: "unauthorized", 403: "forbidden"}.get(status, ""),
                        "the WebSocket handshake was refused with HTTP %d" % status)

    async def _subscribe(self, ws, subs: List[_Sub]) -> None:
        """One subscribe op per id, so that a not_found (a workflow deleted
        while we were away) names exactly one id and spares the others."""
        for s in subs:
            m: Dict[str, Any] = {"op": "subscribe", "workflow_ids": [s.id]}
            if s.last_seq >= 0:
                m["since"] = {s.id: {"epoch": s.epoch, "seq": s.last_seq} if s.epoch
                              else s.last_seq}
            self._pending.append(s.id)
            await ws.send(json.dumps(m, separators=(",", ":")))
        if self.all and ws is not self._all_sent:
            self._all_sent = ws
            await ws.send('{"op":"subscribe_all"}')

    async def _refresher(self, ws) -> None:
        """Multi stream: sends {"op":"auth"} with a fresh token shortly
        before the held one's exp, so the stream is never closed for it.
        A provider that gives nothing fresher (or fails) leaves it to the
        server's 4401 at exp and the reconnect that follows."""
        while True:
            exp = self._stream_exp
            if exp is None:
                return
            life = self._stream_life or 0.0
            lead = self.refresh_lead if self.refresh_lead is not None else \
                min(30.0, max(1.0, life / 5))
            await asyncio.sleep(max(0.0, exp - lead - time.time()))
            try:
                token = await self.tokens.aget(refresh=True)
            except Exception:  # noqa: BLE001 - the reconnect asks again and raises
                return
            new_exp = c.jwt_exp(token) if token else None
            if new_exp is None or new_exp <= exp:
                return
            self._auth_pending += 1
            try:
                await ws.send(json.dumps({"op": "auth", "token": token}))
            except wse.ConnectionClosed:
                return
            self._stream_exp, self._stream_life = new_exp, self.tokens.lifetime()

    async def _recv(self, ws):
        """The next message; on a multi stream with nothing left to watch,
        None after GONE_GRACE seconds of silence."""
        if self._nothing_left():
            try:
                return await asyncio.wait_for(ws.recv(), GONE_GRACE)
            except asyncio.TimeoutError:
                return None
        return await ws.recv()

    def _closed(self, e: wse.ConnectionClosed) -> _Retry:
        code = e.rcvd.code if e.rcvd is not None else None
        if code == CLOSE_TOKEN_EXPIRED:
            if not self.tokens.refreshable:
                raise TokenExpiredError(401, "token_expired",
                                        "the token expired and cannot be refreshed")
            self._need_refresh = True
            return _Retry("the token expired (4401): refreshing it", e, immediate=True)
        if code is not None:
            return _Retry("server closed the connection (code %d)" % code, e)
        return _Retry("connection lost: %s" % e, e)

    async def _sleep(self, delay: float) -> None:
        if delay > 0 and not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _events(self) -> AsyncIterator[Event]:
        ws = refresher = None
        delay: Optional[float] = 0.0
        error: Optional[BaseException] = None
        try:
            while True:
                while self._out:
                    yield self._out.popleft()
                if self._fatal is not None:
                    raise self._fatal
                if self._closing or delay is None:
                    return
                try:
                    if ws is None:
                        await self._sleep(delay)
                        if self._closing:
                            return
                        self._emit("connecting", self._attempt)
                        ws = await self._connect()
                        if self._conn_single is None and self.tokens.refreshable:
                            refresher = asyncio.ensure_future(self._refresher(ws))
                        continue
                    text = await self._recv(ws)
                    if text is None:
                        delay = None  # every watched workflow was deleted
                        continue
                    self._message(text)
                except _Retry as why:
                    delay = None if self._closing else self._retry(why)
                except wse.ConnectionClosed as e:
                    if ws is not None:
                        ws, old = None, ws
                        self._ws = None
                        if refresher:
                            refresher.cancel()
                            refresher = None
                        await old.close()
                    if self._closing:
                        delay = None
                    elif self._switch:
                        delay = self._retry(_Retry("the watched set changed: reopening", e,
                                                   immediate=True))
                    else:
                        delay = self._retry(self._closed(e))
        except BaseException as e:
            error = e
            raise
        finally:
            if refresher:
                refresher.cancel()
            self._ws = None
            if ws is not None:
                await ws.close()
            if isinstance(error, FlowcastError):
                self._emit("closed", reason=str(error), error=error)
            else:
                self._emit("closed", reason="every watched workflow was deleted"
                           if self._nothing_left() else "closed")


def _nonneg(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
