"""`flowcast watch` fits the terminal (issue 11 item 2), checked in real tmux
panes: tall lists end with "… and N more", resizes redraw without leftovers,
UTF-8 names are cut by display width, deletions leave the list, --active
hides finished workflows, at most 10 frames a second with only the changed
lines written, and one status line for the connection."""

import ctypes
import os
import re
import signal
import time

import pytest

from fc_helpers import KeepAliveClient
from fcc_helpers import restart_same_port
from tty_helpers import pane_factory  # noqa: F401 (a fixture)

_libc = ctypes.CDLL(None)
_libc.wcwidth.argtypes = [ctypes.c_wchar]


def width(text):
    """Columns text takes on the terminal (the C library's table, as tmux's)."""
    return sum(max(_libc.wcwidth(c), 0) for c in text)


def lines(screen):
    return screen.split("\n")[:-1] if screen.endswith("\n") else screen.split("\n")


def _env(s, **extra):
    e = {"FLOWCAST_URL": "http://127.0.0.1:%d" % s.port, "ASAN_OPTIONS": "detect_leaks=0",
         "LANG": "C.UTF-8"}
    e.update(extra)
    return e


def _summary(screen):
    m = [ln for ln in lines(screen) if re.match(r"^… and \d+ more: ", ln)]
    assert len(m) <= 1, screen
    return m[0] if m else ""


def test_watch_tall_list_fits_the_terminal(flowcast, server_factory, pane_factory):
    s = server_factory()
    for i in range(50):
        s.create(id="job%02d" % i, name="job %02d" % i, total_steps=10)
        if i % 5 < 3:  # 30 running, 20 pending
            s.patch("job%02d" % i, status="running", current_step=1 + i % 9)
    pane = pane_factory("%s watch --all" % flowcast, _env(s), width=100, height=20)
    screen = pane.wait(lambda t: _summary(t) and t.startswith("connected to"),
                       what="the summary line")
    rows = lines(screen)
    assert len(rows) == 20
    assert rows[0].startswith("connected to http://127.0.0.1:%d" % s.port), screen
    assert "50 workflows: 30 running, 20 pending" in rows[0]
    bars = [r for r in rows if r.startswith("job ")]
    assert len(bars) == 18 and len(set(bars)) == 18, screen
    assert all(" running " in b for b in bars), screen  # the most active ones are listed
    assert rows[19] == "… and 32 more: 12 running, 20 pending", screen

    # Smaller: the same shape, fewer bars; the top line is still the status line.
    pane.resize(100, 10)
    screen = pane.wait(lambda t: "… and 42 more: 22 running, 20 pending" in t and
                       t.startswith("connected to"), what="10 lines")
    rows = lines(screen)
    assert len(rows) == 10 and rows[0].startswith("connected to"), screen
    assert len([r for r in rows if r.startswith("job ")]) == 8, screen

    # Taller than the list: all 50, no summary, nothing left below them.
    pane.resize(100, 60)
    screen = pane.wait(lambda t: not _summary(t) and t.count("job ") == 50, what="all 50")
    rows = lines(screen)
    assert [r.split()[1] for r in rows[1:51]] == ["%02d" % i for i in range(50)], screen
    assert all(r == "" for r in rows[51:]), screen


def test_watch_resize_redraws_without_leftovers(flowcast, server_factory, pane_factory):
    s = server_factory()
    for i in range(6):
        s.create(id="r%d" % i, name="resize %d" % i, total_steps=10, status="running",
                 message="a long message that ends far to the right with tailword-%d" % i)
    pane = pane_factory("%s watch --all" % flowcast, _env(s), width=130, height=20)
    pane.wait(lambda t: t.count("tailword-") == 6 and t.startswith("connected to"),
              what="the wide layout")
    # Wide and short to narrow and tall: more lines in fewer bytes than before.
    for w, h in [(50, 8), (130, 20), (40, 5), (90, 12), (400, 8), (60, 40)]:
        pane.resize(w, h)
        assert pane.size() == (w, h)
        # The bar drawn for this width (none under 50 columns), not a cropped one.
        bar = "[" + "." * (20 if w >= 80 else 10) + "] 0/10" if w >= 50 else " 0/10 "
        listed = 6 if h - 1 >= 6 else h - 2
        tails = listed if w >= 130 else 0
        screen = pane.wait(lambda t: sum(r.startswith("resize") and bar in r for r in lines(t))
                           == listed and lines(t)[0].startswith("connected to") and
                           (h - 1 >= 6 or _summary(t)) and t.count("tailword-") == tails,
                           what="the %dx%d layout" % (w, h))
        rows = lines(screen)
        for r in rows:
            assert width(r) <= w - 1, (w, r)
        for i in range(6):  # each bar once, and only whole ones
            assert screen.count("resize %d " % i) <= 1, screen
        if listed < 6:
            assert _summary(screen) == "… and %d more: %d running" % (6 - listed, 6 - listed)
        else:
            assert not _summary(screen) and all(r == "" for r in rows[7:]), screen


