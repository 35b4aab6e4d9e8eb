"""The C client over TLS (issue 9 section 2): libflowcast (through
tests/client/fcc_probe.c) and the CLI against the real server with
--tls-cert/--tls-key, trusting a test CA made here with the openssl CLI
(--ca-file / FLOWCAST_CA_FILE). The server's certificate and host name are
verified: a wrong CA, the system store, a certificate for another name, a
plain-HTTP server behind an https:// URL and an unusable CA file each give
one clear error; a silent server times the handshake out; a watch over TLS
resumes across a restart and survives token expiry with nothing lost."""
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from fcc_helpers import LineProc, probe_bin, restart_same_port, updates

STATIC = "static-operator-token-0123456789"
SECRET = "t" * 20 + "-hmac-secret-for-client-tls-01234"


def openssl(*args):
    subprocess.run(["openssl"] + [str(a) for a in args], check=True, capture_output=True)


def make_ca(d, name):
    key, pem = d / (name + ".key"), d / (name + ".pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", pem, "-days", "2", "-subj", "/CN=flowcast test " + name)
    return key, pem


def make_leaf(d, name, ca, sans):
    """A server certificate for sans (e.g. "DNS:localhost,IP:127.0.0.1") signed by ca."""
    key, csr, pem, ext = (d / (name + s) for s in (".key", ".csr", ".pem", ".ext"))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    ext.write_text("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                   % sans)
    openssl("x509", "-req", "-in", csr, "-CA", ca[1], "-CAkey", ca[0], "-CAcreateserial",
            "-out", pem, "-days", "1", "-extfile", ext)
    return str(pem), str(key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other-ca")
    return {
        "ca": str(ca[1]),
        "other_ca": str(other_ca[1]),
        "server": make_leaf(d, "server", ca, "DNS:localhost,IP:127.0.0.1"),
        "elsewhere": make_leaf(d, "elsewhere", ca, "DNS:other.example"),
        "not_pem": str(ca[0].with_suffix(".txt")),
        "dir": d,
    }


def tls_server(factory, pki, *extra, cert="server"):
    """The real server with --tls-cert/--tls-key and an --api-token for the
    test's own writes; the fixtures' requests trust the test CA."""
    pem, key = pki[cert]
    return factory("--tls-cert", pem, "--tls-key", key, "--api-token", STATIC, *extra,
                   tls_ca=pki["ca"])


def https_url(srv, host="localhost"):
    return "https://%s:%d" % (host, srv.port)


@pytest.fixture
def tls(server_factory, pki):
    return tls_server(server_factory, pki)


def run_cli(flowcast, url, *args, env=None, timeout=30):
    e = dict(os.environ)
    e.pop("FLOWCAST_API_TOKEN", None)
    e.pop("FLOWCAST_CA_FILE", None)
    e["FLOWCAST_URL"] = url
    e.update(env or {})
    return subprocess.run([flowcast] + [str(a) for a in args], capture_output=True, text=True,
                          env=e, timeout=timeout, stdin=subprocess.DEVNULL)


def ok_json(r):
    assert r.returncode == 0 and r.stderr == "", r
    return [json.loads(x) for x in r.stdout.splitlines()]


def test_cli_rest_commands_over_https(flowcast, tls, pki):
    env = {"FLOWCAST_API_TOKEN": STATIC}
    ca = ["--ca-file", pki["ca"]]
    w = ok_json(run_cli(flowcast, https_url(tls), "create", "deploy", "--steps", 3, "--id", "d1",
                        *ca, env=env))[0]
    assert w["id"] == "d1" and w["seq"] == 1
    # FLOWCAST_CA_FILE works as well as --ca-file; IP literals are verified too.
    env_ca = dict(env, FLOWCAST_CA_FILE=pki["ca"])
    for host in ("localhost", "127.0.0.1"):
        w = ok_json(run_cli(flowcast, https_url(tls, host), "step", "d1", "--message", host, env=env_ca))[0]
        assert w["message"] == host
    w = ok_json(run_cli(flowcast, https_url(tls), "update", "d1", "--status", "paused", *ca, env=env))[0]
    assert w["status"] == "paused" and w["current_step"] == 2
    assert ok_json(run_cli(flowcast, https_url(tls), "get", "d1", *ca, env=env))[0]["seq"] == 4
    assert [x["id"] for x in ok_json(run_cli(flowcast, https_url(tls), "list", *ca, env=env))] == ["d1"]
    assert tls.get("d1")["seq"] == 4


def producer(tls, ids, n, every=0.02):
    acked = {wid: [] for wid in ids}

    def run():
        for i in range(n):
            for wid in ids:
                acked[wid].append(tls.patch(wid, current_step=i + 1)["seq"])
            time.sleep(every)

    t = threading.Thread(target=run)
    t.start()
    return t, acked


def _first_change_seen(p, srv, wid):
    """Changes wid until the watch (of all, which prints changes only)
    shows one; returns its seq. A fixed wait stood in for this: under load
    the watch subscribed after the first change and missed it."""
    for _ in range(60):
        srv.patch(wid, message="anyone there?")
        try:
            return p.wait_for(lambda o: o.get("workflow_id") == wid, timeout=0.5,
                              what="a change of " + wid)["seq"]
        except AssertionError:
            assert p.proc.poll() is None, p.lines[-5:]
    raise AssertionError("the watch of all showed no change of %s in 30 s" % wid)


@pytest.mark.parametrize("args", [["w1"], ["w1", "w2"], ["--all"]], ids=["single", "multi", "all"])
def test_cli_watch_over_https(flowcast, tls, pki, args):
    ids = ["w1", "w2"] if len(args) != 1 else ["w1"]
    for wid in ids:
        tls.create(id=wid, name=wid, total_steps=1000)
    env = dict(os.environ, FLOWCAST_URL=https_url(tls), FLOWCAST_CA_FILE=pki["ca"],
               FLOWCAST_API_TOKEN=STATIC)
    p = LineProc([flowcast, "watch", "--json"] + args, env=env)
    try:
        first = {wid: 1 for wid in ids}
        if args != ["--all"]:
            for wid in ids:
                p.wait_for(lambda o, w=wid: o.get("workflow_id") == w, what="state of " + wid)
        else:  # --all delivers changes only: from the first one it shows, every one
            first["w1"] = _first_change_seen(p, tls, "w1")
        t, acked = producer(tls, ids, 30)
        t.join(60)
        for wid in ids:
            p.wait_for(lambda o, w=wid: o.get("workflow_id") == w and o["seq"] == acked[w][-1],
                       timeout=20, what="last of " + wid)
        p.proc.send_signal(signal.SIGINT)
        assert p.finish() == 130
        for wid in ids:
            seqs = [json.loads(x)["seq"] for x in p.lines if json.loads(x)["workflow_id"] == wid]
            assert seqs == list(range(first[wid], acked[wid][-1] + 1)), (wid, seqs)
    finally:
        p.kill()


@pytest.mark.parametrize("ids", [["a"], ["a", "b"]], ids=["single", "multi"])
def test_probe_over_https_resumes_across_a_restart(flowcast, server_factory, pki, ids):
    srv = tls_server(server_factory, pki)
    for wid in ids:
        srv.create(id=wid, name=wid, total_steps=1000)
    # --api-token guards reads too: the probe's watch carries it
    p = LineProc([probe_bin(flowcast), https_url(srv), "--ca-file", pki["ca"], "--backoff-max", "300",
                  "--token", STATIC] + ids)
    try:
        for wid in ids:
            p.wait_for(lambda o, w=wid: o.get("event") == "update" and o["workflow_id"] == w,
                       what="state of " + wid)
        last = {}
        for i in range(5):
            for wid in ids:
                last[wid] = srv.patch(wid, current_step=i + 1)["seq"]
        assert srv.stop() == 0
        p.wait_for(lambda o: o.get("state") == "reconnecting", what="reconnecting")
        srv = restart_same_port(server_factory, srv)
        for i in range(5, 10):
            for wid in ids:
                last[wid] = srv.patch(wid, current_step=i + 1)["seq"]
        for wid in ids:
            p.wait_for(lambda o, w=wid: o.get("event") == "update" and o["workflow_id"] == w
                       and o["seq"] == last[w], timeout=15, what="last of " + wid)
            got = [u["seq"] for u in updates(p.lines, wid)]
            assert got == list(range(1, last[wid] + 1)), (wid, got)
        opens = [x for x in p.lines if '"state":"open"' in x]
        assert len(opens) == 2, p.lines  # one reconnect, verified like the first
    finally:
        p.kill()


def test_untrusted_certificate_is_a_clear_error(flowcast, tls, pki):
    tls.create(id="w1", name="w1")
    env = {"FLOWCAST_API_TOKEN": STATIC}
    for extra, why in ((["--ca-file", pki["other_ca"]], "unable to get local issuer certificate"),
                       ([], "unable to get local issuer certificate")):  # the system store
        for argv in (["get", "w1"], ["watch", "--json", "w1"]):
            r = run_cli(flowcast, https_url(tls), *argv, *extra, env=env)
            assert r.returncode == 1, r
            assert r.stderr == "flowcast: TLS: certificate of %s not trusted: %s\n" % (
                https_url(tls), why), r.stderr
            assert r.stdout == ""
    p = LineProc([probe_bin(flowcast), https_url(tls), "--ca-file", pki["other_ca"], "w1"])
    closed = p.wait_for(lambda o: o.get("state") == "closed", what="closed")
    assert closed["error"] == -9, closed  # FCC_ETLS, at once: no retry can fix it
    assert closed["reason"] == "TLS: certificate of %s not trusted: %s" % (
        https_url(tls), "unable to get local issuer certificate")
    assert p.finish() == 1
    assert not [x for x in p.lines if '"reconnecting"' in x]


def test_certificate_for_another_name_is_refused(flowcast, server_factory, pki):
    pem, key = pki["elsewhere"]
    srv = server_factory("--tls-cert", pem, "--tls-key", key, ready=False)
    time.sleep(0.5)
    for host, why in (("localhost", "hostname mismatch"), ("127.0.0.1", "IP address mismatch")):
        url = "https://%s:%d" % (host, srv.port)
        deadline = time.monotonic() + 10
        while True:  # until the server listens
            r = run_cli(flowcast, url, "get", "x", "--ca-file", pki["ca"])
            if "cannot connect" not in r.stderr or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.returncode == 1, r
        assert r.stderr == ("flowcast: TLS: certificate of %s not trusted: %s (it names another "
                            "server)\n" % (url, why)), r.stderr
        p = LineProc([probe_bin(flowcast), url, "--ca-file", pki["ca"], "x"])
        closed = p.wait_for(lambda o: o.get("state") == "closed", what="closed")
        assert closed["error"] == -9 and why in closed["reason"], closed
        assert p.finish() == 1


def test_tls_and_plain_mixed_up_give_clear_errors(flowcast, tls, server_factory, pki, tmp_path):
    # https:// to a plain-HTTP server: the client names the likely cause.
    plain = server_factory(db=str(tmp_path / "plain.db"))
    url = "https://127.0.0.1:%d" % plain.port
    r = run_cli(flowcast, url, "get", "x", "--ca-file", pki["ca"])
    assert r.returncode == 1, r
    assert r.stderr.startswith("flowcast: TLS handshake with %s failed: " % url), r.stderr
    assert "(is the server serving TLS on that port?)" in r.stderr, r.stderr
    # http:// to the TLS port: the server's answer says TLS is required.
    r = run_cli(flowcast, "http://127.0.0.1:%d" % tls.port, "get", "x")
    assert r.returncode == 1, r
    assert "TLS" in r.stderr or "tls" in r.stderr, r.stderr


def test_unusable_ca_file_is_named(flowcast, tls, pki, tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")
    missing = tmp_path / "missing.pem"
    for path, msg in ((missing, "cannot read CA file %s: No such file or directory" % missing),
                      (empty, "CA file %s holds no PEM certificate" % empty)):
        for argv in (["get", "x"], ["watch", "x"]):
            r = run_cli(flowcast, https_url(tls), *argv, env={"FLOWCAST_CA_FILE": str(path)})
            assert r.returncode == 1 and r.stderr == "flowcast: %s\n" % msg, r
    # A CA file is about https only: http:// ignores it.
    plain = run_cli(flowcast, "http://127.0.0.1:1", "get", "x",
                    env={"FLOWCAST_CA_FILE": str(missing)})
    assert "CA file" not in plain.stderr, plain


def test_handshake_that_never_completes_times_out(flowcast, pki):
    """A server that accepts TCP and never answers the ClientHello: the
    watch's connect timeout covers the handshake."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        ls.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(ls.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    url = "https://127.0.0.1:%d" % ls.getsockname()[1]
    p = LineProc([probe_bin(flowcast), url, "--ca-file", pki["ca"], "--connect-timeout", "500",
                  "--backoff-max", "100", "--max-retries", "1", "x"])
    try:
        rec = p.wait_for(lambda o: o.get("state") == "reconnecting", timeout=10, what="timeout")
        assert rec["error"] == -4 and "no answer within 500 ms" in rec["reason"], rec
        closed = p.wait_for(lambda o: o.get("state") == "closed", timeout=10, what="closed")
        assert closed["error"] == -8, closed
        assert p.finish() == 1
    finally:
        p.kill()
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        ls.close()


def test_watch_over_https_survives_token_expiry(flowcast, server_factory, pki, tmp_path):
    key = tmp_path / "hmac.key"
    key.write_text(SECRET + "\n")
    srv = tls_server(server_factory, pki, "--jwt-key", str(key))
    srv.create(id="job", name="job", total_steps=1000)
    mint = tmp_path / "mint.py"
    mint.write_text("import time, jwt\nnow = int(time.time())\n"
                    "print(jwt.encode({'scope': 'read', 'exp': now + 3}, %r, algorithm='HS256'))\n"
                    % SECRET)
    env = dict(os.environ, FLOWCAST_URL=https_url(srv), FLOWCAST_CA_FILE=pki["ca"],
               FLOWCAST_TOKEN_COMMAND="%s %s" % (sys.executable, mint))
    env.pop("FLOWCAST_API_TOKEN", None)
    p = LineProc([flowcast, "watch", "--json", "job"], env=env)
    try:
        p.wait_for(lambda o: o.get("workflow_id") == "job", what="state")
        t, acked = producer(srv, ["job"], 70, every=0.1)
        t.join(60)
        p.wait_for(lambda o: o.get("seq") == acked["job"][-1], timeout=20, what="last")
        p.proc.send_signal(signal.SIGINT)
        assert p.finish() == 130
        seqs = [json.loads(x)["seq"] for x in p.lines]
        assert seqs == list(range(1, acked["job"][-1] + 1)), seqs
        assert "token expired; reconnecting with a fresh token" in p.stderr, p.stderr
    finally:
        p.kill()


def test_rest_calls_resume_the_tls_session(flowcast, pki):
    """`step` makes two requests (GET, then PATCH), one connection each: the
    second resumes the first's TLS session (a ticket, no full handshake).
    A stand-in server reports what its TLS stack saw."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki["server"])
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    wf = json.dumps({"id": "x", "name": "x", "status": "running", "current_step": 1,
                     "total_steps": 5, "message": "", "seq": 3, "epoch": 1,
                     "created_at": "", "updated_at": ""}).encode()
    seen = []

    def serve():
        for _ in range(2):
            c, _ = ls.accept()
            c.settimeout(10)
            s = ctx.wrap_socket(c, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            n = [int(x.split(b":")[1]) for x in head.split(b"\r\n")
                 if x.lower().startswith(b"content-length:")]
            while n and len(body) < n[0]:
                body += s.recv(4096)
            seen.append((head.split(b" ")[0].decode(), s.session_reused))
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      b"%d\r\nConnection: close\r\n\r\n%s" % (len(wf), wf))
            s.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = run_cli(flowcast, "https://localhost:%d" % ls.getsockname()[1], "step", "x",
                    "--ca-file", pki["ca"])
        assert r.returncode == 0, r
        t.join(10)
        assert seen == [("GET", False), ("PATCH", True)], seen
    finally:
        ls.close()
