"""Framing of replies on the fast socket wire, against a hand-written peer (socketpair)."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from drivers.errors import DeviceDisconnected, DeviceTimeout, ProtocolError
from drivers.wire import SocketWire


class _Session:
    _pending_buffer = bytearray()


@pytest.fixture
def link():
    a, b = socket.socketpair()
    wire = SocketWire(a, _Session(), "test", timeout_s=0.3)
    yield wire, b
    a.close()
    b.close()


def _block(payload: bytes) -> bytes:
    n = str(len(payload)).encode()
    return b"#" + str(len(n)).encode() + n + payload + b"\n"


def test_block_with_newlines_inside_is_read_exactly(link):
    wire, peer = link
    payload = bytes(range(256)) * 40  # contains many b"\n"
    peer.sendall(_block(payload) + b"next\n")
    out = np.empty(len(payload), dtype=np.uint8)
    wire.read_block_into(out)
    assert out.tobytes() == payload
    assert wire.read_line() == b"next"


def test_large_block_sent_in_pieces(link):
    wire, peer = link
    payload = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()

    def send():
        data = _block(payload)
        for i in range(0, len(data), 100_000):
            peer.sendall(data[i : i + 100_000])
            time.sleep(0.001)

    t = threading.Thread(target=send)
    t.start()
    assert wire.read_block() == payload
    t.join()


@pytest.mark.parametrize(
    "reply, match",
    [
        (b'-113,"Undefined header"\n', "expected an IEEE 488.2"),
        (b"#0abc\n", "digit count"),
        (b"#3a1c\n", "not decimal"),
        (b"#15abcdefgh\n", "terminator"),
    ],
)
def test_malformed_blocks_are_protocol_errors(link, reply, match):
    wire, peer = link
    peer.sendall(reply)
    with pytest.raises(ProtocolError, match=match):
        wire.read_block()


def test_wrong_length_is_a_protocol_error(link):
    wire, peer = link
    peer.sendall(_block(b"x" * 10))
    with pytest.raises(ProtocolError, match="holds 10 bytes, expected 12"):
        wire.read_block_into(np.empty(12, dtype=np.uint8))


def test_silence_is_a_timeout_and_a_close_mid_block_a_disconnect(link):
    wire, peer = link
    t = time.monotonic()
    with pytest.raises(DeviceTimeout):
        wire.read_line()
    assert 0.25 < time.monotonic() - t < 5.0  # wide upper margin: a loaded machine is slow, never fast
    peer.sendall(b"#41000" + b"x" * 10)
    peer.close()
    with pytest.raises(DeviceDisconnected, match="after 10 of 1000 bytes"):
        wire.read_block()


def test_skip_reply_keeps_replies_in_step(link):
    wire, peer = link
    peer.sendall(_block(b"a\nb\n") + b"text reply\n" + b"wanted\n")
    wire.skip_reply()
    wire.skip_reply()
    assert wire.read_line() == b"wanted"
