"""Pieces shared by the sync client, the async client and the watch: the
server URL, TLS, credentials, the backoff rule, idempotency keys, request
bodies and the mapping of answers to values or exceptions."""

import base64
import inspect
import json
import random
import re
import secrets
import ssl as _ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import (Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple,
                    Union)

from . import errors
from .models import SinceValue, as_position

__version__ = "0.1.0"
USER_AGENT = "flowcast-python/" + __version__

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEY_RE = re.compile(r"^[!-~]{1,128}$")
TOKEN_RE = re.compile(r"^[!-~]{1,4096}$")

TokenProvider = Callable[[], Union[str, Awaitable[str]]]
TokenLike = Union[None, str, TokenProvider]


# ---------------------------------------------------------------- URL and TLS

@dataclass(frozen=True)
class BaseURL:
    """A parsed server URL: http(s)://host[:port][/prefix]."""

    tls: bool
    host: str
    port: int
    prefix: str  # "" or "/some/path" without a trailing slash

    @property
    def hostport(self) -> str:
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%d" % (h, self.port)

    def ws(self, path: str) -> str:
        return "%s://%s%s%s" % ("wss" if self.tls else "ws", self.hostport, self.prefix, path)

    def __str__(self) -> str:
        return "%s://%s%s" % ("https" if self.tls else "http", self.hostport, self.prefix)


def parse_url(url: str) -> BaseURL:
    """"http://host:port", "https://host[/prefix]", or "host:port" (http)."""
    if "://" not in url:
        url = "http://" + url
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment:
        raise ValueError("the server URL must be http(s)://host[:port][/path]: %r" % url)
    tls = u.scheme == "https"
    try:
        port = u.port or (443 if tls else 80)
    except ValueError as e:
        raise ValueError("bad port in %r" % url) from e
    return BaseURL(tls, u.hostname, port, u.path.rstrip("/"))


# Statuses of a gateway (proxy, load balancer) that found no server behind
# it: with several URLs the request goes to the next one.
GATEWAY_STATUSES = (502, 503, 504)
# Most URLs in one list, as libflowcast takes.
MAX_SERVERS = 16
ServersLike = Union[str, BaseURL, Sequence[Union[str, BaseURL]]]


def parse_servers(url: Optional[ServersLike], servers: Optional[ServersLike] = None
                  ) -> List[BaseURL]:
    """The server list of a client: url or servers (one of them), each a
    URL, a comma-separated string of URLs ("http://a:8001,http://b:8001"),
    or a sequence of URLs. Used in turn: when one cannot be reached or is
    lost, the next (round robin)."""
    if (url is None) == (servers is None):
        raise ValueError("give the server as url or as servers (one of them)")
    v = url if url is not None else servers
    if isinstance(v, BaseURL):
        return [v]
    items = v.split(",") if isinstance(v, str) else list(v)  # type: ignore[union-attr]
    if not items or len(items) > MAX_SERVERS:
        raise ValueError("1 to %d server URLs, got %d" % (MAX_SERVERS, len(items)))
    out = []
    for x in items:
        if isinstance(x, BaseURL):
            out.append(x)
            continue
        x = x.strip()
        if not x:
            raise ValueError("an empty URL in the server list %r" % (v,))
        out.append(parse_url(x))
    return out


class Servers:
    """A list of servers and the one in use. A failure moves to the next;
    the backoff delay comes once per full round (when the move comes back to
    the URL where the failures began), as in libflowcast."""

    def __init__(self, bases: List[BaseURL]):
        self.bases = bases
        self.cur = 0

    @property
    def base(self) -> BaseURL:
        return self.bases[self.cur]

    def __len__(self) -> int:
        return len(self.bases)

    def move_on(self, start: int) -> bool:
        """Moves to the next URL; True when that completes a round (the
        caller then waits its backoff delay, with attempt // len(self))."""
        self.cur = (self.cur + 1) % len(self.bases)
        return self.cur == start

    def tls_base(self) -> BaseURL:
        """An https URL of the list if there is one (for the TLS context)."""
        return next((b for b in self.bases if b.tls), self.bases[0])


def ssl_context(base: BaseURL, ssl: Optional[_ssl.SSLContext],
                ca_file: Optional[str]) -> Optional[_ssl.SSLContext]:
    """The context for an https URL: the caller's, else one verifying
    against ca_file, else against the system store. None for http."""
    if not base.tls:
        return None
    if ssl is not None:
        return ssl
    return _ssl.create_default_context(cafile=ca_file)


# ---------------------------------------------------------------- credentials

