"""Three flowcast nodes on one PostgreSQL and one NATS, HAProxy in front
(svc_cluster): watchers on every node and every transport see exactly the
committed seqs once and in order whichever node committed them; concurrent
writers on different nodes get one seq each (if_seq: one winner; one id:
one 201); a workflow deleted and re-created through other nodes is told to
watchers resuming anywhere, never continued silently.

One cluster serves this module's tests (none of them kills anything); the
fault tests are in test_cluster_faults.py and test_cluster_catchup.py."""

import http.client
import json
import os
import threading
import uuid

import pytest

from cluster_helpers import Producer, Stream, Watcher
from fcc_helpers import LineProc
from fc_helpers import HOST, TLS_DIR
from svc_cluster import Cluster

pytestmark = pytest.mark.skipif(bool(TLS_DIR), reason="the cluster runs plain HTTP")

KINDS = ("ws", "multi", "sse", "sse_multi", "longpoll")


@pytest.fixture(scope="module")
def cluster(flowcast):
    with Cluster(flowcast, n=3) as cl:
        yield cl


def _create(node, wid):
    r = node.request("POST", "/api/workflows", {"id": wid, "name": wid, "total_steps": 1000})
    assert r.status == 201, r
    return r.json()["epoch"]


def _watchers(cl, wids, per_node_ports):
    """Every kind on every node: the single kinds take one workflow each
    (in turn), the multi kinds all of them."""
    out = []
    ids = list(wids)
    for i, ports in enumerate(per_node_ports):
        for j, kind in enumerate(KINDS):
            if kind in ("multi", "sse_multi"):
                want = dict(wids)
            else:
                w = ids[(i + j) % len(ids)]
                want = {w: wids[w]}
            out.append(Watcher(kind, ports, want, name="%s@%d" % (kind, i)))
    return out


class CliWatcher:
    """`flowcast watch ID --json` (the C client) on FLOWCAST_URL urls."""

    def __init__(self, flowcast, urls, wid):
        self.wid = wid
        self.p = LineProc([flowcast, "watch", "--json", wid], env={"FLOWCAST_URL": urls})

    def seqs_until(self, last, timeout=30):
        self.p.wait_for(lambda o: o.get("seq") == last, timeout=timeout, what="seq %d" % last)
        return [json.loads(x) for x in self.p.lines]

    def kill(self):
        self.p.kill()


def _final(cl, wid):
    return cl.nodes[0].get(wid)["seq"]


def _merge_acked(producers, wid):
    acked = {}
    for p in producers:
        for s, msg in p.acked.get(wid, {}).items():
            assert s not in acked, ("seq acknowledged twice", wid, s)
            acked[s] = msg
    return acked


def test_every_watcher_sees_every_change_once_in_order(cluster, flowcast):
    cl = cluster
    wids = {}
    for i in range(4):  # created through different nodes
        wid = "all-%d-%s" % (i, uuid.uuid4().hex[:6])
        wids[wid] = _create(cl.nodes[i % 3], wid)
    # Watchers on each node directly, and three more sets through the proxy.
    watchers = _watchers(cl, wids, [[p] for p in cl.ports()] + [[cl.proxy.port]])
    clis = [CliWatcher(flowcast, "http://%s:%d" % (HOST, p), w)
            for p, w in zip(cl.ports(), wids)]
    for w in watchers:
        w.start()
    try:
        for w in watchers:
            w.wait_seq({wid: (wids[wid], 1) for wid in w.seen}, timeout=20)
        for c in clis:
            c.p.wait_for(lambda o: o.get("seq") == 1, timeout=20, what="the current state")
        # Two producers per workflow on different nodes, one through the proxy.
        producers = []
        ids = list(wids)
        for k in range(6):
            ports = [cl.proxy.port] if k == 5 else [cl.ports()[k % 3]]
            producers.append(Producer(ports, [ids[k % 4], ids[(k + 1) % 4]], 25, "p%d" % k))
        for p in producers:
            p.start()
        for p in producers:
            p.join(120)
            assert not p.is_alive() and not p.failures and not p.errors, \
                (p.name, p.failures[:3], p.errors[:3])
        finals = {wid: _final(cl, wid) for wid in wids}
        for w in watchers:
            w.wait_seq({wid: (wids[wid], finals[wid]) for wid in w.seen}, timeout=30)
        for c in clis:
            got = c.seqs_until(finals[c.wid])
            assert [o["seq"] for o in got] == list(range(1, finals[c.wid] + 1)), got[:5]
            assert all(o["epoch"] == wids[c.wid] for o in got)
    finally:
        for w in watchers:
            w.stop()
        for c in clis:
            c.kill()
    for wid in wids:
        acked = _merge_acked(producers, wid)
        # 1 (create) + 50 changes, every one acknowledged once.
        assert sorted(acked) == list(range(2, finals[wid] + 1)), (wid, sorted(acked)[:5])
        for w in watchers:
            if wid in w.seen:
                w.check_exact(wid, wids[wid], finals[wid], acked)