def test_watch_utf8_names_by_display_width(flowcast, server_factory, pane_factory):
    s = server_factory()
    names = {
        "cjk": "デプロイ本番環境サーバー更新作業",  # 16 wide characters: 32 columns
        "emoji": "🚀 launch 🚀🚀🚀🚀🚀🚀🚀🚀🚀",
        "accent": "Cafe\u0301 re\u0301sume\u0301 generator",  # combining acute accents
        "ascii": "plain",
    }
    for wid, name in names.items():
        s.create(id=wid, name=name, total_steps=10, status="running", current_step=3,
                 message="メッセージ " * 20)
    # LC_ALL=C: no locale at all, as in many containers; the text is UTF-8 anyway.
    pane = pane_factory("%s watch --all" % flowcast, _env(s, LC_ALL="C"), width=100, height=12)
    screen = pane.wait(lambda t: "plain" in t and "4 workflows" in t, what="four bars")
    bars = [r for r in lines(screen)[1:] if "[" in r]
    assert len(bars) == 4, screen
    assert "\ufffd" not in screen and "?" not in screen, screen
    # The bars start in the same column: names are padded by display width.
    cols = {width(b[:b.index("[")]) for b in bars}
    assert cols == {25}, (cols, screen)  # 24 columns of name, one space
    by = {wid: next(b for b in bars if b.startswith(name[:4])) for wid, name in names.items()}
    # The wide name is cut after 11 characters (22 columns), "…" in column 23.
    assert by["cjk"].startswith(names["cjk"][:11] + "…  ["), by["cjk"]
    assert by["emoji"].startswith("🚀 launch 🚀🚀🚀🚀🚀🚀"), by["emoji"]
    assert by["accent"].startswith("Cafe\u0301 re\u0301sume\u0301 generator"), by["accent"]
    for b in bars:
        assert width(b) <= 99, b
        assert b.endswith("…"), b  # the message is cut by columns, marked
        assert "[######..............] 3/10" in b, b

    # Narrower: names and messages shrink, never a half character.
    pane.resize(41, 12)
    screen = pane.wait(lambda t: "[" not in t and t.count("3/10") == 4, what="the narrow layout")
    for r in lines(screen):
        assert "\ufffd" not in r and "?" not in r and width(r) <= 40, screen
    assert lines(screen)[1].startswith(names["cjk"][:4] + "…  3/10"), screen


def test_watch_deleted_leave_and_active_hides_finished(flowcast, server_factory, pane_factory):
    s = server_factory()
    s.create(id="a", name="alpha", total_steps=4, status="running", current_step=1)
    s.create(id="b", name="bravo", total_steps=4, status="completed", current_step=4)
    s.create(id="c", name="charlie", total_steps=4)
    active = pane_factory("%s watch --all --active" % flowcast, _env(s), width=100, height=10)
    every = pane_factory("%s watch a b c" % flowcast, _env(s), width=100, height=10)
    screen = active.wait(lambda t: "charlie" in t and t.startswith("connected"),
                         what="the active ones")
    assert "alpha" in screen and "bravo" not in screen
    assert "3 workflows: 1 running, 1 pending; 1 finished hidden" in screen
    every.wait(lambda t: "alpha" in t and "bravo" in t and "charlie" in t, what="all three")

    s.patch("a", current_step=4, status="completed")
    screen = active.wait(lambda t: "alpha" not in t, what="alpha hidden once completed")
    assert "2 finished hidden" in screen and "charlie" in screen

    s.delete("c")
    screen = active.wait(lambda t: "2 workflows" in t, what="charlie gone")
    assert "charlie was deleted" in lines(screen)[0]
    assert [r for r in lines(screen)[1:] if r] == [], screen
    screen = every.wait(lambda t: "charlie was deleted" in t, what="charlie gone (ids)")
    bars = [r for r in lines(screen)[1:] if r]
    assert [b.split()[0] for b in bars] == ["alpha", "bravo"], screen
    assert "100% completed" in bars[0]

    # A new workflow joins the --all list; a deleted one never comes back.
    s.create(id="d", name="delta", total_steps=2)
    screen = active.wait(lambda t: "delta" in t, what="delta")
    assert "charlie" not in screen.split("\n", 1)[1]