def jwt_exp(token: str) -> Optional[float]:
    """The `exp` claim (unix seconds) of a JWT, read without verifying it;
    None for anything that is not a JWT with a numeric exp."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        pad = "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + pad))
    except (ValueError, TypeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)


def _check_token(v: Any) -> str:
    if not isinstance(v, str) or not TOKEN_RE.match(v):
        raise ValueError("a token is 1-4096 visible ASCII characters (got a %s)"
                         % type(v).__name__)
    return v


class TokenSource:
    """The bearer credential: None, a fixed string, or a callable (plain or
    async) returning one. A callable is asked when there is no token yet,
    when the held one is within `early` seconds of its JWT `exp`, and when
    the server refused it (refresh=True)."""

    def __init__(self, token: TokenLike, early: float = 1.0):
        self.provider = token if callable(token) else None
        self.token: Optional[str] = None if callable(token) or token is None \
            else _check_token(token)
        self.exp: Optional[float] = jwt_exp(self.token) if self.token else None
        self.obtained = time.time()
        self.early = early

    @property
    def refreshable(self) -> bool:
        return self.provider is not None

    def _stale(self) -> bool:
        return self.token is None or (self.exp is not None
                                      and self.exp - self.early <= time.time())

    def _store(self, v: Any) -> str:
        self.token = _check_token(v)
        self.exp = jwt_exp(self.token)
        self.obtained = time.time()
        return self.token

    def get(self, refresh: bool = False) -> Optional[str]:
        """The token to send now (sync: a coroutine provider is an error)."""
        if self.provider is None or not (refresh or self._stale()):
            return self.token
        v = self.provider()
        if inspect.isawaitable(v):
            close = getattr(v, "close", None)
            if close:
                close()
            raise TypeError("the token callable returned an awaitable: use AsyncClient")
        return self._store(v)

    async def aget(self, refresh: bool = False) -> Optional[str]:
        """The token to send now; the provider may be a coroutine function."""
        if self.provider is None or not (refresh or self._stale()):
            return self.token
        v = self.provider()
        if inspect.isawaitable(v):
            v = await v
        return self._store(v)

    def lifetime(self) -> Optional[float]:
        """Seconds between obtaining the held token and its exp."""
        return None if self.exp is None else self.exp - self.obtained


# ---------------------------------------------------------------- backoff

def backoff_ceiling(initial: float, maximum: float, attempt: int) -> float:
    """min(maximum, initial * 2**attempt): the longest wait before retry
    `attempt` (0 for the first retry), in seconds."""
    c = initial
    for _ in range(attempt):
        if c >= maximum:
            break
        c *= 2
    return min(c, maximum)


def backoff_delay(initial: float, maximum: float, attempt: int,
                  rng: Optional[random.Random] = None) -> float:
    """The wait before retry `attempt`: uniformly random in
    [0, backoff_ceiling(...)] ("full jitter", as libflowcast), seconds."""
    r = rng.random() if rng is not None else random.random()
    return r * backoff_ceiling(initial, maximum, attempt)


# ---------------------------------------------------------------- requests

def new_key() -> str:
    """A fresh Idempotency-Key: 128 random bits as 32 hex characters."""
    return secrets.token_hex(16)


def check_key(key: Optional[str]) -> str:
    if key is None:
        return new_key()
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError("an idempotency key is 1-128 visible ASCII characters: %r" % (key,))
    return key


def workflow_path(wid: str, suffix: str = "") -> str:
    if not isinstance(wid, str) or not ID_RE.match(wid):
        raise ValueError("invalid workflow id %r (allowed: 1-64 of A-Z a-z 0-9 _ -)" % (wid,))
    return "/api/workflows/" + wid + suffix


def query(path: str, params: Mapping[str, Any]) -> str:
    items = [(k, str(v)) for k, v in params.items() if v is not None]
    return path + ("?" + urllib.parse.urlencode(items) if items else "")


def body_of(**fields: Any) -> bytes:
    """A compact JSON object of the fields that are not None (None = not
    given: the server keeps the stored value)."""
    return json.dumps({k: v for k, v in fields.items() if v is not None},
                      separators=(",", ":")).encode()


def since_params(since: Optional[SinceValue]) -> Dict[str, Any]:
    if since is None:
        return {}
    p = as_position(since)
    return {"since": p.seq, "epoch": p.epoch or None}


@dataclass
class Request:
    """One logical call: sent again unchanged (same key) on each retry."""

    method: str
    path: str
    body: Optional[bytes] = None
    key: Optional[str] = None

    def headers(self, base: BaseURL, token: Optional[str], keep_alive: bool) -> Dict[str, str]:
        h = {"Host": base.hostport, "User-Agent": USER_AGENT, "Accept": "application/json"}
        if not keep_alive:
            h["Connection"] = "close"
        if self.body is not None:
            h["Content-Type"] = "application/json"
            h["Content-Length"] = str(len(self.body))
        if self.key is not None:
            h["Idempotency-Key"] = self.key
        if token:
            h["Authorization"] = "Bearer " + token
        return h


@dataclass
class RetryPolicy:
    """How a request whose answer was lost, or that was refused for now,
    is sent again. retries: further attempts after the first. backoff_*:
    seconds, full jitter (backoff_delay). statuses: HTTP statuses retried
    as well (default 429 and 503; a Retry-After up to backoff_max*5 is
    honoured). 507 storage_full is not retried by default: the disk stays
    full until an operator acts."""

    retries: int = 4
    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    statuses: Tuple[int, ...] = (429, 503)

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff_initial <= 0 or self.backoff_max <= 0:
            raise ValueError("retries must be >= 0 and backoff times > 0")

    def delay(self, attempt: int, retry_after: Optional[float], rng: random.Random) -> float:
        d = backoff_delay(self.backoff_initial, self.backoff_max, attempt, rng)
        if retry_after is not None:
            d = max(d, min(retry_after, self.backoff_max * 5))
        return d


def retry_after(headers: Mapping[str, str]) -> Optional[float]:
    v = headers.get("retry-after")
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def error_of(status: int, headers: Mapping[str, str], raw: bytes) -> errors.ApiError:
    """The ApiError for a non-2xx answer: {"error":{"code","message"}}, or
    {"error":"code"}, or the bare status when the body is something else."""
    code, message = "", ""
    try:
        e = json.loads(raw.decode("utf-8")).get("error")
        if isinstance(e, dict):
            code, message = str(e.get("code", "")), str(e.get("message", ""))
        elif isinstance(e, str):
            code = e
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = raw[:200].decode("utf-8", "replace")
    return errors.api_error(status, code, message or "HTTP %d" % status, headers,
                            retry_after(headers))


def result_of(status: int, headers: Mapping[str, str], raw: bytes) -> Any:
    """The parsed JSON of a 2xx answer (None for an empty body)."""
    if not 200 <= status <= 299:
        raise error_of(status, headers, raw)
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.ProtocolError("the server's answer is not JSON: %r" % raw[:200]) from e
