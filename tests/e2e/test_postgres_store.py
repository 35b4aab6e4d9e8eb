"""flowcast on PostgreSQL (--db postgres://...).

The first part runs tests of the SQLite suites again, unchanged, against a
server on PostgreSQL: this module's server_factory gives every server a
fresh database of one PostgreSQL per module, so `server` and
`server_factory` in the imported tests are PostgreSQL-backed. The second
part is what only a shared database has: several server processes on one
database (concurrent if_seq, creates and idempotent retries across nodes),
the schema created by three nodes starting at once, and PostgreSQL
restarting under producers (503 while it is down, nothing acknowledged
lost, the node recovers by itself, watchers stay connected)."""

import json
import threading
import time

import pytest

from conftest import ServerFactory
from fc_helpers import RawWS, parse_metrics, wait_for

# The REST rules, on PostgreSQL (seq rules, if_seq, terminal, delete, lists).
from test_rest import (  # noqa: F401
    test_create_defaults_and_get, test_create_existing_id_409, test_patch_updates_and_seq,
    test_patch_step_beyond_total_400, test_patch_if_seq, test_terminal_status_409,
    test_unknown_workflow_404, test_delete_204, test_list_order_filter_pagination,
    test_pipelined_changes_answered_in_order)
# Epochs: delete and re-create, resume across incarnations.
from test_epoch_resume import (  # noqa: F401
    test_ws_resume_across_recreate_gets_deletion_then_resync,
    test_ws_resume_of_deleted_workflow_gets_deletion_and_1000,
    test_ws_legacy_since_never_deleted_replays_exactly, test_history_across_recreate_resyncs_from_start,
    test_sse_last_event_id_across_recreate)
# Idempotency keys.
from test_idempotency import (  # noqa: F401
    test_retry_gets_first_answer_and_commits_nothing, test_concurrent_retries_on_several_threads_apply_once,
    test_same_key_other_request_is_422, test_keys_expire_after_the_window)
# Retention.
from test_sse_longpoll import test_history_oldest_seq_follows_retention  # noqa: F401
# The store's commit histogram.
from test_operating import test_store_commit_histogram  # noqa: F401

API = "/api/workflows"


@pytest.fixture
def pg_dsn(pg):
    """A fresh, empty database on the module's PostgreSQL."""
    return pg.fresh_database("t")


class PgServerFactory(ServerFactory):
    def __init__(self, binary, tmpdir, dsn):
        super().__init__(binary, tmpdir)
        self.dsn = dsn

    def __call__(self, *flags, db=None, **kw):
        return super().__call__(*flags, db=db or self.dsn, **kw)


@pytest.fixture
def server_factory(flowcast, tmp_path, pg_dsn):
    f = PgServerFactory(flowcast, str(tmp_path), pg_dsn)
    yield f
    f.teardown()


def post(s, body, headers=None):
    body = dict({"name": "job", "total_steps": 10}, **body)
    return s.request("POST", API, body=body, headers=headers)


def patch(s, wid, body, headers=None):
    return s.request("PATCH", API + "/" + wid, body=body, headers=headers)


def parallel(fns):
    """Runs the callables at once (released together); returns their results in order."""
    out = [None] * len(fns)
    gate = threading.Barrier(len(fns))

    def run(i):
        gate.wait()
        out[i] = fns[i]()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


def test_three_nodes_create_the_schema_at_once(server_factory, pg, pg_dsn):
    nodes = parallel([lambda: server_factory(ready=False) for _ in range(3)])
    for n in nodes:
        n.wait_ready(20)
    db = pg_dsn.rsplit("/", 1)[1]
    rows = pg.sql("SELECT version FROM schema_version ORDER BY 1", db=db).split()
    assert rows == ["1", "2", "3"], rows  # each step applied once, in order
    for i, n in enumerate(nodes):
        assert post(n, {"id": "w%d" % i}).status == 201
    for n in nodes:
        assert n.request("GET", API + "/w2").status == 200