def _race(n, fn):
    """Runs fn(i) in n threads released together; returns their results."""
    gate = threading.Barrier(n)
    out = [None] * n

    def run(i):
        gate.wait(10)
        out[i] = fn(i)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    return out


def _req(port, method, path, body):
    c = http.client.HTTPConnection(HOST, port, timeout=20)
    try:
        c.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


def test_concurrent_if_seq_patches_through_two_nodes_one_wins(cluster):
    cl = cluster
    wid = "cas-" + uuid.uuid4().hex[:8]
    _create(cl.nodes[0], wid)
    for rnd in range(15):
        cur = cl.nodes[1].get(wid)["seq"]
        ports = [cl.ports()[1], cl.ports()[2]] * 3
        res = _race(6, lambda i: _req(ports[i], "PATCH", "/api/workflows/" + wid,
                                      {"if_seq": cur, "message": "r%d-%d" % (rnd, i)}))
        ok = [b for s, b in res if s == 200]
        assert len(ok) == 1, res
        assert ok[0]["seq"] == cur + 1
        lost = [(s, b) for s, b in res if s != 200]
        assert all(s == 409 and b["error"]["code"] == "seq_mismatch" for s, b in lost), res
    assert cl.nodes[2].get(wid)["seq"] == 16


def test_concurrent_creates_of_one_id_one_201(cluster):
    cl = cluster
    for rnd in range(15):
        wid = "dup-%d-%s" % (rnd, uuid.uuid4().hex[:6])
        ports = cl.ports() * 2
        res = _race(6, lambda i: _req(ports[i], "POST", "/api/workflows",
                                      {"id": wid, "name": "n%d" % i, "total_steps": 5}))
        assert sorted(s for s, _ in res) == [201] + [409] * 5, res
        winner = [b for s, b in res if s == 201][0]
        for n in cl.nodes:  # every node serves the winner's incarnation
            got = n.get(wid)
            assert (got["epoch"], got["name"], got["seq"]) == \
                (winner["epoch"], winner["name"], 1)


def test_delete_and_recreate_across_nodes_is_told(cluster):
    cl = cluster
    wid = "dr-" + uuid.uuid4().hex[:8]
    e1 = _create(cl.nodes[0], wid)
    for i in range(5):
        cl.nodes[1].patch(wid, message="a%d" % i)
    # Live watchers of every kind, spread over the nodes.
    watchers = [Watcher(k, [cl.ports()[i % 3]], {wid: e1}, name=k)
                for i, k in enumerate(KINDS)]
    for w in watchers:
        w.start()
    try:
        for w in watchers:
            w.wait_seq({wid: (e1, 6)})
        r = cl.nodes[1].request("DELETE", "/api/workflows/" + wid)  # through another node
        assert r.status == 204, r
        e2 = _create(cl.nodes[2], wid)  # and re-created through a third
        assert e2 != e1
        for i in range(3):
            cl.nodes[0].patch(wid, message="b%d" % i)
        for w in watchers:
            w.wait_told(wid)
    finally:
        for w in watchers:
            w.stop()
    for w in watchers:
        # Exactly the first incarnation, then told; never a seq of the second.
        w.check_exact(wid, e1, 6)
        if w.kind != "longpoll":
            assert w.told[wid] == [("deleted", e1, 7)], (w.name, w.told)
    # Resuming the old incarnation on each node, after the re-creation:
    # from before the deletion, the deletion itself; from the deletion on,
    # the new incarnation flagged resync. Never its seqs as a continuation.
    for p in cl.ports():
        for kind in ("ws", "sse", "multi", "sse_multi"):
            st = Stream(kind, p, {wid: (e1, 3)})
            try:
                m = st.next(5)
                assert m and m.get("deleted") and (m["epoch"], m["seq"]) == (e1, 7), (kind, m)
            finally:
                st.close()
            st = Stream(kind, p, {wid: (e1, 7)})
            try:
                m = st.next(5)
                assert m and m.get("resync") and m["epoch"] == e2 and m["seq"] == 4, (kind, m)
            finally:
                st.close()
        c = http.client.HTTPConnection(HOST, p, timeout=10)
        c.request("GET", "/api/workflows/%s?wait_since=3&epoch=%d&timeout=1" % (wid, e1))
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        assert r.status == 200 and body["resync"] and body["epoch"] == e2, body


def test_readyz_and_proxy_see_every_node(cluster):
    cl = cluster
    for n in cl.nodes:
        r = n.request("GET", "/readyz")
        assert r.status == 200, r
    st = cl.proxy.wait_up()
    assert len(st) == 3, st
    assert os.path.exists(cl.proxy.cfg_path)
