"""AsyncClient: the asyncio REST client (one connection per request, on
asyncio streams) and the factory of watches. The same calls, keys and
retry rules as the blocking Client."""

import asyncio
import random
import ssl as _ssl
from typing import AsyncIterator, Dict, Iterable, Mapping, Optional, Tuple

from . import _common as c
from . import _rest as r
from .errors import ConnectionFailed, ProtocolError, SeqMismatchError
from .models import History, SinceValue, Workflow, WorkflowPage
from .watch import Watch

MAX_HEAD = 64 * 1024
MAX_BODY = 256 * 1024 * 1024


class _Lost(Exception):
    """No (complete) answer on this attempt."""


async def _read_body(reader: asyncio.StreamReader, headers: Dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return bytes(out)
            if len(out) + size > MAX_BODY:
                raise ProtocolError("answer body too large")
            out += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in headers:
        n = int(headers["content-length"])
        if not 0 <= n <= MAX_BODY:
            raise ProtocolError("bad Content-Length %d" % n)
        return await reader.readexactly(n)
    return await reader.read(MAX_BODY)


class AsyncClient:
    """asyncio client of a flowcast server. Arguments, errors and methods
    are those of Client (every method is a coroutine), and token may also be
    a coroutine function. watch() opens live updates."""

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

    @property
    def base(self) -> c.BaseURL:
        """The server in use: the URL of the list that answered last."""
        return self.servers.base

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        return None

    # ------------------------------------------------------------ transport

    async def _exchange(self, req: c.Request, token: Optional[str], base: c.BaseURL):
        try:
            reader, writer = await asyncio.open_connection(
                base.host, base.port, ssl=self.ssl if base.tls else None,
                server_hostname=base.host if base.tls else None)
        except _ssl.SSLCertVerificationError:
            raise
        except OSError as e:
            raise _Lost("cannot connect to %s: %s" % (base, e)) from e
        try:
            head = ["%s %s HTTP/1.1" % (req.method, base.prefix + req.path)]
            head += ["%s: %s" % kv for kv in req.headers(base, token, False).items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (req.body or b""))
            await writer.drain()
            status_line = await reader.readuntil(b"\r\n")
            parts = status_line.decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                raise ProtocolError("the server's answer is not HTTP: %r" % status_line[:80])
            status = int(parts[1])
            headers: Dict[str, str] = {}
            size = 0
            while True:
                line = await reader.readuntil(b"\r\n")
                size += len(line)
                if size > MAX_HEAD:
                    raise ProtocolError("answer head too large")
                if line == b"\r\n":
                    break
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            body = b"" if req.method == "HEAD" or status in (204, 304) else \
                await _read_body(reader, headers)
            return status, headers, body
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            raise _Lost("connection to %s lost: %s" % (base, e or type(e).__name__)) from e
        finally:
            writer.close()

    async def _send(self, req: c.Request, token: Optional[str], base: c.BaseURL):
        try:
            return await asyncio.wait_for(self._exchange(req, token, base), self.timeout)
        except asyncio.TimeoutError as e:
            raise _Lost("no answer from %s within %ss" % (base, self.timeout)) from e

    async def _wait(self, start: int, attempt: int, retry_after: Optional[float]) -> None:
        """Before retry `attempt`: the next URL at once, the backoff delay
        once a full round of URLs failed (every retry with one URL)."""
        n = len(self.servers)
        if n == 1 or self.servers.move_on(start):
            await asyncio.sleep(self.policy.delay(attempt // n, retry_after, self._rng))

    async def _call(self, req: c.Request):
        attempt = refreshed = 0
        start = self.servers.cur
        many = len(self.servers) > 1
        while True:
            token = await self.tokens.aget()
            base = self.servers.base
            try:
                status, headers, raw = await self._send(req, token, base)
            except _ssl.SSLCertVerificationError as e:
                raise ConnectionFailed("%s: the server's certificate is not trusted: %s"
                                       % (base, e.verify_message), attempt + 1) from e
            except _Lost as e:
                if attempt >= self.policy.retries:
                    raise ConnectionFailed("%s %s: %s (after %d attempts)"
                                           % (req.method, req.path, e, attempt + 1),
                                           attempt + 1) from e.__cause__
                await self._wait(start, attempt, None)
                attempt += 1
                continue
            if status == 401 and self.tokens.refreshable and not refreshed:
                refreshed = 1
                await self.tokens.aget(refresh=True)
                continue
            gateway = many and status in c.GATEWAY_STATUSES
            if (gateway or status in self.policy.statuses) and attempt < self.policy.retries:
                if gateway:
                    await self._wait(start, attempt, c.retry_after(headers))
                else:
                    await asyncio.sleep(self.policy.delay(attempt, c.retry_after(headers),
                                                          self._rng))
                attempt += 1
                continue
            return c.result_of(status, headers, raw)

    # ------------------------------------------------------------ REST

    async def create(self, name: str, total_steps: int, *, id: Optional[str] = None,
                     status: Optional[str] = None, current_step: Optional[int] = None,
                     message: Optional[str] = None,
                     idempotency_key: Optional[str] = None) -> Workflow:
        """See Client.create."""
        return r.to_workflow(await self._call(r.create(name, total_steps, id, status,
                                                       current_step, message, idempotency_key)))

    async def update(self, id: str, *, status: Optional[str] = None,
                     current_step: Optional[int] = None, total_steps: Optional[int] = None,
                     message: Optional[str] = None, if_seq: Optional[int] = None,
                     idempotency_key: Optional[str] = None) -> Workflow:
        """See Client.update."""
        return r.to_workflow(await self._call(r.update(id, status, current_step, total_steps,
                                                       message, if_seq, idempotency_key)))

    async def step(self, id: str, message: Optional[str] = None) -> Workflow:
        """See Client.step."""
        err: Optional[SeqMismatchError] = None
        for _ in range(r.STEP_ATTEMPTS):
            f = r.step_fields(await self.get(id), message)
            try:
                return await self.update(id, **f)
            except SeqMismatchError as e:
                err = e
        assert err is not None
        raise err

    async def get(self, id: str) -> Workflow:
        """See Client.get."""
        return r.to_workflow(await self._call(r.get(id)))

    async def list(self, *, status: Optional[str] = None, limit: Optional[int] = None,
                   cursor: Optional[str] = None) -> WorkflowPage:
        """See Client.list."""
        return r.to_page(await self._call(r.list_(status, limit, cursor)))

    async def iter_workflows(self, *, status: Optional[str] = None,
                             limit: Optional[int] = None) -> AsyncIterator[Workflow]:
        """See Client.iter_workflows (an async iterator)."""
        cursor = None
        while True:
            page = await self.list(status=status, limit=limit, cursor=cursor)
            for w in page.workflows:
                yield w
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def delete(self, id: str, *, idempotency_key: Optional[str] = None) -> None:
        """See Client.delete."""
        await self._call(r.delete(id, idempotency_key))

    async def history(self, id: str, since: Optional[SinceValue] = None, *,
                      limit: Optional[int] = None) -> History:
        """See Client.history."""
        return r.to_history(await self._call(r.history(id, since, limit)))

    # ------------------------------------------------------------ live updates

    def watch(self, ids: Iterable[str] = (), *, all: bool = False,
              since: Optional[Mapping[str, SinceValue]] = None, **options) -> Watch:
        """A Watch of `ids` (a set; one id uses the single-workflow stream,
        several the multi-workflow one) and/or of every workflow (all=True),
        on this client's servers (the one in use first), credential and TLS
        settings. since: id ->
        position to resume from. options: see Watch."""
        # Every server of the client's list, starting with the one in use.
        bases = self.servers.bases[self.servers.cur:] + self.servers.bases[:self.servers.cur]
        return Watch(bases, ids, all=all, since=since, tokens=self.tokens, ssl=self.ssl,
                     **options)
