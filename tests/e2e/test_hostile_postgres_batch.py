"""Hostile tests of the PostgreSQL store's batched write path (a batch in
rounds, each round's updates one set-based fc_apply_set call, refusals,
repeated keys and create/delete changes through fc_apply).

The differential tests send the same seeded random sequence of creates,
updates (with and without if_seq, terminal statuses, step > total, total
below step, awkward messages), deletes, re-creates and Idempotency-Key
requests and replays to a SQLite node and a PostgreSQL node, pipelined on
several connections so that one batch holds several changes of one
workflow, and compare every answer (timestamps and epochs aside), the
final states and the histories. The cluster tests hammer a few
workflows from several nodes on one database (if_seq compare-and-set,
opposite orders, keyed and plain updates mixed)."""

import json
import os
import random
import threading
import time

import pytest

from conftest import ServerFactory
from fc_helpers import SockReader, connect, http_request_bytes, wait_for
from svc_postgres import PG_BIN, _as_postgres

API = "/api/workflows"


@pytest.fixture
def pg_dsn(pg):
    """A fresh database, its function calls counted (pg_stat_user_functions)."""
    dsn = pg.fresh_database("h")
    name = dsn.rsplit("/", 1)[1]
    _as_postgres(os.path.join(PG_BIN, "psql"), "-h", pg.root, "-p", str(pg.port), "-U",
                 "postgres", "-d", name, "-c", "ALTER DATABASE %s SET track_functions = 'pl'" % name)
    return dsn


def set_calls(pg, dsn, func="fc_apply_set"):
    """How many fc_apply_set calls the database counted so far (a busy
    backend reports its counts at a commit a second after its last report,
    an idle one within 10 s: callers wait up to 20)."""
    db = dsn.rsplit("/", 1)[1]
    out = pg.sql("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions"
                 " WHERE funcname = '%s'" % func, db=db)
    return int(out.split()[-1])


@pytest.fixture
def factory(flowcast, tmp_path):
    f = ServerFactory(flowcast, str(tmp_path))
    yield f
    f.teardown()


# ---------------------------------------------------------------- the sequence

IDS = ["a", "b-c_d", "Z" * 64, "q1", "q2", "q3", "q4", "q5"]
MESSAGES = [
    "", "plain", 'a"b', "back\\slash", "a,b", "{x}", "{}", "NULL", "null", '"', "\\",
    "line\nbreak\ttab\r", "\u00fc\u20ac\U0001F600\U0001D11E", "  spaces  ", '\\"', '}{",\\',
    '{"a","b"}', "(1,2)", "'quoted'", "$fc$", "x" * 4096, "\U0001F600" * 1024, "\u00e9" * 2049,
    "nul\u0000byte", "\ud800lone", "\u2028\u2029\ufeff",
]
NAMES = ["job", 'n"a\\m,e{}', "NULL", "\U0001F680 rocket", "x" * 200]
STATUSES = ["pending", "running", "running", "running", "completed", "failed", "cancelled"]


def _patch_body(rnd):
    body = {}
    while not body:
        if rnd.random() < 0.25:
            body["status"] = rnd.choice(STATUSES[:4] if rnd.random() < 0.8 else STATUSES)
        if rnd.random() < 0.6:
            body["current_step"] = rnd.randint(0, 14)
        if rnd.random() < 0.3:
            body["total_steps"] = rnd.randint(0, 14)
        if rnd.random() < 0.5:
            body["message"] = rnd.choice(MESSAGES)
    if rnd.random() < 0.3:
        body["if_seq"] = rnd.randint(1, 12)
    return body


def _create_body(rnd, wid):
    body = {"id": wid, "name": rnd.choice(NAMES), "total_steps": rnd.randint(0, 20)}
    if rnd.random() < 0.5:
        body["current_step"] = rnd.randint(0, 22)
    if rnd.random() < 0.3:
        body["status"] = rnd.choice(STATUSES)
    if rnd.random() < 0.5:
        body["message"] = rnd.choice(MESSAGES)
    return body


