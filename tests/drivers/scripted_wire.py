"""A scripted transport for recorded-exchange tests of the VISA driver (after PyMeasure's
``expected_protocol``): the driver must send exactly the expected bytes, in order, and gets back the
replies docs/protocol.md prescribes; leftovers on either side fail the test.

A script is a list of ``(sent, reply)``: ``sent`` is the program message without its ``\\n`` (str,
or bytes for binary blocks); ``reply`` is None (nothing comes back), a str (one text line, the
``\\n`` is added), bytes (sent as they are), :data:`SILENT` (nothing ever comes back: reads time out),
``Late(reply)`` (the reply arrives only after the driver's first read of it timed out) or
:data:`DISCONNECT` (the device closes the connection).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from drivers.errors import DeviceDisconnected, DeviceTimeout
from drivers.visa import VisaDevice
from drivers.wire import Wire

SILENT = object()
DISCONNECT = object()


@dataclass(frozen=True)
class Late:
    """A reply that arrives after the driver's first attempt to read it has timed out."""

    reply: str | bytes


def _wire_bytes(reply: str | bytes) -> bytes:
    return reply if isinstance(reply, bytes) else reply.encode("ascii") + b"\n"


class ScriptedWire(Wire):
    """A :class:`~drivers.wire.Wire` that checks every message sent against the script."""

    def __init__(self, script: list[tuple[str | bytes, object]], resource: str, timeout_s: float) -> None:
        super().__init__(resource, timeout_s)
        self.script = list(script)
        self.step = 0
        self._buf = bytearray()
        self.received = 0
        self._late: bytes | None = None  # the reply to the last message, if it comes late
        self._arriving: bytes | None = None  # a late reply, delivered at the next read or send
        self._closed_by_peer = False
        self.flushed = 0

    # ------------------------------------------------------------------ the script
    def send(self, data: bytes) -> None:
        self._arrive()
        if self.step >= len(self.script):
            raise AssertionError(f"the driver sent {data!r} after the end of the script")
        expected, reply = self.script[self.step]
        want = (expected if isinstance(expected, bytes) else expected.encode("ascii")) + b"\n"
        if data != want:
            raise AssertionError(f"message {self.step}: the driver sent {data!r}, the script expects "
                                 f"{want!r}")
        self.step += 1
        if reply is None or reply is SILENT:
            return
        if reply is DISCONNECT:
            self._closed_by_peer = True
        elif isinstance(reply, Late):
            self._late = _wire_bytes(reply.reply)
        else:
            self._deliver(_wire_bytes(reply))

    def _deliver(self, data: bytes) -> None:
        self._buf.extend(data)
        self.received += len(data)

    def _arrive(self) -> None:
        if self._arriving is not None:
            self._deliver(self._arriving)
            self._arriving = None

    def _starve(self) -> None:
        """Nothing (more) arrives in time; a late reply arrives after this timeout."""
        if self._closed_by_peer:
            raise DeviceDisconnected("the device closed the connection", resource=self.resource)
        self._arriving, self._late = self._late, None
        raise DeviceTimeout(f"no reply within {self.timeout_s:g} s", timeout_s=self.timeout_s,
                            resource=self.resource)

    def assert_done(self) -> None:
        """Every scripted message was sent and every reply byte was read."""
        left = [m for m, _ in self.script[self.step:]]
        assert not left, f"the driver did not send {left}"
        left_bytes = bytes(self._buf) + (self._late or b"") + (self._arriving or b"")
        assert not left_bytes, f"replies left unread: {left_bytes!r}"

    # ------------------------------------------------------------------ Wire
    def read_line(self) -> bytes:
        self._arrive()
        while (line := self._pop_line()) is None:
            self._starve()
        return line

    def read_exact(self, n: int) -> bytes:
        self._arrive()
        while len(self._buf) < n:
            self._starve()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_into(self, view: memoryview) -> None:
        view[:] = self.read_exact(view.nbytes)

    def flush_input(self, quiet_s: float = 0.05) -> int:
        dropped = len(self._buf)
        self._buf.clear()
        self.flushed += dropped
        return dropped

    def close(self) -> None:
        self._buf.clear()


@contextlib.contextmanager
def scripted_visa(script: list[tuple[str | bytes, object]],
                  resource: str = "TCPIP::opu.lab::5025::SOCKET") -> Iterator[VisaDevice]:
    """An open :class:`VisaDevice` on a :class:`ScriptedWire` (``dev.wire``); the script must be
    used up when the block ends."""
    wires: list[ScriptedWire] = []

    def factory(res: str, timeout_s: float) -> ScriptedWire:
        wires.append(ScriptedWire(script, res, timeout_s))
        return wires[-1]

    dev = VisaDevice(resource, timeout_s=1.0, wire_factory=factory).open()
    dev.wire = wires[0]  # type: ignore[attr-defined]
    yield dev
    wires[0].assert_done()