def test_concurrent_if_seq_patches_on_two_nodes_one_wins(server_factory):
    a, b = server_factory(), server_factory()
    for round_ in range(10):
        wid = "cas%d" % round_
        assert post(a, {"id": wid, "total_steps": 100}).status == 201
        rs = parallel([lambda s=s, i=i: patch(s, wid, {"current_step": i + 1, "if_seq": 1})
                       for i, s in enumerate([a, b, a, b])])
        codes = sorted(r.status for r in rs)
        assert codes == [200, 409, 409, 409], codes
        w = json.loads(b.request("GET", API + "/" + wid).body)
        assert w["seq"] == 2


def test_concurrent_creates_of_one_id_on_two_nodes_one_201(server_factory):
    a, b = server_factory(), server_factory()
    for round_ in range(10):
        rs = parallel([lambda s=s: post(s, {"id": "dup%d" % round_}) for s in [a, b, a, b]])
        codes = sorted(r.status for r in rs)
        assert codes == [201, 409, 409, 409], codes


def test_concurrent_idempotent_posts_on_two_nodes_apply_once(server_factory):
    a, b = server_factory(), server_factory()
    assert post(a, {"id": "idem", "total_steps": 100}).status == 201
    for i in range(10):
        h = {"Idempotency-Key": "k-%d" % i}
        rs = parallel([lambda s=s: patch(s, "idem", {"current_step": i + 1}, headers=h)
                       for s in [a, b, a, b]])
        assert all(r.status == 200 for r in rs), [(r.status, r.body) for r in rs]
        seqs = {json.loads(r.body)["seq"] for r in rs}
        assert seqs == {i + 2}, seqs  # every answer is the one applied change
    w = json.loads(a.request("GET", API + "/idem").body)
    assert w["seq"] == 11


def test_concurrent_writers_on_two_nodes_never_share_a_seq(server_factory):
    a, b = server_factory(), server_factory()
    assert post(a, {"id": "race", "total_steps": 1000}).status == 201
    got = []

    def writer(s):
        for i in range(40):
            r = patch(s, "race", {"message": "x"})
            assert r.status == 200, r.body
            got.append(json.loads(r.body)["seq"])
    parallel([lambda: writer(a), lambda: writer(b), lambda: writer(a), lambda: writer(b)])
    assert sorted(got) == list(range(2, 162))
    hist = json.loads(b.request("GET", API + "/race/history?since=0&limit=1000").body)
    assert [e["seq"] for e in hist["events"]] == list(range(1, 162))


def test_two_nodes_hammering_the_same_workflows_lose_no_change(server_factory):
    """Sixteen writers on two nodes PATCH the same four workflows at once, so
    each node's batches hold several changes of one workflow (applied in
    rounds) and of several (one set-based statement per round) while the
    other node writes the same rows: every 200 has its own seq, and the log
    holds every acknowledged change with its own message, seqs 1..last."""
    a, b = server_factory(), server_factory()
    wids = ["ham%d" % i for i in range(4)]
    for w in wids:
        assert post(a, {"id": w, "total_steps": 1000}).status == 201
    acked = {w: [] for w in wids}
    bad = []

    def writer(s, t):
        for i in range(30):
            w = wids[(t + i) % len(wids)]
            msg = "t%d-%d" % (t, i)
            r = patch(s, w, {"message": msg, "current_step": i})
            if r.status != 200:
                bad.append((r.status, r.body))
                continue
            acked[w].append((json.loads(r.body)["seq"], msg))
    parallel([lambda t=t: writer(a if t % 2 else b, t) for t in range(16)])
    assert not bad, bad[:5]
    for w in wids:
        seqs = sorted(seq for seq, _ in acked[w])
        assert seqs == list(range(2, len(seqs) + 2)), (w, seqs)  # none shared, none skipped
        hist = json.loads(a.request("GET", API + "/%s/history?since=0&limit=1000" % w).body)
        logged = {e["seq"]: e["message"] for e in hist["events"]}
        assert sorted(logged) == list(range(1, len(seqs) + 2)), (w, sorted(logged))
        assert all(logged[seq] == msg for seq, msg in acked[w]), w
        got = json.loads(b.request("GET", API + "/" + w).body)
        assert got["seq"] == len(seqs) + 1


