"""One conformance suite of client behaviours (issue 11 §3), run against
every client against the real server: the C library (tests/client/fcc_probe.c),
the Python client (tests/conformance/python_driver.py) and the JavaScript
client in Node (tests/conformance/js_driver.mjs). Each driver takes the same
command line and prints the same JSON lines (tests/conformance/README.md);
each scenario drives the server the same way for each client, checks the
events against what the scenario must give, and the last test checks that
every client gave the same events.

Scenarios: resume after kill -9 and restart; resume from a given position;
dedupe (an id given twice and covered by --all; every update received
twice through a repeating proxy); backoff bounds (and giving
up after max retries); resync when the log no longer reaches back; a
deletion seen live; a deletion and re-creation while away; multi-URL
failover (a refused first URL, then a server killed mid-stream and its
database reopened by a new process on the next URL's port); the workflow's
name on every update but a deletion."""

import json
import os
import socket
import struct
import threading
import time

import pytest

from fc_helpers import HOST, Server, free_port
from fcc_helpers import LineProc, probe_bin, recreate_while_away, restart_same_port
from js_helpers import node_cmd

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "..", "conformance")
CLIENTS = ["c", "python", "js"]

# scenario -> client -> the normalised events it gave (compared at the end).
RESULTS = {}


def driver(client, flowcast, urls, *args):
    """Starts client's driver on urls (a list) with args (options, then ids)."""
    argv = {
        "c": [probe_bin(flowcast)],
        "python": ["/usr/bin/python3", os.path.join(CONF, "python_driver.py")],
        "js": node_cmd() + [os.path.join(CONF, "js_driver.mjs")],
    }[client]
    return LineProc(argv + [",".join(urls)] + [str(a) for a in args])


def url(s):
    return "http://127.0.0.1:%d" % s.port


def events(p, kind="update"):
    return [o for o in (json.loads(x) for x in p.lines) if o["event"] == kind]


def wait_update(p, pred, what, timeout=20.0):
    """Waits for an update line satisfying pred (also among lines already read)."""
    for o in events(p):
        if pred(o):
            return o
    return p.wait_for(lambda o: o["event"] == "update" and pred(o), timeout=timeout, what=what)


