"""A bus nobody else can write to (docs/cluster.md, "Securing the bus").

Without NATS authorization anything that reaches nats-server can publish on
flowcast.changes, and a forged next seq reaches watchers as if committed
(the first test shows it). With authorization and TLS: nodes with
credentials (in the URL, from FLOWCAST_NATS or argv) deliver across nodes
and never show them (logs, /metrics, /readyz, ps); wrong credentials, a
wrong CA, a wrong server name or a server without TLS fail the start (exit
2, one clear line); credentials revoked while running close the bus
(/readyz 503 bus) and the node still stops cleanly; a raw-socket publisher
without credentials, or with a subscribe-only user, cannot publish, and
watchers never see its forgery.

Each test starts its own nats-server with a configuration file (svc_nats)
and its nodes on a fresh PostgreSQL database; certificates come from
svc_nats.make_pki (openssl CLI)."""

import json
import os
import socket
import subprocess
import time

import pytest

from bus_wire import forged
from conftest import ServerFactory
from fc_helpers import wait_for
from svc_nats import NatsServer, make_nkey, make_pki
from test_hostile_cluster import RoguePublisher, Watcher

NODE_PASSWORD = "n0de-pa55-7f3e9"
WATCH_PASSWORD = "w4tch-pa55-c21d"
TOKEN = "t0ken-9b8a7c6d5e"
AUTH = """authorization {
  users = [
    {user: node, password: "%s",
     permissions: {publish: ["flowcast.>"], subscribe: ["flowcast.>"]}},
    {user: watcher, password: "%s",
     permissions: {publish: {deny: [">"]}, subscribe: ["flowcast.>"]}}
  ]
}""" % (NODE_PASSWORD, WATCH_PASSWORD)


def with_creds(nats, user, password):
    return "nats://%s:%s@127.0.0.1:%d" % (user, password, nats.port)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("nats-pki")))


@pytest.fixture
def node(flowcast, tmp_path, pg):
    """start(*flags, env=None, ready=True): a node on this test's database
    (one I/O thread); ready waits for /readyz 200 (the bus proved itself)."""
    dsn = pg.fresh_database("sec")
    f = ServerFactory(flowcast, str(tmp_path))

    def start(*flags, env=None, ready=True):
        s = f("--io-threads", "1", *flags, db=dsn, env=env, ready=ready)
        if ready:
            wait_for(lambda: s.request("GET", "/readyz").status == 200, 15, what="readyz 200")
        return s

    yield start
    f.teardown()


class RawNats:
    """A NATS client over a raw socket: CONNECT with the given credentials,
    then PUB whatever it is told. .reply() is the server's next line."""

    def __init__(self, nats, user=None, password=None):
        self.sock = socket.create_connection(("127.0.0.1", nats.port), timeout=10)
        self.buf = b""
        assert self.line().startswith(b"INFO ")
        c = {"verbose": False, "pedantic": False, "name": "rogue"}
        if user:
            c.update(user=user, **{"pass": password})
        self.sock.sendall(b"CONNECT %s\r\nPING\r\n" % json.dumps(c).encode())

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return b"<closed>"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def pub(self, payload, subject="flowcast.changes"):
        p = payload.encode() if isinstance(payload, str) else payload
        self.sock.sendall(b"PUB %s %d\r\n%s\r\nPING\r\n" % (subject.encode(), len(p), p))

    def close(self):
        self.sock.close()


def exit_code(s, timeout=20):
    """The code a node that must refuse to start exits with."""
    s.expect_exit = True
    return s.proc.wait(timeout)


def log_of(s):
    with open(s.log_path, errors="replace") as f:
        return f.read()


def shown_everywhere(s):
    """Everything a node shows of itself: its log, /metrics, /readyz, ps."""
    parts = [log_of(s)]
    for path in ("/metrics", "/readyz"):
        parts.append(s.request("GET", path).body.decode(errors="replace"))
    with open("/proc/%d/cmdline" % s.proc.pid, "rb") as f:
        parts.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
    parts.append(subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(s.proc.pid)],
                                capture_output=True, text=True, timeout=10).stdout)
    return "\n".join(parts)


