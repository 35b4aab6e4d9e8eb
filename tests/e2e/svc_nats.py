"""A nats-server for the cluster tests: NatsServer() runs nats-server (Debian: /usr/sbin)
on a free loopback port in a temporary folder; .url is nats://127.0.0.1:PORT;
.stop() and .start() stop it and start it again on the same port (a broker
restart); it is killed on exit (context manager, or close()), even when a
test fails. The binary is installed by scripts/setup: a missing one fails."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from fc_helpers import free_port

NATS_BIN = os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsServer:
    def __init__(self, port=None):
        if not os.access(NATS_BIN, os.X_OK):
            raise RuntimeError("%s is missing: run scripts/setup" % NATS_BIN)
        self.port = port or free_port()
        self.url = "nats://127.0.0.1:%d" % self.port
        self.dir = tempfile.mkdtemp(prefix="fc-nats-")
        self.proc = None
        self._log = None
        self.start()

    def start(self, timeout=10.0):
        """Starts the server (again) on its port and waits until it accepts."""
        if self.proc and self.proc.poll() is None:
            return
        self._log = open(os.path.join(self.dir, "nats.log"), "ab")
        self.proc = subprocess.Popen(
            [NATS_BIN, "-a", "127.0.0.1", "-p", str(self.port)],
            cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nats-server exited: %s" % self.log())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.settimeout(2)
                    if s.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start on %d: %s" % (self.port, self.log()))

    def stop(self):
        """Stops the server (SIGKILL: a broker that vanishes, not one saying goodbye)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None

    def log(self):
        try:
            with open(os.path.join(self.dir, "nats.log"), "rb") as f:
                return f.read().decode(errors="replace")[-2000:]
        except OSError:
            return ""

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
