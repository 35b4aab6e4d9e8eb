"""The catch-up reads only what the bus did not bring (docs/cluster.md,
"Catch-up").

Every change travels on the bus with its transaction's id and count of
changes; a node remembers the transactions it heard whole (and the ones it
committed itself), and its catch-up reads of the store's log leave their
rows out. Before, every node read every change back from PostgreSQL once a
catch-up interval: a third of PostgreSQL's CPU with three nodes. Watchers
must still see every change once and in order, and what the bus did not
bring (a node cut from it: test_cluster_catchup, test_cluster_faults) must
still come."""

import time

from fc_helpers import wait_for
from test_cluster_bus_batch import metric, produce, produce_all
from test_cluster_feed import Watcher, create, dsn, nodes, readyz  # noqa: F401

N_WF, PER_WF, EACH = 6, 3, 25


def ready_pair(nodes, nats, interval):
    """Two nodes on the bus reading the log every interval seconds, both ready."""
    pair = [nodes.node(nats.url, "--catchup-interval", interval) for _ in range(2)]
    for n in pair:
        wait_for(lambda: readyz(n).status == 200, 15, what="node ready (bus probe)")
    return pair


def test_catch_up_reads_only_what_the_bus_did_not_bring(nodes, nats):
    # A read every 200 ms: with every change read back, the count below
    # would be the number of changes, on both nodes.
    a, b = ready_pair(nodes, nats, "0.2")
    wids = ["h%d" % i for i in range(N_WF)]
    epochs = {w: create(a, w) for w in wids}
    watchers = {w: Watcher(b, w, epochs[w], 1) for w in wids}
    time.sleep(0.5)
    before = {n: (metric(n, "flowcast_catchup_changes_total"),
                  metric(n, "flowcast_catchup_heard_total")) for n in (a, b)}
    produce_all(a, wids, PER_WF, EACH)
    last = 1 + PER_WF * EACH
    wait_for(lambda: all(x.seqs() and x.seqs()[-1] >= last for x in watchers.values()), 30,
             what="every watcher on node b at seq %d" % last)
    time.sleep(1.5)  # catch-up reads over the whole window, then the metrics' refresh
    total = N_WF * PER_WF * EACH
    for x in watchers.values():
        assert x.seqs() == list(range(2, last + 1)), (x.got, x.error)
        assert not any(resync for (_, _, _, resync) in x.got), x.got
        x.close()
    for n in (a, b):
        read = metric(n, "flowcast_catchup_changes_total") - before[n][0]
        heard = metric(n, "flowcast_catchup_heard_total") - before[n][1]
        print("node %s: catch-up read %d of %d changes, left out %d transactions"
              % (n.port, read, total, heard))
        # A read may still see a transaction whose message is on its way.
        assert read < total / 2, (read, total)
        assert heard > 0, heard


def test_every_change_still_comes_with_nats_down(nodes, nats):
    """With no bus, nothing is heard: the catch-up reads every change."""
    a, b = ready_pair(nodes, nats, "0.1")
    epoch = create(a, "down")
    x = Watcher(b, "down", epoch, 1)
    time.sleep(0.3)
    nats.stop()
    try:
        errors = []
        produce(a, "down", 40, errors)
        assert not errors, errors
        wait_for(lambda: x.seqs() and x.seqs()[-1] >= 41, 30, what="watcher on b at seq 41")
        assert x.seqs() == list(range(2, 42)), (x.got, x.error)
        assert metric(b, "flowcast_catchup_changes_total") >= 40
    finally:
        nats.start()
        x.close()
