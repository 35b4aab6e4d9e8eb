"""A flowcast cluster on loopback for the cluster tests, the cluster bench
and `make cluster` (scripts/cluster): one PostgreSQL (svc_postgres), one
nats-server (svc_nats), n flowcast nodes on free ports and HAProxy in front
(svc_proxy, contrib/haproxy.cfg).

    with Cluster(binary, n=3) as cl:
        cl.nodes[i]       fc_helpers.Server of node i (request, create, patch, ...)
        cl.proxy.port     HAProxy, round robin, no stickiness
        cl.ports()        every node's port (for clients given several URLs)
        cl.kill9(i) / cl.restart(i)        a node (same port, same database)
        cl.stop_nats() / cl.start_nats()   the bus (same port)
        cl.stop_pg() / cl.start_pg()       the store (same port and data)
        cl.cut(i) / cl.heal(i)             node i's link to NATS (a relay)

Node i reaches NATS through its own TCP relay (Relay below), so one node
can be cut from the bus while the others keep it: cut() resets its
connections and refuses new ones (cut(hold=True) instead stops moving bytes,
as a silent network partition would). No iptables or network namespace is
needed, so the tests run unprivileged and in parallel.

Everything is stopped on exit, even when the test fails; nodes get SIGTERM
and must exit 0 (ASan's leak check included) unless the test killed them."""

import os
import selectors
import shutil
import socket
import tempfile
import threading
import time

from fc_helpers import HOST, Server, free_port
from svc_nats import NatsServer
from svc_postgres import PostgresServer
from svc_proxy import HaproxyServer


