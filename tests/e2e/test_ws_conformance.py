"""An Autobahn-like sweep of `flowcast serve --enable-echo` (/ws/echo) with a
raw client, for the shapes of Autobahn|Testsuite cases 1-7, 9 and 10 that
can be reproduced without it (the suite needs Python 2): framing, pings,
reserved bits and opcodes, fragmentation with interleaved control frames,
UTF-8 (whole, fragmented, chopped into TCP segments) and the closing
handshake. Case numbers in the test names follow the suite.

The strict part of the 6.4.x cases: invalid UTF-8 in a text frame is failed
with 1007 as soon as the invalid byte arrives, while the rest of the frame
(or message) has not been sent, even when the frame header came in an
earlier TCP segment."""

import codecs
import random
import socket
import time

import pytest
from fc_helpers import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS,
                        build_frame, close_payload)

ECHO = "/ws/echo"
PAUSE = 0.5  # between TCP segments that must arrive in separate reads


@pytest.fixture(scope="module")
def echo(module_server_factory):
    """One echo server for the module (as the suite runs against one), with
    the message limit the suite needs (docs/protocol.md, Echo endpoint)."""
    return module_server_factory("--enable-echo", "--max-message", str(16 * 1024 * 1024))


@pytest.fixture(autouse=True)
def _still_healthy(echo):
    yield
    assert echo.alive(), "server died"
    assert echo.request("GET", "/healthz").status == 200


def ws_open(server):
    ws = RawWS.open(server, ECHO)
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ws


def send_chops(ws, data, chops, pause, until_answer=False):
    """Sends data in TCP segments cut at the offsets in chops, pausing between.
    With until_answer, stops once the server sends something (a failed
    connection), so no unread bytes make the server's kernel reset it."""
    cuts = [0] + sorted(chops) + [len(data)]
    for a, b in zip(cuts, cuts[1:]):
        if a == b:
            continue
        if a:
            if until_answer:
                if ws.rd.wait_readable(pause):
                    return
            else:
                time.sleep(pause)
        ws.send_raw(data[a:b])


