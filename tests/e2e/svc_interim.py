"""Interim PostgreSQL and NATS starters with the contract's API (svc_postgres
and svc_nats, owned by other helpers, replace this file when they land).

PostgresServer: .dsn (postgres://flowcast@127.0.0.1:PORT/flowcast), .port,
.stop(), .start() (same port and data); NatsServer: .url, .port, .stop(),
.start() (same port). Both are context managers that clean up on exit."""

import atexit
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


def _as_postgres(*cmd, check=True):
    full = list(cmd)
    if os.geteuid() == 0:
        full = ["runuser", "-u", "postgres", "--"] + full
    return subprocess.run(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=check, timeout=60)


_TEMPLATE = None


def _template():
    """One initdb per process (a cluster with role and database flowcast),
    copied for each server."""
    global _TEMPLATE
    if _TEMPLATE is None:
        d = tempfile.mkdtemp(prefix="fc-pgtemplate-")
        os.chmod(d, 0o755)
        shutil.chown(d, "postgres", "postgres") if os.geteuid() == 0 else None
        data = os.path.join(d, "data")
        _as_postgres(PGBIN + "/initdb", "-D", data, "-U", "flowcast", "--auth=trust",
                     "--no-sync", "-E", "UTF8", "--locale=C")
        srv = PostgresServer(_data=data, _dir=d)
        srv.start()
        _as_postgres(PGBIN + "/psql", "-h", HOST, "-p", str(srv.port), "-U", "flowcast",
                     "-d", "postgres", "-qc", "CREATE DATABASE flowcast")
        srv.stop()
        _TEMPLATE = data
        atexit.register(shutil.rmtree, d, True)
    return _TEMPLATE


class PostgresServer:
    def __init__(self, durable=False, _data=None, _dir=None):
        self.durable = durable
        self.port = _free_port()
        self._dir = _dir
        self.data = _data
        self.proc_started = False

    @property
    def dsn(self):
        return "postgres://flowcast@%s:%d/flowcast" % (HOST, self.port)

    def __enter__(self):
        self._dir = tempfile.mkdtemp(prefix="fc-pg-")
        os.chmod(self._dir, 0o755)
        self.data = os.path.join(self._dir, "data")
        subprocess.run(["cp", "-a", _template(), self.data], check=True)
        if os.geteuid() == 0:
            shutil.chown(self._dir, "postgres", "postgres")
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop(mode="immediate")
        shutil.rmtree(self._dir, ignore_errors=True)

    def start(self):
        opts = "-p %d -c listen_addresses=%s -c unix_socket_directories=%s" \
            % (self.port, HOST, self._dir) + ("" if self.durable else " -c fsync=off")
        _as_postgres(PGBIN + "/pg_ctl", "-D", self.data, "-l",
                     os.path.join(self._dir, "postgres.log"), "-o", opts, "-w", "-t", "30",
                     "start")
        self.proc_started = True

    def stop(self, mode="fast"):
        if self.proc_started:
            _as_postgres(PGBIN + "/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop",
                         check=False)
            self.proc_started = False


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
