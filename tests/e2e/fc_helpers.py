"""Helpers for the flowcast end-to-end tests: the server process wrapper,
HTTP over http.client and raw sockets, a raw WebSocket client with a frame
builder (for malformed frames), and small asyncio helpers around the
third-party `websockets` client. Every network wait has a timeout."""

import asyncio
import base64
import hashlib
import http.client
import json
import os
import random
import re
import select
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import threading
import time

import websockets

import openapi_check

HOST = "127.0.0.1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
GEN_ID_RE = re.compile(r"^[0-9A-Z]{26}$")
# Every workflow object and update carries its incarnation ("epoch", issue 8);
# every update its workflow's name (issue 11).
UPDATE_KEYS = {"workflow_id", "epoch", "name", "status", "current_step", "total_steps", "message",
               "timestamp", "seq"}
WORKFLOW_KEYS = {"id", "epoch", "name", "status", "current_step", "total_steps", "message", "seq",
                 "created_at", "updated_at"}
DELETED_KEYS = {"workflow_id", "epoch", "deleted", "seq", "timestamp"}
EPOCH_MAX = 2**53 - 1

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# TLS mode: with FLOWCAST_E2E_TLS_DIR set (test_tls.py sets it to run whole
# suites over TLS), the fixtures start every server with --tls-cert/--tls-key
# from that directory (ca.pem, server.pem, server.key) and every client here
# speaks TLS: HTTPS, wss://, raw sockets wrapped in TLS.
TLS_DIR = os.environ.get("FLOWCAST_E2E_TLS_DIR")


def tls_client_context(cafile):
    """A client context that trusts only cafile (and checks the name)."""
    return ssl.create_default_context(cafile=cafile)