def frames_until_close(ws, timeout=5.0):
    """Reads frames up to the server's close frame; asserts the server then
    drops TCP. Returns (frames before the close, the close frame)."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        f = ws.recv_frame(max(0.01, deadline - time.monotonic()))
        if f.opcode == OP_CLOSE:
            break
        seen.append(f)
    if len(f.payload) > 2:
        f.payload[2:].decode("utf-8")
    try:
        ws.send_frame(OP_CLOSE, f.payload[:2])
    except OSError:
        pass
    assert ws.rd.at_eof(5.0), "server did not close TCP after its close frame"
    return seen, f


def expect_fail(ws, code, timeout=5.0):
    """The connection is failed with code and nothing but control frames
    before it (no echo of the offending message)."""
    seen, f = frames_until_close(ws, timeout)
    assert f.close_code == code, (f, seen)
    assert all(x.opcode in (OP_PING, OP_PONG) for x in seen), seen
    return seen


def assert_silent(ws, wait=0.3):
    """Nothing arrives from the server for `wait` seconds."""
    assert not ws.rd.wait_readable(wait), "unexpected frame %r" % ws.recv_frame(1.0)


def echo_ok(ws, opcode, payload, timeout=10.0):
    m = ws.recv_message(timeout)
    assert m.opcode == opcode
    assert len(m.payload) == len(payload) and m.payload == payload


def close_cleanly(ws, code=1000):
    ws.send_close(code)
    seen, f = frames_until_close(ws)
    assert f.close_code == code and not seen


def first_invalid(payload):
    """Index of the byte at which payload stops being a prefix of valid UTF-8
    (len(payload) - 1 when only its end is truncated), or None when valid."""
    dec = codecs.getincrementaldecoder("utf-8")()
    for i in range(len(payload)):
        try:
            dec.decode(payload[i:i + 1], final=False)
        except UnicodeDecodeError:
            return i
    try:
        dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return len(payload) - 1
    return None


# ---------------------------------------------------------------- 1: framing

SIZES = [0, 125, 126, 127, 128, 65535, 65536]


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("size", SIZES)
def test_1_x_payload_lengths(echo, opcode, size):
    ws = ws_open(echo)
    payload = (b"*" * size) if opcode == OP_TEXT else bytes(i & 0xFF for i in range(size))
    ws.send_frame(opcode, payload)
    echo_ok(ws, opcode, payload)
    close_cleanly(ws)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_1_x_8_chopped_997(echo, opcode):
    ws = ws_open(echo)
    payload = b"*" * 65536
    frame = build_frame(opcode, payload)
    send_chops(ws, frame, range(997, len(frame), 997), 0.001)
    echo_ok(ws, opcode, payload)
    close_cleanly(ws)


# ---------------------------------------------------------------- 2: ping/pong

@pytest.mark.parametrize("payload", [b"", b"Hello, world!", bytes([0, 0xFF, 0xFE, 0xFD, 0xFC]),
                                     b"*" * 125])
def test_2_1_to_4_ping_pong(echo, payload):
    ws = ws_open(echo)
    ws.send_frame(OP_PING, payload)
    f = ws.recv_frame()
    assert (f.opcode, f.fin, f.payload) == (OP_PONG, 1, payload)
    close_cleanly(ws)


def test_2_5_ping_126_fails(echo):
    ws = ws_open(echo)
    ws.send_frame(OP_PING, b"*" * 126)
    expect_fail(ws, 1002)


def test_2_6_ping_chopped(echo):
    ws = ws_open(echo)
    frame = build_frame(OP_PING, b"*" * 125)
    send_chops(ws, frame, range(1, len(frame)), 0.005)
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"*" * 125)
    close_cleanly(ws)


def test_2_7_to_9_unsolicited_pong(echo):
    ws = ws_open(echo)
    ws.send_frame(OP_PONG, b"")
    ws.send_frame(OP_PONG, b"unsolicited pong payload")
    ws.send_frame(OP_PING, b"ping payload")
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"ping payload")
    close_cleanly(ws)


@pytest.mark.parametrize("chopped", [False, True])
def test_2_10_11_ten_pings(echo, chopped):
    ws = ws_open(echo)
    data = b"".join(build_frame(OP_PING, b"payload-%d" % i) for i in range(10))
    send_chops(ws, data, range(1, len(data)) if chopped else [], 0.001)
    for i in range(10):
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"payload-%d" % i)
    close_cleanly(ws)


# ---------------------------------------------------------------- 3, 4: reserved bits, opcodes

@pytest.mark.parametrize("rsv", range(1, 8))
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_3_x_reserved_bits(echo, rsv, opcode):
    """A valid message, then the frame with RSV bits, then a ping: the first is
    echoed, the second fails the connection, the ping is never answered."""
    ws = ws_open(echo)
    payload = close_payload(1000) if opcode == OP_CLOSE else b"Hello, world!"
    ws.send_raw(build_frame(OP_TEXT, b"Hello, world!") + build_frame(opcode, payload, rsv=rsv) +
                build_frame(OP_PING, b""))
    seen, f = frames_until_close(ws)
    assert f.close_code == 1002
    assert [(x.opcode, x.payload) for x in seen] == [(OP_TEXT, b"Hello, world!")]


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_4_x_reserved_opcodes(echo, opcode):
    ws = ws_open(echo)
    ws.send_raw(build_frame(OP_TEXT, b"Hello, world!") + build_frame(opcode, b"reserved") +
                build_frame(OP_PING, b""))
    seen, f = frames_until_close(ws)
    assert f.close_code == 1002
    assert [(x.opcode, x.payload) for x in seen] == [(OP_TEXT, b"Hello, world!")]


# ---------------------------------------------------------------- 5: fragmentation

@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG])
def test_5_1_2_fragmented_control(echo, opcode):
    ws = ws_open(echo)
    ws.send_frame(opcode, b"fragment1", fin=False)
    ws.send_frame(OP_CONT, b"fragment2", fin=True)
    expect_fail(ws, 1002)


@pytest.mark.parametrize("chop", [None, 1])
@pytest.mark.parametrize("ping", [False, True])
def test_5_3_to_8_two_fragments(echo, chop, ping):
    """Two fragments, with or without a ping between them, whole or chopped
    octet by octet."""
    ws = ws_open(echo)
    data = build_frame(OP_TEXT, b"fragment1", fin=False)
    if ping:
        data += build_frame(OP_PING, b"ping payload")
    data += build_frame(OP_CONT, b"fragment2", fin=True)
    send_chops(ws, data, range(1, len(data)) if chop else [], 0.002)
    if ping:
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"ping payload")
    echo_ok(ws, OP_TEXT, b"fragment1fragment2")
    close_cleanly(ws)


@pytest.mark.parametrize("chop", [None, 1])
@pytest.mark.parametrize("fin", [True, False])
def test_5_9_to_14_continuation_without_start(echo, chop, fin):
    ws = ws_open(echo)
    data = (build_frame(OP_CONT, b"non-continuation payload", fin=fin) +
            build_frame(OP_TEXT, b"Hello, world!"))
    send_chops(ws, data, range(1, len(data)) if chop else [], 0.002, until_answer=True)
    expect_fail(ws, 1002)


def test_5_15_to_18_message_inside_message(echo):
    ws = ws_open(echo)
    ws.send_raw(build_frame(OP_TEXT, b"fragment1", fin=False) +
                build_frame(OP_CONT, b"fragment2", fin=True) +
                build_frame(OP_CONT, b"fragment3", fin=False) +
                build_frame(OP_TEXT, b"fragment4", fin=True))
    seen, f = frames_until_close(ws)
    assert f.close_code == 1002
    assert [(x.opcode, x.payload) for x in seen] == [(OP_TEXT, b"fragment1fragment2")]
    ws = ws_open(echo)
    ws.send_raw(build_frame(OP_TEXT, b"fragment1", fin=False) +
                build_frame(OP_TEXT, b"fragment2", fin=True))
    expect_fail(ws, 1002)


@pytest.mark.parametrize("chop", [False, True])
def test_5_19_20_pings_between_paused_fragments(echo, chop):
    """Five fragments with pings after the first and the third, pauses
    between; the pongs come at once, the message once complete."""
    ws = ws_open(echo)
    parts = [b"fragment%d" % i for i in range(1, 6)]
    for i, p in enumerate(parts):
        frame = build_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == 4)
        send_chops(ws, frame, range(1, len(frame)) if chop else [], 0.002)
        if i in (0, 2):
            ws.send_frame(OP_PING, b"pongme %d!" % i)
            f = ws.recv_frame()
            assert (f.opcode, f.payload) == (OP_PONG, b"pongme %d!" % i)
        time.sleep(0.2)
    echo_ok(ws, OP_TEXT, b"".join(parts))
    close_cleanly(ws)


# ---------------------------------------------------------------- 6: UTF-8

VALID_UTF8 = [
    "κόσμε".encode(), "Hello-µ@ßöäüàá-UTF-8!!".encode(),
    b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80",          # first of each length
    b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf",          # last of each length
    b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xef\xbf\xbe",  # around surrogates, U+FFFE
    "😀€".encode() * 3,
]
INVALID_UTF8 = [
    "κόσμε".encode() + b"\xed\xa0\x80edited",                   # 6.3.1: a surrogate inside
    b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80",      # 5 and 6 byte forms
    b"\xf7\xbf\xbf\xbf", b"\xf4\x90\x80\x80",                  # above U+10FFFF
    b"\x80", b"\xbf", b"\x80\xbf\x80", bytes(range(0x80, 0xC0)),  # continuation bytes
    b"\xc0 ", b"\xe0 ", b"\xf0 ", b"\xf8 ", b"\xfc ",           # lonely start bytes
    b"\xc0", b"\xe0\x80", b"\xdf", b"\xef\xbf", b"\xf3\xbf\xbf",  # last byte missing
    b"\xe0\xa0", b"\xf0\x90\x80",
    b"\xfe", b"\xff", b"\xfe\xfe\xff\xff",
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xc1\xbf",  # overlong
    b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf", b"\xc0\x80", b"\xe0\x80\x80",
    b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xbf\xbf", b"\xed\xa0\x80\xed\xb0\x80",  # surrogates
    b"ok so far" + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce",          # truncated at the FIN
]


def utf8_id(b):
    return b[:12].hex() or "empty"


@pytest.mark.parametrize("payload", VALID_UTF8, ids=utf8_id)
@pytest.mark.parametrize("shape", ["frame", "fragments_of_1", "chopped_1"])
def test_6_x_valid_utf8(echo, payload, shape):
    ws = ws_open(echo)
    if shape == "frame":
        ws.send_frame(OP_TEXT, payload)
    elif shape == "fragments_of_1":
        for i in range(len(payload)):
            ws.send_frame(OP_TEXT if i == 0 else OP_CONT, payload[i:i + 1],
                          fin=i == len(payload) - 1)
    else:
        frame = build_frame(OP_TEXT, payload)
        send_chops(ws, frame, range(1, len(frame)), 0.002)
    echo_ok(ws, OP_TEXT, payload)
    close_cleanly(ws)


@pytest.mark.parametrize("payload", INVALID_UTF8, ids=utf8_id)
@pytest.mark.parametrize("shape", ["frame", "fragments_of_1", "chopped_1"])
def test_6_x_invalid_utf8_fails_fast(echo, payload, shape):
    """Only the bytes up to the first one that cannot continue valid UTF-8 are
    sent (for a truncated character: the whole message, since only the FIN
    makes it invalid); the 1007 close must come without the rest."""
    bad = first_invalid(payload)
    assert bad is not None
    ws = ws_open(echo)
    if shape == "frame":
        ws.send_frame(OP_TEXT, payload)
    elif shape == "fragments_of_1":
        for i in range(bad + 1):
            ws.send_frame(OP_TEXT if i == 0 else OP_CONT, payload[i:i + 1],
                          fin=i == len(payload) - 1)
    else:
        frame = build_frame(OP_TEXT, payload)
        hdr = len(frame) - len(payload)
        send_chops(ws, frame[:hdr + bad + 1], range(1, hdr + bad + 1), 0.002, until_answer=True)
    expect_fail(ws, 1007)


# 6.4.x: PART1 is valid, PART2 makes the message invalid, PART3 is the rest.
# 6.4.1/6.4.3: PART2 is a whole code point above U+10FFFF; 6.4.2/6.4.4: the
# invalid sequence starts at the end of PART1 and PART2 is one byte.
PARTS_641 = ["κόσμε".encode(), b"\xf4\x90\x80\x80", b"edited"]
PARTS_642 = ["κόσμε".encode() + b"\xf4", b"\x90", b"\x80\x80edited"]


@pytest.mark.parametrize("parts", [PARTS_641, PARTS_642], ids=["6.4.1", "6.4.2"])
def test_6_4_1_2_fragments_fail_fast(echo, parts):
    ws = ws_open(echo)
    ws.send_frame(OP_TEXT, parts[0], fin=False)
    time.sleep(PAUSE)
    assert_silent(ws)
    ws.send_frame(OP_CONT, parts[1], fin=False)
    expect_fail(ws, 1007)  # PART3 is never sent


@pytest.mark.parametrize("parts", [PARTS_641, PARTS_642], ids=["6.4.3", "6.4.4"])
def test_6_4_3_4_one_frame_in_chops_fails_fast(echo, parts):
    """One frame in three TCP segments, the header in the first: the 1007
    close arrives after the second segment, before the third is sent (flowcast
    used to wait for the whole frame: NON-STRICT in the suite)."""
    ws = ws_open(echo)
    frame = build_frame(OP_TEXT, b"".join(parts))
    c1 = len(frame) - len(b"".join(parts)) + len(parts[0])
    c2 = c1 + len(parts[1])
    ws.send_raw(frame[:c1])
    time.sleep(PAUSE)
    assert_silent(ws)
    ws.send_raw(frame[c1:c2])
    expect_fail(ws, 1007)  # frame[c2:] is never sent


def test_6_4_x_continuation_frame_in_chops_fails_fast(echo):
    """The same inside a fragmented message: a continuation frame whose
    invalid byte arrives in a later segment than its header."""
    ws = ws_open(echo)
    ws.send_frame(OP_TEXT, "κόσμε".encode() + b"\xe2\x82", fin=False)  # valid so far
    frame = build_frame(OP_CONT, b"\xac ok \xf4" + b"\x90" + b"rest" * 100, fin=True)
    hdr = 4 + 4
    ws.send_raw(frame[:hdr + 6])  # header, the end of the euro sign, " ok ", F4
    time.sleep(PAUSE)
    assert_silent(ws)
    ws.send_raw(frame[hdr + 6:hdr + 7])  # 90: above U+10FFFF
    expect_fail(ws, 1007)


def test_6_4_x_large_frame_fails_at_the_segment_with_the_invalid_byte(echo):
    """A 1 MiB text frame whose invalid byte comes after 300 KB: the close
    comes while the rest of the frame is still unsent."""
    ws = ws_open(echo)
    payload = b"a" * 300000 + b"\xff" + b"b" * (1 << 20)
    frame = build_frame(OP_TEXT, payload)
    hdr = len(frame) - len(payload)
    send_chops(ws, frame[:hdr + 300000], range(65536, hdr + 300000, 65536), 0.01)
    time.sleep(PAUSE)
    assert_silent(ws)
    ws.send_raw(frame[hdr + 300000:hdr + 300001])
    expect_fail(ws, 1007)


# ---------------------------------------------------------------- valid text over many segments

def chop_points(rng, n, count):
    return sorted(rng.sample(range(1, n), min(count, n - 1)))


@pytest.mark.parametrize("size", [1000, 65536 - 15, 65536 - 14, 65536, 65536 + 14, 200003])
def test_valid_text_in_random_segments_echoes_intact(echo, size):
    """Multibyte text (split inside characters and inside the header) over
    ~20 segments, including sizes around the 64 KiB read buffer."""
    rng = random.Random(size)
    text = ("κόσμε€😀abc" * (size // 10 + 1)).encode()[:size]
    while first_invalid(text) is not None:  # do not end inside a character
        text = text[:-1]
    frame = build_frame(OP_TEXT, text)
    ws = ws_open(echo)
    send_chops(ws, frame, chop_points(rng, len(frame), 20), 0.01)
    echo_ok(ws, OP_TEXT, text)
    close_cleanly(ws)


def test_valid_text_in_many_fragments_and_segments(echo):
    """2,000 fragments of 1-40 bytes cut inside characters, with pings between
    some, the whole stream sent in ~50 segments."""
    rng = random.Random(7)
    text = ("ÄÖÜ κόσμε €😀 " * 4000).encode()
    data, pings, off, i = b"", 0, 0, 0
    while off < len(text):
        n = rng.randint(1, 40) if i < 1999 else len(text) - off
        part = text[off:off + n]
        off += len(part)
        data += build_frame(OP_TEXT if i == 0 else OP_CONT, part, fin=off >= len(text))
        if i % 400 == 17:
            data += build_frame(OP_PING, b"p%d" % i)
            pings += 1
        i += 1
    ws = ws_open(echo)
    send_chops(ws, data, chop_points(rng, len(data), 50), 0.005)
    got = []
    for _ in range(pings):
        f = ws.recv_frame(10.0)
        assert f.opcode == OP_PONG
        got.append(f.payload)
    assert len(got) == pings
    echo_ok(ws, OP_TEXT, text)
    close_cleanly(ws)


# ---------------------------------------------------------------- 7: closing handshake

def test_7_1_1_message_then_close(echo):
    ws = ws_open(echo)
    ws.send_text("Hello World!")
    echo_ok(ws, OP_TEXT, b"Hello World!")
    close_cleanly(ws)


@pytest.mark.parametrize("after", ["close", "ping", "text"])
def test_7_1_2_to_4_nothing_after_close(echo, after):
    """Frames after the client's close frame are not answered."""
    ws = ws_open(echo)
    extra = {"close": build_frame(OP_CLOSE, close_payload(1000)),
             "ping": build_frame(OP_PING, b"after close"),
             "text": build_frame(OP_TEXT, b"after close")}[after]
    ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + extra)
    seen, f = frames_until_close(ws)
    assert f.close_code == 1000 and not seen


