"""The cluster harness itself (svc_cluster, scripts/cluster): what sits
between the nodes and nats-server must not add latency of its own, since
the cluster bench (bench/scenarios/cluster.sh, through scripts/cluster)
measures cross-node latency through it.

- The tests' relay (svc_cluster.Relay, there so a test can cut one node's
  link) sets TCP_NODELAY on both of its sockets: without it a bus message
  that followed another within the peer's delayed ACK waited for that ACK
  (Nagle), up to ~40 ms, which was the bench's p99.
- scripts/cluster (make cluster, the bench) connects the nodes straight to
  nats-server, with no relay at all."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import flowcast_bin
from fc_helpers import HOST, TLS_DIR
from svc_cluster import Relay

pytestmark = pytest.mark.skipif(bool(TLS_DIR), reason="the cluster runs plain HTTP")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_relay_sockets_send_at_once():
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind((HOST, 0))
    lsock.listen(1)
    relay = Relay(lsock.getsockname()[1])
    try:
        client = socket.create_connection((HOST, relay.port), timeout=5)
        upstream, _ = lsock.accept()
        deadline = time.monotonic() + 5
        while len(relay.peer) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        with relay.lock:
            socks = list(relay.peer)
        assert len(socks) == 2, "the relay did not connect both sides"
        for s in socks:
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0, s
        # And it still relays, both ways.
        client.sendall(b"PING\r\n")
        upstream.settimeout(5)
        assert upstream.recv(64) == b"PING\r\n"
        upstream.sendall(b"PONG\r\n")
        client.settimeout(5)
        assert client.recv(64) == b"PONG\r\n"
        client.close()
        upstream.close()
    finally:
        relay.close()
        lsock.close()


def _remote_ports(pid):
    """The remote ports of pid's established IPv4 TCP sockets (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    with open("/proc/%d/net/tcp" % pid) as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[3] == "01" and cols[9] in inodes:  # ESTABLISHED
                ports.add(int(cols[2].split(":")[1], 16))
    return ports


def test_make_cluster_nodes_reach_nats_directly(tmp_path):
    info = tmp_path / "info.json"
    p = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts", "cluster"), "--bin", flowcast_bin(),
         "--nodes", "1", "--no-proxy", "--dir", str(tmp_path / "cl"), "--info", str(info)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert info.exists(), p.stdout.read1(65536) if p.poll() is not None else "no info"
        cl = json.loads(info.read_text())
        nats_port = int(cl["nats"].rsplit(":", 1)[1])
        node = cl["nodes"][0]["pid"]
        deadline = time.monotonic() + 10
        while nats_port not in _remote_ports(node) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert nats_port in _remote_ports(node), (nats_port, _remote_ports(node))
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