def _worker_port_range():
    """[lo, hi) for this pytest-xdist worker: the ports from 10000 up to the
    kernel's ephemeral range, split evenly between the workers."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_lo = 32768
    lo, hi = 10000, max(ephemeral_lo, 12000)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), index + 1)
    size = (hi - lo) // count
    return lo + index * size, lo + (index + 1) * size


_port_lo, _port_hi = _worker_port_range()
_port_next = _port_lo + os.getpid() % (_port_hi - _port_lo)


def port_range():
    """This worker's [lo, hi), for a child process picking its own ports
    (clients/js/test/ports.mjs reads it from FLOWCAST_TEST_PORTS) while
    this worker waits for it."""
    return _port_lo, _port_hi


def free_port():
    """A loopback port nobody listens on, from this worker's own range below
    the ephemeral ports, handed out in turn. Not bind(0): tests hold a port
    unbound for a while (a server killed and restarted on it, a node's port
    chosen before it starts), and bind(0) in the other xdist worker could
    hand that port to one of its servers meanwhile (it did, once: a client
    failing over to "its" restarted server got another test's 404)."""
    global _port_next
    for _ in range(_port_hi - _port_lo):
        port = _port_next
        _port_next = _port_lo + (_port_next + 1 - _port_lo) % (_port_hi - _port_lo)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port in %d-%d" % (_port_lo, _port_hi))


# ---------------------------------------------------------------- HTTP

class Resp:
    """A finished HTTP response: status, headers (case-insensitive), body."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict with lower-case keys
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "Resp(%d, %r, %r)" % (self.status, self.headers, self.body[:300])


def assert_error(resp, status, code=None):
    """Asserts an error response: status and body {"error":{"code","message"}}."""
    assert resp.status == status, resp
    ctype = resp.header("content-type", "")
    assert ctype.startswith("application/json"), resp
    body = resp.json()
    assert set(body.keys()) == {"error"}, body
    err = body["error"]
    assert isinstance(err.get("code"), str) and isinstance(err.get("message"), str), body
    assert err["message"], body
    if code is not None:
        assert err["code"] == code, body
    return err


def assert_workflow(w):
    assert set(w.keys()) == WORKFLOW_KEYS, w
    assert TIME_RE.match(w["created_at"]), w
    assert TIME_RE.match(w["updated_at"]), w
    assert w["updated_at"] >= w["created_at"], w
    assert isinstance(w["seq"], int) and w["seq"] >= 1, w
    assert isinstance(w["epoch"], int) and 1 <= w["epoch"] <= EPOCH_MAX, w
    return w


def assert_update(m, wid=None):
    assert UPDATE_KEYS <= set(m.keys()), m
    assert set(m.keys()) - UPDATE_KEYS <= {"resync"}, m
    assert TIME_RE.match(m["timestamp"]), m
    assert isinstance(m["epoch"], int) and 1 <= m["epoch"] <= EPOCH_MAX, m
    if wid is not None:
        assert m["workflow_id"] == wid, m
    return m


class Server:
    """A running flowcast process started by the server_factory fixture."""

    def __init__(self, binary, port, db, log_path, args, env, token=None, ssl_ctx=None):
        self.ssl_ctx = ssl_ctx  # set: the server speaks TLS, clients use this context
        self.binary = binary
        self.port = port
        self.db = db
        self.log_path = log_path
        self.args = args
        self.env = env
        self.token = token
        self.proc = None
        self.expect_exit = False  # set when a test kills/stops it on purpose

    # -- process
    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary] + self.args, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf, env=self.env)

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.expect_exit = True
                raise AssertionError("server exited with %s before it was ready:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                r = self.request("GET", "/healthz", timeout=1)
                if r.status == 200:
                    return
                last = r
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("server not ready within %ss (last: %r)\n%s"
                             % (timeout, last, self.log_tail()))

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Sends sig and returns the exit code (raises if it takes > timeout)."""
        self.expect_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("server did not exit within %ss after %s" % (timeout, sig))

    def kill9(self):
        self.expect_exit = True
        self.proc.kill()
        self.proc.wait(5)

    def log_tail(self, n=200):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    # -- HTTP
    def request(self, method, path, body=None, headers=None, auth=True, timeout=10):
        h = {}
        data = None
        if body is not None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = body
            h["Content-Type"] = "application/json"
        if auth and self.token:  # with --api-token every request but /healthz needs it
            h["Authorization"] = "Bearer " + self.token
        if headers:
            h.update(headers)
        c = self.http_connection(timeout)
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            body = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            # Every answer seen here must be as docs/openapi.json says.
            openapi_check.check(method, path, r.status, hdrs, body)
            return Resp(r.status, hdrs, body)
        finally:
            c.close()

    def http_connection(self, timeout=10):
        if self.ssl_ctx:
            return http.client.HTTPSConnection(HOST, self.port, timeout=timeout,
                                               context=self.ssl_ctx)
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def create(self, **fields):
        fields.setdefault("name", "wf")
        fields.setdefault("total_steps", 10)
        r = self.request("POST", "/api/workflows", fields)
        assert r.status == 201, r
        return assert_workflow(r.json())

    def patch(self, wid, **fields):
        r = self.request("PATCH", "/api/workflows/" + wid, fields)
        assert r.status == 200, r
        return assert_workflow(r.json())

    def get(self, wid):
        r = self.request("GET", "/api/workflows/" + wid)
        assert r.status == 200, r
        return assert_workflow(r.json())

    def delete(self, wid):
        r = self.request("DELETE", "/api/workflows/" + wid)
        assert r.status == 204, r
        return r

    def metrics(self):
        r = self.request("GET", "/metrics")
        assert r.status == 200, r
        return parse_metrics(r.body.decode())

    def ws_url(self, path):
        return "%s://%s:%d%s" % ("wss" if self.ssl_ctx else "ws", HOST, self.port, path)


def check_store_commit_histogram(server):
    """Five changes (the last one refused, 409: it waited for the writer
    all the same) each add one observation to flowcast_store_commit_seconds;
    its buckets are cumulative and its sum is the time they took."""
    name = "flowcast_store_commit_seconds"
    before = server.metrics()
    wid = server.create(name="timed", total_steps=9)["id"]
    for step in (1, 2, 3):
        server.patch(wid, current_step=step)
    r = server.request("PATCH", "/api/workflows/" + wid, {"current_step": 4, "if_seq": 1})
    assert r.status == 409, r
    after = server.metrics()
    assert after[name + "_count"] - before.get(name + "_count", 0) == 5, after
    assert after[name + "_sum"] > before.get(name + "_sum", 0)
    buckets = sorted((float(k.split('"')[1]), v) for k, v in after.items()
                     if k.startswith(name + "_bucket"))
    assert [v for _, v in buckets] == sorted(v for _, v in buckets), buckets
    assert buckets[-1] == (float("inf"), after[name + "_count"]), buckets


def parse_metrics(text):
    """Prometheus text -> {"name{labels}": float}; names without labels as-is."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)", line)
        assert m, "bad metrics line: %r" % line
        v = m.group(2)
        out[m.group(1)] = float(v)
    return out


class KeepAliveClient:
    """One persistent http.client connection, for producers sending many requests."""

    def __init__(self, server, timeout=10):
        self.server = server
        self.c = server.http_connection(timeout)

    def patch(self, wid, **fields):
        h = {"Content-Type": "application/json"}
        if self.server.token:
            h["Authorization"] = "Bearer " + self.server.token
        self.c.request("PATCH", "/api/workflows/" + wid, body=json.dumps(fields).encode(), headers=h)
        r = self.c.getresponse()
        body = r.read()
        openapi_check.check("PATCH", "/api/workflows/" + wid, r.status,
                            {k.lower(): v for k, v in r.getheaders()}, body)
        return r.status, body

    def close(self):
        self.c.close()


# ---------------------------------------------------------------- raw sockets

class SockReader:
    """A socket with a read buffer: exact reads, line reads, HTTP responses."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by server")
        self.buf += data

    def read_exact(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out reading %d bytes" % n)
            self._fill(left)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until(self, marker, timeout=5.0, limit=1 << 20):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError("no %r within %d bytes" % (marker, limit))
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out waiting for %r" % marker)
            self._fill(left)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_response(self, timeout=5.0, head_only=False):
        """Reads one HTTP/1.1 response (Content-Length or chunked body)."""
        head = self.read_until(b"\r\n\r\n", timeout).decode("latin-1")
        lines = head.split("\r\n")
        m = re.match(r"^HTTP/1\.1 (\d{3})( .*)?$", lines[0])
        assert m, "bad status line %r" % lines[0]
        status = int(m.group(1))
        headers = {}
        for ln in lines[1:]:
            if not ln:
                continue
            k, _, v = ln.partition(":")
            k = k.strip().lower()
            v = v.strip()
            headers[k] = headers[k] + ", " + v if k in headers else v
        body = b""
        if head_only or status == 101 or status == 204 or status == 304:
            return Resp(status, headers, body)
        if "content-length" in headers:
            body = self.read_exact(int(headers["content-length"]), timeout)
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self.read_until(b"\r\n", timeout).split(b";")[0].strip(), 16)
                if size == 0:
                    self.read_until(b"\r\n", timeout)
                    break
                body += self.read_exact(size, timeout)
                self.read_exact(2, timeout)
        elif "close" in headers.get("connection", "").lower():
            body = self.read_to_eof(timeout)
        return Resp(status, headers, body)

    def read_to_eof(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no EOF within %ss" % timeout)
            try:
                self._fill(left)
            except EOFError:
                break
            except ConnectionResetError:
                break
        out, self.buf = self.buf, b""
        return out

    def wait_readable(self, timeout):
        if self.buf:
            return True
        if isinstance(self.sock, ssl.SSLSocket):
            # The socket also turns readable for records that carry no data
            # (TLS 1.3 session tickets): only data counts.
            try:
                self._fill(timeout)
            except (socket.timeout, ssl.SSLWantReadError):
                return False
            except (EOFError, OSError):
                return True
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def at_eof(self, timeout=5.0):
        """True when the peer closes (FIN or RST) within timeout; data is discarded."""
        try:
            self.read_to_eof(timeout)
            return True
        except socket.timeout:
            return False


def connect(port, rcvbuf=None, timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((HOST, port))
    if TLS_DIR:
        s = tls_client_context(os.path.join(TLS_DIR, "ca.pem")).wrap_socket(s,
                                                                           server_hostname=HOST)
    return s


def raw_http(port, data, timeout=5.0, n=1):
    """Sends data on a new connection; returns (responses, reader)."""
    s = connect(port)
    s.sendall(data)
    rd = SockReader(s)
    out = [rd.read_response(timeout) for _ in range(n)]
    return out, rd


def send_in_two(rd, first, rest, wait=1.0):
    """Sends first; if the server answers within `wait`, does not send rest
    (so no unread bytes make the kernel reset the connection); else sends rest."""
    rd.sock.sendall(first)
    if rest and not rd.wait_readable(wait):
        try:
            rd.sock.sendall(rest)
        except (BrokenPipeError, ConnectionResetError):
            pass


def request_status(port, method, path, headers=None, body=b"", ws=False):
    """The status code of one request on a raw socket; ws=True makes it a
    WebSocket upgrade. Only the status line is read, since streams go on
    after their head."""
    headers = dict(headers or {})
    if ws:
        headers.update({"Upgrade": "websocket", "Connection": "Upgrade",
                        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                        "Sec-WebSocket-Version": "13"})
    s = socket.create_connection((HOST, port), timeout=10)
    try:
        s.sendall(http_request_bytes(method, path, port, headers, body))
        buf = b""
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        return int(buf.split(b" ", 2)[1])
    finally:
        s.close()


def read_http_message(sock):
    """One HTTP/1.1 message read from sock: (head, body) with the body as long
    as its Content-Length, or None when the peer closes first. For the test
    proxies that stand between a client and the server."""
    data = b""
    while b"\r\n\r\n" not in data:
        d = sock.recv(65536)
        if not d:
            return None
        data += d
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        d = sock.recv(65536)
        if not d:
            return None
        body += d
    return head, body


def http_request_bytes(method, path, port, headers=None, body=b""):
    h = {"Host": "%s:%d" % (HOST, port)}
    if headers:
        h.update(headers)
    lines = ["%s %s HTTP/1.1" % (method, path)] + ["%s: %s" % kv for kv in h.items() if kv[1] is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ---------------------------------------------------------------- WebSocket frames

def build_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, key=None, length=None):
    """Builds one client frame. rsv is the 3-bit RSV field; length overrides
    the encoded payload length (for lying headers)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = key if key is not None else os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if len(payload) < 4096 \
            else _xor_fast(payload, key)
        return hdr + key + payload
    return hdr + payload


def _xor_fast(payload, key):
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    @property
    def close_code(self):
        assert self.opcode == OP_CLOSE
        if len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    def text(self):
        return self.payload.decode("utf-8")

    def json(self):
        return json.loads(self.payload.decode("utf-8"))

    def __repr__(self):
        return "Frame(fin=%d op=%#x len=%d %r)" % (self.fin, self.opcode, len(self.payload),
                                                   self.payload[:80])


class RawWS:
    """A hand-rolled WebSocket client on a blocking socket."""

    def __init__(self, port, rcvbuf=None, timeout=10.0):
        self.port = port
        self.sock = connect(port, rcvbuf=rcvbuf, timeout=timeout)
        self.rd = SockReader(self.sock)
        self.response = None

    @classmethod
    def open(cls, server, path, headers=None, rcvbuf=None):
        """Opens path on server; sends the server's --api-token unless headers
        set Authorization (None removes it)."""
        ws = cls(server.port, rcvbuf=rcvbuf)
        if getattr(server, "token", None):
            headers = dict({"Authorization": "Bearer " + server.token}, **(headers or {}))
        r = ws.handshake(path, headers)
        assert r.status == 101, r
        return ws

    def handshake(self, path, headers=None, key=None, version="13", timeout=5.0):
        """Sends an upgrade request. headers may override or remove (value None)
        the defaults. Returns the response; checks Sec-WebSocket-Accept on 101."""
        key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        h = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
             "Sec-WebSocket-Version": version}
        if headers:
            h.update(headers)
        self.sock.sendall(http_request_bytes("GET", path, self.port, h))
        r = self.rd.read_response(timeout)
        self.response = r
        openapi_check.check("GET", path, r.status, r.headers, r.body)
        if r.status == 101:
            acc = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            assert r.header("sec-websocket-accept") == acc, r
            assert r.header("upgrade", "").lower() == "websocket", r
            assert "upgrade" in r.header("connection", "").lower(), r
        return r

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def send_text(self, s, **kw):
        self.send_frame(OP_TEXT, s.encode() if isinstance(s, str) else s, **kw)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def send_close(self, code=1000, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def recv_frame(self, timeout=5.0):
        h = self.rd.read_exact(2, timeout)
        fin = h[0] >> 7
        rsv = (h[0] >> 4) & 7
        op = h[0] & 0xF
        assert not (h[1] & 0x80), "server frames must not be masked"
        n = h[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.rd.read_exact(2, timeout))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.rd.read_exact(8, timeout))[0]
        payload = self.rd.read_exact(n, timeout) if n else b""
        return Frame(fin, rsv, op, payload)

    def recv_message(self, timeout=5.0, answer_pings=False):
        """Next data message (text/binary, reassembled); skips pings/pongs."""
        parts, op0 = [], None
        while True:
            f = self.recv_frame(timeout)
            if f.opcode == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CLOSE:
                raise AssertionError("unexpected close frame %r" % f.payload)
            if op0 is None:
                op0 = f.opcode
            parts.append(f.payload)
            if f.fin:
                return Frame(1, 0, op0, b"".join(parts))

    def recv_json(self, timeout=5.0):
        m = self.recv_message(timeout)
        assert m.opcode == OP_TEXT, m
        return m.json()

    def recv_close(self, timeout=5.0):
        """Reads frames until a close frame; returns it (skips data frames)."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                return f

    def expect_close(self, code, timeout=5.0):
        """Asserts the server sends a close frame with code and then closes TCP."""
        f = self.recv_close(timeout)
        assert f.close_code == code, "expected close %s, got %r" % (code, f)
        if len(f.payload) > 2:
            f.payload[2:].decode("utf-8")  # reason must be valid UTF-8
        try:  # complete the closing handshake; the server may already be gone
            self.send_frame(OP_CLOSE, f.payload[:2])
        except OSError:
            pass
        assert self.rd.at_eof(5.0), "server did not close TCP after close frame"
        return f

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


# ---------------------------------------------------------------- asyncio helpers

def run(coro, timeout=20.0):
    """Runs a coroutine with an overall timeout (so a test never hangs)."""
    async def guarded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(guarded())


async def ws_connect(server, path, **kw):
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 3)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    if server.ssl_ctx:
        kw.setdefault("ssl", server.ssl_ctx)
    if server.token and "extra_headers" not in kw:
        kw["extra_headers"] = {"Authorization": "Bearer " + server.token}
    return await asyncio.wait_for(websockets.connect(server.ws_url(path), **kw), 15)


async def recv_json(ws, timeout=5.0):
    data = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(data, str), data
    return json.loads(data)


async def expect_silence(ws, duration=0.3):
    """Asserts that nothing arrives within duration seconds."""
    try:
        data = await asyncio.wait_for(ws.recv(), duration)
    except asyncio.TimeoutError:
        return
    raise AssertionError("unexpected message: %r" % (data,))


async def recv_until_closed(ws, timeout=5.0):
    """Reads until the connection closes; returns (messages, close code received)."""
    msgs = []
    try:
        while True:
            msgs.append(await asyncio.wait_for(ws.recv(), timeout))
    except websockets.ConnectionClosed as e:
        return msgs, (e.rcvd.code if e.rcvd is not None else None)


async def in_thread(fn, *args, **kw):
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))