def bus_in(s):
    return s.metrics().get('flowcast_bus_messages_total{direction="in"}', 0)


def test_forged_next_seq_is_delivered_on_an_open_bus(node):
    """The threat: with no authorization on NATS, whoever reaches it shows
    watchers a forged change at the next seq (docs/cluster.md)."""
    with NatsServer() as nats:
        s = node("--nats", nats.url)
        w = s.create(id="victim")
        watcher = Watcher(s, "victim", w["epoch"], w["seq"])
        time.sleep(0.3)
        rogue = RoguePublisher(nats.url)
        rogue.pub(forged("victim", w["epoch"], w["seq"] + 1, message="forged"))
        rogue.flush()
        wait_for(lambda: any(g[3] == "forged" for g in watcher.got), 10,
                 what="the forged next seq delivered: %r" % watcher.got)
        rogue.close()
        watcher.close()


def test_nodes_with_credentials_deliver_and_never_show_them(node):
    with NatsServer(config=AUTH) as nats:
        url = with_creds(nats, "node", NODE_PASSWORD)
        a = node(env={"FLOWCAST_NATS": url})  # the way docs/cluster.md recommends
        b = node("--nats", url)  # on the command line: starred out of argv once read
        w = a.create(id="wf")
        watcher = Watcher(b, "wf", w["epoch"], w["seq"])
        time.sleep(0.3)
        before = bus_in(b)
        last = a.patch("wf", message="over the bus")
        wait_for(lambda: watcher.got and watcher.got[-1][0] >= last["seq"], 10,
                 what="the change on the other node")
        assert watcher.got[-1][3] == "over the bus"
        wait_for(lambda: bus_in(b) > before, 5, what="the message counted")
        watcher.close()
        for s in (a, b):
            shown = shown_everywhere(s)
            assert NODE_PASSWORD not in shown
            assert "bus: node " in shown and "node:***@" not in shown and "***@127.0.0.1" in shown
        with open("/proc/%d/cmdline" % b.proc.pid, "rb") as f:
            assert b"nats://****" in f.read()


def test_token_in_the_url(node):
    with NatsServer(config='authorization { token: "%s" }' % TOKEN) as nats:
        s = node(env={"FLOWCAST_NATS": "nats://%s@127.0.0.1:%d" % (TOKEN, nats.port)})
        assert TOKEN not in shown_everywhere(s)


def test_nkey_signs_the_challenge(node, tmp_path):
    """--nats-nkey: the node signs the server's nonce with a seed file; the
    seed never leaves it, another seed is refused at start."""
    pub, seed = make_nkey()
    other_pub, other_seed = make_nkey()
    perms = 'permissions: {publish: ["flowcast.>"], subscribe: ["flowcast.>"]}'
    with NatsServer(config='authorization { users = [ {nkey: "%s", %s} ] }' % (pub, perms)) as nats:
        good, bad = tmp_path / "node.nk", tmp_path / "other.nk"
        good.write_text(seed + "\n")
        bad.write_text(other_seed + "\n")
        a = node("--nats", nats.url, "--nats-nkey", str(good))
        b = node("--nats", nats.url, "--nats-nkey", str(good))
        w = a.create(id="wf")
        watcher = Watcher(b, "wf", w["epoch"], w["seq"])
        time.sleep(0.3)
        before = bus_in(b)
        last = a.patch("wf", message="signed")
        wait_for(lambda: watcher.got and watcher.got[-1][0] >= last["seq"], 10,
                 what="the change on the other node")
        wait_for(lambda: bus_in(b) > before, 5, what="the message counted")
        watcher.close()
        assert seed not in shown_everywhere(a)
        s = node("--nats", nats.url, "--nats-nkey", str(bad), ready=False)
        assert exit_code(s) == 2
        assert "cannot connect: Authorization Violation" in log_of(s)
        assert other_seed not in log_of(s)
        s = node("--nats", nats.url, "--nats-nkey", str(tmp_path / "missing.nk"), ready=False)
        assert exit_code(s) == 2
        assert "--nats-nkey %s: cannot read it" % (tmp_path / "missing.nk") in log_of(s)


