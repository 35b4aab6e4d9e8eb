"""Several nodes on one PostgreSQL and one NATS: every watcher on every node
sees every committed seq of its workflow exactly once and in order, with
producers on every node; and it still does when NATS stops for 5 s (while
/readyz says 503), on a node without --nats (catch-up alone), on a node cut
from the bus, on a node started late, and across a delete and re-create.

Watchers are raw WebSocket single-workflow streams (RawWS), one thread
each, that record (epoch, seq, deleted, resync) of every message."""

import json
import threading
import time

import pytest

from conftest import ServerFactory
from fc_helpers import RawWS, wait_for
from svc_nats import NatsServer

API = "/api/workflows"


@pytest.fixture
def dsn(pg):
    return pg.fresh_database("c")


class Nodes(ServerFactory):
    """node(nats_url or None, *flags): a flowcast node on the test's database."""

    def __init__(self, binary, tmpdir, dsn):
        super().__init__(binary, tmpdir)
        self.dsn = dsn

    def node(self, nats_url, *flags, **kw):
        extra = ["--nats", nats_url] if nats_url else []
        return self(*extra, "--io-threads", "2", *flags, db=self.dsn, **kw)


@pytest.fixture
def nodes(flowcast, tmp_path, dsn):
    f = Nodes(flowcast, str(tmp_path), dsn)
    yield f
    f.teardown()


class Watcher(threading.Thread):
    """Watches one workflow on one node from (epoch, since); records every message."""

    def __init__(self, server, wid, epoch, since):
        super().__init__(daemon=True)
        self.ws = RawWS.open(server, "%s/%s/updates?since=%d&epoch=%d" % (API, wid, since, epoch))
        self.got = []
        self.error = None
        self.start()

    def run(self):
        try:
            while True:
                m = json.loads(self.ws.recv_message(timeout=120, answer_pings=True).payload)
                self.got.append((m["epoch"], m["seq"], bool(m.get("deleted")),
                                 bool(m.get("resync"))))
                if m.get("deleted"):
                    return
        except Exception as e:  # the socket closed at teardown, or a protocol error
            self.error = e

    def seqs(self):
        return [s for (_, s, _, _) in self.got]

    def close(self):
        self.ws.close()


def produce(server, wid, n, tag, acked):
    """n PATCHes of wid through server; the seqs acknowledged go into acked."""
    for i in range(n):
        for _ in range(50):  # 503 while a dependency restarts: retry, as a client would
            r = server.request("PATCH", "%s/%s" % (API, wid), {"message": "%s-%d" % (tag, i)})
            if r.status == 200:
                acked.append(r.json()["seq"])
                break
            assert r.status == 503, r
            time.sleep(0.1)
        else:
            raise AssertionError("PATCH never succeeded")


def producers(pairs, wid, n):
    """One thread per (server, tag) making n changes each; returns acked seqs when done."""
    acked = []
    ts = [threading.Thread(target=produce, args=(s, wid, n, tag, acked)) for s, tag in pairs]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return sorted(acked)


def wait_all(watchers, last, timeout=30):
    wait_for(lambda: all(w.seqs() and w.seqs()[-1] >= last for w in watchers), timeout,
             what="every watcher at seq %d: %r" % (last, [w.seqs()[-3:] for w in watchers]))


def assert_exactly(watchers, first, last):
    for w in watchers:
        assert w.seqs() == list(range(first, last + 1)), (w.got, w.error)
        assert not any(resync for (_, _, _, resync) in w.got), w.got


def create(server, wid):
    r = server.request("POST", API, {"id": wid, "name": "job", "total_steps": 10})
    assert r.status == 201, r
    return r.json()["epoch"]


def readyz(server):
    return server.request("GET", "/readyz")


def test_three_nodes_every_watcher_sees_every_seq_once_in_order(nodes, nats):
    ns = [nodes.node(nats.url) for _ in range(3)]
    for n in ns:
        wait_for(lambda: readyz(n).status == 200, 15, what="node ready (bus probe)")
    epoch = create(ns[0], "w")
    watchers = [Watcher(n, "w", epoch, 1) for n in ns for _ in range(2)]
    acked = producers([(n, "p%d" % i) for i, n in enumerate(ns) for _ in range(2)], "w", 15)
    assert acked == list(range(2, 92))
    wait_all(watchers, 91)
    time.sleep(1.5)  # a catch-up read later: still nothing twice
    assert_exactly(watchers, 2, 91)
    m = ns[1].metrics()
    assert m['flowcast_bus_messages_total{direction="in"}'] > 0
    assert m['flowcast_bus_messages_total{direction="out"}'] > 0
    assert m["flowcast_bus_up"] == 1
    assert m["flowcast_catchup_reads_total"] > 0
    for w in watchers:
        w.close()


