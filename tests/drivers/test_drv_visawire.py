"""The message-based VISA wire (:class:`drivers.wire.VisaWire`): pyvisa's errors become the driver's
typed errors, and frame fetches are split at ``MAX_FETCH_BYTES`` on both wires.

The conformance suite (test_drv_conformance.py, ``visawire`` parameter) and the fault-injection
cases (test_drv_faults.py, ``visawire`` parameter) run through this wire against the emulator.
"""

from __future__ import annotations

import numpy as np
import pytest
import pyvisa
from drv_helpers import open_sim, open_visa, random_patterns
from pyvisa.constants import StatusCode

import drivers.visa
from drivers import DeviceDisconnected, DeviceTimeout
from drivers.wire import VisaWire


class _Resource:
    """A pyvisa resource whose calls raise a given exception (or return queued replies)."""

    def __init__(self, exc: BaseException | None = None, replies: list[bytes] | None = None) -> None:
        self.exc = exc
        self.replies = list(replies or [])
        self.written: list[bytes] = []
        self.cleared = 0

    def _maybe_raise(self):
        if self.exc is not None:
            raise self.exc

    def write_raw(self, data):
        self._maybe_raise()
        self.written.append(bytes(data))

    def read_raw(self):
        self._maybe_raise()
        return self.replies.pop(0)

    def read_bytes(self, n, chunk_size=None):
        self._maybe_raise()
        data = b"".join(self.replies)
        self.replies = [data[n:]] if len(data) > n else []
        return data[:n]

    def clear(self):
        self.cleared += 1
        self._maybe_raise()


@pytest.mark.parametrize("op", ["send", "read_line", "read_exact", "read_block"])
@pytest.mark.parametrize(
    "exc, expected, match",
    [
        (pyvisa.errors.VisaIOError(StatusCode.error_timeout), DeviceTimeout, r"no reply within 0\.7 s"),
        (pyvisa.errors.VisaIOError(StatusCode.error_connection_lost), DeviceDisconnected, "connection lost"),
        (pyvisa.errors.VisaIOError(StatusCode.error_io), DeviceDisconnected, "connection lost"),
        (ConnectionResetError("reset by peer"), DeviceDisconnected, "reset by peer"),
        (BrokenPipeError("broken pipe"), DeviceDisconnected, "broken pipe"),
    ],
)
def test_pyvisa_errors_map_to_typed_driver_errors(op, exc, expected, match):
    wire = VisaWire(_Resource(exc), "ASRL1::INSTR", timeout_s=0.7)
    call = {"send": lambda: wire.send(b"*IDN?\n"), "read_line": wire.read_line,
            "read_exact": lambda: wire.read_exact(4), "read_block": wire.read_block}[op]
    with pytest.raises(expected, match=match) as info:
        call()
    assert info.value.resource == "ASRL1::INSTR"
    assert info.value.__cause__ is exc
    if expected is DeviceTimeout:
        assert info.value.timeout_s == 0.7


def test_other_visa_errors_are_not_disguised():
    """A VISA error that is neither a timeout nor a lost connection propagates as pyvisa's own."""
    exc = pyvisa.errors.VisaIOError(StatusCode.error_resource_not_found)
    with pytest.raises(pyvisa.errors.VisaIOError) as info:
        VisaWire(_Resource(exc), "GPIB0::5::INSTR", timeout_s=1.0).read_line()
    assert info.value is exc


def test_lines_and_blocks_across_reads():
    payload = bytes(range(256)) * 3  # newlines inside the block
    block = b"#3768" + payload + b"\n"
    res = _Resource(replies=[b"par", b"tial\nrest\n" + block[:5], block[5:] + b"tail\n"])
    wire = VisaWire(res, "r", timeout_s=1.0)
    assert wire.read_line() == b"partial"
    assert wire.read_line() == b"rest"
    out = np.empty(768, dtype=np.uint8)
    wire.read_block_into(out)
    assert out.tobytes() == payload
    assert wire.read_line() == b"tail"
    wire.send(b"X\n")
    assert res.written == [b"X\n"]


def test_flush_input_drops_the_buffer_and_clears_the_device():
    res = _Resource(replies=[b"one\ntwo\n"])
    wire = VisaWire(res, "r", timeout_s=1.0)
    assert wire.read_line() == b"one"
    assert wire.flush_input() == 4  # b"two\n" was buffered
    assert res.cleared == 1
    res.exc = pyvisa.errors.VisaIOError(StatusCode.error_timeout)
    assert wire.flush_input() == 0  # a failing clear is not an error while resynchronising


@pytest.mark.parametrize("fast_io", [True, False], ids=["socket", "visawire"])
def test_fetch_is_chunked_at_max_fetch_bytes(server, monkeypatch, fast_io):
    """A fetch larger than MAX_FETCH_BYTES is several FETC:FRAM? blocks; the frames are unchanged."""
    dev = open_visa(server.resource, fast_io=fast_io)
    ref = open_sim()
    try:
        for d in (dev, ref):
            d.set_seed(9)
        x = random_patterns(40, seed=2)
        want = ref.acquire(x)
        frame_bytes = want.itemsize * want.shape[1]
        monkeypatch.setattr(drivers.visa, "MAX_FETCH_BYTES", 3 * frame_bytes + 5)  # 3 frames a block
        sent: list[bytes] = []
        send = dev._wire.send
        monkeypatch.setattr(dev._wire, "send", lambda data: (sent.append(bytes(data)), send(data))[1])
        np.testing.assert_array_equal(dev.acquire(x), want)
        fetches = [s.decode().strip() for s in sent if s.startswith(b"FETC:FRAM?")]
        assert fetches == [f"FETC:FRAM? {lo},{min(3, 40 - lo)}" for lo in range(0, 40, 3)]
        sent.clear()
        np.testing.assert_array_equal(dev.fetch_frames(5, 7), want[5:12])
        assert [s.decode().strip() for s in sent] == ["FETC:FRAM? 5,3", "FETC:FRAM? 8,3", "FETC:FRAM? 11,1"]
        # below the limit: one block
        monkeypatch.setattr(drivers.visa, "MAX_FETCH_BYTES", 40 * frame_bytes)
        sent.clear()
        np.testing.assert_array_equal(dev.fetch_frames(0, 40), want)
        assert [s.decode().strip() for s in sent] == ["FETC:FRAM? 0,40"]
    finally:
        dev.close()
        ref.close()
