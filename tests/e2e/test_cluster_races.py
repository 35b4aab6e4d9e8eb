"""Races of the cluster's delivery paths, end to end (real nodes, PostgreSQL,
nats-server): the bus restarted while a burst is in flight, a node's store
links cut mid-batch, the catch-up reading the log as fast as the bus
carries the same changes while several nodes write the same workflows
(the log is in transaction-id order, which is not seq order then).

Whatever happens, every watcher sees each committed change once and in
order (the store's final seq last), or is told to resync: never a
duplicate, never a silent gap, never a stream that stops short."""

import json
import threading
import time

import pytest

from conftest import ServerFactory
from fc_helpers import KeepAliveClient, RawWS, wait_for

API = "/api/workflows"


@pytest.fixture
def cluster(flowcast, tmp_path, pg, nats):
    """start(n, *flags): n nodes on a fresh database and the NATS server;
    returns them and the database's name."""
    dsn = pg.fresh_database("r")
    name = dsn.rsplit("/", 1)[1]
    f = ServerFactory(flowcast, str(tmp_path))

    def start(n, *flags):
        out = [f("--nats", nats.url, "--io-threads", "2", *flags, db=dsn) for _ in range(n)]
        for s in out:
            wait_for(lambda: s.request("GET", "/readyz").status == 200, 15, what="readyz 200")
        return out, name

    yield start
    f.teardown()


class Watcher(threading.Thread):
    """Records (seq, deleted, resync, epoch) of every message on one workflow's stream."""

    def __init__(self, server, wid, epoch):
        super().__init__(daemon=True)
        self.wid = wid
        self.ws = RawWS.open(server, "%s/%s/updates?since=1&epoch=%d" % (API, wid, epoch))
        self.got = []
        self.start()

    def run(self):
        try:
            while True:
                m = json.loads(self.ws.recv_message(timeout=90, answer_pings=True).payload)
                self.got.append((m["seq"], bool(m.get("deleted")), bool(m.get("resync")),
                                 m.get("epoch")))
        except Exception:
            return

    def close(self):
        self.ws.close()


def produce(server, ids, rounds, outcomes):
    """Patches every id rounds times through server; counts the answers."""
    cl = KeepAliveClient(server, timeout=30)
    for _ in range(rounds):
        for i in ids:
            try:
                status, _ = cl.patch(i, message="x")
            except OSError:
                cl.close()
                cl = KeepAliveClient(server, timeout=30)
                status = "reset"
            outcomes[status] = outcomes.get(status, 0) + 1
    cl.close()


def run_producers(jobs):
    ts = [threading.Thread(target=produce, args=j) for j in jobs]
    for t in ts:
        t.start()
    return ts


def expect_every_change(watchers, final):
    """Each watcher: seqs 2..final[wid] once, in order, or told to resync."""
    for x in watchers:
        want = final[x.wid]
        wait_for(lambda: x.got and x.got[-1][0] >= want, 60,
                 what="%s to reach seq %d: %r" % (x.wid, want, x.got[-3:]))
        x.close()
        seqs = [g[0] for g in x.got]
        assert not any(g[1] for g in x.got), (x.wid, x.got)
        assert seqs[-1] == want, (x.wid, x.got[-3:])
        for k, (prev, cur) in enumerate(zip([1] + seqs, seqs)):
            assert cur > prev, "%s: seq %d after %d" % (x.wid, cur, prev)
            assert cur == prev + 1 or x.got[k][2], "%s: silent gap %d..%d" % (x.wid, prev, cur)


def final_seqs(server, ids):
    return {i: server.get(i)["seq"] for i in ids}


def test_nats_restarted_while_a_burst_is_in_flight(cluster, nats):
    """Producers on two nodes write the same workflows; NATS is killed and
    started again in the middle of it; watchers on all three nodes."""
    (a, b, c), _ = cluster(3)
    ids = ["nb%d" % i for i in range(6)]
    epochs = {i: a.create(id=i)["epoch"] for i in ids}
    watchers = [Watcher(s, i, epochs[i]) for s in (a, b, c) for i in ids]
    time.sleep(0.3)
    outcomes = {}
    ts = run_producers([(a, ids, 120, outcomes), (b, ids[::-1], 120, outcomes)])
    wait_for(lambda: sum(outcomes.values()) >= 150, 30, what="the burst under way")
    nats.stop()
    time.sleep(1.5)
    nats.start()
    for t in ts:
        t.join(120)
    assert set(outcomes) == {200}, outcomes
    final = final_seqs(c, ids)
    assert all(v == 241 for v in final.values()), final
    expect_every_change(watchers, final)
    wait_for(lambda: all(s.request("GET", "/readyz").status == 200 for s in (a, b, c)), 20,
             what="readyz 200 again")