def test_7_1_5_close_between_fragments(echo):
    ws = ws_open(echo)
    ws.send_raw(build_frame(OP_TEXT, b"fragment1", fin=False) +
                build_frame(OP_CLOSE, close_payload(1000)) +
                build_frame(OP_CONT, b"fragment2", fin=True))
    seen, f = frames_until_close(ws)
    assert f.close_code == 1000 and not seen


def test_7_1_6_large_message_close_ping(echo):
    ws = ws_open(echo)
    ws.send_raw(build_frame(OP_TEXT, b"BAsd7&jh23" * 26214) +
                build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_PING, b""))
    seen, f = frames_until_close(ws, timeout=10.0)
    assert f.close_code == 1000
    assert [x.opcode for x in seen] in ([], [OP_TEXT])  # the echo may come first; no pong


@pytest.mark.parametrize("payload,code", [
    (b"", None),                                   # 7.3.1: empty close
    (b"\x03", 1002),                               # 7.3.2: 1-byte payload
    (close_payload(1000), 1000),                   # 7.3.3
    (close_payload(1000, b"Hello World!"), 1000),  # 7.3.4
    (close_payload(1000, b"*" * 123), 1000),       # 7.3.5: longest reason
    (close_payload(1000, b"*" * 124), 1002),       # 7.3.6: control frame of 126 bytes
    (close_payload(1000, "κόσμε".encode() + b"\xed\xa0\x80edited"), 1007),  # 7.5.1
])
def test_7_3_and_7_5_close_payloads(echo, payload, code):
    ws = ws_open(echo)
    ws.send_frame(OP_CLOSE, payload)
    seen, f = frames_until_close(ws)
    assert not seen
    if code is None:
        assert f.close_code in (None, 1000), f
    else:
        assert f.close_code == code, f


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 3999, 4000, 4999])
def test_7_7_valid_close_codes_echoed(echo, code):
    ws = ws_open(echo)
    ws.send_close(code)
    seen, f = frames_until_close(ws)
    assert f.close_code == code and not seen


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535])
def test_7_9_and_7_13_invalid_close_codes(echo, code):
    ws = ws_open(echo)
    ws.send_close(code)
    expect_fail(ws, 1002)