def _row_writes(data, row):
    return data.count(b"\x1b[%d;1H" % row)


def test_watch_redraws_at_most_10_times_a_second(flowcast, server_factory, pane_factory,
                                                 tmp_path):
    s = server_factory()
    for i in range(20):
        s.create(id="q%02d" % i, name="quick %02d" % i, total_steps=10000, status="completed",
                 current_step=10000)
    s.create(id="hot", name="hot", total_steps=10000, status="running")
    log = str(tmp_path / "pane.bytes")
    pane = pane_factory("%s watch --all" % flowcast, _env(s), width=100, height=30, log=log)
    screen = pane.wait(lambda t: "hot " in t and "quick 19" in t, what="the bars")
    hot_row = next(i for i, r in enumerate(lines(screen)) if r.startswith("hot ")) + 1

    # Slow changes of one workflow: each is drawn, and only its line.
    time.sleep(0.5)
    start = pane.log_bytes()
    for step in range(1, 11):
        s.patch("hot", current_step=step, message="slow %d" % step)
        time.sleep(0.3)
    pane.wait(lambda t: "slow 10" in t, what="the last slow change")
    time.sleep(0.3)
    data = open(log, "rb").read()[start:]
    assert _row_writes(data, hot_row) >= 5, data  # ten changes 300 ms apart, a few may merge
    others = [r for r in range(1, 31) if r != hot_row]
    assert sum(_row_writes(data, r) for r in others) == 0, data  # neither bars nor status
    assert len(data) < 10 * 400, len(data)

    # A burst: the same workflow changed as fast as the server takes it.
    c = KeepAliveClient(s)
    start, t0, n = pane.log_bytes(), time.monotonic(), 0
    while time.monotonic() - t0 < 3.0:
        n += 1
        assert c.patch("hot", current_step=n % 10000, message="burst %d" % n)[0] == 200
    elapsed = time.monotonic() - t0
    c.close()
    pane.wait(lambda t: "burst %d" % n in t, what="the last burst change")
    time.sleep(0.3)
    data = open(log, "rb").read()[start:]
    frames = _row_writes(data, hot_row)
    print("burst: %d changes in %.1f s, %d frames, %d bytes" % (n, elapsed, frames, len(data)))
    assert n > 3 * elapsed * 10, n  # well over 10 changes a second, or the test says nothing
    assert 3 <= frames <= 10 * (elapsed + 1) + 3, (frames, elapsed)
    assert len(data) <= frames * 400, len(data)


def test_watch_reconnect_status_line_updates_in_place(flowcast, server_factory, pane_factory):
    s = server_factory()
    for i in range(3):
        s.create(id="s%d" % i, name="svc %d" % i, total_steps=10, status="running",
                 current_step=i + 1)
    pane = pane_factory("%s watch --all" % flowcast, _env(s), width=120, height=10)
    pane.wait(lambda t: "svc 2" in t and "connected to" in t, what="the bars")
    s.kill9()
    attempts = set()
    deadline = time.monotonic() + 15
    while len(attempts) < 3 and time.monotonic() < deadline:
        rows = lines(pane.text())
        status = [r for r in rows if "reconnecting" in r]
        assert len(status) <= 1, rows  # one line, updated in place
        if status:
            assert rows[0] == status[0], rows
            m = re.search(r"\(attempt (\d+)\)", rows[0])
            if m:
                attempts.add(int(m.group(1)))
            bars = [r for r in rows if r.startswith("svc ")]
            assert len(bars) == 3 and all(b.rstrip().endswith("stale") for b in bars), rows
        time.sleep(0.1)
    assert len(attempts) >= 3, attempts
    s2 = restart_same_port(server_factory, s)
    s2.patch("s0", current_step=9, message="after the restart")
    screen = pane.wait(lambda t: "after the restart" in t, timeout=40, what="the change")
    rows = lines(screen)
    assert rows[0].startswith("reconnected to http://127.0.0.1:%d" % s.port), rows
    assert "stale" not in screen and "reconnecting" not in screen