@pytest.mark.parametrize("call", [
    "fc_apply_updates(%s, 2, 1000)",
    "fc_apply_set(%s, array_fill(''::text, ARRAY[10]), array_fill('\\x'::bytea, ARRAY[10]), 2,"
    " 1000, 1000)"])
def test_batched_updates_probe_the_id_index_never_scan_the_table(server_factory, pg, pg_dsn,
                                                                  call):
    """The set-based update of a batch (fc_apply_set, before it
    fc_apply_updates, which older nodes still call) finds its rows
    through the id index: a batch of ten changes over 1,000 workflows scans
    no table. Its plan is cached with the input estimated at ten rows, and
    against a table this small the planner preferred a hash join over a scan
    of every workflow, at every batch (the PostgreSQL CPU of a change of
    small batches nearly doubled, and it grows with the table)."""
    server_factory()  # creates the schema
    db = pg_dsn.rsplit("/", 1)[1]
    pg.sql("SELECT count(*) FROM generate_series(1, 1000) g, LATERAL fc_apply(0, 'p' || g, 1,"
           " 1000, 'job', 'running', 0, 100, '', 0, 0, '', '\\x'::bytea, 0) f;"
           " ANALYZE workflows", db=db)
    ids = "ARRAY[%s]" % ",".join("'p%d'" % (i * 97 % 1000 + 1) for i in range(10))
    arrays = ("%s, array_fill(8, ARRAY[10]), array_fill('running'::text, ARRAY[10]),"
              " array_fill(0::bigint, ARRAY[10]), array_fill(0::bigint, ARRAY[10]),"
              " array_fill('m'::text, ARRAY[10]), array_fill(0::bigint, ARRAY[10])" % ids)
    out = pg.sql("SELECT count(*) FILTER (WHERE r_result = 'ok' AND r_seq = 2) FROM " +
                 call % arrays + "; SELECT seq_scan, idx_scan > 0 FROM pg_stat_xact_user_tables"
                 " WHERE relname = 'workflows'", db=db)
    assert out.split() == ["10", "0|t"], out  # all ten applied; no scan, found by the index
    assert pg.sql("SELECT count(*) FROM workflows WHERE seq = 2", db=db).strip() == "10"


def test_log_positions_across_nodes(server_factory, pg):
    """Each node's commits are in the shared database at once: the other node reads them."""
    a, b = server_factory(), server_factory()
    assert post(a, {"id": "x"}).status == 201
    assert patch(b, "x", {"message": "from b"}).status == 200
    assert json.loads(a.request("GET", API + "/x").body)["message"] == "from b"


def _producer(s, wid, acked, errors, stop):
    """PATCHes wid until stop; every 200 is recorded with its seq, every 503 counted."""
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            r = patch(s, wid, {"message": "m"})
        except OSError as e:
            errors.append(("oserror", str(e)))
            continue
        took = time.monotonic() - t0
        if r.status == 200:
            acked.append(json.loads(r.body)["seq"])
        elif r.status == 503:
            body = json.loads(r.body)
            assert body["error"]["code"] == "store_unavailable", body
            errors.append(("503", took))
            time.sleep(0.05)
        else:
            errors.append((r.status, r.body))


