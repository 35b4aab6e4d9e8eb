"""Faults of a three-node cluster (svc_cluster), each test on its own cluster:
a node killed with SIGKILL mid-stream (its watchers resume on another node
with no gap, every acknowledged change is there), NATS stopped for 5 s
(nothing lost, /readyz 503 then 200), PostgreSQL restarted (writes answer
503 quickly instead of hanging, nothing acknowledged is lost, the nodes
recover by themselves)."""

import http.client
import json
import time
import uuid

import pytest

from cluster_helpers import Producer, Watcher
from fcc_helpers import LineProc
from fc_helpers import HOST, TLS_DIR, wait_for
from svc_cluster import Cluster

pytestmark = pytest.mark.skipif(bool(TLS_DIR), reason="the cluster runs plain HTTP")

KINDS = ("ws", "multi", "sse", "sse_multi", "longpoll")


def _setup(cl, n_wf=3):
    wids = {}
    for i in range(n_wf):
        wid = "f%d-%s" % (i, uuid.uuid4().hex[:6])
        r = cl.nodes[i % len(cl.nodes)].request(
            "POST", "/api/workflows", {"id": wid, "name": wid, "total_steps": 1000})
        assert r.status == 201, r
        wids[wid] = r.json()["epoch"]
    return wids


def _watch_all(ports_list, wids):
    out = []
    for i, ports in enumerate(ports_list):
        for kind in KINDS:
            want = dict(wids) if kind in ("multi", "sse_multi") else \
                {list(wids)[i % len(wids)]: wids[list(wids)[i % len(wids)]]}
            out.append(Watcher(kind, ports, want, name="%s#%d" % (kind, i)))
    for w in out:
        w.start()
    for w in out:
        w.wait_seq({wid: (wids[wid], 1) for wid in w.seen}, timeout=20)
    return out


def _check(cl, watchers, producers, wids, node=0):
    finals = {wid: cl.nodes[node].get(wid)["seq"] for wid in wids}
    for w in watchers:
        w.wait_seq({wid: (wids[wid], finals[wid]) for wid in w.seen}, timeout=40)
    for w in watchers:
        w.stop()
    for wid in wids:
        acked = {}
        for p in producers:
            for s, msg in p.acked.get(wid, {}).items():
                assert s not in acked, (wid, s)
                acked[s] = msg
        assert acked and max(acked) <= finals[wid], (wid, finals[wid])
        for w in watchers:
            if wid in w.seen:
                w.check_exact(wid, wids[wid], finals[wid], acked)
    return finals


def test_kill9_node_watchers_resume_elsewhere_nothing_lost(flowcast):
    with Cluster(flowcast, n=3) as cl:
        wids = _setup(cl)
        a, b, c = cl.ports()
        # Watchers start on node 1 and move to 2, then 3; others through the
        # proxy (which may put them on node 1 too).
        watchers = _watch_all([[a, b, c], [a, c, b], [cl.proxy.port]], wids)
        try:
            # Producers on every node (node 1's move on when it dies) and
            # through the proxy, several per workflow.
            producers = [Producer([a, b], wids, 40, "pa", pause=0.01),
                         Producer([b], wids, 40, "pb", pause=0.01),
                         Producer([c], wids, 40, "pc", pause=0.01),
                         Producer([cl.proxy.port], wids, 40, "px", pause=0.01)]
            for p in producers:
                p.start()
            wait_for(lambda: sum(len(v) for v in producers[1].acked.values()) > 30, 20)
            cl.kill9(0)
            for p in producers:
                p.join(120)
                assert not p.is_alive() and not p.failures, (p.name, p.failures[:3])
            _check(cl, watchers, producers, wids, node=1)
            # Every watcher that started on node 1 did move.
            for w in watchers[:10]:
                assert len(w.connects) > 1, (w.name, w.connects)
        finally:
            for w in watchers:
                if w.is_alive():
                    w.stopping.set()


