"""Hostile and unlucky TLS clients (issue 9 section 2): a ClientHello
dribbled a byte at a time, a huge one, renegotiation, odd record types,
storms of handshakes aborted anywhere while SIGHUP reloads the certificate
on two I/O threads, a subscriber that never reads when the server stops,
and token expiry (SSE, long-poll) over TLS. Every server
stops with exit 0 at teardown, so ASan's leak check covers each storm."""
import base64
import json
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import jwt
import pytest

from fc_helpers import HOST, SockReader

SECRET = "t" * 20 + "-hmac-secret-for-hostile-tls-01234"
STATIC = "static-operator-token-0123456789"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A self-signed P-256 certificate for 127.0.0.1 (its own CA)."""
    d = str(tmp_path_factory.mktemp("hcert"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "k.pem", "-out", "c.pem",
                    "-days", "2", "-subj", "/CN=hostile", "-addext",
                    "subjectAltName=IP:127.0.0.1"], cwd=d, check=True, capture_output=True,
                   timeout=60)
    return os.path.join(d, "c.pem"), os.path.join(d, "k.pem")


def start(factory, cert, *flags):
    key = os.path.join(os.path.dirname(cert[0]), "hmac.key")
    with open(key, "w") as f:
        f.write(SECRET + "\n")
    return factory("--tls-cert", cert[0], "--tls-key", cert[1], "--jwt-key", key,
                   "--api-token", STATIC, "--request-timeout", 2, *flags, tls_ca=cert[0])


@pytest.fixture(scope="module")
def srv(module_server_factory, cert):
    s = start(module_server_factory, cert, "--io-threads", 2)
    for wid in ("h-1", "h-2"):
        r = s.request("POST", "/api/workflows", {"id": wid, "name": wid, "total_steps": 10**9},
                      headers=bearer(STATIC))
        assert r.status == 201, r
    return s


def bearer(token):
    return {"Authorization": "Bearer " + token}


def mint(exp):
    return jwt.encode({"scope": "read", "exp": exp}, SECRET, algorithm="HS256")


def client_hello():
    """The bytes of a real ClientHello (python's ssl on memory BIOs)."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def tls_socket(srv):
    raw = socket.create_connection((HOST, srv.port), timeout=10)
    return srv.ssl_ctx.wrap_socket(raw, server_hostname=HOST)


def healthz_seconds(srv):
    t = time.monotonic()
    assert srv.request("GET", "/healthz").status == 200
    return time.monotonic() - t


def ws_upgrade(s, port, path, token=None):
    key = base64.b64encode(os.urandom(16)).decode()
    auth = "Authorization: Bearer %s\r\n" % token if token else ""
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
               % (path, HOST, port, key, auth)).encode())


# ---------------------------------------------------------------- handshakes

def test_dribbled_client_hello_is_cut_at_request_timeout(srv):
    """A byte every 100 ms is progress of a kind, but the handshake as a
    whole is bounded by --request-timeout (2 s), and others are served."""
    hello = client_hello()
    s = socket.create_connection((HOST, srv.port), timeout=10)
    t0 = time.monotonic()
    closed = None
    for b in hello:
        try:
            s.send(bytes([b]))
        except OSError:
            closed = time.monotonic() - t0
            break
        assert healthz_seconds(srv) < 2
        time.sleep(0.1)
        if time.monotonic() - t0 > 15:
            break
    if closed is None:
        s.settimeout(5)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        closed = time.monotonic() - t0
    assert 1.5 < closed < 8, closed
    s.close()


def test_huge_client_hello_is_refused_with_an_alert(srv):
    """A handshake message claiming 16 MiB, then records of it: an alert
    and a close, not a 16 MiB buffer."""
    s = socket.create_connection((HOST, srv.port), timeout=10)
    rec = lambda b: b"\x16\x03\x01" + struct.pack("!H", len(b)) + b  # noqa: E731
    try:
        s.sendall(rec(b"\x01\xff\xff\xff\x03\x03" + b"A" * 16378))
        for _ in range(64):
            s.sendall(rec(b"B" * 16384))
    except OSError:
        pass
    s.settimeout(5)
    got = b""
    try:
        got = s.recv(100)
    except ConnectionResetError:
        pass
    assert got == b"" or got[0] == 0x15, got  # an alert record, or closed
    s.close()
    assert srv.alive() and healthz_seconds(srv) < 2


def test_tls12_renegotiation_is_refused(srv):
    r = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (HOST, srv.port),
                        "-tls1_2"], input=b"R\n", capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert "RENEGOTIATING" in out, out[-2000:]
    assert "no renegotiation" in out, out[-2000:]
    assert healthz_seconds(srv) < 2


@pytest.mark.parametrize("rtype", [24, 20, 0xFF])
def test_odd_record_type_after_the_handshake_closes_only_that_connection(srv, rtype):
    """Heartbeat (24), a stray ChangeCipherSpec, an unknown type: the
    session fails with an alert, the server goes on."""
    s = tls_socket(srv)
    raw = socket.socket(fileno=os.dup(s.fileno()))
    raw.sendall(bytes([rtype, 3, 3, 0, 3]) + b"\x01\x00\x10")
    s.settimeout(5)
    try:  # ends within the timeout: EOF, the alert (unexpected message) or a reset after it
        while s.recv(100):
            pass
    except (ssl.SSLError, ConnectionResetError):
        pass
    raw.close()
    s.close()
    assert healthz_seconds(srv) < 2