def test_postgres_restart_under_producers(server_factory, pg):
    s = server_factory()
    wids = ["p%d" % i for i in range(4)]
    for w in wids:
        assert post(s, {"id": w, "total_steps": 10}).status == 201
    ws = RawWS.open(s, API + "/p0/updates")
    first = ws.recv_frame(10).json()
    assert first["seq"] == 1
    acked = {w: [] for w in wids}
    errors = []
    stop = threading.Event()
    ts = [threading.Thread(target=_producer, args=(s, w, acked[w], errors, stop)) for w in wids]
    for t in ts:
        t.start()
    try:
        wait_for(lambda: all(len(acked[w]) >= 5 for w in wids), 20, what="writes before the stop")
        pg.stop()
        wait_for(lambda: any(e[0] == "503" for e in errors), 10, what="503 while PostgreSQL is down")
        r = s.request("GET", "/readyz")
        assert r.status == 503, r.body
        time.sleep(2)
        pg.start()
        before = {w: len(acked[w]) for w in wids}
        wait_for(lambda: all(len(acked[w]) > before[w] + 5 for w in wids), 20,
                 what="writes after the restart")
    finally:
        stop.set()
        for t in ts:
            t.join(30)
    # 503s came quickly (bounded: well under the client's patience), no other error.
    slow = [e for e in errors if e[0] == "503" and e[1] > 5]
    assert not slow, slow
    other = [e for e in errors if e[0] != "503"]
    assert not other, other
    wait_for(lambda: s.request("GET", "/readyz").status == 200, 10, what="/readyz 200 again")
    # Nothing acknowledged is lost: every acked seq is in the log, in order.
    for w in wids:
        hist = json.loads(s.request("GET", API + "/%s/history?since=0&limit=1000" % w).body)
        logged = [e["seq"] for e in hist["events"]]
        assert logged == list(range(1, len(logged) + 1))
        assert set(acked[w]) <= set(logged), (w, sorted(set(acked[w]) - set(logged)))
    # The watcher stayed connected and hears what is committed now.
    assert patch(s, "p0", {"message": "after"}).status == 200
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        f = ws.recv_frame(10)
        if f.opcode != 1:  # pings, if any
            continue
        m = f.json()
        seen.append(m)
        if m.get("message") == "after":
            break
    assert seen and seen[-1].get("message") == "after"
    ws.sock.close()
    m = parse_metrics(s.request("GET", "/metrics").body.decode())
    assert m.get("flowcast_store_reconnects_total", 0) >= 1
    assert m.get("flowcast_store_up") == 1


def test_unreachable_at_start_fails_clearly(flowcast, tmp_path):
    import subprocess
    from fc_helpers import free_port
    port = free_port()  # nobody listens there
    t0 = time.monotonic()
    r = subprocess.run([flowcast, "serve", "--listen", "127.0.0.1:%d" % free_port(), "--db",
                        "postgres://flowcast@127.0.0.1:%d/flowcast" % port],
                       capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b"cannot connect to PostgreSQL" in r.stderr + r.stdout
    assert time.monotonic() - t0 < 15


def test_sqlite_only_tools_refuse_postgres(flowcast, pg_dsn):
    import subprocess
    r = subprocess.run([flowcast, "rotate-epochs", "--db", pg_dsn], capture_output=True,
                       timeout=30)
    assert r.returncode != 0
    assert b"not PostgreSQL" in r.stderr, r.stderr


def test_hung_postgres_answers_503_within_the_timeout(server_factory, pg):
    """A server that takes connections but answers nothing (SIGSTOP): writes
    and reads answer 503 after about --db-timeout, never hang; the node goes
    on once it answers again."""
    s = server_factory("--db-timeout", "1")
    assert post(s, {"id": "h"}).status == 201
    pg.freeze()
    try:
        for _ in range(3):
            t0 = time.monotonic()
            r = patch(s, "h", {"message": "x"})
            took = time.monotonic() - t0
            assert r.status == 503, r.body
            assert json.loads(r.body)["error"]["code"] == "store_unavailable"
            assert took < 5, took
        t0 = time.monotonic()
        r = s.request("GET", API + "/h")
        assert r.status == 503 and time.monotonic() - t0 < 5
        assert s.request("GET", "/healthz").status == 200  # the loop is not stuck
    finally:
        pg.thaw()
    wait_for(lambda: patch(s, "h", {"message": "back"}).status == 200, 20,
             what="a write after PostgreSQL answers again")
    r = s.request("GET", API + "/h")  # the reader follows the writer back at once
    assert r.status == 200, r.body
    assert json.loads(r.body)["message"] == "back"


