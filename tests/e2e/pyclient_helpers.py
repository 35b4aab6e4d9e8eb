"""Helpers of the Python client tests (test_python_*.py): put clients/python
on sys.path, a proxy that loses answers, a TLS front, token minting, and
asyncio helpers to collect a watch's events and wait for conditions."""

import asyncio
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time

import jwt
import pytest

from fc_helpers import HOST, read_http_message

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))
import flowcast  # noqa: E402

__all__ = ["flowcast", "url", "AnswerDropper", "until", "all_watch_ready", "at", "seqs_of",
           "assert_exact", "collect", "all_at", "start_three_watches", "step_randomly",
           "assert_three_exact", "STATIC", "SECRET", "Minter", "jwt_server", "TLSFront",
           "cert_pair"]


def url(s):
    return "http://127.0.0.1:%d" % s.port


# ---------------------------------------------------------------- helpers

class AnswerDropper:
    """A proxy of one request per connection that loses the first answer
    to each Idempotency-Key: the server commits, the client sees its
    connection close without an answer. Records (method, key) of every
    request it forwarded."""

    def __init__(self, port):
        self.port = port
        self.seen = []
        self.dropped = 0
        self.lock = threading.Lock()
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.lsock.settimeout(0.2)
        self.listen_port = self.lsock.getsockname()[1]
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def close(self):
        self.stop.set()
        self.t.join(5)
        self.lsock.close()

    def _run(self):
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            c.settimeout(30)
            req = read_http_message(c)
            if req is None:
                return
            head, body = req
            method = head.split(b" ", 1)[0].decode()
            key = None
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"idempotency-key":
                    key = v.strip().decode()
            up = socket.create_connection((HOST, self.port), timeout=30)
            up.sendall(head + b"\r\n\r\n" + body)
            resp = read_http_message(up)
            up.close()
            with self.lock:
                first = key is not None and all(k != key for _, k in self.seen)
                self.seen.append((method, key))
                if first:
                    self.dropped += 1
            if resp is not None and not first:
                rhead, rbody = resp
                c.sendall(rhead + b"\r\nConnection: close\r\n\r\n" + rbody)
        except OSError:
            pass
        finally:
            c.close()


async def collect(watch, until, timeout=60, events=None):
    """Events of watch (appended to `events` when given, so that they are
    there when the watch raises) until until(events) is true; closes it."""
    events = [] if events is None else events

    async def go():
        async for ev in watch:
            events.append(ev)
            if until(events):
                break

    try:
        await asyncio.wait_for(go(), timeout)
    finally:
        await watch.close()
    return events


async def until(cond, timeout=20):
    """Waits (polling) until cond() is true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met within %ss" % timeout
        await asyncio.sleep(0.05)


async def all_watch_ready(ac, events, wid="ready"):
    """A watch of all sends nothing until a change: creates wid and waits
    until the watch collecting into events delivered it."""
    await ac.create(wid, 1, id=wid)
    await until(lambda: any(e.workflow_id == wid for e in events))


def at(wid, seq):
    """until-condition of collect: an event of wid at seq arrived."""
    return lambda evs: any(e.workflow_id == wid and e.seq == seq for e in evs)


def seqs_of(events, wid):
    return [e.seq for e in events if e.workflow_id == wid]


def assert_exact(events, wid, last):
    """The updates of wid are consecutive seqs ending at last: nothing lost
    or repeated across whatever happened to the connection."""
    s = seqs_of(events, wid)
    assert s, events
    assert s == list(range(s[0], last + 1)), (wid, s)


def all_at(ids, seq):
    """until-condition of collect: every workflow of ids reached seq."""
    return lambda evs: all(any(e.workflow_id == i and e.seq == seq for e in evs) for i in ids)


# What the three watches of start_three_watches follow: single, multi, all.
THREE_WATCHES = (["a"], ["a", "b"], ["a", "b", "c"])


async def start_three_watches(ac, last):
    """Opens on ac a single watch of a, a multi watch of a and b and a watch
    of all (quick backoffs, their on_state calls kept by "single", "multi",
    "all"), each collecting until what it follows reached seq last, and
    returns once all three deliver: (the three collecting tasks, states)."""
    states = {"single": [], "multi": [], "all": []}
    opts = dict(backoff_initial=0.05, backoff_max=0.5)
    watches = [ac.watch(["a"], on_state=states["single"].append, **opts),
               ac.watch(["a", "b"], on_state=states["multi"].append, **opts),
               ac.watch(all=True, on_state=states["all"].append, **opts)]
    got = [[], [], []]
    tasks = [asyncio.ensure_future(collect(w, all_at(ids, last), events=evs))
             for w, ids, evs in zip(watches, THREE_WATCHES, got)]
    await until(lambda: len(got[0]) == 1 and len(got[1]) == 2)
    await all_watch_ready(ac, got[2])
    return tasks, states


async def step_randomly(ac, wid, n):
    """Steps wid n times (messages wid1..widn), a random pause of up to 20 ms
    after each, so that several producers interleave."""
    for i in range(n):
        await ac.step(wid, "%s%d" % (wid, i + 1))
        await asyncio.sleep(random.random() * 0.02)


def assert_three_exact(events, last):
    """The three watches' events (start_three_watches) hold every change of
    what each follows, once, up to seq last; the single one from seq 1."""
    for ids, evs in zip(THREE_WATCHES, events):
        for wid in ids:
            assert_exact(evs, wid, last)
    assert seqs_of(events[0], "a")[0] == 1


# ---------------------------------------------------------------- tokens

STATIC = "static-operator-token-0123456789"
SECRET = "p" * 20 + "-hmac-secret-for-python-client"


class Minter:
    """A token provider: each call mints a fresh HS256 JWT (python3-jwt)
    valid ttl seconds (or the next of `ttls`); counts the calls."""

    def __init__(self, ttl=3600, scope="read write", ttls=(), workflows=None):
        self.ttl, self.scope, self.ttls, self.workflows = ttl, scope, list(ttls), workflows
        self.calls = 0

    def __call__(self):
        self.calls += 1
        ttl = self.ttls.pop(0) if self.ttls else self.ttl
        now = int(time.time())
        claims = {"scope": self.scope, "iat": now - 1, "exp": now + ttl}
        if self.workflows is not None:
            claims["workflows"] = self.workflows
        return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def jwt_server(server_factory, tmp_path):
    key = tmp_path / "jwt.key"
    key.write_text(SECRET)
    return server_factory("--jwt-key", str(key), "--api-token", STATIC)


# ---------------------------------------------------------------- TLS

class TLSFront:
    """Terminates TLS with cert/key on a loopback port and pipes each
    connection to the plain server on port (asyncio, in a thread of its
    own): the client's https and wss paths, independent of the server's."""

    def __init__(self, port, cert, key):
        self.port = port
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, ctx: None)  # refused handshakes
        ready = threading.Event()

        def main():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._handle, HOST, 0, ssl=ctx))
            self.listen_port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.t = threading.Thread(target=main, daemon=True)
        self.t.start()
        assert ready.wait(5)

    async def _handle(self, r, w):
        try:
            ur, uw = await asyncio.open_connection(HOST, self.port)
        except OSError:
            w.close()
            return

        async def pipe(a, b):
            try:
                while True:
                    d = await a.read(65536)
                    if not d:
                        break
                    b.write(d)
                    await b.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                b.close()

        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    async def _shutdown(self):
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self):
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.t.join(5)
        self.loop.close()


@pytest.fixture
def cert_pair(tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key