def test_store_links_cut_mid_batch(cluster, pg):
    """Every PostgreSQL connection of the nodes is terminated, three times,
    while producers on both nodes write the same workflows: a change answered
    200 is there, one answered 503 may or may not be (the COMMIT was in
    flight), and whatever the store holds reaches every watcher once, in
    order."""
    (a, b), db = cluster(2)
    ids = ["sl%d" % i for i in range(6)]
    epochs = {i: a.create(id=i)["epoch"] for i in ids}
    watchers = [Watcher(s, i, epochs[i]) for s in (a, b) for i in ids]
    time.sleep(0.3)
    outcomes = {}
    ts = run_producers([(a, ids, 100, outcomes), (b, ids[::-1], 100, outcomes)])
    for k in range(3):
        wait_for(lambda: sum(outcomes.values()) >= 200 * (k + 1), 60, what="the burst under way")
        pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
               " WHERE datname = '%s' AND pid <> pg_backend_pid()" % db)
    for t in ts:
        t.join(120)
    assert set(outcomes) <= {200, 503}, outcomes
    final = final_seqs(a, ids)
    assert sum(final.values()) - len(ids) >= outcomes.get(200, 0), (final, outcomes)
    expect_every_change(watchers, final)
    print("answers: %r" % outcomes)


def test_catch_up_races_the_bus_with_writers_on_every_node(cluster):
    """Three nodes write the same workflows at once (so the log, in
    transaction-id order, holds some seqs of a workflow out of seq order)
    while each node reads the log every 10 ms, racing the bus for every
    change."""
    (a, b, c), _ = cluster(3, "--catchup-interval", "0.01")
    ids = ["cr%d" % i for i in range(4)]
    epochs = {i: a.create(id=i)["epoch"] for i in ids}
    watchers = [Watcher(s, i, epochs[i]) for s in (a, b, c) for i in ids]
    time.sleep(0.3)
    outcomes = {}
    jobs = [(s, ids[k:] + ids[:k], 100, outcomes) for k, s in enumerate((a, b, c, a, b, c))]
    for t in run_producers(jobs):
        t.join(120)
    assert set(outcomes) == {200}, outcomes
    final = final_seqs(b, ids)
    assert all(v == 601 for v in final.values()), final
    expect_every_change(watchers, final)
    ms = [s.metrics() for s in (a, b, c)]
    assert all(m.get("flowcast_feed_resyncs_total", 0) == 0 for m in ms)
    print("gaps filled %r, duplicates %r" % (
        [m.get("flowcast_feed_gaps_filled_total", 0) for m in ms],
        [m.get("flowcast_feed_duplicates_total", 0) for m in ms]))


def test_delete_recreate_storm_with_nats_down(cluster, nats):
    """NATS down: one id created, changed and deleted again and again, its
    writes alternating between two nodes, each incarnation watched on a
    third node that hears of them through the catch-up alone (which finds
    most incarnations already gone: their events went with them). Each
    watcher sees only its incarnation, in order, and is told it ended."""
    (a, b, c), _ = cluster(3)
    nats.stop()
    wait_for(lambda: c.request("GET", "/readyz").status == 503, 15, what="readyz 503")
    runs = []
    for i in range(12):
        x, y = (a, b) if i % 2 == 0 else (b, a)
        w = x.create(id="ds")
        watcher = Watcher(c, "ds", w["epoch"])
        for _ in range(3):
            y.patch("ds", message="m%d" % i)
        x.delete("ds")
        runs.append((w["epoch"], watcher))
    try:
        for e, x in runs:
            wait_for(lambda: x.got and x.got[-1][1], 30,
                     what="incarnation %d told deleted: %r" % (e, x.got))
            x.close()
            assert all(g[3] == e for g in x.got), (e, x.got)
            seqs = [g[0] for g in x.got]
            assert seqs == sorted(set(seqs)), (e, x.got)
            assert not any(g[1] for g in x.got[:-1]), (e, x.got)
    finally:
        nats.start()
    # Resuming an old incarnation on the node that never heard it on the bus: told it ended.
    a.create(id="ds")
    ws = RawWS.open(c, "%s/ds/updates?since=2&epoch=%d" % (API, runs[3][0]))
    m = json.loads(ws.recv_message(timeout=10).payload)
    ws.close()
    assert m.get("deleted") or m["epoch"] != runs[3][0], m
