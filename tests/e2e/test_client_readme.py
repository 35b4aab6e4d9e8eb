"""The README's C examples are real programs: install libflowcast as
`make install` does (cmake --install, staged with DESTDIR), build each
```c block of the "C client library" section with -Wall -Wextra -Werror
through pkg-config, and run them against a server (LD_LIBRARY_PATH stands
in for the ldconfig the README asks for)."""

import os
import re
import shutil
import subprocess

import pytest

from fc_helpers import free_port
from fcc_helpers import LineProc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _examples():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## C client library", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```c\n(.*?)```", section, re.S)


def _sanitized(build):
    cache = open(os.path.join(build, "CMakeCache.txt")).read()
    return re.search(r"^FC_SANITIZE:BOOL=(ON|TRUE|1)$", cache, re.M) is not None


@pytest.fixture(scope="module")
def built_examples(flowcast, tmp_path_factory):
    """Installs the library into a staging root; returns (paths of the built
    examples, environment to run them with)."""
    build = os.path.dirname(flowcast)
    tmp = tmp_path_factory.mktemp("readme")
    dest = str(tmp / "root")
    env = dict(os.environ, DESTDIR=dest)
    r = subprocess.run(["cmake", "--install", build], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    pcs = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs if f == "flowcast.pc"]
    assert len(pcs) == 1, pcs
    libdir = os.path.dirname(os.path.dirname(pcs[0]))
    penv = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]), PKG_CONFIG_SYSROOT_DIR=dest)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "flowcast"], capture_output=True,
                           text=True, env=penv, check=True).stdout.split()
    assert any(f.startswith("-I" + dest) for f in flags), flags
    cc = shutil.which("cc") or shutil.which("gcc")
    extra = ["-fsanitize=address,undefined"] if _sanitized(build) else []
    examples = _examples()
    assert len(examples) == 2, "expected the watch and the step example"
    out = []
    for i, code in enumerate(examples):
        src = tmp / ("example%d.c" % i)
        src.write_text(code)
        exe = str(tmp / ("example%d" % i))
        r = subprocess.run([cc, "-Wall", "-Wextra", "-Werror", "-o", exe, str(src)] + flags + extra,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, "README example %d does not build:\n%s" % (i, r.stderr)
        out.append(exe)
    run_env = {"LD_LIBRARY_PATH": libdir, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"}
    return out, run_env


def test_readme_examples_build_and_run(built_examples, server_factory):
    (watch_exe, step_exe), env = built_examples
    s = server_factory()
    s.create(id="deploy-42", name="deploy", total_steps=5)
    dead = "http://127.0.0.1:%d" % free_port()
    servers = "%s,http://127.0.0.1:%d" % (dead, s.port)  # the first one is down
    w = LineProc([watch_exe, servers], env=env)
    try:
        first = w.next(15)
        assert first.startswith("deploy-42 pending 0/5 epoch ") and first.endswith(" seq 1 deploy"), first
        full_env = dict(os.environ, **env)
        r = subprocess.run([step_exe, servers], capture_output=True, text=True, env=full_env,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "deploy-42 at step 3 of 5 (seq 2)\n", r.stdout
        assert w.next(15).startswith("deploy-42 pending 3/5 ")
        s.delete("deploy-42")
        assert w.next(15).startswith("deploy-42 deleted ")
        # Every watched workflow deleted: the watch ends, exit 0.
        assert w.finish(15) == 0, w.stderr
    finally:
        w.kill()
    r = subprocess.run([step_exe, servers], capture_output=True, text=True,
                       env=dict(os.environ, **env), timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("update: HTTP error: "), r.stderr  # with the server's message
