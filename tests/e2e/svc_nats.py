"""A nats-server for the cluster tests: NatsServer() runs nats-server (Debian: /usr/sbin)
on a free loopback port in a temporary folder; .url is nats://127.0.0.1:PORT;
.stop() and .start() stop it and start it again on the same port (a broker
restart); it is killed on exit (context manager, or close()), even when a
test fails. The binary is installed by scripts/setup: a missing one fails.

NatsServer(config=TEXT) runs it with a configuration file holding TEXT
after the listen line (authorization users and permissions, a tls block:
see test_cluster_bus_secure.py); .reload(TEXT) rewrites it and sends
SIGHUP. make_pki(dir) makes the certificates such a tls block names;
make_nkey() a user nkey (public key, seed) for an `nkey:` user."""

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from fc_helpers import free_port

NATS_BIN = os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server") or "/usr/sbin/nats-server"


def _openssl(cwd, *args):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=60)


def _make_cert(d, name, san, ca, serial):
    """name.pem / name.key: an EC P-256 certificate with the given
    subjectAltName, for servers and clients both, signed by ca."""
    _openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=serverAuth,clientAuth\n" % san)
    _openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-set_serial", str(serial), "-days", "2",
             "-out", name + ".pem", "-extfile", name + ".ext")


def make_pki(d):
    """In d, made with the openssl CLI like test_tls.py's: ca.pem (the test
    CA) and other-ca.pem (a CA nobody trusts), server.pem/.key (localhost,
    127.0.0.1), wrong-name.pem/.key (elsewhere.example only), client.pem/.key
    (a client certificate), stranger.pem/.key (signed by the other CA).
    Returns d."""
    for ca, cn in (("ca", "flowcast NATS test CA"), ("other-ca", "someone else's CA")):
        _openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                 "-subj", "/CN=" + cn)
    _make_cert(d, "server", "DNS:localhost,IP:127.0.0.1", "ca", 3001)
    _make_cert(d, "wrong-name", "DNS:elsewhere.example", "ca", 3002)
    _make_cert(d, "client", "DNS:flowcast-node", "ca", 3003)
    _make_cert(d, "stranger", "DNS:flowcast-node", "other-ca", 3004)
    return d


def _nkey_text(raw):
    """base32 of raw and its CRC-16/XMODEM (little-endian), unpadded."""
    crc = 0
    for b in raw:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xffff
    return base64.b32encode(raw + bytes([crc & 0xff, crc >> 8])).decode().rstrip("=")


def make_nkey():
    """(public "U...", seed "SU...") of a new user nkey (Ed25519), encoded
    as nats-io's nkeys encode them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    k = Ed25519PrivateKey.generate()
    seed = k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                           serialization.NoEncryption())
    pub = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    user, seed_prefix = 20 << 3, 18 << 3
    return (_nkey_text(bytes([user]) + pub),
            _nkey_text(bytes([seed_prefix | user >> 5, (user & 31) << 3]) + seed))


class NatsServer:
    def __init__(self, port=None, config=None):
        if not os.access(NATS_BIN, os.X_OK):
            raise RuntimeError("%s is missing: run scripts/setup" % NATS_BIN)
        self.port = port or free_port()
        self.url = "nats://127.0.0.1:%d" % self.port
        self.dir = tempfile.mkdtemp(prefix="fc-nats-")
        self.proc = None
        self._log = None
        self.config = None
        if config is not None:
            self.config = os.path.join(self.dir, "nats.conf")
            self._write_config(config)
        self.start()

    def _write_config(self, text):
        with open(self.config, "w") as f:
            f.write("listen: 127.0.0.1:%d\n%s\n" % (self.port, text))

    def reload(self, config):
        """Rewrites the configuration and has the running server reload it."""
        self._write_config(config)
        self.proc.send_signal(signal.SIGHUP)

    def start(self, timeout=10.0):
        """Starts the server (again) on its port and waits until it accepts."""
        if self.proc and self.proc.poll() is None:
            return
        self._log = open(os.path.join(self.dir, "nats.log"), "ab")
        args = ["-c", self.config] if self.config else ["-a", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            [NATS_BIN] + args,
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
