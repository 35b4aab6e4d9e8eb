"""Catch-up from the store: a node cut from the bus (its link to NATS reset,
or silently stalled) and a node started late still deliver every change of
the other nodes to their watchers, once and in order; the cut node's
/readyz says so (503) and recovers when the link heals; a node without
--nats at all delivers everything too."""

import uuid

import pytest

from cluster_helpers import Producer, Watcher
from fc_helpers import TLS_DIR, wait_for
from svc_cluster import Cluster

pytestmark = pytest.mark.skipif(bool(TLS_DIR), reason="the cluster runs plain HTTP")

KINDS = ("ws", "multi", "sse", "sse_multi", "longpoll")


def _create(cl, n):
    wids = {}
    for i in range(n):
        wid = "c%d-%s" % (i, uuid.uuid4().hex[:6])
        r = cl.nodes[0].request("POST", "/api/workflows",
                                {"id": wid, "name": wid, "total_steps": 1000})
        assert r.status == 201, r
        wids[wid] = r.json()["epoch"]
    return wids


def _watchers(port, wids, tag):
    out = []
    for j, kind in enumerate(KINDS):
        w = list(wids)[j % len(wids)]
        want = dict(wids) if kind in ("multi", "sse_multi") else {w: wids[w]}
        out.append(Watcher(kind, [port], want, name="%s@%s" % (kind, tag)))
    for w in out:
        w.start()
    return out


def _readyz(node):
    try:
        return node.request("GET", "/readyz", timeout=10).status
    except OSError:
        return None


def _finish(cl, watchers, producers, wids):
    for p in producers:
        p.join(120)
        assert not p.is_alive() and not p.failures and not p.errors, (p.name, p.failures[:3])
    finals = {wid: cl.nodes[0].get(wid)["seq"] for wid in wids}
    try:
        for w in watchers:
            w.wait_seq({wid: (wids[wid], finals[wid]) for wid in w.seen}, timeout=30)
    finally:
        for w in watchers:
            w.stop()
    for wid in wids:
        acked = {}
        for p in producers:
            acked.update(p.acked.get(wid, {}))
        for w in watchers:
            if wid in w.seen:
                w.check_exact(wid, wids[wid], finals[wid], acked)


def test_nodes_cut_from_the_bus_and_a_late_node_deliver_everything(flowcast):
    with Cluster(flowcast, n=3) as cl:
        wids = _create(cl, 3)
        cl.cut(1, hold=True)  # node 2: its link stalls, nothing moves
        cl.cut(2)  # node 3: its link resets and stays refused
        wait_for(lambda: _readyz(cl.nodes[2]) == 503, 15, what="node 3 readyz 503")
        wait_for(lambda: _readyz(cl.nodes[1]) == 503, 15, what="node 2 readyz 503")
        assert _readyz(cl.nodes[0]) == 200
        watchers = _watchers(cl.ports()[1], wids, "stalled") + \
            _watchers(cl.ports()[2], wids, "cut")
        for w in watchers:
            w.wait_seq({wid: (wids[wid], 1) for wid in w.seen}, timeout=20)
        producers = [Producer([cl.ports()[0]], wids, 20, "p0", pause=0.02)]
        for p in producers:
            p.start()
        producers[0].join(60)
        # A node that joins now: its watchers replay from the creation, then
        # follow live changes of node 1.
        late = cl.add_node()
        watchers += _watchers(late.port, wids, "late")
        more = Producer([cl.ports()[0]], wids, 10, "p1", pause=0.02)
        more.start()
        _finish(cl, watchers, producers + [more], wids)
        cl.heal(1)
        cl.heal(2)
        for n in cl.nodes[1:3]:
            wait_for(lambda: _readyz(n) == 200, 30, what="readyz 200 after the heal")


def test_node_without_bus_delivers_through_catch_up(flowcast):
    # No --nats at all: PostgreSQL alone carries the changes between nodes.
    with Cluster(flowcast, n=2, bus=False, proxy=False) as cl:
        wids = _create(cl, 2)
        watchers = _watchers(cl.ports()[1], wids, "nobus")
        for w in watchers:
            w.wait_seq({wid: (wids[wid], 1) for wid in w.seen}, timeout=20)
        producers = [Producer([cl.ports()[0]], wids, 15, "q", pause=0.02)]
        producers[0].start()
        _finish(cl, watchers, producers, wids)
