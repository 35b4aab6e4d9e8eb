"""One bus message per committed batch (docs/cluster.md, "The bus message").

The changes a node's writer commits together travel as one message; the
receiving node decodes it once and hands it to each I/O thread's feed as
one queue entry. Watchers on the other node must still see every change of
their workflow once and in order, and a forged or garbage batch from
anything that can publish on NATS must be refused, counted, and leave the
node serving."""

import threading
import time

from bus_wire import batch, change
from fc_helpers import wait_for
from test_cluster_feed import Watcher, create, dsn, nodes, readyz  # noqa: F401
from test_hostile_cluster import RoguePublisher

API = "/api/workflows"
N_WF, PER_WF, EACH = 8, 4, 20  # workflows, producers per workflow, changes per producer


def metric(server, name, direction=None):
    key = name if direction is None else '%s{direction="%s"}' % (name, direction)
    return server.metrics().get(key, 0)


def produce(server, wid, n, errors):
    try:
        for i in range(n):
            r = server.request("PATCH", "%s/%s" % (API, wid), {"message": "m%d" % i})
            assert r.status == 200, r
    except Exception as e:  # reported by the test, not lost in a thread
        errors.append(e)


def produce_all(server, wids, per_wf, each):
    """per_wf producers on each workflow at once, each making `each` changes
    through server; every change must get a 200."""
    errors = []
    ts = [threading.Thread(target=produce, args=(server, w, each, errors))
          for w in wids for _ in range(per_wf)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:3]


def test_a_batch_through_one_node_reaches_another_once_in_order(nodes, nats):
    # The catch-up far away: what node b delivers came over the bus.
    a = nodes.node(nats.url, "--catchup-interval", "60")
    b = nodes.node(nats.url, "--catchup-interval", "60")
    for n in (a, b):
        wait_for(lambda: readyz(n).status == 200, 15, what="node ready (bus probe)")
    wids = ["b%d" % i for i in range(N_WF)]
    epochs = {w: create(a, w) for w in wids}
    watchers = {w: [Watcher(b, w, epochs[w], 1) for _ in range(2)] for w in wids}
    time.sleep(0.5)
    out0 = (metric(a, "flowcast_bus_messages_total", "out"),
            metric(a, "flowcast_bus_changes_total", "out"))
    # Many producers at once through node a: its writer commits them in batches.
    produce_all(a, wids, PER_WF, EACH)
    last = 1 + PER_WF * EACH
    every = [x for ws in watchers.values() for x in ws]
    wait_for(lambda: all(x.seqs() and x.seqs()[-1] >= last for x in every), 30,
             what="every watcher on node b at seq %d" % last)
    time.sleep(0.5)
    for x in every:
        assert x.seqs() == list(range(2, last + 1)), (x.got, x.error)
        assert not any(resync for (_, _, _, resync) in x.got), x.got
    # Fewer messages than changes: batches travelled whole (the probe
    # interval updates the figures read here).
    total = N_WF * PER_WF * EACH
    wait_for(lambda: metric(b, "flowcast_bus_changes_total", "in") >= total + N_WF, 5,
             what="node b counted every change in")
    msgs = metric(a, "flowcast_bus_messages_total", "out") - out0[0]
    changes = metric(a, "flowcast_bus_changes_total", "out") - out0[1]
    print("%d changes in %d bus messages" % (changes, msgs))
    assert changes == total, (changes, total)
    assert msgs < changes, (msgs, changes)
    assert metric(b, "flowcast_bus_messages_total", "in") < metric(
        b, "flowcast_bus_changes_total", "in")
    assert metric(b, "flowcast_feed_rejected_total") == 0
    for x in every:
        x.close()


def test_forged_and_garbage_batches_refused_node_still_serves(nodes, nats):
    a = nodes.node(nats.url, "--catchup-interval", "60")
    b = nodes.node(nats.url, "--catchup-interval", "60")
    for n in (a, b):
        wait_for(lambda: readyz(n).status == 200, 15, what="node ready (bus probe)")
    epoch = create(a, "victim")
    watcher = Watcher(b, "victim", epoch, 1)
    time.sleep(0.5)
    rejected0 = metric(b, "flowcast_feed_rejected_total")
    malformed0 = metric(b, "flowcast_bus_malformed_total")
    rogue = RoguePublisher(nats.url)
    try:
        # Well-formed, but nothing the store holds: a far-future seq, a
        # deletion, another incarnation, a workflow that does not exist.
        rogue.pub(batch([change("victim", epoch, 10 ** 9),
                         change("victim", epoch, 1, deleted=True),
                         change("victim", epoch + 1, 1),
                         change("ghost", 1, 5)]))
        # Garbage: the last change cut short, a count the bytes cannot hold,
        # a change of another version between good ones.
        good = change("victim", epoch, 2, message="garbage")
        rogue.pub(batch([good, good[:-3]]))
        rogue.pub(batch([good], count=1000))
        rogue.pub(batch([good, b"\x07" + good[1:], good]))
        rogue.flush()
        wait_for(lambda: metric(b, "flowcast_bus_malformed_total") >= malformed0 + 3, 10,
                 what="the garbage batches counted as malformed")
        wait_for(lambda: metric(b, "flowcast_feed_rejected_total") >= rejected0 + 4, 10,
                 what="each forged change refused")
    finally:
        rogue.close()
    assert b.alive() and b.request("GET", "/healthz").status == 200
    for i in range(3):
        assert a.request("PATCH", "%s/victim" % API, {"message": "real%d" % i}).status == 200
    wait_for(lambda: watcher.seqs() and watcher.seqs()[-1] >= 4, 15,
             what="the real changes after the forged batches: %r" % watcher.got)
    time.sleep(0.3)
    assert watcher.seqs() == [2, 3, 4], watcher.got
    assert not any(d or r for (_, _, d, r) in watcher.got), watcher.got
    assert b.get("victim")["message"] == "real2"
    watcher.close()
