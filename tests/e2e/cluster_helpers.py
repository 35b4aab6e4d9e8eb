"""Watchers and producers for the cluster tests: each runs in its own thread
against a list of ports (the proxy, or the nodes themselves), reconnects to
the next port whenever its connection fails, and resumes by (epoch, seq)
exactly as a real client does. They record what they saw so a test can check
that every watcher got every committed change once, in order.

Watcher kinds: "ws" (one workflow per WebSocket), "multi" (one multi
WebSocket), "sse" (one workflow), "sse_multi" (one SSE stream of several),
"longpoll" (one workflow; a long-poll returns the latest state, so it sees an
increasing subset of the seqs, ending at the last).

Frames and SSE events are parsed from a buffer that keeps partial input, so a
read timeout (used to check the stop flag) never loses bytes."""

import base64
import http.client
import json
import os
import socket
import struct
import threading
import time
import uuid

HOST = "127.0.0.1"


class _Conn:
    """A blocking socket with a buffer: partial input survives timeouts."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not d:
            raise EOFError("closed")
        self.buf += d
        return True

    def head(self, timeout=5.0):
        """Reads an HTTP response head: (status, {lower-case header: value})."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if time.monotonic() > deadline:
                raise socket.timeout("no response head")
            self.fill(0.5)
        raw, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _request(method, path, port, headers=None):
    h = {"Host": "%s:%d" % (HOST, port)}
    h.update(headers or {})
    return ("%s %s HTTP/1.1\r\n" % (method, path) +
            "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n").encode("latin-1")


