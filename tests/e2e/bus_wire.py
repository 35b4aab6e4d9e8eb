"""The cluster bus message (src/bus/codec.c, docs/cluster.md "The bus
message"), written from Python so that tests can publish what a node
would, or something close to it, on flowcast.changes."""

import struct
import time

VERSION = 2  # what the forged-message tests write: still decoded (no transactions)
VERSION_TXID = 3  # a node's own: each change with its transaction (txid=...)
STATUSES = ["pending", "running", "paused", "completed", "failed", "cancelled"]


def varint(v):
    """Unsigned LEB128; any int >= 0 (past INT64_MAX too: forged messages)."""
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def text(b):
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogatepass")
    return varint(len(b)) + b


def change(wid, epoch, seq, deleted=False, message="forged", name="wf", status="running",
           current_step=1, total_steps=10, created_ms=1767225600000, updated_ms=1767225600000,
           txid=None, txn_changes=1):
    """One change's bytes; status may be a name or a raw byte value. With
    txid, in version 3's layout (its transaction and that one's count of
    changes): put it in a batch(..., version=VERSION_TXID)."""
    if isinstance(wid, str):
        wid = wid.encode()
    st = STATUSES.index(status) if isinstance(status, str) else status
    return (bytes([1 if deleted else 0, st, len(wid) & 0xFF]) + wid
            + b"".join(varint(v) for v in (epoch, seq, current_step, total_steps, created_ms,
                                           updated_ms))
            + (b"" if txid is None else varint(txid) + varint(txn_changes))
            + text(name) + text(message))


def batch(changes, node="rogue", sent_ns=None, count=None, version=VERSION):
    """A bus message holding the given change bytes (count: a forged count)."""
    node = node.encode() if isinstance(node, str) else node
    sent = time.time_ns() if sent_ns is None else sent_ns
    n = len(changes) if count is None else count
    return (bytes([version, len(node)]) + node + struct.pack("<QI", sent, n)
            + b"".join(changes))


def forged(wid, epoch, seq, deleted=False, message="forged", node="rogue"):
    """A one-change message as a node would publish it."""
    return batch([change(wid, epoch, seq, deleted, message)], node=node)
