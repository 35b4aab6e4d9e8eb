"""An interim NATS starter with the contract's API (svc_nats, owned by the
bus helper, replaces this file when it lands): NatsServer has .url, .port,
.stop(), .start() (same port); a context manager that cleans up on exit."""

import os
import shutil
import socket
import subprocess
import tempfile
import time

HOST = "127.0.0.1"
PGBIN = "/usr/lib/postgresql/15/bin"


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class NatsServer:
    def __init__(self):
        self.port = _free_port()
        self.proc = None
        self._dir = None

    @property
    def url(self):
        return "nats://%s:%d" % (HOST, self.port)

    def __enter__(self):
        self._dir = tempfile.mkdtemp(prefix="fc-nats-")
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def start(self):
        log = open(os.path.join(self._dir, "nats.log"), "ab")
        self.proc = subprocess.Popen(["nats-server", "-a", HOST, "-p", str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("nats-server did not listen on %d" % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