def test_watch_exit_leaves_the_final_bars(flowcast, server_factory, pane_factory):
    """On exit the normal screen is back with the last view printed once,
    fitted below the command line: the scrollback holds no frames."""
    s = server_factory()
    ids = ["e%02d" % i for i in range(30)]
    for wid in ids:
        s.create(id=wid, name="exit " + wid, total_steps=5)
    cmd = "%s watch %s --exit-on-done; echo rc=$?" % (flowcast, " ".join(ids))
    pane = pane_factory(cmd, _env(s), width=100, height=15)
    pane.wait(lambda t: "30 workflows" in t, what="the bars")
    c = KeepAliveClient(s)
    for step in range(1, 6):
        for wid in ids:
            c.patch(wid, current_step=step, status="running")
        time.sleep(0.2)
    for wid in ids[:-1]:
        c.patch(wid, status="completed")
    c.patch(ids[-1], status="failed", message="disk full")
    c.close()
    screen = pane.wait(lambda t: "rc=1" in t, what="the exit")
    rows = [r for r in lines(screen) if r]
    # 15 lines: 12 bars and the summary, rc=1, the empty line of the prompt-to-be.
    assert len(rows) == 14 and rows[-1] == "rc=1", screen
    assert rows[-2] == "… and 18 more: 18 completed", screen
    assert any(r.startswith("exit e29") and "failed" in r and "disk full" in r for r in rows)
    assert all(r.startswith("exit e") and "100% " in r for r in rows[:12]), screen
    everything = pane.history() + screen
    for wid in ids:
        assert everything.count("exit %s " % wid) <= 1, everything


def _state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_watch_ctrl_z_gives_the_shell_its_screen(flowcast, server_factory, pane_factory):
    """Stopped (SIGTSTP, as Ctrl-Z sends), the watch gives the normal screen
    back; continued, it takes the view again and draws it afresh."""
    s = server_factory()
    s.create(id="z", name="zulu", total_steps=4, status="running", current_step=1)
    pane = pane_factory("sh -c 'echo before-the-watch; exec %s watch --all'" % flowcast, _env(s),
                        width=100, height=10)
    pane.wait(lambda t: t.startswith("connected to") and "zulu" in t, what="the view")
    pid = pane.command_pid()
    os.kill(pid, signal.SIGTSTP)
    screen = pane.wait(lambda t: "before-the-watch" in t, what="the shell's screen")
    assert "zulu" not in screen and "connected" not in screen, screen
    deadline = time.monotonic() + 10
    while _state(pid) != "T" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(pid) == "T"
    s.patch("z", current_step=3, message="while stopped")
    os.kill(pid, signal.SIGCONT)
    screen = pane.wait(lambda t: "while stopped" in t, timeout=15, what="the view again")
    assert lines(screen)[0].startswith(("connected to", "reconnected to")), screen
    assert "before-the-watch" not in screen, screen


@pytest.mark.parametrize("key,rc", [("q", 0), ("C-c", 130)])
def test_watch_quits_on_q_and_ctrl_c_keys(flowcast, server_factory, pane_factory, key, rc):
    """Keys reach the watch one at a time while the view is up: q ends it
    as done (0), other keys are neither echoed nor acted on, and Ctrl-C
    still interrupts (130); the last view is printed either way."""
    s = server_factory()
    s.create(id="k", name="kilo", total_steps=4, status="running", current_step=1)
    pane = pane_factory("%s watch --all; echo rc=$?" % flowcast, _env(s), width=100, height=10)
    pane.wait(lambda t: t.startswith("connected to") and "kilo" in t, what="the view")
    pane.send_keys("x", "y")
    s.patch("k", current_step=2, message="after the keys")
    screen = pane.wait(lambda t: "after the keys" in t, what="the change")
    assert "rc=" not in screen and "xy" not in screen, screen
    pane.send_keys(key)
    screen = pane.wait(lambda t: "rc=" in t, what="the exit")
    assert "rc=%d" % rc in screen, screen
    assert any(r.startswith("kilo") and "after the keys" in r for r in lines(screen)), screen
