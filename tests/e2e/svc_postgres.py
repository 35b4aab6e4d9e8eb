"""A throwaway PostgreSQL 15 for the tests: PostgresServer is a context
manager that runs its own server on a free loopback port in a temporary
folder owned by the postgres user, with a role and a database `flowcast`
(trust authentication, loopback only).

    with PostgresServer() as pg:
        pg.dsn      # postgres://flowcast@127.0.0.1:PORT/flowcast
        pg.stop()   # fast shutdown (pg.stop(mode="immediate") to crash it)
        pg.start()  # the same port and data again
        pg.sql("SELECT 1")  # psql as the flowcast role, output as text
        pg.fresh_database("t")  # DSN of a new empty database t1, t2, ...
        pg.freeze(); pg.thaw()  # SIGSTOP / SIGCONT every process: a hung server
        pg.superuser_sql("CREATE EXTENSION ...")  # psql as the postgres role

PostgresServer(options="-c name=value ...") adds server settings (e.g.
shared_preload_libraries=pg_stat_statements).

initdb runs once per process (a template data folder); every server copies
it, which takes a fraction of initdb's time. fsync is off unless
durable=True: the tests stop PostgreSQL, they never crash the machine, so
what a commit wrote reaches the files in the page cache either way. The
binaries are required: scripts/setup installs postgresql."""

import atexit
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from fc_helpers import free_port

PG_BIN = os.environ.get("FC_PG_BIN", "/usr/lib/postgresql/15/bin")
_template = None


def _as_postgres(*args, check=True, timeout=60, **kw):
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *args],
        check=check, timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def _owned_tempdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    pw = pwd.getpwnam("postgres")
    os.chown(d, pw.pw_uid, pw.pw_gid)
    os.chmod(d, 0o700)
    return d


def _pg_ctl(datadir, *args, check=True):
    return _as_postgres(os.path.join(PG_BIN, "pg_ctl"), "-D", datadir, *args, check=check)


def _make_template():
    """initdb into a folder once, with the flowcast role and database in it."""
    global _template
    if _template:
        return _template
    if not os.path.exists(os.path.join(PG_BIN, "initdb")):
        raise RuntimeError(f"PostgreSQL binaries missing in {PG_BIN}: run scripts/setup")
    root = _owned_tempdir("fc-pg-template-")
    data = os.path.join(root, "data")
    _as_postgres(os.path.join(PG_BIN, "initdb"), "-D", data, "--auth=trust", "-U", "postgres",
                 "--no-sync", "-E", "UTF8", "--locale=C")
    port = free_port()
    _pg_ctl(data, "-w", "-t", "60", "-l", os.path.join(root, "log"), "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off", "start")
    try:
        psql = os.path.join(PG_BIN, "psql") if os.path.exists(os.path.join(PG_BIN, "psql")) \
            else "psql"
        _as_postgres(psql, "-h", root, "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1",
                     "-c", "CREATE ROLE flowcast LOGIN CREATEDB", "-c",
                     "CREATE DATABASE flowcast OWNER flowcast")
    finally:
        _pg_ctl(data, "-w", "-m", "fast", "stop")
    _template = root
    atexit.register(shutil.rmtree, root, True)
    return root


class PostgresServer:
    def __init__(self, durable=False, options=""):
        self.durable = durable
        self.options = options
        self.port = free_port()
        self.root = None
        self.running = False

    @property
    def dsn(self):
        return f"postgres://flowcast@127.0.0.1:{self.port}/flowcast"

    @property
    def datadir(self):
        return os.path.join(self.root, "data")

    def __enter__(self):
        template = _make_template()
        self.root = _owned_tempdir("fc-pg-")
        _as_postgres("cp", "-a", os.path.join(template, "data"), self.datadir)
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        opts += " -c max_connections=300"
        if not self.durable:
            opts += " -c fsync=off"
        if self.options:
            opts += " " + self.options
        r = _pg_ctl(self.datadir, "-w", "-t", "60", "-l", os.path.join(self.root, "log"), "-o",
                    opts, "start", check=False)
        if r.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {r.stdout.decode()}\n{self.log()}")
        self.running = True

    def stop(self, mode="fast"):
        if self.running:
            _pg_ctl(self.datadir, "-w", "-t", "60", "-m", mode, "stop", check=False)
            self.running = False

    def pids(self):
        """The postmaster and its children (backends, checkpointer, ...)."""
        with open(os.path.join(self.datadir, "postmaster.pid")) as f:
            master = int(f.readline())
        out = [master]
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
        return out

    def freeze(self):
        """SIGSTOPs every process of this server: it accepts TCP, answers nothing."""
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self):
        for pid in self.pids():
            os.kill(pid, signal.SIGCONT)

    def fresh_database(self, prefix):
        """Creates an empty database PREFIX<n> (n counts per server) and
        returns its DSN: one per test, on the module's server."""
        self._databases = getattr(self, "_databases", 0) + 1
        name = "%s%d" % (prefix, self._databases)
        self.sql("CREATE DATABASE %s" % name)
        return self.dsn.rsplit("/", 1)[0] + "/" + name

    def sql(self, query, db="flowcast"):
        """Runs query with psql as the flowcast role (which may create databases) on db;
        returns stdout (unaligned, no header)."""
        psql = os.path.join(PG_BIN, "psql") if os.path.exists(os.path.join(PG_BIN, "psql")) \
            else "psql"
        r = _as_postgres(psql, "-h", self.root, "-p", str(self.port), "-U", "flowcast", "-d",
                         db, "-At", "-v", "ON_ERROR_STOP=1", "-c", query)
        return r.stdout.decode()

    def superuser_sql(self, query, db="flowcast"):
        """Runs query with psql as the postgres superuser on db; returns stdout."""
        r = _as_postgres(os.path.join(PG_BIN, "psql"), "-h", self.root, "-p", str(self.port),
                         "-U", "postgres", "-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", query)
        return r.stdout.decode()

    def log(self):
        try:
            with open(os.path.join(self.root, "log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self):
        if self.root:
            try:
                self.thaw()
            except OSError:
                pass
            self.stop(mode="immediate")
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def wait_port_closed(port, timeout=10.0):
    import socket
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False
