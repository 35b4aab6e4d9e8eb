"""pytest fixtures for the flowcast end-to-end tests: start the real binary
(FLOWCAST_BIN) on a free loopback port with a temporary database, wait for
/healthz, and stop it with SIGTERM at teardown (exit code 0 within 5 s)."""

import os
import resource
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fc_helpers import TLS_DIR, Server, free_port, tls_client_context  # noqa: E402

# A leak inside libnats when a connection breaks mid-message (tests/lsan.supp);
# every server the tests start inherits it.
os.environ.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lsan.supp"))

# 1,000+ clients in one test process (and the server inherits the limit).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _hard == resource.RLIM_INFINITY or _soft < _hard:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
    except (ValueError, OSError):
        pass


def flowcast_bin():
    b = os.environ.get("FLOWCAST_BIN")
    if not b:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.dirname(os.path.dirname(here))
        for cand in ("build-asan/flowcast", "build/flowcast"):
            p = os.path.join(root, cand)
            if os.path.exists(p):
                b = p
                break
    if not b or not os.access(b, os.X_OK):
        pytest.exit("set FLOWCAST_BIN to the flowcast binary", returncode=2)
    return os.path.abspath(b)


@pytest.fixture(scope="session")
def flowcast():
    return flowcast_bin()


class ServerFactory:
    """start(*flags, db=None, env=None, via_env=False, ready=True, tls_ca=None) -> Server.

    Each call starts a new process on a new free port; pass db=old.db to
    restart on the same database. With via_env, --listen and --db are given
    as FLOWCAST_LISTEN / FLOWCAST_DB instead of flags. A flag "--api-token T"
    (or env FLOWCAST_API_TOKEN) makes Server.request send the token. With
    tls_ca (a CA file), the server is taken to speak TLS (its flags carry
    --tls-cert/--tls-key) and the clients trust that CA."""

    def __init__(self, binary, tmpdir):
        self.binary = binary
        self.tmpdir = tmpdir
        self.servers = []

    def __call__(self, *flags, db=None, env=None, via_env=False, ready=True, tls_ca=None):
        port = free_port()
        db = db or os.path.join(self.tmpdir, "x.db")
        log_path = os.path.join(self.tmpdir, "server-%d.log" % (len(self.servers) + 1))
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if env:
            e.update(env)
        args = ["serve"]
        if via_env:
            e["FLOWCAST_LISTEN"] = "127.0.0.1:%d" % port
            e["FLOWCAST_DB"] = db
        else:
            args += ["--listen", "127.0.0.1:%d" % port, "--db", db]
        args += [str(f) for f in flags]
        token = None
        if "--api-token" in args:
            token = args[args.index("--api-token") + 1]
        elif env and env.get("FLOWCAST_API_TOKEN"):
            token = env["FLOWCAST_API_TOKEN"]
        if TLS_DIR and "--tls-cert" not in args:
            args += ["--tls-cert", os.path.join(TLS_DIR, "server.pem"),
                     "--tls-key", os.path.join(TLS_DIR, "server.key")]
            tls_ca = os.path.join(TLS_DIR, "ca.pem")
        ctx = tls_client_context(tls_ca) if tls_ca else None
        s = Server(self.binary, port, db, log_path, args, e, token=token, ssl_ctx=ctx)
        s.start()
        self.servers.append(s)
        if ready:
            s.wait_ready(10)
        return s

    def teardown(self):
        """Stops every server with SIGTERM; asserts exit 0 within 5 s."""
        problems = []
        for s in self.servers:
            if s.proc.poll() is None:
                try:
                    rc = s.stop()
                except AssertionError as e:
                    problems.append(str(e))
                    rc = None
                if rc is not None and rc != 0:
                    problems.append("server exited with %s on SIGTERM" % rc)
            elif not s.expect_exit:
                problems.append("server died during the test (exit %s)" % s.proc.returncode)
            s.logf.close()
            print("----- server log %s (%s) -----" % (s.log_path, " ".join(s.args)))
            print(s.log_tail(200))
        assert not problems, "; ".join(problems)


@pytest.fixture
def server_factory(flowcast, tmp_path):
    """Function-scoped ServerFactory (see its docstring)."""
    f = ServerFactory(flowcast, str(tmp_path))
    yield f
    f.teardown()


@pytest.fixture(scope="module")
def module_server_factory(flowcast, tmp_path_factory):
    """Module-scoped ServerFactory, for servers shared by many small tests."""
    f = ServerFactory(flowcast, str(tmp_path_factory.mktemp("srv")))
    yield f
    f.teardown()


@pytest.fixture
def server(server_factory):
    """A fresh server with default flags."""
    return server_factory()


@pytest.fixture(scope="module")
def pg():
    """The module's own PostgreSQL (svc_postgres); a test takes a database
    of its own with pg.fresh_database(prefix)."""
    from svc_postgres import PostgresServer
    with PostgresServer() as p:
        yield p


@pytest.fixture
def nats():
    """This test's own nats-server (svc_nats)."""
    from svc_nats import NatsServer
    with NatsServer() as n:
        yield n