def make_sequence(seed, n):
    """[(wid, method, path, body, headers)]: n requests over IDS."""
    rnd = random.Random(seed)
    keys = {}  # key -> (method, path, body) of its first use
    out = []
    for i in range(n):
        wid = rnd.choice(IDS)
        path = API + "/" + wid
        r = rnd.random()
        headers = {}
        if r < 0.55:
            req = ("PATCH", path, _patch_body(rnd))
        elif r < 0.67:
            req = ("POST", API, _create_body(rnd, wid))
        elif r < 0.74:
            req = ("DELETE", path, None)
        elif r < 0.78:
            req = ("GET", path, None)
        else:
            own = [k for k, v in keys.items() if v[3] == wid]
            if own and r < 0.88:  # replay, or (rarely) the key with another request
                k = rnd.choice(own)
                method, p, body, _ = keys[k]
                if r > 0.86:
                    body = _patch_body(rnd)
                    method, p = "PATCH", path
                req, headers = (method, p, body), {"Idempotency-Key": k}
            else:
                k = "k-%d-%s" % (i, wid[:8])
                req = ("PATCH", path, _patch_body(rnd)) if r < 0.95 else \
                    ("POST", API, _create_body(rnd, wid))
                keys[k] = req + (wid,)
                headers = {"Idempotency-Key": k}
        out.append((wid,) + req + (headers,))
    return out


def _bytes(port, method, path, body, headers):
    h = dict(headers)
    raw = b""
    if body is not None:
        raw = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if body is not None or method in ("POST", "PATCH"):
        h["Content-Length"] = str(len(raw))
    return http_request_bytes(method, path, port, h, raw)


def pipeline(server, reqs, timeout=60.0):
    """Sends reqs on one connection all at once (a thread writes while this
    one reads, so neither side's buffers stall the other); the answers."""
    s = connect(server.port, timeout=timeout)
    data = b"".join(_bytes(server.port, m, p, b, h) for m, p, b, h in reqs)
    err = []

    def send():
        try:
            s.sendall(data)
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=send)
    t.start()
    rd = SockReader(s)
    try:
        out = [rd.read_response(timeout) for _ in reqs]
    finally:
        t.join(timeout)
        s.close()
    assert not err, err
    return out


STRIP = ("created_at", "updated_at", "epoch", "ts", "timestamp")


def norm(v):
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items() if k not in STRIP}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def answer(r):
    body = r.body
    return (r.status, norm(json.loads(body)) if body else None)


def run_on(server, seq, conns, ids=IDS):
    """Runs seq on server, one pipelined connection per group of ids (so
    each id's requests keep their order); the answers in seq order."""
    groups = [[i for i, op in enumerate(seq) if ids.index(op[0]) % conns == c]
              for c in range(conns)]
    res = [None] * len(seq)

    def go(g):
        for i, r in zip(g, pipeline(server, [seq[i][1:] for i in g])):
            res[i] = r
    ts = [threading.Thread(target=go, args=(g,)) for g in groups]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert all(r is not None for r in res)
    return [answer(r) for r in res]


def final_view(server, ids=IDS):
    out = {}
    for wid in ids:
        r = server.request("GET", API + "/" + wid)
        if r.status == 404:
            out[wid] = None
            continue
        assert r.status == 200, r
        w = json.loads(r.body)
        hist = {}
        for since in sorted({0, 1, 60, 64, 65, 127, 128, w["seq"] - 64, w["seq"] - 2, w["seq"],
                             w["seq"] + 5}):
            if since < 0:
                continue
            h = server.request("GET", API + "/%s/history?since=%d&limit=1000" % (wid, since))
            hist[since] = answer(h)
        h = server.request("GET", API + "/%s/history?since=1:1&limit=1000" % wid)
        hist["other-epoch"] = answer(h)
        out[wid] = (norm(w), hist)
    return out


