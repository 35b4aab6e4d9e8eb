"""More hostile edges of the cluster, written from issue 10's promises
rather than from the code: values of the cluster's own flags and
environment variables, and faults that come together (NATS down while a
node dies, PostgreSQL and NATS down at once, PostgreSQL restarted while
multi-streams resume on nodes they never talked to, a reader that never
reads beside prompt ones). Each test starts its own cluster (svc_cluster)
or runs the binary alone, and stays bounded in time."""

import http.client
import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from cluster_helpers import Producer, Stream, Watcher
from conftest import ServerFactory, flowcast_bin
from fc_helpers import HOST, TLS_DIR, RawWS, free_port, wait_for
from svc_cluster import Cluster
from test_postgres_store import parallel

pytestmark = pytest.mark.skipif(bool(TLS_DIR), reason="the cluster runs plain HTTP")

API = "/api/workflows"
# A store that refuses every connection: a flag checked before the store
# opens must fail with its own message, never this one's.
DEAD_DSN = "postgres://flowcast@127.0.0.1:1/flowcast"


def _serve(*flags, env=None):
    e = dict(os.environ)
    e.pop("FLOWCAST_NATS", None)
    e.pop("FLOWCAST_DB", None)
    e.update(env or {})
    t = time.monotonic()
    r = subprocess.run([flowcast_bin(), "serve", "--listen", "127.0.0.1:%d" % free_port(),
                        *flags], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    return r.returncode, r.stderr.decode(errors="replace"), time.monotonic() - t


BAD_NATS = [
    # (value, what the error must say)
    ("nats://", "URL 1: no host"),
    ("nats://127.0.0.1:99999", "URL 1: the port must be a number from 1 to 65535"),
    ("nats://127.0.0.1:0", "URL 1: the port must be a number from 1 to 65535"),
    ("nats://127.0.0.1:4222/flowcast", "nothing may follow it"),
    ("nats://127.0.0.1:4222?user=x", "nothing may follow it"),
    ("http://127.0.0.1:4222", "URL 1: the scheme must be nats:// or tls://"),
    ("nats://127.0.0.1:4222,https://127.0.0.1:4223", "URL 2: the scheme must be"),
    ("nats://[::1:4222", "without its closing ']'"),
    ("nats://nats host:4222", "a host may hold only"),
    ("nats://127.0.0.1:4222,", "URL 2 is empty"),
    ("nats://127.0.0.1:4222,,nats://127.0.0.1:4223", "URL 2 is empty"),
    (",".join(["nats://127.0.0.1:4222"] * 17), "more than 16 URLs"),
    ("nats://127.0.0.1:4222\nlevel=error forged", "URL 1 holds a control character"),
]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_bad_nats_urls_refused_at_once_with_the_reason(how):
    """A --nats (or FLOWCAST_NATS) value nats.c could never connect with is
    refused before anything starts: exit 2, the URL's number and what is
    wrong with it, never its credentials. Until it was checked, most of these
    started a node that retried an impossible address for ever (up, never
    ready), and the rest failed only after the store had opened, with
    nats.c's "Invalid Argument" after a "retrying in the background"."""
    for value, want in BAD_NATS:
        value = value.replace("nats://nats host", "nats://user:s3cretpw@nats host")
        if how == "flag":
            rc, err, took = _serve("--db", DEAD_DSN, "--nats", value)
        else:
            rc, err, took = _serve(env={"FLOWCAST_DB": DEAD_DSN, "FLOWCAST_NATS": value})
        assert rc == 2, (value, rc, err)
        assert err.startswith("flowcast: --nats: ") and want in err, (value, err)
        assert err.count("\n") == 1, (value, err)  # one line: no forged log line
        assert "s3cretpw" not in err, err
        assert "PostgreSQL" not in err and "listening" not in err, (value, err)
        assert took < 20, (value, took)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_db_url_of_another_scheme_refused(tmp_path, how):
    """--db (or FLOWCAST_DB) with a scheme flowcast does not open, upper
    case included (libpq takes only postgres:// and postgresql://), was
    opened as a SQLite file of that name: "cannot open the lock file
    POSTGRES://...lock", or a new database file where the folder existed.
    It is refused, exit 2, naming the scheme and never the password."""
    os.makedirs(tmp_path / "mysql:", exist_ok=True)
    for value in ("POSTGRES://flowcast:s3cretpw@127.0.0.1:1/flowcast",
                  "Postgresql://flowcast@127.0.0.1:1/flowcast", "mysql://u:s3cretpw@h/db",
                  "pg://127.0.0.1/db"):
        cwd = os.getcwd()
        os.chdir(tmp_path)  # "mysql://..." is a path under the folder "mysql:" here
        try:
            if how == "flag":
                rc, err, _ = _serve("--db", value)
            else:
                rc, err, _ = _serve(env={"FLOWCAST_DB": value})
        finally:
            os.chdir(cwd)
        scheme = value.split("://")[0]
        assert rc == 2, (value, rc, err)
        assert err == ("flowcast: --db: the scheme \"%s://\" is not one flowcast opens: a "
                       "PostgreSQL URL starts postgres:// or postgresql:// (lower case), "
                       "anything else is a SQLite file path\n" % scheme), err
        assert "s3cretpw" not in err
    assert os.listdir(tmp_path / "mysql:") == [], "a SQLite file was created"


def test_good_nats_url_forms_still_start(flowcast, pg, nats):
    """What the check must not refuse: a URL without a scheme (nats.c adds
    nats://), a space after a comma, an upper-case scheme, no port."""
    port = nats.port
    for value in ("127.0.0.1:%d" % port, "nats://127.0.0.1:%d, NATS://127.0.0.1:%d" % (port, port),
                  "nats://u:p@ss/w rd@127.0.0.1:%d" % port):
        dsn = pg.fresh_database("g")
        p = free_port()
        e = dict(os.environ, FLOWCAST_NATS=value)
        proc = subprocess.Popen([flowcast, "serve", "--listen", "127.0.0.1:%d" % p, "--db", dsn],
                                env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def ready():
                try:
                    c = http.client.HTTPConnection(HOST, p, timeout=2)
                    c.request("GET", "/readyz")
                    return c.getresponse().status == 200
                except OSError:
                    return False
            wait_for(ready, 20, what="node on %r ready" % value)
        finally:
            proc.terminate()
            assert proc.wait(10) == 0, proc.stderr.read()[-2000:]


# ---- faults that come together ----

def _create(node, wid):
    r = node.request("POST", API, {"id": wid, "name": wid, "total_steps": 100000})
    assert r.status == 201, r
    return r.json()["epoch"]


def _status(port, method, path, body=None, timeout=30):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def _acked(producers, wid):
    out = {}
    for p in producers:
        for s, msg in p.acked.get(wid, {}).items():
            assert s not in out, (wid, s)
            out[s] = msg
    return out


def _finish(cl, watchers, producers, wids, timeout=45):
    for p in producers:
        p.join(120)
        assert not p.is_alive() and not p.failures, (p.name, p.failures[:3])
    finals = {wid: cl.nodes[1].get(wid)["seq"] for wid in wids}
    for w in watchers:
        w.wait_seq({wid: (wids[wid], finals[wid]) for wid in w.seen}, timeout=timeout)
    for w in watchers:
        w.stop()
    for wid in wids:
        acked = _acked(producers, wid)
        for w in watchers:
            if wid in w.seen:
                w.check_exact(wid, wids[wid], finals[wid], acked)


def test_nats_down_and_a_node_killed_watchers_resume_elsewhere(flowcast):
    """The bus is away (so nothing arrives but through the catch-up) when
    the node every watcher is on dies: each watcher resumes on a node it
    never talked to, whose only source is the store; the bus comes back
    later. Every acknowledged change once, in order, on every kind."""
    with Cluster(flowcast, n=3, proxy=False) as cl:
        a, b, c = cl.ports()
        wids = {}
        for i in range(2):
            wid = "nk%d-%s" % (i, uuid.uuid4().hex[:6])
            wids[wid] = _create(cl.nodes[i], wid)
        kinds = ("ws", "multi", "sse", "sse_multi", "longpoll")
        watchers = []
        for i, k in enumerate(kinds):
            one = list(wids)[i % 2]
            want = dict(wids) if k in ("multi", "sse_multi") else {one: wids[one]}
            watchers.append(Watcher(k, [a, b, c], want, name=k))
        for w in watchers:
            w.start()
        try:
            for w in watchers:
                w.wait_seq({wid: (wids[wid], 1) for wid in w.seen}, timeout=20)
            producers = [Producer([p], wids, 25, "p%d" % i, pause=0.03, give_up=60)
                         for i, p in enumerate((b, c))]
            for p in producers:
                p.start()
            time.sleep(0.4)
            cl.stop_nats()
            time.sleep(0.5)
            cl.kill9(0)
            wait_for(lambda: all(len(w.connects) >= 2 for w in watchers), 20,
                     what="every watcher reconnected")
            assert all(port != a for w in watchers for _, port in w.connects[1:2])
            time.sleep(2)
            cl.start_nats()
            _finish(cl, watchers, producers, wids)
        finally:
            for w in watchers:
                w.stopping.set()


def test_postgres_and_nats_down_together_then_back_one_at_a_time(flowcast):
    """Both down: writes and store reads answer 503 store_unavailable with
    Retry-After (bounded, no hang) and /readyz names both; PostgreSQL back
    first: writes succeed while /readyz stays 503 for the bus alone, and a
    watcher on another node gets them through the catch-up; then NATS back:
    200. Nothing acknowledged lost."""
    with Cluster(flowcast, n=2, proxy=False) as cl:
        a, b = cl.ports()
        wid = "pn-" + uuid.uuid4().hex[:6]
        e = _create(cl.nodes[0], wid)
        w = Watcher("ws", [b], {wid: e}, name="ws-b")
        w.start()
        try:
            w.wait_seq({wid: (e, 1)}, timeout=20)
            cl.stop_nats()
            cl.stop_pg()
            for port in (a, b):
                t = time.monotonic()
                st, hd, body = _status(port, "PATCH", API + "/" + wid, {"current_step": 2})
                assert time.monotonic() - t < 15, time.monotonic() - t
                assert st == 503, (st, body)
                assert json.loads(body)["error"]["code"] == "store_unavailable", body
                assert hd.get("retry-after") == "1", hd
            for n in cl.nodes:
                wait_for(lambda: n.request("GET", "/readyz").status == 503, 30,
                         what="readyz 503")
                body = n.request("GET", "/readyz").json()
                assert body["check"] in ("store", "bus"), body
            cl.start_pg()
            acked = {}
            deadline = time.monotonic() + 40
            while len(acked) < 5 and time.monotonic() < deadline:
                st, _, body = _status(a, "PATCH", API + "/" + wid, {"message": "m%d" % len(acked)})
                if st == 200:
                    acked[json.loads(body)["seq"]] = "m%d" % len(acked)
                else:
                    assert st == 503, (st, body)
                    time.sleep(0.3)
            assert len(acked) == 5, acked
            for n in cl.nodes:  # the store is back (after 10 s without a failed write), the bus not
                wait_for(lambda: n.request("GET", "/readyz").json().get("check") == "bus", 30,
                         what="readyz 503 for the bus alone")
                assert n.request("GET", "/readyz").status == 503
            w.wait_seq({wid: (e, max(acked))}, timeout=20)
            cl.start_nats()
            for n in cl.nodes:
                cl.wait_ready(n, timeout=40)
        finally:
            w.stop()
        w.check_exact(wid, e, max(acked), acked)


class StoreWaitingWatcher(Watcher):
    """A Watcher whose multi-stream, told store_unavailable for an id (the
    store is down while it resumes), reconnects and resumes again, as a
    client does on any error it can retry."""

    def _stream(self, port, live):
        try:
            super()._stream(port, live)
        except AssertionError as e:
            if "store_unavailable" not in str(e):
                raise
            raise ConnectionError(str(e))


def test_postgres_restart_while_multi_streams_resume_on_new_nodes(flowcast):
    """Multi-streams (WebSocket and SSE) of 40 workflows on node 1 lose it
    while PostgreSQL is being restarted: their resumes on nodes 2 and 3 need
    the event log, so they are refused (a 503, or an error) until the store
    is back, then complete. A workflow deleted and re-created twice meanwhile
    is told, never continued. Every acknowledged change once, in order."""
    with Cluster(flowcast, n=3, proxy=False) as cl:
        a, b, c = cl.ports()
        wids = {}
        for i in range(40):
            wid = "mr%02d-%s" % (i, uuid.uuid4().hex[:4])
            wids[wid] = _create(cl.nodes[i % 3], wid)
        victim = list(wids)[0]
        kept = {w: e for w, e in wids.items() if w != victim}
        watchers = [StoreWaitingWatcher(k, [a, b, c], dict(wids), name=k)
                    for k in ("multi", "sse_multi")]
        for w in watchers:
            w.start()
        try:
            for w in watchers:
                w.wait_seq({wid: (wids[wid], 1) for wid in wids}, timeout=30)
            producers = [Producer([p], list(kept)[i::2], 4, "q%d" % i, pause=0.02, give_up=90)
                         for i, p in enumerate((b, c))]
            for p in producers:
                p.start()
            for _ in range(2):  # deleted through 2, re-created through 3
                assert cl.nodes[1].request("DELETE", API + "/" + victim).status == 204
                _create(cl.nodes[2], victim)
            cl.kill9(0)
            cl.stop_pg()
            time.sleep(2)
            cl.start_pg()
            for p in producers:
                p.join(120)
                assert not p.is_alive() and not p.failures, (p.name, p.failures[:3])
            finals = {wid: cl.nodes[1].get(wid)["seq"] for wid in kept}
            for w in watchers:
                w.wait_seq({wid: (kept[wid], finals[wid]) for wid in kept}, timeout=45)
                told = w.wait_told(victim, timeout=20)
                assert told and told[0] == ("deleted", wids[victim], 2), (w.name, told)
                assert all(e == wids[victim] for e, _ in w.seen[victim]), w.seen[victim]
        finally:
            for w in watchers:
                w.stopping.set()
        for w in watchers:
            w.stop()
            for wid in kept:
                w.check_exact(wid, kept[wid], finals[wid], _acked(producers, wid))


def test_a_reader_that_never_reads_does_not_hold_prompt_watchers(flowcast):
    """On node 2, 20 WebSockets subscribed to every one of 200 workflows
    never read (a tiny receive buffer), while changes made through node 1
    arrive by the bus. A reading watcher on node 2 must still get every
    change within a bounded time, and node 2 must keep answering."""
    with Cluster(flowcast, n=2, proxy=False) as cl:
        a, b = cl.ports()
        wids = {}
        for i in range(200):
            wid = "st%03d-%s" % (i, uuid.uuid4().hex[:4])
            r = cl.nodes[0].request("POST", API, {"id": wid, "name": "x" * 200,
                                                  "total_steps": 100000})
            assert r.status == 201, r
            wids[wid] = r.json()["epoch"]
        stuck = []
        for _ in range(20):
            ws = RawWS.open(cl.nodes[1], "/api/updates", rcvbuf=4096)
            ws.send_json({"op": "subscribe", "workflow_ids": list(wids)})
            stuck.append(ws)
        hot = list(wids)[:3]
        w = Watcher("multi", [b], {h: wids[h] for h in hot}, name="prompt")
        w.start()
        try:
            w.wait_seq({h: (wids[h], 1) for h in hot}, timeout=20)
            long_msg = "y" * 2000
            for rnd in range(5):
                for wid in wids:  # fills every stuck socket
                    r = cl.nodes[0].request("PATCH", API + "/" + wid, {"message": long_msg})
                    assert r.status == 200, r
                t = time.monotonic()
                w.wait_seq({h: (wids[h], 2 + rnd) for h in hot}, timeout=20)
                took = time.monotonic() - t
                assert took < 15, took
                st, _, _ = _status(b, "GET", "/healthz", timeout=10)
                assert st == 200
        finally:
            w.stop()
            for ws in stuck:
                ws.abort()
        for h in hot:
            w.check_exact(h, wids[h], 6)


def test_resume_from_a_position_the_store_never_had_on_another_node(flowcast):
    """Positions no node ever handed out, sent to a node the client never
    talked to: a seq past the end, an epoch that never existed, a cursor of
    a workflow never created. Each is told (resync, a precise 400 or 404),
    never a silent wait or a continuation from the wrong place."""
    with Cluster(flowcast, n=2, proxy=False) as cl:
        a, b = cl.ports()
        wid = "pos-" + uuid.uuid4().hex[:6]
        e = _create(cl.nodes[0], wid)
        for i in range(3):
            cl.nodes[0].patch(wid, message="x%d" % i)
        for kind in ("ws", "sse", "multi", "sse_multi"):
            st = Stream(kind, b, {wid: (e, 50)})  # past the end
            try:
                m = st.next(5)
                assert m and m.get("resync") and (m["epoch"], m["seq"]) == (e, 4), (kind, m)
            finally:
                st.close()
            st = Stream(kind, b, {wid: (e + 1000, 2)})  # an epoch that never was
            try:
                m = st.next(5)
                assert m and m.get("resync") and m["epoch"] == e and m["seq"] == 4, (kind, m)
            finally:
                st.close()
        st, _, body = _status(b, "GET", API + "/nope-%s?wait_since=1&timeout=1" % wid)
        assert st == 404, body
        st, _, body = _status(b, "GET", API + "/%s?wait_since=50&epoch=%d&timeout=1" % (wid, e),
                              timeout=10)
        assert st == 200 and json.loads(body).get("resync"), (st, body)


def test_sse_multi_cursor_of_100_long_ids_resumes_on_another_node(flowcast):
    """The multi SSE stream's `id:` is a cursor naming every workflow
    (`a:E:N,b:E:N`, at most 100 ids of up to 64 bytes, epochs of up to 16
    digits): EventSource sends it back as Last-Event-ID, here to another
    node, with the same URL (the 100 ids again). A cursor the server wrote
    must be one it takes back: it is 8,387 bytes at seq 1, and the default
    --max-header was 8192, which refused the request with 431, so an
    EventSource of these workflows could never resume anywhere."""
    with Cluster(flowcast, n=2, proxy=False) as cl:
        a, b = cl.ports()
        tag = uuid.uuid4().hex[:8]
        wids = [(tag + "%02d" % i).ljust(64, "w") for i in range(100)]
        for wid in wids:
            _create(cl.nodes[0], wid)
        path = "/api/events?workflow_ids=" + ",".join(wids)
        c = http.client.HTTPConnection(HOST, a, timeout=10)
        c.request("GET", path, headers={"Accept": "text/event-stream"})
        r = c.getresponse()
        assert r.status == 200
        cursor = None
        got = 0
        while got < 100:
            line = r.fp.readline().decode()
            if line.startswith("id:"):
                cursor = line[3:].strip()
            elif line.startswith("data:"):
                got += 1
        c.close()
        assert cursor and cursor.count(",") == 99, cursor[:200]
        cl.nodes[0].patch(wids[7], message="after")
        c = http.client.HTTPConnection(HOST, b, timeout=10)
        c.request("GET", path, headers={"Accept": "text/event-stream", "Last-Event-ID": cursor})
        r = c.getresponse()
        assert r.status == 200, (r.status, r.read()[:300], len(cursor))
        while True:
            line = r.fp.readline().decode()
            if line.startswith("data:"):
                m = json.loads(line[5:])
                break
        c.close()
        assert m["workflow_id"] == wids[7] and m["seq"] == 2 and m["message"] == "after", m


def test_delete_racing_patches_and_deletes_through_other_nodes(flowcast):
    """Each round: two DELETEs (through nodes 1 and 2) race PATCHes through
    node 3, then the id is re-created. Exactly one DELETE answers 204 (the
    other 404); no PATCH is acknowledged after the deletion's seq; a
    watcher on node 3 resuming across nodes sees each incarnation's
    acknowledged seqs in order, then its deletion, and never a seq of that
    epoch after it."""
    with Cluster(flowcast, n=3, proxy=False) as cl:
        a, b, c = cl.ports()
        wid = "dr-" + uuid.uuid4().hex[:6]
        for rnd in range(8):
            e = _create(cl.nodes[rnd % 3], wid)
            w = Watcher("ws", [c, a, b], {wid: e}, name="ws%d" % rnd)
            w.start()
            w.wait_seq({wid: (e, 1)}, timeout=20)

            def patches():
                acked = []
                for k in range(6):
                    st, _, body = _status(c, "PATCH", API + "/" + wid, {"message": "p%d" % k})
                    if st == 200:
                        acked.append(json.loads(body)["seq"])
                    else:
                        assert st == 404, (st, body)
                return acked
            res = parallel([lambda: _status(a, "DELETE", API + "/" + wid)[0],
                         lambda: _status(b, "DELETE", API + "/" + wid)[0], patches])
            assert sorted(res[:2]) == [204, 404], res[:2]
            acked = res[2]
            told = w.wait_told(wid, timeout=20)
            w.stop()
            assert told and told[0][0] == "deleted" and told[0][1] == e, told
            dseq = told[0][2]
            assert all(s < dseq for s in acked), (acked, dseq)
            assert dseq == 2 + len(acked), (acked, dseq)
            w.check_exact(wid, e, 1 + len(acked))


class StoppableProducer(threading.Thread):
    """PATCHes one workflow through one port until stop is set; acked as in
    cluster_helpers.Producer (seq -> message)."""

    def __init__(self, port, wid, text, stop):
        super().__init__(daemon=True, name="produce-" + wid)
        self.port, self.wid, self.text, self.stop = port, wid, text, stop
        self.acked = {wid: {}}
        self.failures = []

    def run(self):
        c = http.client.HTTPConnection(HOST, self.port, timeout=20)
        k = 0
        try:
            while not self.stop.is_set():
                msg = "%s-%d" % (self.text, k)
                c.request("PATCH", API + "/" + self.wid, body=json.dumps({"message": msg}),
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                body = r.read()
                if r.status != 200:
                    self.failures.append("%d %r" % (r.status, body[:200]))
                    return
                self.acked[self.wid][json.loads(body)["seq"]] = msg
                k += 1
        except (OSError, http.client.HTTPException) as e:
            self.failures.append(repr(e))
        finally:
            c.close()


def test_silent_partition_under_writes_never_hangs_the_node(flowcast):
    """Node 1's link to NATS stops moving bytes (cut(hold=True): a firewall
    that drops, not one that resets) while producers write 4 KB messages
    through it. Its publishes fill the socket's buffer; the node must keep
    answering (/healthz, PATCHes) and, healed, deliver every change to a
    watcher on node 2. A publish is written on the loop thread, and the
    socket was blocking: the loop sat in send() for good, holding nats.c's
    lock, so the pings that would give the link up never ran; the node
    answered nothing, not even SIGTERM. Then, with a write deadline, it
    still stalled at each of nats.c's reconnect attempts."""
    with Cluster(flowcast, n=2, proxy=False) as cl:
        a, b = cl.ports()
        wids = {}
        for i in range(6):
            wid = "sp%d-%s" % (i, uuid.uuid4().hex[:6])
            wids[wid] = _create(cl.nodes[0], wid)
        w = Watcher("multi", [b], dict(wids), name="multi-b")
        w.start()
        w.wait_seq({wid: (e, 1) for wid, e in wids.items()}, timeout=20)
        stop = threading.Event()
        producers = [StoppableProducer(a, wid, "z" * 4000, stop) for wid in wids]
        try:
            for p in producers:
                p.start()
            time.sleep(1)
            cl.cut(0, hold=True)
            took = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                t = time.monotonic()
                st, _, _ = _status(a, "GET", "/healthz", timeout=15)
                took.append(time.monotonic() - t)
                assert st == 200
                time.sleep(0.2)
            # Never a hang; and once nats.c has given the link up, no more
            # stalls: a publish then fails at once (the catch-up carries the
            # change) instead of waiting, on the loop, for the connection
            # lock nats.c's reconnect thread holds through each 2 s connect
            # attempt. What remains is the first publishes' write deadline
            # (1 s) before the link is given up. Before, /healthz stalled
            # about 2 s at every attempt (5 or more times in these 10 s).
            stalls = sorted(round(d, 2) for d in took if d > 0.5)
            assert max(took) < 8 and len(stalls) <= 2, stalls
            wait_for(lambda: cl.nodes[0].request("GET", "/readyz", timeout=15).status == 503,
                     15, what="the cut node unready")
        finally:
            stop.set()
        for p in producers:
            p.join(30)
            assert not p.is_alive() and not p.failures, (p.name, p.failures[:3])
            assert len(p.acked[p.wid]) > 20, len(p.acked[p.wid])
        cl.heal(0)
        cl.wait_ready(cl.nodes[0], timeout=30)
        finals = {wid: cl.nodes[1].get(wid)["seq"] for wid in wids}
        try:
            w.wait_seq({wid: (wids[wid], finals[wid]) for wid in wids}, timeout=45)
        finally:
            w.stop()
        for wid in wids:
            w.check_exact(wid, wids[wid], finals[wid], _acked(producers, wid))


def test_two_nodes_with_one_node_id_are_told(flowcast, pg, nats, tmp_path):
    """--node-id must be unique (docs/cluster.md): a node skips the bus
    messages that carry its own id as its own, so a second node started
    with the same id silently drops every change the first publishes and
    waits for its catch-up (--catchup-interval, 1 s by default; here 20 s),
    while both answer /readyz 200 (each one's probe answers the other's).
    Both must say so: /readyz 503 naming the conflict, and a log line."""
    dsn = pg.fresh_database("twin")
    f = ServerFactory(flowcast, str(tmp_path))
    try:
        nodes = [f("--nats", nats.url, "--node-id", "twin", "--catchup-interval", "20", db=dsn)
                 for _ in range(2)]
        for n in nodes:
            wait_for(lambda: "--node-id" in n.request("GET", "/readyz").body.decode(), 15,
                     what="readyz naming the shared --node-id: %r"
                     % n.request("GET", "/readyz").body)
            r = n.request("GET", "/readyz")
            assert r.status == 503 and r.json()["check"] == "bus", r
            assert "another node uses --node-id twin" in r.json()["reason"], r
        for n in nodes:
            with open(n.log_path, errors="replace") as fh:
                assert 1 <= sum("another node uses --node-id twin" in line for line in fh) <= 3, \
                    n.log_tail(20)
        # One of them goes: the other is ready again.
        nodes[1].stop()
        wait_for(lambda: nodes[0].request("GET", "/readyz").status == 200, 15,
                 what="the remaining node ready")
    finally:
        f.teardown()
