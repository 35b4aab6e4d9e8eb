"""HAProxy in front of flowcast nodes, for the cluster tests and `make cluster`.

HaproxyServer runs the shipped contrib/haproxy.cfg (so the configuration the
docs recommend is the one tested) with three things rewritten for a test: the
bind address (a free loopback port), the stats socket (in the work folder)
and each backend's server list (one line per node, with the options of the
file's first server line). Round robin, no stickiness: consecutive requests,
even on one kept-alive client connection, land on different nodes.

    with HaproxyServer([8101, 8102, 8103]) as px:
        px.wait_up(3)
        requests go to px.port; px.node_of(resp) names the node that answered

Always stopped on exit (SIGTERM, then SIGKILL), even when the test fails."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from fc_helpers import free_port

HOST = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
CONTRIB_CFG = os.path.join(os.path.dirname(os.path.dirname(HERE)), "contrib", "haproxy.cfg")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def render_config(text, port, sock_path, nodes, overrides=None):
    """contrib/haproxy.cfg with the bind, the stats socket and the servers
    replaced; nodes are ports or (host, port). overrides maps a directive's
    leading words (e.g. "timeout client") to the value that replaces it in
    `defaults`."""
    addrs = [n if isinstance(n, tuple) else (HOST, n) for n in nodes]
    out = []
    section = None
    seen_server = set()
    for line in text.splitlines():
        stripped = line.strip()
        m = re.match(r"^(global|defaults|frontend|backend|listen)\b\s*(\S*)", line)
        if m:
            section = (m.group(1), m.group(2))
        if stripped.startswith("bind ") and section[0] == "frontend":
            line = "    bind %s:%d" % (HOST, port)
        elif stripped.startswith("stats socket "):
            line = "    stats socket %s mode 600 level admin" % sock_path
        elif stripped.startswith("server "):
            if section in seen_server:
                continue  # the file's other servers: replaced by the nodes below
            seen_server.add(section)
            opts = stripped.split(None, 3)[3] if len(stripped.split(None, 3)) > 3 else ""
            for i, (h, p) in enumerate(addrs, 1):
                out.append("    server node%d %s:%d %s" % (i, h, p, opts))
            continue
        elif overrides and section and section[0] == "defaults":
            for key, val in overrides.items():
                if stripped == key or stripped.startswith(key + " "):
                    line = "    %s %s" % (key, val)
        out.append(line)
    return "\n".join(out) + "\n"


class HaproxyServer:
    """HAProxy on a free loopback port in front of `nodes` (ports or (host, port))."""

    def __init__(self, nodes, workdir=None, overrides=None, port=None):
        self.nodes = list(nodes)
        self.overrides = overrides
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="fc-haproxy-")
        self.port = port or free_port()
        self.sock_path = os.path.join(self.dir, "haproxy.sock")
        self.cfg_path = os.path.join(self.dir, "haproxy.cfg")
        self.log_path = os.path.join(self.dir, "haproxy.log")
        self.proc = None
        self.logf = None

    @property
    def url(self):
        return "http://%s:%d" % (HOST, self.port)

    def ws_url(self, path):
        return "ws://%s:%d%s" % (HOST, self.port, path)

    # -- process
    def start(self, timeout=10.0):
        with open(CONTRIB_CFG) as f:
            cfg = render_config(f.read(), self.port, self.sock_path, self.nodes, self.overrides)
        with open(self.cfg_path, "w") as f:
            f.write(cfg)
        self.logf = open(self.log_path, "ab")
        # -db: stay in the foreground (no daemon), so this process owns it.
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg_path],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("haproxy exited with %s:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                if os.path.exists(self.sock_path):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError("haproxy not listening on %d within %ss:\n%s"
                             % (self.port, timeout, self.log_tail()))

    def stop(self):
        """Hard stop (SIGTERM closes every session at once); SIGKILL if stuck."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None

    def close(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- the admin socket
    def admin(self, command):
        """One command on the stats socket; its answer as text."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.sock_path)
            s.sendall(command.encode() + b"\n")
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
            return data.decode()
        finally:
            s.close()

    def stat(self, backend="flowcast_ready"):
        """{server name: status} of a backend ("UP", "DOWN", "UP 1/2", ...)."""
        lines = self.admin("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for ln in lines[1:]:
            row = dict(zip(head, ln.split(",")))
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = row["status"]
        return out

    def wait_status(self, want, backend="flowcast_ready", timeout=15.0):
        """Waits until stat(backend) maps each name in `want` to a status that
        starts with want[name] ("UP" or "DOWN")."""
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = self.stat(backend)
            if all(st.get(k, "").startswith(v) for k, v in want.items()):
                return st
            time.sleep(0.1)
        raise AssertionError("backend %s: wanted %r, have %r" % (backend, want, st))

    def wait_up(self, n=None, backend="flowcast_ready", timeout=15.0):
        """Waits until nodes 1..n (all by default) are UP in `backend`."""
        n = len(self.nodes) if n is None else n
        return self.wait_status({"node%d" % i: "UP" for i in range(1, n + 1)}, backend, timeout)

    @staticmethod
    def node_of(headers):
        """The node that answered a proxied response (its X-Flowcast-Node)."""
        for k, v in (headers.items() if hasattr(headers, "items") else headers):
            if k.lower() == "x-flowcast-node":
                return v
        return None
