"""Helpers for the client library and CLI end-to-end tests: run the flowcast
client subcommands, drive libflowcast through the fcc_probe test program
(which prints one JSON line per update and state change), and restart a
server on the same port and database. Built on conftest.py / fc_helpers.py."""

import json
import os
import queue
import socket
import subprocess
import threading
import time

from fc_helpers import Server, read_http_message


def probe_bin(flowcast):
    """fcc_probe is built next to the flowcast binary."""
    p = os.path.join(os.path.dirname(flowcast), "fcc_probe")
    assert os.access(p, os.X_OK), "fcc_probe not built next to %s" % flowcast
    return p


def cli(flowcast, server, *args, env=None, timeout=20, url=None):
    """Runs `flowcast ARGS` against server (via FLOWCAST_URL); returns CompletedProcess."""
    e = dict(os.environ)
    e.pop("FLOWCAST_API_TOKEN", None)
    e["FLOWCAST_URL"] = url or "http://127.0.0.1:%d" % server.port
    if env:
        e.update(env)
    return subprocess.run([flowcast] + [str(a) for a in args], capture_output=True, text=True,
                          env=e, timeout=timeout, stdin=subprocess.DEVNULL)


def cli_json(flowcast, server, *args, **kw):
    """Runs a client subcommand that must succeed and print one JSON object."""
    r = cli(flowcast, server, *args, **kw)
    assert r.returncode == 0, r
    assert r.stderr == "", r
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r
    return json.loads(lines[0])


class LineProc:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, argv, env=None):
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if env:
            e.update(env)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, env=e)
        self.lines = []
        self.q = queue.Queue()
        self.stderr = ""
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self):
        for line in self.proc.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def next(self, timeout=10.0):
        """The next stdout line, or None at EOF; raises on timeout."""
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no output within %ss; so far: %r" % (timeout, self.lines[-5:]))
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, pred, timeout=10.0, what="line"):
        """Reads JSON lines until pred(obj) holds; returns that object."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s not seen within %ss; last: %r" % (what, timeout, self.lines[-5:]))
            line = self.next(left)
            if line is None:
                raise AssertionError("process ended before %s; last: %r" % (what, self.lines[-5:]))
            obj = json.loads(line)
            if pred(obj):
                return obj

    def finish(self, timeout=10.0):
        """Waits for exit; drains stdout; returns the exit code."""
        rc = self.proc.wait(timeout)
        self._t.join(5)
        while True:
            try:
                line = self.q.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        self.stderr = self.proc.stderr.read()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self._t.join(5)


def probe(flowcast, server, *args, url=None):
    """Starts fcc_probe against server with args (options then ids); url
    (e.g. a list "URL,URL") replaces the server's URL."""
    url = url or "http://127.0.0.1:%d" % server.port
    return LineProc([probe_bin(flowcast), url] + [str(a) for a in args])


def updates(lines, wid=None):
    objs = [json.loads(x) for x in lines]
    return [o for o in objs if o["event"] == "update" and (wid is None or o["workflow_id"] == wid)]


def restart_same_port(factory, old, port=None):
    """Starts a new server process with old's flags (same port and --db; TLS
    when old spoke it); with port, on that port instead (the same database
    re-opened by a new process elsewhere, as a second node of a list)."""
    n = len(factory.servers) + 1
    log_path = os.path.join(factory.tmpdir, "server-%d.log" % n)
    args = list(old.args)
    if port is not None:
        args[args.index("--listen") + 1] = "127.0.0.1:%d" % port
    s = Server(factory.binary, port or old.port, old.db, log_path, args, old.env,
               token=old.token, ssl_ctx=old.ssl_ctx)
    deadline = time.monotonic() + 10
    while True:  # the port may linger for a moment after the old process exits
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


def recreate_while_away(factory, s, wid, name=None, steps=2):
    """Stops s, deletes wid and creates it again (named name, default wid;
    then `steps` patches, so its seq is 1 + steps again) through another
    server on the same database, then starts s again on its port. Watchers
    keep retrying s's port meanwhile, so they are away for all of it.
    Returns (restarted server, old workflow, new workflow)."""
    old = s.get(wid)
    assert s.stop() == 0
    other = factory(db=s.db)
    other.delete(wid)
    new = other.create(id=wid, name=name or wid, total_steps=10)
    for i in range(steps):
        new = other.patch(wid, current_step=i + 1)
    assert other.stop() == 0
    assert new["epoch"] != old["epoch"]
    return restart_same_port(factory, s), old, new


class LosingGateway:
    """A gateway in front of the server that forwards one request, lets the
    server commit it, then answers 502 (the answer lost at the proxy), and
    answers 503 to every later request: the client must send the change to
    the next URL with the same Idempotency-Key."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.requests = []
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                msg = read_http_message(c)
                if msg is None:
                    continue
                head, body = msg
                self.requests.append(head)
                if len(self.requests) == 1:
                    with socket.create_connection(("127.0.0.1", self.port)) as up:
                        up.sendall(head + b"\r\n\r\n" + body)
                        read_http_message(up)  # committed; the answer goes nowhere
                    status = b"502 Bad Gateway"
                else:
                    status = b"503 Service Unavailable"
                err = b'{"error":{"code":"unavailable","message":"no server"}}'
                c.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(err) + err)

    def close(self):
        self.sock.close()
