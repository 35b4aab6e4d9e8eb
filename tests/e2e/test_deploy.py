"""Deployment pieces (issue 11 §4): the systemd unit passes `systemd-analyze
verify`, `make install`'s rules install the binary, library, headers,
pkg-config file, man page and unit, the man page is generated from the
options table and lints clean, and `serve --help`, docs/protocol.md's flag
table and README agree."""

import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "contrib", "flowcast.service")


def build_dir(flowcast):
    return os.path.dirname(flowcast)


def serve_help(flowcast):
    """{flag: default or None} from `flowcast serve --help`."""
    r = subprocess.run([flowcast, "serve", "--help"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r
    flags = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^  (--[a-z][a-z0-9-]*)(?: \S+)?\s+FLOWCAST_[A-Z0-9_]+\s+(.*)$", line)
        if m:
            d = m.group(2).strip()
            flags[m.group(1)] = None if d == "(none)" else d
    assert len(flags) >= 30, r.stdout
    return flags


def protocol_table():
    """{flag: default cell} from docs/protocol.md's "Flag | Default | Meaning" table."""
    with open(os.path.join(ROOT, "docs", "protocol.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    start = lines.index("| Flag | Default | Meaning |")
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        m = re.match(r"^`(--[a-z][a-z0-9-]*)", cells[0])
        assert m, line
        assert m.group(1) not in rows, "twice in the table: " + m.group(1)
        rows[m.group(1)] = cells[1]
    return rows


def stated_value(cell):
    """The value a table cell states ("`normal`", "65536", "1M", "0 (none)"),
    or None when it describes one in words ("none", "from the fd limit")."""
    m = re.match(r"^`([^`]+)`", cell) or re.match(r"^(\d[\w.]*)", cell)
    return m.group(1) if m else None


def test_serve_help_and_protocol_table_agree(flowcast):
    helped = serve_help(flowcast)
    table = protocol_table()
    assert sorted(set(helped) - set(table)) == [], "flags missing from docs/protocol.md's table"
    assert sorted(set(table) - set(helped)) == [], "flags in the table that serve does not take"
    for flag, cell in table.items():
        want = stated_value(cell)
        have = helped[flag]
        if want is None:
            continue
        if have in ("false", "true"):
            have = {"false": "off", "true": "on"}[have]
        assert want == have, "%s: table says %r, --help says %r" % (flag, cell, helped[flag])


def test_readme_flags_exist(flowcast):
    """Every --flag README names is one the program takes (serve, a client
    command or a global option), so README cannot advertise a removed flag."""
    r = subprocess.run([flowcast, "--help"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r
    known = set(re.findall(r"--[a-z][a-z0-9-]*", r.stdout))
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", readme))
    # options of other programs README shows in its examples
    others = {"--cflags", "--libs", "--now", "--system"}
    assert sorted(named - known - others) == []


# ---------------------------------------------------------------- man page

def test_man_page_generated_from_the_table_and_lints_clean(flowcast, tmp_path):
    page = os.path.join(build_dir(flowcast), "flowcast.1")
    assert os.path.exists(page), "the build writes flowcast.1 next to the binary"
    now = subprocess.run([flowcast, "--man"], capture_output=True, text=True, timeout=20)
    assert now.returncode == 0 and now.stderr == "", now
    with open(page, encoding="utf-8") as f:
        assert f.read() == now.stdout, "flowcast.1 is stale: rebuild"
    for flag in serve_help(flowcast):
        assert "\\fB" + flag.replace("-", "\\-") + "\\fR" in now.stdout, flag
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (scripts/setup installs it)")
    lint = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True,
                          timeout=20)
    assert lint.returncode == 0 and lint.stderr == "", lint
    env = dict(os.environ, MANWIDTH="200")
    text = subprocess.run(["man", "-l", page], capture_output=True, text=True, env=env,
                          timeout=20)
    assert text.returncode == 0, text
    plain = re.sub(r".\x08", "", text.stdout)  # overstrike bold and underline
    assert "--log-format text|json" in plain and "FLOWCAST_LOG_FORMAT" in plain, plain
    assert "/readyz" in plain


# ---------------------------------------------------------------- systemd unit

def unit_settings():
    with open(UNIT, encoding="utf-8") as f:
        pairs = [line.split("=", 1) for line in f.read().splitlines()
                 if "=" in line and not line.startswith("#")]
    out = {}
    for k, v in pairs:
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_is_hardened():
    s = unit_settings()
    want = {"User": "flowcast", "Group": "flowcast", "ProtectSystem": "strict",
            "StateDirectory": "flowcast", "LimitNOFILE": "20000", "NoNewPrivileges": "yes",
            "PrivateTmp": "yes", "ProtectHome": "yes", "CapabilityBoundingSet": "",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
            "ExecReload": "/bin/kill -HUP $MAINPID",
            "ExecStart": "/usr/local/bin/flowcast serve"}
    for k, v in want.items():
        assert s.get(k) == [v], (k, s.get(k))
    assert "@system-service" in s["SystemCallFilter"]
    assert s["Environment"] == ["FLOWCAST_DB=/var/lib/flowcast/flowcast.db",
                                "FLOWCAST_LISTEN=127.0.0.1:8001"]


def test_unit_passes_systemd_analyze_verify(flowcast, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (package systemd; scripts/setup adds it)")
    # The unit as `make install` writes it: ExecStart pointing at a real
    # binary (verify checks it is executable), its man page findable.
    with open(UNIT, encoding="utf-8") as f:
        unit = f.read().replace("/usr/local/bin/flowcast", flowcast)
    (tmp_path / "flowcast.service").write_text(unit)
    man1 = tmp_path / "man" / "man1"
    man1.mkdir(parents=True)
    shutil.copy(os.path.join(build_dir(flowcast), "flowcast.1"), man1 / "flowcast.1")
    env = dict(os.environ, MANPATH=str(tmp_path / "man"), SYSTEMD_LOG_LEVEL="notice")
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "flowcast.service")],
                       capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r
    assert "flowcast.service" not in r.stderr + r.stdout, r


def test_install_rules(flowcast, tmp_path):
    """The install step `make install` runs (cmake --install), staged with
    DESTDIR: every piece lands, and the unit points at the installed binary."""
    build = build_dir(flowcast)
    env = dict(os.environ, DESTDIR=str(tmp_path / "stage"))
    r = subprocess.run(["cmake", "--install", build], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        prefix = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", f.read(), re.M).group(1)
    root = str(tmp_path / "stage") + prefix
    installed = set()
    for d, _, files in os.walk(root):
        installed |= {os.path.relpath(os.path.join(d, f), root) for f in files}
    libdir = next(p for p in installed if p.endswith("/libflowcast.a")).rsplit("/", 1)[0]
    for want in ("bin/flowcast", libdir + "/libflowcast.a", libdir + "/libflowcast.so",
                 "include/flowcast/client.h", libdir + "/pkgconfig/flowcast.pc",
                 "share/man/man1/flowcast.1", "lib/systemd/system/flowcast.service",
                 "lib/sysusers.d/flowcast.conf"):
        assert want in installed, (want, sorted(installed))
    with open(os.path.join(root, "lib/systemd/system/flowcast.service")) as f:
        assert "\nExecStart=%s/bin/flowcast serve\n" % prefix in f.read()