def settle(p, seconds=0.5):
    """Reads what else arrives within `seconds` (a late repeat would show here)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if p.next(max(0.01, deadline - time.monotonic())) is None:
                return
        except AssertionError:
            return


def stop(p):
    settle(p)
    p.kill()


def norm(evs, epochs):
    """Events as comparable tuples, epochs named by their order in `epochs`."""
    return [(e["workflow_id"], epochs.index(e["epoch"]) if e["epoch"] in epochs else "?",
             e["seq"], e["deleted"], e["resync"], None if e["deleted"] else e["current_step"])
            for e in evs]


def record(name, client, value):
    RESULTS.setdefault(name, {})[client] = value


def start_on_port(factory, db, port):
    """A new server process on `port` serving database `db` (the port may
    still be held for a moment by a process just killed)."""
    deadline = time.monotonic() + 10
    while True:
        log_path = os.path.join(factory.tmpdir, "server-%d.log" % (len(factory.servers) + 1))
        args = ["serve", "--listen", "127.0.0.1:%d" % port, "--db", db]
        s = Server(factory.binary, port, db, log_path, args, dict(os.environ))
        s.start()
        factory.servers.append(s)
        try:
            s.wait_ready(5)
            return s
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            s.logf.close()
            time.sleep(0.2)


class RepeatingProxy:
    """A TCP proxy in front of a server that sends every WebSocket text
    frame carrying an update twice (what a replay after a reconnect, or a
    second path to the same change, looks like to a client); anything else
    passes through as it is."""

    def __init__(self, port):
        self.port = port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.url = "http://%s:%d" % (HOST, self.lsock.getsockname()[1])
        self.repeated = 0
        self.done = threading.Event()
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.done.set()
        for x in self.socks:
            x.close()
        self.lsock.close()

    def _accept(self):
        while not self.done.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                continue
            u = socket.create_connection((HOST, self.port))
            self.socks += [c, u]
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._down, args=(u, c), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                dst.sendall(b)
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _down(self, u, c):
        """Server to client: the HTTP head as is; after a 101, frame by frame."""
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                b = u.recv(65536)
                if not b:
                    return self._pipe(u, c) if buf == b"" else c.sendall(buf)
                buf += b
            head, _, buf = buf.partition(b"\r\n\r\n")
            c.sendall(head + b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                c.sendall(buf)
                return self._pipe(u, c)
            while True:
                frame, buf = self._frame(u, buf)
                if frame is None:
                    break
                c.sendall(frame)
                opcode, payload = frame[0] & 0x0F, self._payload(frame)
                if opcode == 1 and frame[0] & 0x80 and b'"seq"' in payload and b'"op"' not in payload:
                    c.sendall(frame)
                    self.repeated += 1
        except OSError:
            pass
        self._pipe(u, c)

    @staticmethod
    def _need(u, buf, n):
        while len(buf) < n:
            b = u.recv(65536)
            if not b:
                return None
            buf += b
        return buf

    def _frame(self, u, buf):
        """One whole unmasked server frame from buf (reading more from u)."""
        buf = self._need(u, buf, 2)
        if buf is None:
            return None, b""
        n, hl = buf[1] & 0x7F, 2
        if n == 126:
            buf = self._need(u, buf, 4)
            n, hl = struct.unpack(">H", buf[2:4])[0], 4
        elif n == 127:
            buf = self._need(u, buf, 10)
            n, hl = struct.unpack(">Q", buf[2:10])[0], 10
        buf = self._need(u, buf, hl + n)
        if buf is None:
            return None, b""
        return buf[:hl + n], buf[hl + n:]

    @staticmethod
    def _payload(frame):
        n = frame[1] & 0x7F
        return frame[2 + (2 if n == 126 else 8 if n == 127 else 0):]


# ------------------------------------------------------------------ scenarios

@pytest.mark.parametrize("client", CLIENTS)
def test_resume_after_kill9(server_factory, flowcast, client):
    """kill -9 of the server mid-stream and a restart on the same port and
    database: every change once, in order, one epoch, no resync."""
    s = server_factory()
    w = s.create(id="w", name="w", total_steps=10)
    p = driver(client, flowcast, [url(s)], "w")
    try:
        wait_update(p, lambda o: o["seq"] == 1, "the first state")
        for i in range(1, 6):
            s.patch("w", current_step=i)
        wait_update(p, lambda o: o["seq"] == 6, "seq 6")
        s.kill9()
        s2 = restart_same_port(server_factory, s)
        for i in range(6, 11):
            s2.patch("w", current_step=i, status="completed" if i == 10 else "running")
        wait_update(p, lambda o: o["seq"] == 11, "seq 11 after the restart")
        stop(p)
        got = norm(events(p), [w["epoch"]])
        assert got == [("w", 0, i + 1, False, False, i) for i in range(11)], p.lines
        assert events(p)[-1]["status"] == "completed"
        assert any(o["state"] == "reconnecting" for o in events(p, "state"))
        record("resume_after_kill9", client, got)
    finally:
        p.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_resume_from_position(server_factory, flowcast, client):
    """since=(epoch, 5) given by the application: changes 6 and on, once."""
    s = server_factory()
    w = s.create(id="w", name="w", total_steps=10)
    for i in range(1, 8):
        s.patch("w", current_step=i)
    p = driver(client, flowcast, [url(s)], "--since", "w=%d:5" % w["epoch"], "w")
    try:
        wait_update(p, lambda o: o["seq"] == 8, "seq 8")
        s.patch("w", current_step=8)
        wait_update(p, lambda o: o["seq"] == 9, "seq 9")
        stop(p)
        got = norm(events(p), [w["epoch"]])
        assert got == [("w", 0, i, False, False, i - 1) for i in (6, 7, 8, 9)], p.lines
        record("resume_from_position", client, got)
    finally:
        p.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_dedupe_ids(server_factory, flowcast, client):
    """An id given twice, and covered by --all as well: each change once;
    a workflow created later arrives from its first change."""
    s = server_factory()
    a = s.create(id="a", name="a", total_steps=10)
    p = driver(client, flowcast, [url(s)], "--all", "a", "a")
    try:
        wait_update(p, lambda o: o["workflow_id"] == "a", "a's state")
        mark = s.create(id="mark", name="mark", total_steps=1)
        wait_update(p, lambda o: o["workflow_id"] == "mark", "a workflow created after the start")
        for i in range(1, 4):
            s.patch("a", current_step=i)
        c = s.create(id="c", name="c", total_steps=10)
        s.patch("c", current_step=1)
        wait_update(p, lambda o: o["workflow_id"] == "a" and o["seq"] == 4, "a's seq 4")
        wait_update(p, lambda o: o["workflow_id"] == "c" and o["seq"] == 2, "c's seq 2")
        stop(p)
        epochs = [a["epoch"], mark["epoch"], c["epoch"]]
        got = norm(events(p), epochs)
        assert [g for g in got if g[0] == "a"] == [("a", 0, i + 1, False, False, i) for i in range(4)], p.lines
        assert [g for g in got if g[0] == "mark"] == [("mark", 1, 1, False, False, 0)], p.lines
        assert [g for g in got if g[0] == "c"] == [("c", 2, 1, False, False, 0), ("c", 2, 2, False, False, 1)], p.lines
        record("dedupe_ids", client, sorted(got))
    finally:
        p.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_dedupe_repeated_messages(server_factory, flowcast, client):
    """Every update reaches the client twice (a proxy repeats the frames):
    each change is delivered once, in order."""
    s = server_factory()
    w = s.create(id="w", name="w", total_steps=10)
    proxy = RepeatingProxy(s.port)
    p = driver(client, flowcast, [proxy.url], "w")
    try:
        wait_update(p, lambda o: o["seq"] == 1, "the first state")
        for i in range(1, 6):
            s.patch("w", current_step=i)
        wait_update(p, lambda o: o["seq"] == 6, "seq 6")
        stop(p)
        assert proxy.repeated >= 6
        got = norm(events(p), [w["epoch"]])
        assert got == [("w", 0, i + 1, False, False, i) for i in range(6)], p.lines
        record("dedupe_repeated_messages", client, got)
    finally:
        p.kill()
        proxy.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_backoff_bounds(flowcast, client):
    """Nothing listens: the wait before retry n is in [0, min(max, 100 ms *
    2^(n-1))], attempts count 1, 2, ...; after max retries the watch ends."""
    port = free_port()
    p = driver(client, flowcast, ["http://127.0.0.1:%d" % port], "--backoff-max", "400",
               "--max-retries", "5", "w")
    try:
        p.finish(timeout=30)
        waits = [o for o in events(p, "state") if o["state"] == "reconnecting"]
        assert [o["attempt"] for o in waits] == [1, 2, 3, 4, 5], p.lines
        for o in waits:
            assert 0 <= o["delay_ms"] <= min(400, 100 * 2 ** (o["attempt"] - 1)), o
        assert events(p) == []
        record("backoff_bounds", client, [o["attempt"] for o in waits])
    finally:
        p.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_resync_past_retention(server_factory, flowcast, client):
    """A position older than the log (--retention 3): the current state with
    resync, then live changes."""
    s = server_factory("--retention", "3")
    w = s.create(id="w", name="w", total_steps=20)
    for i in range(1, 10):
        s.patch("w", current_step=i)
    p = driver(client, flowcast, [url(s)], "--since", "w=%d:2" % w["epoch"], "w")
    try:
        wait_update(p, lambda o: o["seq"] == 10, "the current state")
        s.patch("w", current_step=10)
        wait_update(p, lambda o: o["seq"] == 11, "seq 11")
        stop(p)
        got = norm(events(p), [w["epoch"]])
        assert got == [("w", 0, 10, False, True, 9), ("w", 0, 11, False, False, 10)], p.lines
        record("resync_past_retention", client, got)
    finally:
        p.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_deletion_live(server_factory, flowcast, client):
    """A deletion while watching: one deletion event of that epoch."""
    s = server_factory()
    w = s.create(id="w", name="w", total_steps=10)
    p = driver(client, flowcast, [url(s)], "w")
    try:
        wait_update(p, lambda o: o["seq"] == 1, "the first state")
        s.patch("w", current_step=1)
        wait_update(p, lambda o: o["seq"] == 2, "seq 2")
        s.delete("w")
        wait_update(p, lambda o: o["deleted"], "the deletion")
        stop(p)
        got = norm(events(p), [w["epoch"]])
        assert got == [("w", 0, 1, False, False, 0), ("w", 0, 2, False, False, 1),
                       ("w", 0, 3, True, False, None)], p.lines
        record("deletion_live", client, got)
    finally:
        p.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_recreated_while_away(server_factory, flowcast, client):
    """Deleted and created again while the client was away: the old
    incarnation's deletion, then the new one's state with resync, then its
    live changes; never a continuation."""
    s = server_factory()
    s.create(id="w", name="w", total_steps=10)
    p = driver(client, flowcast, [url(s)], "w")
    try:
        wait_update(p, lambda o: o["seq"] == 1, "the first state")
        s.patch("w", current_step=1)
        wait_update(p, lambda o: o["seq"] == 2, "seq 2")
        s2, old, new = recreate_while_away(server_factory, s, "w", steps=2)
        wait_update(p, lambda o: o["epoch"] == new["epoch"], "the new incarnation")
        s2.patch("w", current_step=3)
        wait_update(p, lambda o: o["epoch"] == new["epoch"] and o["seq"] == 4, "its seq 4")
        stop(p)
        got = norm(events(p), [old["epoch"], new["epoch"]])
        assert got == [("w", 0, 1, False, False, 0), ("w", 0, 2, False, False, 1),
                       ("w", 0, 3, True, False, None),
                       ("w", 1, 3, False, True, 2), ("w", 1, 4, False, False, 3)], p.lines
        record("recreated_while_away", client, got)
    finally:
        p.kill()


@pytest.mark.parametrize("client", CLIENTS)
def test_multi_url_failover(server_factory, flowcast, client):
    """URLs [refused, A, B]: A after the refused one; A killed mid-stream and
    its database opened by a new process on B's port: the stream resumes
    there, every change once, in order."""
    refused = "http://127.0.0.1:%d" % free_port()
    a = server_factory()
    b_port = free_port()
    w = a.create(id="w", name="w", total_steps=10)
    p = driver(client, flowcast, [refused, url(a), "http://127.0.0.1:%d" % b_port], "w")
    try:
        wait_update(p, lambda o: o["seq"] == 1, "the first state")
        for i in range(1, 6):
            a.patch("w", current_step=i)
        wait_update(p, lambda o: o["seq"] == 6, "seq 6")
        a.kill9()
        b = start_on_port(server_factory, a.db, b_port)
        for i in range(6, 11):
            b.patch("w", current_step=i)
        wait_update(p, lambda o: o["seq"] == 11, "seq 11 from the second server")
        stop(p)
        got = norm(events(p), [w["epoch"]])
        assert got == [("w", 0, i + 1, False, False, i) for i in range(11)], p.lines
        record("multi_url_failover", client, got)
    finally:
        p.kill()


# Escapes, a quote, a backslash, accents and CJK: what a name must survive.
NAME = 'Nächtlicher Build · 夜间构建 "quoted" \\ back'


@pytest.mark.parametrize("client", CLIENTS)
def test_update_carries_the_name(server_factory, flowcast, client):
    """Issue 11 §1: the client gives the application the workflow's name
    from the update itself (no GET): on a resync past retention, a live
    change, and the creation of a workflow met on --all; a deletion carries
    none."""
    s = server_factory("--retention", "3")
    w = s.create(id="w", name=NAME, total_steps=10)
    for i in range(1, 6):
        s.patch("w", current_step=i)  # seq 6; the log keeps 4..6
    p = driver(client, flowcast, [url(s)], "--all", "--since", "w=%d:1" % w["epoch"], "w")
    try:
        wait_update(p, lambda o: o["workflow_id"] == "w" and o["seq"] == 6, "w's state (a resync)")
        n = s.create(id="n", name="Second job ✓", total_steps=2)
        wait_update(p, lambda o: o["workflow_id"] == "n", "the creation of n")
        s.patch("w", current_step=6)
        wait_update(p, lambda o: o["workflow_id"] == "w" and o["seq"] == 7, "w's seq 7")
        s.delete("w")
        wait_update(p, lambda o: o["deleted"], "the deletion of w")
        stop(p)
        got = [(e["workflow_id"], e["seq"], e["deleted"], e["resync"], e.get("name")) for e in events(p)]
        assert got == [("w", 6, False, True, NAME), ("n", 1, False, False, "Second job ✓"),
                       ("w", 7, False, False, NAME), ("w", 8, True, False, "")], p.lines
        assert [e["epoch"] for e in events(p)] == [w["epoch"], n["epoch"], w["epoch"], w["epoch"]]
        record("update_carries_the_name", client, got)
    finally:
        p.kill()


def test_every_client_gave_the_same_events():
    """Each scenario's events, as every client gave them, are the same."""
    if not RESULTS:
        pytest.skip("no scenario ran in this session")
    for name, by_client in RESULTS.items():
        first = next(iter(by_client.values()))
        for client, got in by_client.items():
            assert got == first, (name, client, by_client)