def _diff(seq, a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return "request %d %r:\n sqlite   %r\n postgres %r" % (i, seq[i][1:4], x, y)
    return None


@pytest.mark.parametrize("seed,retention", [(1, 1000), (2, 1000), (3, 3), (4, 1)])
def test_postgres_answers_like_sqlite_pipelined(factory, pg, pg_dsn, seed, retention):
    """The same random sequence on SQLite and on PostgreSQL, pipelined on
    three connections: every answer, final state and history equal."""
    seq = make_sequence(seed, 500)
    lite = factory("--retention", retention)
    post = factory("--retention", retention, db=pg_dsn)
    a = run_on(lite, seq, 3)
    b = run_on(post, seq, 3)
    assert _diff(seq, a, b) is None, _diff(seq, a, b)
    assert sum(1 for s, _ in b if s == 200) > 60  # the sequence did exercise updates
    wait_for(lambda: set_calls(pg, pg_dsn) > 0, 20, what="a set-based call")
    fa, fb = final_view(lite), final_view(post)
    for wid in IDS:
        assert fa[wid] == fb[wid], (wid, fa[wid], fb[wid])


def keyed_sequence():
    """Creates, then keyed PATCHes of six workflows (one refused: a stale
    if_seq), then every keyed request again (replays), then two keys with
    another body (reuses): [(wid, method, path, body, headers)]."""
    wids = IDS[3:] + ["r1"]
    out = [(w, "POST", API, {"id": w, "name": "n", "total_steps": 100}, {}) for w in wids]
    keyed = []
    for i in range(5):
        for w in wids:
            body = {"current_step": i + 1, "message": "m%d" % i}
            if i == 3 and w == "q2":
                body["if_seq"] = 1  # stale: the workflow is past seq 1
            keyed.append((w, "PATCH", API + "/" + w, body, {"Idempotency-Key": "key-%s-%d" % (w, i)}))
    out += keyed + keyed
    for w, m, p, b, h in (keyed[0], keyed[-1]):
        out.append((w, m, p, {"current_step": 50}, h))
    return out, wids


def test_keyed_updates_join_the_set_like_sqlite(factory, pg, pg_dsn):
    """Updates with an Idempotency-Key (every official client sends one)
    go through the set-based call too: first uses, a refused one, replays
    and reuses answer as on SQLite, on three pipelined connections, and the
    keyed rounds ran as sets."""
    seq, wids = keyed_sequence()
    lite = factory()
    post = factory(db=pg_dsn)
    a = run_on(lite, seq, 3, ids=wids)
    b = run_on(post, seq, 3, ids=wids)
    assert _diff(seq, a, b) is None, _diff(seq, a, b)
    assert sum(1 for s, _ in b if s == 200) >= 50  # first uses and replays applied or replayed
    assert any(s == 409 for s, _ in b)  # the stale if_seq, and its replay
    wait_for(lambda: set_calls(pg, pg_dsn) > 0, 20, what="a set-based call")
    fa, fb = final_view(lite, wids), final_view(post, wids)
    for wid in wids:
        assert fa[wid] == fb[wid], (wid, fa[wid], fb[wid])


@pytest.mark.parametrize("retention", [1, 3, 70, 1000])
def test_retention_trim_in_set_based_batches_like_sqlite(factory, pg, pg_dsn, retention):
    """Four workflows, 200 changes each, pipelined on two connections (so
    the changes that reach seq 64, 128 and 192, where the log is trimmed,
    go through fc_apply_updates' trim): history pages and resyncs at every
    interesting position equal SQLite's."""
    ids = ["r0", "r1", "r2", "r3"]
    rnd = random.Random(retention)
    seq = [(w, "POST", API, {"id": w, "name": "r", "total_steps": 1000}, {}) for w in ids]
    for i in range(200):
        for w in ids:
            body = {"message": "%s-%d" % (w, i), "current_step": i}
            if rnd.random() < 0.1:
                body["if_seq"] = i + 1 + rnd.choice([0, 0, 1])
            seq.append((w, "PATCH", API + "/" + w, body, {}))
    lite = factory("--retention", retention)
    post = factory("--retention", retention, db=pg_dsn)
    a = run_on(lite, seq, 2, ids)
    b = run_on(post, seq, 2, ids)
    assert _diff(seq, a, b) is None, _diff(seq, a, b)
    wait_for(lambda: set_calls(pg, pg_dsn) > 0, 20, what="a set-based call")
    fa, fb = final_view(lite, ids), final_view(post, ids)
    for wid in ids:
        assert fa[wid] == fb[wid], (wid, fa[wid], fb[wid])


# ---------------------------------------------------------------- several nodes

def _deadlocks(pg, dsn):
    db = dsn.rsplit("/", 1)[1]
    return int(pg.sql("SELECT deadlocks FROM pg_stat_database WHERE datname = '%s'" % db,
                      db=db).split()[-1])


def _check_log(server, wid, acked):
    """acked: [(seq, message)] of every 200 on wid: distinct seqs 2..n+1,
    each in the history with its message."""
    seqs = sorted(s for s, _ in acked)
    assert seqs == list(range(2, len(seqs) + 2)), (wid, seqs[:20])
    h = json.loads(server.request("GET", API + "/%s/history?since=0&limit=1000" % wid).body)
    logged = {e["seq"]: e["message"] for e in h["events"]}
    assert sorted(logged) == list(range(1, len(seqs) + 2)), wid
    assert all(logged[s] == m for s, m in acked), wid


@pytest.mark.parametrize("mode", ["keyed-and-plain", "big-and-small"])
def test_opposite_orders_on_two_nodes_no_5xx(factory, pg, pg_dsn, mode):
    """Two nodes update the same 50 workflows in pipelined batches at once.
    keyed-and-plain: one node in ascending id order, the other descending,
    one node's change of a workflow plain where the other's is keyed: a
    round ran its plain updates first, then its keyed ones, so a batch's
    lock order was not the id order; PostgreSQL found deadlocks (3-6 a
    run), and a batch waiting on them passed --db-timeout: 503 for all its
    changes. big-and-small: the workflows created in descending id order
    (the table's physical order), one node sending all 50 at once, the
    other pairs (first, last): fc_apply_updates' plan for a few rows of a
    small table scans the table (physical order), for many the input (id
    order); no deadlock was seen here even before the batch took its locks
    in id order, kept as a guard. Every request is answered 200 and every
    change is logged once."""
    a, b = factory(db=pg_dsn), factory(db=pg_dsn)
    wids = ["dl%02d" % i for i in range(50)]
    for w in wids[::-1]:
        assert a.request("POST", API, {"id": w, "name": "d", "total_steps": 10 ** 6}).status == 201
    acked = {w: [] for w in wids}
    bad = []
    lock = threading.Lock()

    def producer(node, tag, groups, parity):
        for r, group in enumerate(groups):
            reqs = []
            for j, w in enumerate(group):
                msg = "%s-%d-%d" % (tag, r, j)
                h = {"Idempotency-Key": "%s-%d-%s" % (tag, r, w)} if j % 2 == parity else {}
                reqs.append(("PATCH", API + "/" + w, {"message": msg}, h))
            for (m, p, body, h), resp in zip(reqs, pipeline(node, reqs)):
                w = p.rsplit("/", 1)[1]
                with lock:
                    if resp.status != 200:
                        bad.append((resp.status, resp.body[:200]))
                    else:
                        acked[w].append((json.loads(resp.body)["seq"], body["message"]))
    if mode == "keyed-and-plain":
        work_a, work_b, parity = [wids] * 6, [wids[::-1]] * 6, 0
    else:
        pairs = [[wids[i], wids[49 - i]] for i in range(25)]
        work_a, work_b, parity = [wids] * 6, pairs * 4, 2
    before = _deadlocks(pg, pg_dsn)
    ts = []
    for c in range(3):
        ts.append(threading.Thread(target=producer, args=(a, "A%d" % c, work_a, parity)))
        ts.append(threading.Thread(target=producer, args=(b, "B%d" % c, work_b, parity)))
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    dead = _deadlocks(pg, pg_dsn) - before
    print("deadlocks detected by PostgreSQL: %d" % dead)
    assert not bad, (len(bad), bad[:3], "deadlocks %d" % dead)
    for w in wids:
        _check_log(a, w, acked[w])


def test_if_seq_compare_and_set_on_three_nodes_one_winner_per_seq(flowcast):
    """Three nodes (bus on), four writers each pipelining if_seq PATCHes of
    the same three workflows (each writer bets on the seq it last saw, so
    most lose: every batch mixes set-based winners and fc_apply's
    seq_mismatch answers): exactly one 200 per seq, no seq lost or given
    twice, every winner's message in the history, and a WebSocket watcher
    on every node sees each seq once, in order."""
    from svc_cluster import Cluster
    from fc_helpers import RawWS
    wids = ["cas0", "cas1", "cas2"]
    with Cluster(flowcast, n=3, proxy=False) as cl:
        nodes = cl.nodes
        for w in wids:
            assert nodes[0].request("POST", API, {"id": w, "name": "c",
                                                  "total_steps": 10 ** 6}).status == 201
        watchers = [(w, RawWS.open(n, API + "/%s/updates" % w)) for n in nodes for w in wids]
        for w, ws in watchers:
            assert ws.recv_json(10)["seq"] == 1
        won = {w: [] for w in wids}
        bad = []
        lock = threading.Lock()

        def writer(node, tag):
            seen = {w: 1 for w in wids}
            for r in range(12):
                reqs = [("PATCH", API + "/" + w, {"message": "%s-%d-%s" % (tag, r, w),
                                                  "if_seq": seen[w]}, {}) for w in wids]
                for (_, p, body, _), resp in zip(reqs, pipeline(node, reqs)):
                    w = p.rsplit("/", 1)[1]
                    got = json.loads(resp.body)
                    with lock:
                        if resp.status == 200:
                            won[w].append((got["seq"], body["message"]))
                            seen[w] = got["seq"]
                        elif resp.status == 409 and got["error"]["code"] == "seq_mismatch":
                            cur = node.request("GET", API + "/" + w)
                            seen[w] = json.loads(cur.body)["seq"]
                        else:
                            bad.append((resp.status, resp.body[:200]))
        ts = [threading.Thread(target=writer, args=(nodes[i % 3], "t%d" % i)) for i in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        assert not bad, bad[:3]
        assert sum(len(v) for v in won.values()) > 30, won
        for w in wids:
            _check_log(nodes[1], w, won[w])
        for w, ws in watchers:
            last = len(won[w]) + 1
            seqs = []
            while not seqs or seqs[-1] < last:
                m = ws.recv_json(20)
                seqs.append(m["seq"])
            assert seqs == list(range(2, last + 1)), (w, seqs[:20])
            ws.close()


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_postgres_killed_or_frozen_under_batches_nothing_lost_nothing_twice(factory, pg, pg_dsn,
                                                                            fault):
    """Six producers pipeline batches of changes of 20 workflows (plain
    updates: the set-based statement; every third one keyed) while
    PostgreSQL is killed (immediate shutdown, restarted) or frozen past
    --db-timeout (thawed: a batch whose COMMIT was sent may commit after
    its 503). A keyed change is retried with its key until 200; a plain one
    answered 503 "not saved" is never in the log; every 200 is in the log,
    and no message is logged twice (a keyed retry never applies again)."""
    node = factory("--db-timeout", "1", db=pg_dsn)
    wids = ["pk%02d" % i for i in range(20)]
    for w in wids:
        assert node.request("POST", API, {"id": w, "name": "k", "total_steps": 10 ** 6}).status == 201
    acked, not_saved, maybe, bad = [], [], [], []
    lock = threading.Lock()
    stop = threading.Event()

    def producer(t):
        r = 0
        while not stop.is_set() and r < 400:
            r += 1
            reqs = []
            for j, w in enumerate(wids):
                msg = "t%d-%d-%d" % (t, r, j)
                h = {"Idempotency-Key": "key-" + msg} if j % 3 == 0 else {}
                reqs.append(("PATCH", API + "/" + w, {"message": msg}, h))
            try:
                answers = pipeline(node, reqs, timeout=30)
            except (OSError, AssertionError) as e:
                with lock:
                    bad.append(("pipeline", repr(e)))
                return
            retry = []
            for req, resp in zip(reqs, answers):
                w, msg = req[1].rsplit("/", 1)[1], req[2]["message"]
                with lock:
                    if resp.status == 200:
                        acked.append((w, json.loads(resp.body)["seq"], msg))
                    elif resp.status == 503 and req[3]:
                        retry.append(req)
                    elif resp.status == 503 and b"change not saved" in resp.body:
                        not_saved.append((w, msg))
                    elif resp.status == 503:
                        maybe.append((w, msg))
                    else:
                        bad.append((resp.status, resp.body[:200]))
            for req in retry:  # a key is retried until it answers
                for _ in range(200):
                    resp = node.request("PATCH", req[1], req[2], headers=req[3])
                    if resp.status == 200:
                        with lock:
                            acked.append((req[1].rsplit("/", 1)[1], json.loads(resp.body)["seq"],
                                          req[2]["message"]))
                        break
                    time.sleep(0.1)
                else:
                    with lock:
                        bad.append(("key never answered", req[3]))
            time.sleep(0.01)
    ts = [threading.Thread(target=producer, args=(t,)) for t in range(6)]
    for t in ts:
        t.start()
    try:
        wait_for(lambda: len(acked) > 300, 60, what="changes before the fault")
        if fault == "kill":
            pg.stop(mode="immediate")
            time.sleep(1.5)
            pg.start()
        else:
            pg.freeze()
            time.sleep(2.5)
            pg.thaw()
        n = len(acked)
        wait_for(lambda: len(acked) > n + 300, 60, what="changes after the fault")
    finally:
        stop.set()
        for t in ts:
            t.join(120)
    assert not bad, bad[:3]
    logged = {}
    for w in wids:
        h = json.loads(node.request("GET", API + "/%s/history?since=0&limit=1000" % w).body)
        cur = json.loads(node.request("GET", API + "/" + w).body)
        msgs = [e["message"] for e in h["events"]]
        assert [e["seq"] for e in h["events"]] == list(range(max(1, cur["seq"] - 999),
                                                             cur["seq"] + 1)), w
        assert len(set(msgs)) == len(msgs), (w, "a change applied twice")
        logged[w] = {e["message"]: e["seq"] for e in h["events"]}
    for w, seq, msg in acked:
        assert logged[w].get(msg) == seq, (w, seq, msg)
    for w, msg in not_saved:
        assert msg not in logged[w], (w, msg, "answered not saved, but logged")
    print("acked %d, not saved %d, maybe %d" % (len(acked), len(not_saved), len(maybe)))


def test_updates_on_one_node_while_another_deletes_and_recreates(factory, pg_dsn):
    """Node B pipelines plain updates of five workflows (set-based) while
    node A deletes and re-creates them, sometimes in one pipeline (one
    batch): an update that waited on a deleted row must be answered from
    the row's current state (404, or applied to the new incarnation), never
    5xx; each incarnation's 200s have distinct seqs, and the last
    incarnation's are all in its log."""
    a, b = factory(db=pg_dsn), factory(db=pg_dsn)
    wids = ["rc%d" % i for i in range(5)]
    for w in wids:
        assert a.request("POST", API, {"id": w, "name": "r", "total_steps": 10 ** 6}).status == 201
    acked, bad = [], []
    stop = threading.Event()

    def updater(t):
        r = 0
        while not stop.is_set() and r < 300:
            r += 1
            reqs = [("PATCH", API + "/" + w, {"message": "u%d-%d-%s" % (t, r, w)}, {})
                    for w in wids for _ in range(2)]
            for req, resp in zip(reqs, pipeline(b, reqs)):
                if resp.status == 200:
                    got = json.loads(resp.body)
                    acked.append((got["id"], got["epoch"], got["seq"], req[2]["message"]))
                elif resp.status != 404:
                    bad.append((resp.status, resp.body[:200]))

    def recreator():
        for r in range(25):
            reqs = []
            for w in wids:
                reqs.append(("DELETE", API + "/" + w, None, {}))
                reqs.append(("POST", API, {"id": w, "name": "r%d" % r,
                                           "total_steps": 10 ** 6}, {}))
            for req, resp in zip(reqs, pipeline(a, reqs)):
                if resp.status not in (201, 204):
                    bad.append((req[0], resp.status, resp.body[:200]))
            time.sleep(0.05)
    ts = [threading.Thread(target=updater, args=(t,)) for t in range(3)]
    for t in ts:
        t.start()
    try:
        recreator()
    finally:
        stop.set()
        for t in ts:
            t.join(120)
    assert not bad, bad[:3]
    assert len(acked) > 50
    keys = [(w, e, s) for w, e, s, _ in acked]
    assert len(set(keys)) == len(keys), "a seq given twice in one incarnation"
    for w in wids:
        cur = json.loads(b.request("GET", API + "/" + w).body)
        h = json.loads(b.request("GET", API + "/%s/history?since=0&limit=1000" % w).body)
        logged = {e["seq"]: e["message"] for e in h["events"]}
        assert sorted(logged) == list(range(1, cur["seq"] + 1)), w
        for aw, e, s, m in acked:
            if aw == w and e == cur["epoch"]:
                assert logged.get(s) == m, (w, s, m)


def test_one_key_on_two_workflows_in_one_pipeline_first_request_owns_it(factory, pg_dsn):
    """One Idempotency-Key sent (by mistake) with changes of two workflows,
    pipelined so one batch holds both, the later one on the smaller id:
    the first request sent owns the key (200) and the second is refused
    (422), as on SQLite, whatever order the batch applies workflows in."""
    seq = []
    for i in range(20):
        k = {"Idempotency-Key": "shared-%d" % i}
        seq += [("zz", "PATCH", API + "/zz", {"message": "z%d" % i}, k),
                ("aa", "PATCH", API + "/aa", {"message": "a%d" % i}, k)]
    ids = ["zz", "aa"]
    res = {}
    for name, node in (("sqlite", factory()), ("postgres", factory(db=pg_dsn))):
        for w in ids:
            assert node.request("POST", API, {"id": w, "name": "k", "total_steps": 9}).status == 201
        res[name] = [answer(r) for r in pipeline(node, [op[1:] for op in seq])]
    assert [s for s, _ in res["sqlite"]] == [200, 422] * 20
    assert _diff(seq, res["sqlite"], res["postgres"]) is None, _diff(seq, res["sqlite"], res["postgres"])


def test_full_batches_of_4kb_messages_all_quotes_and_backslashes(factory, pg, pg_dsn):
    """Eight connections pipeline 64 changes each, one per workflow, whose
    4096-byte messages are all quotes and backslashes (an array literal of
    a full batch twice their size): every change is answered 200 and
    logged byte for byte."""
    node = factory(db=pg_dsn)
    wids = ["big%02d" % i for i in range(64)]
    for w in wids:
        assert node.request("POST", API, {"id": w, "name": "b", "total_steps": 9}).status == 201
    pats = ['"\\\\', '\\\\"', '{"},', '\\\\\\\\', '""']
    acked, bad = [], []

    def go(c):
        reqs = [("PATCH", API + "/" + w, {"message": (pats[(c + j) % len(pats)] * 4096)[:4094 - c]
                                          + "%02d" % c}, {}) for j, w in enumerate(wids)]
        for req, resp in zip(reqs, pipeline(node, reqs)):
            if resp.status != 200:
                bad.append((resp.status, resp.body[:200]))
            else:
                acked.append((req[1].rsplit("/", 1)[1], json.loads(resp.body)["seq"],
                              req[2]["message"]))
    ts = [threading.Thread(target=go, args=(c,)) for c in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not bad, bad[:3]
    wait_for(lambda: set_calls(pg, pg_dsn) > 0, 20, what="a set-based call")
    for w in wids:
        _check_log(node, w, [(s, m) for aw, s, m in acked if aw == w])