def test_nats_stopped_5s_nothing_lost_and_readyz(nodes, nats):
    a, b = nodes.node(nats.url), nodes.node(nats.url)
    for n in (a, b):
        wait_for(lambda: readyz(n).status == 200, 15, what="node ready")
    epoch = create(a, "w")
    watchers = [Watcher(b, "w", epoch, 1), Watcher(a, "w", epoch, 1)]
    acked = []
    stop = threading.Event()

    def keep_producing():
        i = 0
        while not stop.is_set():
            produce(a, "w", 1, "x%d" % i, acked)
            i += 1
            time.sleep(0.02)
    t = threading.Thread(target=keep_producing)
    t.start()
    try:
        time.sleep(0.5)
        nats.stop()
        wait_for(lambda: readyz(b).status == 503, 10, what="/readyz 503 without the bus")
        r = readyz(b)
        assert r.json()["check"] == "bus", r.body
        time.sleep(5)
        # Watchers keep getting changes through the catch-up meanwhile.
        assert watchers[0].seqs() and watchers[0].seqs()[-1] > 10
        nats.start()
        wait_for(lambda: readyz(b).status == 200 and readyz(a).status == 200, 20,
                 what="/readyz 200 after NATS is back")
    finally:
        stop.set()
        t.join(30)
    last = max(acked)
    assert sorted(acked) == list(range(2, last + 1))
    wait_all(watchers, last)
    assert_exactly(watchers, 2, last)
    for w in watchers:
        w.close()


def test_node_without_nats_delivers_through_catchup(nodes, nats):
    a = nodes.node(nats.url)
    c = nodes.node(None, "--catchup-interval", "0.2")
    epoch = create(a, "w")
    watchers = [Watcher(c, "w", epoch, 1) for _ in range(2)]
    acked = producers([(a, "a"), (c, "c")], "w", 20)
    last = max(acked)
    wait_all(watchers, last)
    assert_exactly(watchers, 2, last)
    assert readyz(c).status == 200  # no bus to prove
    for w in watchers:
        w.close()


def test_node_cut_from_the_bus_still_delivers(nodes, nats):
    """Node c's only NATS server is one no other node uses, and it is stopped:
    c hears nothing on the bus and still delivers everything."""
    with NatsServer() as lonely:
        a, b = nodes.node(nats.url), nodes.node(nats.url)
        c = nodes.node(lonely.url)
        wait_for(lambda: readyz(c).status == 200, 15, what="c ready on its own bus")
        lonely.stop()
        wait_for(lambda: readyz(c).status == 503, 10, what="c not ready")
        epoch = create(a, "w")
        watchers = [Watcher(c, "w", epoch, 1)]
        acked = producers([(a, "a"), (b, "b"), (c, "c")], "w", 10)
        last = max(acked)
        wait_all(watchers, last)
        assert_exactly(watchers, 2, last)
        for w in watchers:
            w.close()


def test_changes_of_a_node_that_died_before_publishing_reach_every_watcher(nodes, nats):
    """Node a commits but its bus is away (its messages are only in its
    reconnect buffer), then it is killed -9: the changes were never
    published, and b's watchers still get every one (the catch-up)."""
    with NatsServer() as lonely:
        a = nodes.node(lonely.url)
        b = nodes.node(nats.url)
        lonely.stop()
        wait_for(lambda: readyz(a).status == 503, 10, what="a cut from its bus")
        epoch = create(a, "w")
        watchers = [Watcher(b, "w", epoch, 1) for _ in range(2)]
        acked = producers([(a, "a")], "w", 10)
        a.kill9()
        last = max(acked)
        wait_all(watchers, last)
        assert_exactly(watchers, 2, last)
        for w in watchers:
            w.close()


def test_late_started_node(nodes, nats):
    a = nodes.node(nats.url)
    epoch = create(a, "w")
    producers([(a, "early")], "w", 10)  # seq 11
    late = nodes.node(nats.url)
    watchers = [Watcher(late, "w", epoch, 1), Watcher(late, "w", epoch, 6)]
    acked = producers([(a, "a")], "w", 10)
    last = max(acked)
    wait_all(watchers, last)
    assert watchers[0].seqs() == list(range(2, last + 1))
    assert watchers[1].seqs() == list(range(7, last + 1))
    for w in watchers:
        w.close()


def test_delete_and_recreate_on_another_node_is_told(nodes, nats):
    a, b = nodes.node(nats.url), nodes.node(nats.url)
    for n in (a, b):
        wait_for(lambda: readyz(n).status == 200, 15, what="node ready")
    e1 = create(a, "w")
    producers([(a, "a")], "w", 3)  # seq 4
    watcher = Watcher(b, "w", e1, 4)
    r = a.request("DELETE", "%s/w" % API)
    assert r.status == 204
    e2 = create(a, "w")
    assert e2 != e1
    wait_for(lambda: watcher.got, 15, what="the deletion told on the other node")
    assert watcher.got == [(e1, 5, True, False)], watcher.got
    # Resuming the old incarnation on a node that never saw it: told too.
    ws = RawWS.open(b, "%s/w/updates?since=4&epoch=%d" % (API, e1))
    m = json.loads(ws.recv_message(timeout=10).payload)
    assert m.get("deleted") and m["epoch"] == e1 and m["seq"] == 5, m
    ws.close()
    watcher.close()