def wait_for(pred, timeout=5.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("%s not met within %ss (last %r)" % (what, timeout, last))


def first_beat_lateness(start, first_beat, interval, seed):
    """Periodic output (WebSocket pings, SSE heartbeats) against its due
    time: twelve streams opened at random phases over 1.5 s; start() opens
    one and returns it (it has close()) with the monotonic time it opened,
    first_beat(stream) waits for its first beat and checks it. Returns each
    first beat's arrival against open + interval (seconds)."""
    rng = random.Random(seed)
    starts = [rng.uniform(0.0, 1.5) for _ in range(12)]
    late, errors = [], []
    # Streams stay open until all have had their beat: a close would wake the
    # server's loop and flush the beats queued meanwhile, hiding the wait.
    all_beat = threading.Barrier(len(starts) + 1)

    def one(delay):
        stream = None
        try:
            time.sleep(delay)
            stream, opened = start()
            first_beat(stream)
            late.append(time.monotonic() - opened - interval)
        except Exception as e:  # reported by the test's thread
            errors.append(e)
        try:
            all_beat.wait(20)
        finally:
            if stream:
                stream.close()

    threads = [threading.Thread(target=one, args=(t,)) for t in starts]
    for t in threads:
        t.start()
    all_beat.wait(20)
    for t in threads:
        t.join(5)
    assert not errors, errors
    assert len(late) == len(starts)
    return late


def assert_beats_leave_at_their_tick(start, first_beat, interval):
    """A server whose wheel tick (interval / 20) is in step with its 250 ms
    sweep writes each stream's first beat at its tick, up to one tick before
    open + interval (lateness over (-tick, 0], median about -tick/2), not at
    the next sweep (over (0, tick], median about +tick/2): the median of
    first_beat_lateness must be below 0. A loaded machine delays the test's
    own threads and shifts every sample later, so a round that is not is
    tried again, up to three, and every round's figures are reported."""
    rounds = []
    for seed in (11, 12, 13):
        late = first_beat_lateness(start, first_beat, interval, seed)
        rounds.append(sorted(round(d * 1000) for d in late))
        if statistics.median(late) < 0:
            return
    assert False, "median lateness >= 0 in every round; lateness (ms) %s" % rounds