def test_wrong_credentials_fail_the_start(node):
    with NatsServer(config=AUTH) as nats:
        s = node(env={"FLOWCAST_NATS": with_creds(nats, "node", "not-" + NODE_PASSWORD)},
                 ready=False)
        assert exit_code(s) == 2
        log = log_of(s)
        assert "cannot connect: Authorization Violation" in log, log
        assert NODE_PASSWORD not in log
        s = node(env={"FLOWCAST_NATS": nats.url}, ready=False)  # no credentials at all
        assert exit_code(s) == 2
        assert "Authorization Violation" in log_of(s)


def test_credentials_revoked_while_running(node):
    """nats.c gives up on credentials refused twice: the bus closes, /readyz
    says so, and the node still stops cleanly on SIGTERM."""
    with NatsServer(config=AUTH) as nats:
        s = node(env={"FLOWCAST_NATS": with_creds(nats, "node", NODE_PASSWORD)})
        nats.reload(AUTH.replace(NODE_PASSWORD, "rotated-" + NODE_PASSWORD))
        wait_for(lambda: s.request("GET", "/readyz").status == 503, 20, what="readyz 503")
        body = s.request("GET", "/readyz").body.decode()
        assert "bus" in body and NODE_PASSWORD not in body, body
        wait_for(lambda: "is closed for good (Authorization Violation)" in log_of(s), 20,
                 what="the log line")
        assert s.request("GET", "/healthz").status == 200
        assert s.stop() == 0


def test_publisher_without_credentials_cannot_forge(node):
    with NatsServer(config=AUTH) as nats:
        s = node(env={"FLOWCAST_NATS": with_creds(nats, "node", NODE_PASSWORD)})
        w = s.create(id="victim")
        watcher = Watcher(s, "victim", w["epoch"], w["seq"])
        time.sleep(0.3)
        rogue = RawNats(nats)
        rogue.pub(forged("victim", w["epoch"], w["seq"] + 1, message="forged"))
        assert b"Authorization Violation" in rogue.line()
        rogue.close()
        real = s.patch("victim", message="real")
        assert real["seq"] == w["seq"] + 1
        wait_for(lambda: watcher.got and watcher.got[-1][0] >= real["seq"], 10,
                 what="the real change")
        watcher.close()
        assert [g[3] for g in watcher.got] == ["real"], watcher.got


def test_subscribe_only_user_cannot_publish(node):
    with NatsServer(config=AUTH) as nats:
        s = node(env={"FLOWCAST_NATS": with_creds(nats, "node", NODE_PASSWORD)})
        w = s.create(id="victim")
        watcher = Watcher(s, "victim", w["epoch"], w["seq"])
        time.sleep(0.3)
        reader = RawNats(nats, "watcher", WATCH_PASSWORD)
        assert reader.line() == b"PONG"  # connected: it may subscribe
        reader.pub(forged("victim", w["epoch"], w["seq"] + 1, message="forged"))
        assert b"Permissions Violation for Publish" in reader.line()
        reader.close()
        real = s.patch("victim", message="real")
        wait_for(lambda: watcher.got and watcher.got[-1][0] >= real["seq"], 10,
                 what="the real change")
        watcher.close()
        assert [g[3] for g in watcher.got] == ["real"], watcher.got
        # A node given that user: up, but its changes cannot travel.
        ro = node(env={"FLOWCAST_NATS": with_creds(nats, "watcher", WATCH_PASSWORD)},
                  ready=False)
        ro.wait_ready(10)
        wait_for(lambda: "Permissions Violation for Publish" in log_of(ro), 10,
                 what="the permissions line")
        assert ro.request("GET", "/readyz").status == 503


def tls_config(pki, cert="server"):
    return """tls {
  cert_file: "%s/%s.pem"
  key_file: "%s/%s.key"
  ca_file: "%s/ca.pem"
  verify: true
}""" % (pki, cert, pki, cert, pki)


