"""Helpers for the hostile-client tests: server memory (VmRSS), a second
client's /healthz latency, raw floods that never read, and bulk creation of
workflows over one pipelined connection. Every loop is bounded in count and
time; all traffic goes to 127.0.0.1."""

import json
import os
import select
import socket
import threading
import time

from fc_helpers import SockReader, connect

# ASan keeps freed memory in a quarantine (256 MB by default), which would
# read as growth; a small one keeps RSS meaningful. Ignored by other builds.
ASAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16"}


def rss_mb(server):
    """The server's resident set size in MB, from /proc/PID/status."""
    with open("/proc/%d/status" % server.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for pid %d" % server.proc.pid)


def cpu_seconds(server):
    """The CPU time (user + system, all threads) the server has used, from
    /proc/PID/stat: work done, whatever else the machine is running."""
    with open("/proc/%d/stat" % server.proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def healthz_seconds(server, timeout=30.0):
    """Time a new connection takes to get /healthz answered."""
    t0 = time.monotonic()
    r = server.request("GET", "/healthz", timeout=timeout)
    assert r.status == 200, r
    return time.monotonic() - t0


class Watch:
    """Samples the server's RSS (every 50 ms) and a second client's /healthz
    latency (every 250 ms) in a thread until stopped: peak RSS growth over
    the baseline and the slowest /healthz."""

    def __init__(self, server):
        self.server = server
        self.base = rss_mb(server)
        self.peak = self.base
        self.slowest = 0.0
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._rss, daemon=True)
        self.h = threading.Thread(target=self._healthz, daemon=True)
        self.t.start()
        self.h.start()

    def _rss(self):
        while not self.stop_ev.is_set() and self.server.alive():
            self.peak = max(self.peak, rss_mb(self.server))
            time.sleep(0.05)

    def _healthz(self):
        while not self.stop_ev.is_set():
            try:
                self.slowest = max(self.slowest, healthz_seconds(self.server))
            except OSError:
                self.slowest = float("inf")
            time.sleep(0.25)

    def stop(self):
        self.stop_ev.set()
        self.t.join(10)
        self.h.join(40)
        return self.peak - self.base, self.slowest


def flood(sock, chunk, seconds):
    """Writes chunk over and over for `seconds` without ever reading; returns
    the bytes the kernel took. A server that stops reading makes this stall,
    which is the point."""
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    view = memoryview(chunk)
    off = 0
    while time.monotonic() < deadline:
        try:
            n = sock.send(view[off:])
        except BlockingIOError:
            select.select([], [sock], [], 0.05)
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += n
        off = (off + n) % len(chunk)
    sock.setblocking(True)
    return sent


def small_rcvbuf_socket(port):
    """A client socket with a tiny receive buffer (it is never read)."""
    return connect(port, rcvbuf=4096)


def bulk_create(server, ids, message="", batch=200, timeout=60.0):
    """Creates workflows with the given ids over one pipelined connection."""
    s = connect(server.port, timeout=timeout)
    rd = SockReader(s)
    try:
        for i in range(0, len(ids), batch):
            out = []
            for wid in ids[i:i + batch]:
                body = json.dumps({"id": wid, "name": "n", "total_steps": 1000000,
                                   "message": message}).encode()
                out.append(b"POST /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                           % (len(body), body))
            s.sendall(b"".join(out))
            for _ in out:
                r = rd.read_response(timeout)
                assert r.status == 201, r
    finally:
        s.close()


def drain_responses(sock, n, timeout=60.0):
    """Reads n HTTP responses from sock; returns their status codes."""
    rd = SockReader(sock)
    return [rd.read_response(timeout).status for _ in range(n)]


def read_until_eof(sock, per_read, pause, limit_s):
    """Reads per_read bytes every pause seconds until EOF (True) or limit_s
    (False): a client that reads, but slower than it asks."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if not sock.recv(per_read):
                return True
        except socket.timeout:
            pass
        except OSError:  # reset by the server, or closed by the test
            return True
        time.sleep(pause)
    return False
