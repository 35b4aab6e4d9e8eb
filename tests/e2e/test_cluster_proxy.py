"""The load balancer of the cluster (contrib/haproxy.cfg through svc_proxy):
no stickiness (requests of one kept-alive connection land on every node),
every stream transport through it (single and multi WebSocket, SSE of one
and several workflows, long-poll), a killed node leaves the rotation without
a failed request, and the timeouts keep WebSockets and SSE streams open.

These run the proxy in front of independent single-node servers (SQLite),
each given the same workflows and the same changes, so whichever node a
stream lands on has them; the cluster tests run it in front of real nodes."""

import http.client
import time

import pytest

from cluster_helpers import Stream, Watcher
from fc_helpers import HOST, KeepAliveClient
from svc_proxy import HaproxyServer

pytestmark = pytest.mark.skipif(bool(__import__("fc_helpers").TLS_DIR),
                                reason="the proxy speaks plain HTTP to the nodes")

KINDS = ("ws", "multi", "sse", "sse_multi", "longpoll")


def _nodes(server_factory, n=3, flags=()):
    nodes = [server_factory(*flags, db=str(server_factory.tmpdir) + "/n%d.db" % i)
             for i in range(n)]
    for s in nodes:
        for wid in ("p1", "p2"):
            r = s.request("POST", "/api/workflows", {"id": wid, "name": wid, "total_steps": 100})
            assert r.status == 201, r
    return nodes


def _patch_all(nodes, wids, k):
    """The same k changes on every node, so every node is at the same seq."""
    for s in nodes:
        c = KeepAliveClient(s)
        try:
            for i in range(k):
                for w in wids:
                    st, body = c.patch(w, current_step=i + 1, message="m%d" % i)
                    assert st == 200, body
        finally:
            c.close()


def _get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    return r.status, r.getheader("X-Flowcast-Node")


def test_round_robin_without_stickiness(server_factory):
    nodes = _nodes(server_factory)
    with HaproxyServer([s.port for s in nodes]) as px:
        px.wait_up(3, "flowcast_ready")
        px.wait_up(3, "flowcast_alive")
        c = http.client.HTTPConnection(HOST, px.port, timeout=10)
        try:
            answers = [_get(c, "/api/workflows/p1") for _ in range(12)]
        finally:
            c.close()
        assert all(st == 200 for st, _ in answers), answers
        # One client connection, consecutive requests: every node served some.
        assert {n for _, n in answers} == {"node1", "node2", "node3"}, answers
        # New connections too.
        fresh = []
        for _ in range(6):
            c = http.client.HTTPConnection(HOST, px.port, timeout=10)
            fresh.append(_get(c, "/healthz")[1])
            c.close()
        assert set(fresh) == {"node1", "node2", "node3"}, fresh


def test_every_transport_through_the_proxy(server_factory):
    nodes = _nodes(server_factory)
    with HaproxyServer([s.port for s in nodes]) as px:
        px.wait_up(3)
        ws = []
        for i in range(3):  # three of each kind: round robin spreads them
            for kind in KINDS:
                wids = {"p1": None, "p2": None} if kind in ("multi", "sse_multi") \
                    else {("p1", "p2")[i % 2]: None}
                ws.append(Watcher(kind, [px.port], wids, name="%s-%d" % (kind, i)))
        for w in ws:
            w.start()
        try:
            for w in ws:
                w.wait_seq({wid: 1 for wid in w.seen}, timeout=15)
            _patch_all(nodes, ["p1", "p2"], 20)
            for w in ws:
                w.wait_seq({wid: 21 for wid in w.seen}, timeout=20)
        finally:
            for w in ws:
                w.stop()
        for w in ws:
            assert len(w.connects) == 1, (w.name, w.errors)  # no stream was cut
            for wid in w.seen:
                w.check_exact(wid, None, 21)
                if w.kind != "longpoll":
                    assert w.msgs[wid][(w.seen[wid][0][0], 21)] == "m19"
        # The streams were spread over the nodes, not pinned to one.
        used = [sum(1 for k, v in s.metrics().items()
                    if k.startswith("flowcast_http_requests_total") and v > 0) for s in nodes]
        assert all(u > 0 for u in used), used


def test_killed_node_leaves_the_rotation(server_factory):
    nodes = _nodes(server_factory)
    with HaproxyServer([s.port for s in nodes]) as px:
        px.wait_up(3)
        st = Stream("ws", px.port, {"p1": (None, 0)})
        first = st.next(5)
        assert first and first["seq"] == 1, first
        nodes[1].kill9()
        # Before the health check notices, a refused connection is retried on
        # another node (option redispatch): no request fails.
        c = http.client.HTTPConnection(HOST, px.port, timeout=10)
        try:
            answers = [_get(c, "/api/workflows/p2") for _ in range(20)]
        finally:
            c.close()
        assert all(s == 200 for s, _ in answers), answers
        assert "node2" not in {n for _, n in answers}, answers
        px.wait_status({"node2": "DOWN"}, "flowcast_ready", timeout=10)
        px.wait_status({"node2": "DOWN"}, "flowcast_alive", timeout=10)
        # A stream served by the dead node ended (the client is told: EOF);
        # one on a live node goes on.
        try:
            while True:
                if st.next(0.5) is None:
                    break
        except (EOFError, OSError):
            pass
        st.close()
        # The node comes back on its port and rejoins.
        nodes[1].start()
        nodes[1].wait_ready()
        px.wait_up(3, timeout=15)


def test_timeouts_keep_streams_open(server_factory):
    # Timeouts of 2 s (the shipped file has 75 s and 1 h): a WebSocket idle
    # for 5 s stays open as a tunnel kept alive by the node's pings, and an
    # SSE stream with changes every 0.4 s lives past the client and server
    # inactivity limits.
    nodes = _nodes(server_factory, flags=("--ping-interval", "0.5"))
    ov = {"timeout tunnel": "2s", "timeout client": "2s", "timeout server": "2s"}
    with HaproxyServer([s.port for s in nodes], overrides=ov) as px:
        px.wait_up(3)
        wsw = Watcher("ws", [px.port], {"p1": None}, name="idle-ws")
        ssew = Watcher("sse", [px.port], {"p2": None}, name="busy-sse")
        wsw.start()
        ssew.start()
        try:
            wsw.wait_seq({"p1": 1})
            ssew.wait_seq({"p2": 1})
            for i in range(13):
                time.sleep(0.4)
                _patch_all(nodes, ["p2"], 1)
            _patch_all(nodes, ["p1"], 1)
            wsw.wait_seq({"p1": 2})
            ssew.wait_seq({"p2": 14})
        finally:
            wsw.stop()
            ssew.stop()
        assert len(wsw.connects) == 1 and len(ssew.connects) == 1, (wsw.errors, ssew.errors)
        wsw.check_exact("p1", None, 2)
        ssew.check_exact("p2", None, 14)


def test_config_renders_every_node():
    from svc_proxy import CONTRIB_CFG, render_config
    with open(CONTRIB_CFG) as f:
        text = render_config(f.read(), 9999, "/tmp/x.sock", [1, 2, 3, 4, 5])
    assert text.count("server node") == 10, text  # five in each backend
    assert "bind 127.0.0.1:9999" in text and "stats socket /tmp/x.sock" in text
    directives = [ln.split("#")[0] for ln in text.splitlines()]
    assert sum("balance roundrobin" in d for d in directives) == 2, text
    assert not [d for d in directives if "cookie" in d or "stick" in d], text  # no stickiness