def test_kill9_c_client_moves_to_the_next_url(flowcast):
    # `flowcast watch` (libflowcast) given two nodes' URLs: its node dies,
    # it resumes on the next URL by (epoch, seq), no gap, no repeat.
    with Cluster(flowcast, n=2, proxy=False) as cl:
        wids = _setup(cl, 1)
        wid = list(wids)[0]
        a, b = cl.ports()
        cli = LineProc([flowcast, "watch", "--json", wid],
                       env={"FLOWCAST_URL": "http://%s:%d,http://%s:%d" % (HOST, a, HOST, b)})
        try:
            cli.wait_for(lambda o: o.get("seq") == 1, timeout=20, what="the current state")
            for i in range(10):
                cl.nodes[1].patch(wid, current_step=i + 1)
            cli.wait_for(lambda o: o.get("seq") == 11, timeout=20, what="seq 11")
            cl.kill9(0)
            for i in range(10, 20):
                cl.nodes[1].patch(wid, current_step=i + 1)
            cli.wait_for(lambda o: o.get("seq") == 21, timeout=30, what="seq 21")
            got = [json.loads(x) for x in cli.lines]
            assert [o["seq"] for o in got] == list(range(1, 22)), got
            assert {o["epoch"] for o in got} == {wids[wid]}
        finally:
            cli.kill()


def _readyz(node):
    # A check of an unreachable store takes up to --db-timeout (2 s) to
    # fail, more on a loaded machine: a generous timeout per probe.
    try:
        return node.request("GET", "/readyz", timeout=10).status
    except OSError:
        return None


def test_nats_down_5s_nothing_lost_readyz_503_then_200(flowcast):
    with Cluster(flowcast, n=3) as cl:
        wids = _setup(cl)
        watchers = _watch_all([[p] for p in cl.ports()] + [[cl.proxy.port]], wids)
        producers = [Producer([p], wids, 30, "n%d" % i, pause=0.05)
                     for i, p in enumerate(cl.ports() + [cl.proxy.port])]
        try:
            for p in producers:
                p.start()
            time.sleep(0.5)
            cl.stop_nats()
            t0 = time.monotonic()
            for n in cl.nodes:
                wait_for(lambda: _readyz(n) == 503, 15, what="readyz 503")
                body = n.request("GET", "/readyz").json()
                assert body["status"] == "not_ready", body
            # The proxy has no ready node: it falls back to every live one,
            # so producers through it still get 200s.
            st, _ = _patch(cl.proxy.port, list(wids)[0])
            assert st == 200
            time.sleep(max(0.0, 5 - (time.monotonic() - t0)))
            cl.start_nats()
            for n in cl.nodes:
                wait_for(lambda: _readyz(n) == 200, 40, what="readyz 200")
            for p in producers:
                p.join(120)
                assert not p.is_alive() and not p.failures, (p.name, p.failures[:3])
            _check(cl, watchers, producers, wids)
        finally:
            for w in watchers:
                w.stopping.set()


def _patch(port, wid, timeout=30):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("PATCH", "/api/workflows/" + wid, body=json.dumps({"current_step": 1}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_postgres_restart_503_not_hang_nothing_lost(flowcast):
    with Cluster(flowcast, n=3) as cl:
        wids = _setup(cl)
        watchers = _watch_all([[p] for p in cl.ports()], wids)
        producers = [Producer([p], wids, 30, "g%d" % i, pause=0.05, give_up=90)
                     for i, p in enumerate(cl.ports())]
        try:
            for p in producers:
                p.start()
            time.sleep(0.5)
            cl.stop_pg()
            # Writes answer 503 within a bounded time (no hang), on every node.
            for p in cl.ports():
                t = time.monotonic()
                st, body = _patch(p, list(wids)[0])
                assert st == 503, (st, body)
                assert time.monotonic() - t < 15, time.monotonic() - t
                assert json.loads(body)["error"]["code"], body
            for n in cl.nodes:
                wait_for(lambda: _readyz(n) == 503, 30, what="readyz 503")
            # Watchers stay connected meanwhile.
            conns = [len(w.connects) for w in watchers if w.kind != "longpoll"]
            time.sleep(2)
            cl.start_pg()
            for n in cl.nodes:
                wait_for(lambda: _readyz(n) == 200, 60, what="readyz 200")
            assert [len(w.connects) for w in watchers if w.kind != "longpoll"] == conns
            for p in producers:
                p.join(120)
                assert not p.is_alive() and not p.failures, (p.name, p.failures[:3])
                assert p.statuses.get(503), p.statuses  # they did see the outage
            _check(cl, watchers, producers, wids)
        finally:
            for w in watchers:
                w.stopping.set()