def _frame(opcode, payload):
    key = os.urandom(4)
    n = len(payload)
    hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else \
        struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return hdr + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Stream:
    """One connection of one kind; next() gives the next update (dict) or
    None on a read timeout; raises on a lost connection."""

    def __init__(self, kind, port, pos, token=None):
        self.kind = kind
        self.c = _Conn(port)
        self.chunked = False
        self.raw = b""  # SSE body bytes before de-chunking
        self.ops = []
        auth = {"Authorization": "Bearer " + token} if token else {}
        wids = list(pos)
        if kind in ("ws", "multi"):
            e0, s0 = pos[wids[0]]
            path = "/api/updates" if kind == "multi" else \
                "/api/workflows/%s/updates" % wids[0] + \
                ("" if e0 is None else "?since=%d&epoch=%d" % (s0, e0))
            h = {"Upgrade": "websocket", "Connection": "Upgrade",
                 "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                 "Sec-WebSocket-Version": "13"}
            h.update(auth)
            self.c.sock.sendall(_request("GET", path, port, h))
            st, _ = self.c.head()
            if st != 101:
                raise ConnectionError("upgrade answered %d" % st)
            if kind == "multi":
                since = {w: {"epoch": e, "seq": s} for w, (e, s) in pos.items()
                         if e is not None}
                self.c.sock.sendall(_frame(1, json.dumps(
                    {"op": "subscribe", "workflow_ids": wids, "since": since}).encode()))
        else:
            if kind == "sse":
                path = "/api/workflows/%s/events" % wids[0]
                last = "%d:%d" % pos[wids[0]] if pos[wids[0]][0] is not None else None
            else:
                path = "/api/events?workflow_ids=" + ",".join(wids)
                last = ",".join("%s:%d:%d" % (w, e, s) for w, (e, s) in pos.items()
                                if e is not None) or None
            h = {"Accept": "text/event-stream"}
            if last:
                h["Last-Event-ID"] = last
            h.update(auth)
            self.c.sock.sendall(_request("GET", path, port, h))
            st, hd = self.c.head()
            if st != 200:
                raise ConnectionError("SSE answered %d" % st)
            self.chunked = "chunked" in hd.get("transfer-encoding", "").lower()
            self.raw, self.c.buf = self.c.buf, b""

    def close(self):
        self.c.close()

    def next(self, timeout=0.5):
        deadline = time.monotonic() + timeout
        while True:
            m = self._parse()
            if m is not None:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self.kind in ("ws", "multi"):
                self.c.fill(left)
            else:
                if self.c.fill(left):
                    self.raw += self.c.buf
                    self.c.buf = b""

    def _parse(self):
        if self.kind in ("ws", "multi"):
            return self._parse_ws()
        return self._parse_sse()

    def _parse_ws(self):
        while True:
            b = self.c.buf
            if len(b) < 2:
                return None
            op, n, off = b[0] & 0xF, b[1] & 0x7F, 2
            if n == 126:
                if len(b) < 4:
                    return None
                n, off = struct.unpack("!H", b[2:4])[0], 4
            elif n == 127:
                if len(b) < 10:
                    return None
                n, off = struct.unpack("!Q", b[2:10])[0], 10
            if len(b) < off + n:
                return None
            payload, self.c.buf = b[off:off + n], b[off + n:]
            if op == 0x9:
                self.c.sock.sendall(_frame(0xA, payload))
            elif op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise EOFError("close frame %s" % code)
            elif op == 0x1:
                m = json.loads(payload)
                if "op" in m:
                    if m["op"] == "error":
                        raise AssertionError("multi error %r" % m)
                    self.ops.append(m)
                    continue
                return m

    def _dechunk(self):
        if not self.chunked:
            self.c.buf, self.raw = self.c.buf + self.raw, b""
            return
        while True:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            size = int(self.raw[:i].split(b";")[0], 16)
            if size == 0:
                raise EOFError("stream ended")
            if len(self.raw) < i + 2 + size + 2:
                return
            self.c.buf += self.raw[i + 2:i + 2 + size]
            self.raw = self.raw[i + 2 + size + 2:]

    def _parse_sse(self):
        self._dechunk()
        while b"\n\n" in self.c.buf:
            block, _, self.c.buf = self.c.buf.partition(b"\n\n")
            fields = {}
            for line in block.decode().split("\n"):
                if not line or line.startswith(":"):
                    continue
                k, _, v = line.partition(":")
                fields[k] = v[1:] if v.startswith(" ") else v
            if fields.get("event") == "error":
                raise AssertionError("SSE error event %r" % fields)
            if "data" in fields:
                return json.loads(fields["data"])
        return None


class Watcher(threading.Thread):
    """Watches `wids` ({id: epoch}) from seq 0 (a replay from the creation;
    epoch None: from the current state) through `ports`, round robin on
    failure. seen[id] lists (epoch, seq) in
    arrival order; told[id] lists the deletions and resyncs it was told."""

    def __init__(self, kind, ports, wids, token=None, name=None):
        super().__init__(daemon=True, name=name or "watch-" + kind)
        self.kind = kind
        self.ports = list(ports)
        self.pos = {w: (e, 0) for w, e in wids.items()}
        # Long-polls without a starting epoch send bare seqs (independent
        # nodes behind the proxy: every poll may meet another incarnation).
        self.bare = {w for w, e in wids.items() if e is None}
        self.token = token
        self.seen = {w: [] for w in wids}
        self.msgs = {w: {} for w in wids}
        self.told = {w: [] for w in wids}
        self.done = set()  # deleted ids: not resumed any more
        self.connects = []  # (monotonic time, port) of each connection made
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.stream = None

    def stop(self):
        self.stopping.set()
        self.join(15)
        assert not self.is_alive(), "watcher %s did not stop" % self.name

    def run(self):
        i = 0
        while not self.stopping.is_set():
            live = {w: p for w, p in self.pos.items() if w not in self.done}
            if not live:
                return
            port = self.ports[i % len(self.ports)]
            i += 1
            try:
                if self.kind == "longpoll":
                    self._longpoll(port, live)
                else:
                    self._stream(port, live)
            except (OSError, EOFError, ConnectionError, ValueError, http.client.HTTPException) as e:
                self.errors.append("%s: %r" % (port, e))
                time.sleep(0.05)
            finally:
                if self.stream:
                    self.stream.close()
                    self.stream = None

    def _record(self, m):
        w = m["workflow_id"]
        with self.lock:
            if m.get("deleted"):
                self.told[w].append(("deleted", m["epoch"], m["seq"]))
                self.done.add(w)
                return
            if m.get("resync"):
                self.told[w].append(("resync", m["epoch"], m["seq"]))
                if self.pos[w][0] not in (None, m["epoch"]):
                    self.done.add(w)  # another incarnation: told, not followed
                    return
            self.seen[w].append((m["epoch"], m["seq"]))
            self.msgs[w][(m["epoch"], m["seq"])] = m.get("message")
            self.pos[w] = (m["epoch"], m["seq"])

    def _stream(self, port, live):
        self.stream = Stream(self.kind, port, live, self.token)
        self.connects.append((time.monotonic(), port))
        while not self.stopping.is_set():
            m = self.stream.next(0.3)
            if m is not None:
                self._record(m)
                if m.get("deleted") and self.kind in ("ws", "sse"):
                    return

    def _longpoll(self, port, live):
        w = next(iter(live))
        c = http.client.HTTPConnection(HOST, port, timeout=10)
        self.connects.append((time.monotonic(), port))
        h = {"Authorization": "Bearer " + self.token} if self.token else {}
        try:
            while not self.stopping.is_set():
                e, s = self.pos[w]
                q = "wait_since=%d&timeout=2" % s + ("" if w in self.bare else "&epoch=%d" % e)
                c.request("GET", "/api/workflows/%s?%s" % (w, q), headers=h)
                r = c.getresponse()
                body = r.read()
                if r.status == 404:
                    with self.lock:
                        self.told[w].append(("deleted", e, s))
                        self.done.add(w)
                    return
                if r.status != 200:
                    raise ConnectionError("long-poll answered %d" % r.status)
                m = json.loads(body)
                if (m["seq"] > s) if w in self.bare else (m["seq"] != s or m["epoch"] != e):
                    m["workflow_id"] = m.pop("id")
                    self._record(m)
        finally:
            c.close()

    # -- checks
    def wait_seq(self, targets, timeout=30.0):
        """Waits until every id in targets ({id: (epoch, seq)}, or {id: seq})
        reached that position."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all((self.pos.get(w) if isinstance(t, tuple) else self.pos[w][1]) == t
                       or w in self.done for w, t in targets.items()):
                    return
            time.sleep(0.05)
        raise AssertionError("%s did not reach %r: at %r (errors %r)"
                             % (self.name, targets, self.pos, self.errors[-5:]))

    def wait_told(self, wid, timeout=20.0):
        """Waits until the watcher was told its incarnation of wid ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wid in self.done:
                return self.told[wid]
            time.sleep(0.05)
        raise AssertionError("%s never told of %s's end: %r" % (self.name, wid, self.told[wid]))

    def check_exact(self, wid, epoch, last, acked=None):
        """Saw exactly seqs 1..last of epoch, once each, in order (a long-poll:
        an increasing subset ending at last), and the acknowledged messages."""
        seqs = [s for e, s in self.seen[wid]]
        assert epoch is None or all(e == epoch for e, _ in self.seen[wid]), \
            (self.name, wid, self.seen[wid])
        if self.kind == "longpoll":
            assert seqs == sorted(set(seqs)) and seqs and seqs[-1] == last, (self.name, wid, seqs)
        else:
            assert seqs == list(range(1, last + 1)), (self.name, wid, seqs[:20], len(seqs), last)
            for s, msg in (acked or {}).items():
                assert self.msgs[wid][(epoch, s)] == msg, (self.name, wid, s, msg)


class Producer(threading.Thread):
    """PATCHes each of `wids` `n` times through `ports`, round robin, with an
    Idempotency-Key per change so a retry on another node after a lost
    answer is applied once. acked[id] maps each acknowledged seq to its
    message; statuses counts the answers by status; errors lists the
    transient failures (retried), failures what was not retried (an answer
    other than 200/502/503/504, or no success within give_up seconds)."""

    def __init__(self, ports, wids, n, tag, token=None, pause=0.0, give_up=60.0):
        super().__init__(daemon=True, name="produce-" + tag)
        self.ports = list(ports)
        self.wids = list(wids)
        self.n = n
        self.tag = tag
        self.token = token
        self.pause = pause
        self.give_up = give_up
        self.acked = {w: {} for w in wids}
        self.statuses = {}
        self.errors = []
        self.failures = []
        self.i = 0

    def run(self):
        conn = None
        for k in range(self.n):
            for w in self.wids:
                body = json.dumps({"message": "%s-%d" % (self.tag, k)}).encode()
                h = {"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
                if self.token:
                    h["Authorization"] = "Bearer " + self.token
                deadline = time.monotonic() + self.give_up
                while True:
                    port = self.ports[self.i % len(self.ports)]
                    try:
                        if conn is None:
                            conn = http.client.HTTPConnection(HOST, port, timeout=10)
                        conn.request("PATCH", "/api/workflows/" + w, body=body, headers=h)
                        r = conn.getresponse()
                        data = r.read()
                        self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                        if r.status == 200:
                            self.acked[w][json.loads(data)["seq"]] = "%s-%d" % (self.tag, k)
                            break
                        if r.status not in (502, 503, 504):
                            self.failures.append("%s: %d %r" % (w, r.status, data[:200]))
                            break
                        self.errors.append("%s: %d" % (w, r.status))
                    except (OSError, http.client.HTTPException) as e:
                        self.statuses["conn"] = self.statuses.get("conn", 0) + 1
                        self.errors.append(repr(e))
                    if conn is not None:
                        conn.close()
                        conn = None
                    self.i += 1
                    if time.monotonic() > deadline:
                        self.failures.append("%s: gave up" % w)
                        return
                    time.sleep(0.05)
                if self.pause:
                    time.sleep(self.pause)
        if conn is not None:
            conn.close()