class Relay:
    """A TCP relay from a free loopback port to (HOST, target_port), one
    thread, that can cut its link (see the module's docstring)."""

    def __init__(self, target_port):
        self.target = target_port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(64)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.peer = {}  # socket -> the socket on the other side
        self.mode = "open"  # "open", "reset" or "hold"
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="relay")
        self.thread.start()

    def cut(self, hold=False):
        with self.lock:
            self.mode = "hold" if hold else "reset"
            if not hold:
                for s in list(self.peer):
                    self._drop(s)

    def heal(self):
        with self.lock:
            self.mode = "open"

    def close(self):
        self.stopping = True
        self.thread.join(5)
        for s in list(self.peer):
            self._drop(s)
        self.sel.close()
        self.lsock.close()

    def _drop(self, s):
        o = self.peer.pop(s, None)
        for x in (s, o):
            if x is None:
                continue
            self.peer.pop(x, None)
            try:
                self.sel.unregister(x)
            except (KeyError, ValueError):
                pass
            try:  # RST, as a link that breaks
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                x.close()
            except OSError:
                pass

    def _run(self):
        while not self.stopping:
            for key, _ in self.sel.select(0.1):
                with self.lock:
                    s = key.fileobj
                    if s is self.lsock:
                        self._accept()
                    elif s in self.peer and self.mode != "hold":
                        self._pump(s)
            if self.mode == "hold":
                time.sleep(0.05)  # readable sockets stay readable: do not spin

    def _accept(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        if self.mode == "reset":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            c.close()
            return
        try:
            u = socket.create_connection((HOST, self.target), timeout=2)
        except OSError:
            c.close()
            return
        for x in (c, u):
            # Both ends are the NATS client's and the server's, which set
            # TCP_NODELAY: without it here a message that follows another
            # within the peer's delayed ACK (~40 ms) waited for that ACK
            # (Nagle), the cross-node latency tail the cluster bench saw.
            x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            x.setblocking(False)
            self.sel.register(x, selectors.EVENT_READ, None)
        self.peer[c], self.peer[u] = u, c

    def _pump(self, s):
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(s)
            return
        try:
            self.peer[s].setblocking(True)
            self.peer[s].sendall(data)
            self.peer[s].setblocking(False)
        except OSError:
            self._drop(s)


class Cluster:
    """PostgreSQL + NATS + n nodes + HAProxy; see the module's docstring.
    node_flags are extra flags of every node; bus=False starts the nodes
    without --nats (catch-up from the store only); proxy=False without HAProxy;
    durable=True runs PostgreSQL with fsync on (make cluster, the bench; the
    tests stop PostgreSQL but never the machine, so they go without).
    relays=False connects the nodes straight to nats-server (make cluster,
    the bench: nothing between them but what a deployment has; cut() and
    heal() then refuse)."""

    def __init__(self, binary, n=3, workdir=None, node_flags=(), bus=True, proxy=True,
                 env=None, ports=None, proxy_port=None, durable=False, relays=True):
        self.durable = durable
        self.want_relays = relays
        self.binary = binary
        self.n = n
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="fc-cluster-")
        self.node_flags = [str(f) for f in node_flags]
        self.want_bus = bus
        self.want_proxy = proxy
        self.env = env
        self.fixed_ports = ports
        self.proxy_port = proxy_port
        self.pg = None
        self.nats = None
        self.relays = []
        self.nodes = []
        self.proxy = None

    # -- start and stop
    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close(check=exc[0] is None)

    def start(self):
        self.pg = PostgresServer(durable=self.durable)
        self.pg.__enter__()
        if self.want_bus:
            self.nats = NatsServer()
            self.nats.__enter__()
        for i in range(self.n):
            self.add_node(start=True, ready=False)
        for s in self.nodes:
            self.wait_ready(s)
        if self.want_proxy:
            self.proxy = HaproxyServer([s.port for s in self.nodes],
                                       workdir=os.path.join(self.dir, "proxy"),
                                       port=self.proxy_port)
            os.makedirs(self.proxy.dir, exist_ok=True)
            self.proxy.start()
            self.proxy.wait_up(timeout=20)
        return self

    def add_node(self, start=True, ready=True, flags=()):
        """A new node (a late joiner when the cluster runs); returns its Server."""
        i = len(self.nodes)
        port = self.fixed_ports[i] if self.fixed_ports else free_port()
        args = ["serve", "--listen", "%s:%d" % (HOST, port), "--db", self.pg.dsn]
        if self.want_bus and not self.want_relays:
            args += ["--nats", self.nats.url]
        elif self.want_bus:
            relay = Relay(self.nats.port)
            self.relays.append(relay)
            args += ["--nats", "nats://%s:%d" % (HOST, relay.port)]
        args += self.node_flags + [str(f) for f in flags]
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.update(self.env or {})
        log = os.path.join(self.dir, "node%d.log" % (i + 1))
        s = Server(self.binary, port, self.pg.dsn, log, args, e)
        self.nodes.append(s)
        if start:
            s.start()
            if ready:
                self.wait_ready(s)
        return s

    def wait_ready(self, s, timeout=20.0):
        """/healthz, then /readyz 200 (store and bus both reached)."""
        s.wait_ready(timeout)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = s.request("GET", "/readyz", timeout=2)
            if last.status == 200:
                return
            time.sleep(0.05)
        raise AssertionError("node on %d not ready: %r\n%s" % (s.port, last, s.log_tail(40)))

    def close(self, check=False):
        """Stops everything (proxy, nodes, relays, NATS, PostgreSQL); with
        check, raises if a node died unasked or exited non-zero on SIGTERM."""
        problems = []
        if self.proxy:
            self.proxy.stop()
        for i, s in enumerate(self.nodes):
            if s.proc is None:
                continue
            if s.proc.poll() is None:
                try:
                    rc = s.stop()
                    if rc != 0:
                        problems.append("node%d exited %s on SIGTERM" % (i + 1, rc))
                except AssertionError as e:
                    problems.append("node%d: %s" % (i + 1, e))
            elif not s.expect_exit:
                problems.append("node%d died (exit %s)" % (i + 1, s.proc.returncode))
            s.logf.close()
            if problems:
                print("----- node%d log -----\n%s" % (i + 1, s.log_tail(80)))
        for r in self.relays:
            r.close()
        self.relays = []
        if self.nats:
            self.nats.__exit__(None, None, None)
            self.nats = None
        if self.pg:
            self.pg.__exit__(None, None, None)
            self.pg = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if check:
            assert not problems, "; ".join(problems)

    # -- faults
    def ports(self):
        return [s.port for s in self.nodes]

    def kill9(self, i):
        self.nodes[i].kill9()
        self.nodes[i].logf.close()

    def restart(self, i, ready=True):
        s = self.nodes[i]
        if s.proc.poll() is None:
            s.stop()
            s.logf.close()
        s.expect_exit = False
        s.start()
        if ready:
            self.wait_ready(s)

    def stop_nats(self):
        self.nats.stop()

    def start_nats(self):
        self.nats.start()

    def stop_pg(self):
        self.pg.stop()

    def start_pg(self):
        self.pg.start()

    def cut(self, i, hold=False):
        assert self.want_relays, "cut() needs the relays (Cluster(relays=True))"
        self.relays[i].cut(hold)

    def heal(self, i):
        assert self.want_relays, "heal() needs the relays (Cluster(relays=True))"
        self.relays[i].heal()

    def urls(self):
        """The URLs to print: the proxy, each node, the dashboard."""
        out = {}
        if self.proxy:
            out["proxy"] = self.proxy.url
            out["dashboard"] = self.proxy.url + "/"
        for i, s in enumerate(self.nodes):
            out["node%d" % (i + 1)] = "http://%s:%d" % (HOST, s.port)
        out["postgres"] = self.pg.dsn
        if self.nats:
            out["nats"] = self.nats.url
        return out
