"""Hostile clients that ask for output and never read it (issue 8, item 2):
every connection's unsent output is bounded in bytes (--max-output), whatever
produced it, and a connection that stays over it past --slow-timeout is
closed. Each test asserts bounded server RSS and a prompt /healthz for a
second client meanwhile. Without the limit the server grew by hundreds of MB
within the few seconds each attack lasts here."""

import json
import threading
import time

import pytest

from fc_helpers import OP_CLOSE, OP_PING, RawWS, SockReader, build_frame, connect, wait_for
from hostile_helpers import (ASAN_ENV, Watch, bulk_create, flood, read_until_eof,
                             small_rcvbuf_socket)

ATTACK_S = 3.0
MAX_GROWTH_MB = 100  # the unbounded server grew by 500+ MB in ATTACK_S
MAX_HEALTHZ_S = 2.0


def _attack(server, sock, chunk):
    w = Watch(server)
    sent = flood(sock, chunk, ATTACK_S)
    growth, slowest = w.stop()
    print("growth %.0f MB, slowest /healthz %.3f s, %d bytes sent" % (growth, slowest, sent))
    return growth, slowest, sent


def test_pipelined_static_file_never_read(server_factory):
    """GET /flowcast.js (29 bytes in, 25 KB out) pipelined, never read."""
    s = server_factory(env=ASAN_ENV)
    sock = small_rcvbuf_socket(s.port)
    growth, slowest, sent = _attack(s, sock, b"GET /flowcast.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 200)
    assert growth < MAX_GROWTH_MB, "server grew by %.0f MB (client sent %d bytes)" % (growth, sent)
    assert slowest < MAX_HEALTHZ_S, slowest
    m = s.metrics()
    assert m["flowcast_output_limit_reached_total"] >= 1
    assert m["flowcast_output_bytes_max"] < 16 * 1024 * 1024
    sock.close()


def test_pipelined_large_lists_never_read(server_factory):
    """GET /api/workflows?limit=1000 pipelined, never read."""
    s = server_factory(env=ASAN_ENV)
    bulk_create(s, ["w%04d" % i for i in range(300)])
    sock = small_rcvbuf_socket(s.port)
    req = b"GET /api/workflows?limit=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    growth, slowest, sent = _attack(s, sock, req * 100)
    assert growth < MAX_GROWTH_MB, "server grew by %.0f MB (client sent %d bytes)" % (growth, sent)
    assert slowest < MAX_HEALTHZ_S, slowest
    assert s.metrics()["flowcast_output_limit_reached_total"] >= 1
    sock.close()


@pytest.mark.parametrize("payload", [125, 0])
def test_ping_flood_never_read(server_factory, payload):
    """Pings whose pongs are never read: 125-byte ones, and empty ones (a
    2-byte pong costs the server far more than 2 bytes: the limit counts
    what each queued message costs)."""
    s = server_factory(env=ASAN_ENV)
    ws = RawWS.open(s, "/api/updates", rcvbuf=4096)
    ping = build_frame(OP_PING, b"p" * payload)
    growth, slowest, sent = _attack(s, ws.sock, ping * (50000 // len(ping)))
    assert growth < MAX_GROWTH_MB, "server grew by %.0f MB (client sent %d bytes)" % (growth, sent)
    assert slowest < MAX_HEALTHZ_S, slowest
    if payload:  # (empty pongs may all fit in the kernel's 4 MB send buffer)
        assert s.metrics()["flowcast_output_limit_reached_total"] >= 1
    ws.close()


def test_subscribe_repeating_one_id(server_factory):
    """One 40 KB subscribe naming the same workflow 10,000 times queues its
    state once, not 10,000 times."""
    s = server_factory(env=ASAN_ENV)
    s.create(id="w", message="m" * 4000)
    ws = RawWS.open(s, "/api/updates", rcvbuf=4096)
    msg = json.dumps({"op": "subscribe", "workflow_ids": ["w"] * 10000})
    assert len(msg) > 40000
    w = Watch(s)
    for _ in range(5):
        ws.send_text(msg)
    time.sleep(1.0)
    growth, slowest = w.stop()
    print("growth %.0f MB, slowest /healthz %.3f s" % (growth, slowest))
    assert growth < 50, "server grew by %.0f MB" % growth
    assert slowest < MAX_HEALTHZ_S, slowest
    states = 0
    for _ in range(5):
        reply = ws.recv_json(10)
        assert reply == {"op": "subscribed", "workflow_ids": ["w"]}, reply
        m = ws.recv_json(10)
        assert m["workflow_id"] == "w" and m["seq"] == 1, m
        states += 1
    assert states == 5
    # nothing else is queued: the next message is the next change
    p = s.patch("w", message="after")
    m = ws.recv_json(10)
    assert m["seq"] == p["seq"] and m["message"] == "after", m
    ws.close()


def test_trickle_reader_of_large_answers_is_closed(server_factory):
    """A client that reads 4 KB every 0.5 s while asking for far more: memory
    stays bounded and the connection is closed after --slow-timeout (the
    kernel buffers it cannot empty mean no write ever completes)."""
    s = server_factory("--slow-timeout", "1", env=ASAN_ENV)
    sock = small_rcvbuf_socket(s.port)
    sock.sendall(b"GET /flowcast.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 1000)
    w = Watch(s)
    reader = threading.Thread(target=read_until_eof, args=(sock, 4096, 0.5, 8), daemon=True)
    reader.start()

    def closed():
        m = s.metrics()
        return m["flowcast_output_limit_closed_total"] + m["flowcast_slow_consumers_closed_total"]

    wait_for(closed, timeout=10, what="the trickling reader closed")
    growth, slowest = w.stop()
    assert growth < MAX_GROWTH_MB, growth
    assert slowest < MAX_HEALTHZ_S, slowest
    sock.close()
    reader.join(15)


def _patch_round_robin(server, ids, stop, message):
    """Pipelined PATCHes over ids, 100 per batch, until stop is set (at most 20 s)."""
    sock = connect(server.port)
    rd = SockReader(sock)
    deadline = time.monotonic() + 20
    i = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            out = []
            for _ in range(100):
                body = json.dumps({"message": "%d %s" % (i, message)}).encode()
                out.append(b"PATCH /api/workflows/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                           % (ids[i % len(ids)].encode(), len(body), body))
                i += 1
            sock.sendall(b"".join(out))
            for _ in out:
                assert rd.read_response(10).status == 200
    finally:
        sock.close()


def test_subscriber_that_never_drains_is_closed(server_factory):
    """A subscribe_all client that reads steadily (its writes complete: that
    is progress) but never catches up with the changes: its unsent output
    never drains back under the limit, which is not progress. Closed after
    --slow-timeout over --max-output with 1008, a log line and a metric."""
    s = server_factory("--max-output", "256K", "--slow-timeout", "1", env=ASAN_ENV)
    ids = ["w%03d" % i for i in range(400)]
    bulk_create(s, ids)
    # A modest receive buffer keeps the kernel's buffers small, so that the
    # server sees each write complete as the client reads.
    ws = RawWS.open(s, "/api/updates", rcvbuf=65536)
    ws.send_json({"op": "subscribe_all"})
    assert ws.recv_json()["op"] == "subscribed"
    stop = threading.Event()
    producer = threading.Thread(target=_patch_round_robin, args=(s, ids, stop, "m" * 4000),
                                daemon=True)
    w = Watch(s)
    producer.start()
    code = None
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:  # about 1 MB/s
            f = ws.recv_frame(5)
            if f.opcode == OP_CLOSE:
                code = f.close_code
                break
            time.sleep(0.004)
    finally:
        stop.set()
        producer.join(30)
    growth, slowest = w.stop()
    assert code == 1008, code
    assert s.metrics()["flowcast_output_limit_closed_total"] >= 1
    assert "over its output limit" in s.log_tail()
    assert slowest < MAX_HEALTHZ_S, slowest
    # Most of this is the store's page cache and memory map filling with the
    # 4 KB changes, not the subscriber's queue (400 states at most).
    assert growth < 250, growth
    ws.close()


def test_reader_that_drains_gets_every_answer(server_factory):
    """The limit pauses input, it does not lose answers: a client that
    pipelines 300 requests and reads them late gets all 300, in order."""
    s = server_factory("--max-output", "64K", env=ASAN_ENV)
    sock = connect(s.port)
    reqs = b"".join(b"GET /api/workflows/none%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % i
                    for i in range(300))
    sock.sendall(reqs + b"GET /flowcast.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 20)
    time.sleep(0.5)
    rd = SockReader(sock)
    for i in range(300):
        r = rd.read_response(10)
        assert r.status == 404 and b"none%d" % i in r.body, (i, r)
    for _ in range(20):
        assert rd.read_response(10).status == 200
    sock.close()