# ---------------------------------------------------------------- 9, 10: sizes and fragmentation

@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("frag", [None, 65536, 1300])
def test_9_and_10_1_large_messages(echo, opcode, frag):
    """4 MiB in one frame (9.1.x/9.2.x shape, smaller) and fragmented
    (9.3.x/9.4.x, 10.1.1's auto-fragmentation of 1,300 bytes)."""
    payload = (b"BAsd7&jh23" * 419431)[:4 << 20] if opcode == OP_TEXT else bytes(4 << 20)
    ws = ws_open(echo)
    if frag is None:
        ws.send_frame(opcode, payload)
    else:
        chunks = [payload[i:i + frag] for i in range(0, len(payload), frag)]
        ws.send_raw(b"".join(build_frame(opcode if i == 0 else OP_CONT, c, fin=i == len(chunks) - 1)
                             for i, c in enumerate(chunks)))
    echo_ok(ws, opcode, payload, timeout=30.0)
    close_cleanly(ws)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("chop", [64, 4096])
def test_9_5_and_9_6_chopped_1mib(echo, opcode, chop):
    """1 MiB in one frame, written in chops of 64 or 4,096 bytes: the server
    checks each piece as it arrives and still echoes the message intact."""
    payload = ("κόσμε€😀" * 60000).encode()[:1 << 20] if opcode == OP_TEXT else \
        bytes(i * 7 & 0xFF for i in range(1 << 20))
    while opcode == OP_TEXT and first_invalid(payload) is not None:
        payload = payload[:-1]
    ws = ws_open(echo)
    frame = build_frame(opcode, payload)
    for i in range(0, len(frame), chop):
        ws.send_raw(frame[i:i + chop])
    echo_ok(ws, opcode, payload, timeout=30.0)
    close_cleanly(ws)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_9_7_and_9_8_thousand_round_trips(echo, opcode):
    ws = ws_open(echo)
    for i in range(1000):
        payload = b"%016d" % i
        ws.send_frame(opcode, payload)
        echo_ok(ws, opcode, payload)
    close_cleanly(ws)