def tls_flags(nats, pki, ca="ca", client="client"):
    return ("--nats", "tls://127.0.0.1:%d" % nats.port, "--nats-ca", os.path.join(pki, ca + ".pem"),
            "--nats-cert", os.path.join(pki, client + ".pem"),
            "--nats-key", os.path.join(pki, client + ".key"))


def test_tls_both_ways_delivers_across_nodes(node, pki):
    with NatsServer(config=tls_config(pki)) as nats:
        a = node(*tls_flags(nats, pki))
        b = node(*tls_flags(nats, pki))
        w = a.create(id="wf")
        watcher = Watcher(b, "wf", w["epoch"], w["seq"])
        time.sleep(0.3)
        before = bus_in(b)
        last = a.patch("wf", message="over TLS")
        wait_for(lambda: watcher.got and watcher.got[-1][0] >= last["seq"], 10,
                 what="the change on the other node")
        wait_for(lambda: bus_in(b) > before, 5, what="the message counted")
        watcher.close()


def test_tls_refusals_fail_the_start(node, pki):
    def refused(*flags):
        s = node(*flags, ready=False)
        assert exit_code(s) == 2
        line = [l for l in log_of(s).splitlines() if "cannot connect: " in l]
        assert line, log_of(s)
        return line[0]

    with NatsServer(config=tls_config(pki)) as nats:
        assert "certificate" in refused(*tls_flags(nats, pki, ca="other-ca"))
        refused(*tls_flags(nats, pki, client="stranger"))  # the server refuses its cert
    with NatsServer(config=tls_config(pki, cert="wrong-name")) as nats:
        assert "mismatch" in refused(*tls_flags(nats, pki))
    with NatsServer() as nats:  # no TLS at all: never a silent plain-text fallback
        assert "Secure Connection not available" in refused(
            "--nats", nats.url, "--nats-ca", os.path.join(pki, "ca.pem"))
        s = node("--nats", nats.url, "--nats-ca", os.path.join(pki, "missing.pem"), ready=False)
        assert exit_code(s) == 2
        assert "error bus: --nats-ca: " in log_of(s), log_of(s)


def test_tls_flags_checked(flowcast, pki):
    for flags, why in ((("--nats", "nats://127.0.0.1:1", "--nats-cert", "x.pem"),
                        "--nats-cert and --nats-key go together"),
                       (("--nats-ca", os.path.join(pki, "ca.pem")), "need --nats")):
        r = subprocess.run([flowcast, "serve"] + list(flags), capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 2 and why in r.stderr, r.stderr


def test_sample_config(node, pki):
    """contrib/nats-server.conf as shipped, with the test PKI and passwords:
    two nodes on tls://localhost (the name checked) deliver across nodes."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "contrib", "nats-server.conf")) as f:
        text = f.read()
    text = "\n".join(l for l in text.splitlines() if not l.startswith("listen:"))
    text = text.replace("/etc/nats/server.", pki + "/server.").replace(
        "/etc/nats/ca.pem", pki + "/ca.pem").replace("NODE-PASSWORD", NODE_PASSWORD).replace(
        "OBSERVER-PASSWORD", WATCH_PASSWORD)
    with NatsServer(config=text) as nats:
        url = "tls://flowcast:%s@localhost:%d" % (NODE_PASSWORD, nats.port)
        flags = tls_flags(nats, pki)[2:]
        a = node(*flags, env={"FLOWCAST_NATS": url})
        b = node(*flags, env={"FLOWCAST_NATS": url})
        w = a.create(id="wf")
        watcher = Watcher(b, "wf", w["epoch"], w["seq"])
        time.sleep(0.3)
        before = bus_in(b)
        last = a.patch("wf", message="sample")
        wait_for(lambda: watcher.got and watcher.got[-1][0] >= last["seq"], 10,
                 what="the change on the other node")
        wait_for(lambda: bus_in(b) > before, 5, what="the message counted")
        watcher.close()
        assert NODE_PASSWORD not in shown_everywhere(a)