def test_aborted_handshakes_under_sighup_storms_leave_nothing_behind(server_factory, cert):
    """Handshakes cut at every stage (mid-ClientHello, after it, mid
    Finished, after a request, FIN or RST) while SIGHUP reloads the
    certificate every 10 ms on two I/O threads: the server keeps serving,
    counts them, and stops cleanly (ASan's leak check at exit)."""
    srv = start(server_factory, cert, "--io-threads", 2)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    rng = random.Random(9)
    stop = threading.Event()

    def hupper():
        while not stop.is_set():
            srv.proc.send_signal(signal.SIGHUP)
            time.sleep(0.01)

    th = threading.Thread(target=hupper)
    th.start()
    try:
        for i in range(400):
            raw = socket.create_connection((HOST, srv.port), timeout=10)
            try:
                mode = i % 4
                if mode == 3:
                    s = ctx.wrap_socket(raw)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: %s:%d\r\n\r\n"
                              % (HOST.encode(), srv.port))
                    s.recv(100)
                else:
                    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
                    obj = ctx.wrap_bio(inc, out)
                    with pytest.raises(ssl.SSLWantReadError):
                        obj.do_handshake()
                    hello = out.read()
                    if mode == 0:
                        raw.sendall(hello[:rng.randrange(1, len(hello))])
                    else:
                        raw.sendall(hello)
                        if mode == 2:
                            inc.write(raw.recv(65536))
                            try:
                                obj.do_handshake()
                            except ssl.SSLError:
                                pass
                            fin = out.read()
                            raw.sendall(fin[:rng.randrange(1, len(fin) + 1)])
                if rng.random() < 0.5:
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            raw.close()
    finally:
        stop.set()
        th.join(10)
    assert healthz_seconds(srv) < 2
    m = srv.request("GET", "/metrics", headers=bearer(STATIC)).body.decode()
    assert "flowcast_tls_handshake_errors_total{reason=\"closed\"}" in m
    assert srv.stop() == 0, srv.log_tail()


# ---------------------------------------------------------------- shutdown

def test_sigterm_delivers_queued_output_and_1001_to_a_stalled_tls_subscriber(server_factory,
                                                                            cert):
    srv = start(server_factory, cert)
    r = srv.request("POST", "/api/workflows", {"id": "st-1", "name": "x", "total_steps": 10**9},
                    headers=bearer(STATIC))
    assert r.status == 201, r
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect((HOST, srv.port))
    s = srv.ssl_ctx.wrap_socket(raw, server_hostname=HOST)
    ws_upgrade(s, srv.port, "/api/workflows/st-1/updates", STATIC)
    c = srv.http_connection()
    for i in range(300):
        c.request("PATCH", "/api/workflows/st-1", body=json.dumps({"message": "y" * 3000}),
                  headers={"Content-Type": "application/json", **bearer(STATIC)})
        assert c.getresponse().read()
    c.close()
    srv.expect_exit = True
    srv.proc.send_signal(signal.SIGTERM)  # and only then does the subscriber read
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (ssl.SSLError, OSError):
        pass
    assert data.endswith(b"\x88\x16\x03\xe9server shutting down"), data[-80:]
    assert srv.proc.wait(10) == 0, srv.log_tail()


# ---------------------------------------------------------------- expiry over TLS

def test_sse_and_longpoll_end_at_exp_over_tls(srv):
    exp = int(time.time()) + 2
    token = mint(exp)
    stop = threading.Event()

    def writer():
        c = srv.http_connection()
        while not stop.is_set():
            c.request("PATCH", "/api/workflows/h-1", body='{"message":"m"}',
                      headers={"Content-Type": "application/json", **bearer(STATIC)})
            c.getresponse().read()
        c.close()

    sse = tls_socket(srv)
    sse.sendall(("GET /api/events?workflow_ids=h-1 HTTP/1.1\r\nHost: %s:%d\r\n"
                 "Authorization: Bearer %s\r\n\r\n" % (HOST, srv.port, token)).encode())
    seq = srv.request("GET", "/api/workflows/h-2", headers=bearer(STATIC)).json()["seq"]
    lp = tls_socket(srv)
    lp.sendall(("GET /api/workflows/h-2?wait_since=%d&timeout=30 HTTP/1.1\r\nHost: %s:%d\r\n"
                "Authorization: Bearer %s\r\n\r\n" % (seq, HOST, srv.port, token)).encode())
    th = threading.Thread(target=writer)
    th.start()
    try:
        rd = SockReader(sse)
        final = b'event: error\ndata: {"code":"token_expired"}\n\n'
        got = rd.read_until(final, timeout=8)
        t_end = time.time()
        assert exp - 0.5 <= t_end <= exp + 1.5, t_end - exp
        assert got.count(b"token_expired") == 1
        assert rd.read_to_eof(3) == b""  # nothing after the final event
        r = SockReader(lp).read_response(timeout=5)
        assert r.status == 401 and b"token_expired" in r.body, r
    finally:
        stop.set()
        th.join(10)
    sse.close()
    lp.close()
